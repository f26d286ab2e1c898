import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Ref } from "effect"
import { TestClock } from "effect/testing"
import { Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const forever = Process.make("forever", () => Effect.never)

/** Boots `init` and returns its pid with the kernel, for tests that drive time from outside. */
const boot = (init: Process.Image<Kernel.BootGrant>, options?: Kernel.BootOptions) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(init, options)
    return { kernel, pid }
  })

describe("quota and deadline timers", () => {
  it.effect("wall quota: alive one millisecond before, Quota{wall} at the instant", () =>
    Effect.gen(function* () {
      const { kernel, pid } = yield* boot(
        Process.make("sleeper", () => Effect.sleep("2 hours")),
        {
          quota: { wall: "90 minutes" }
        }
      )
      yield* TestClock.adjust(90 * 60_000 - 1)
      assert.deepStrictEqual(
        (yield* kernel.ps()).map((p) => p.pid),
        [pid]
      )
      yield* TestClock.adjust(1)
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("wall"))
      const exit = (yield* kernel.trace()).find((e) => e._tag === "Exit")!
      assert.strictEqual(exit.at, 90 * 60_000)
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("a child's deadline ends it with Deadline exactly on time; the parent is unaffected", () =>
    Effect.gen(function* () {
      const parent = Process.make<Kernel.BootGrant>("parent", () =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(forever, { deadline: "5 seconds" })
          const reason = yield* Sys.waitpid(cap)
          yield* Sys.log("info", reason._tag)
          yield* Effect.never
        })
      )
      const { kernel } = yield* boot(parent)
      yield* TestClock.adjust(4999)
      assert.strictEqual((yield* kernel.ps()).length, 2)
      yield* TestClock.adjust(1)
      assert.strictEqual((yield* kernel.ps()).length, 1)
      const log = (yield* kernel.trace()).find((e) => e._tag === "Log")
      assert.deepInclude(log, { message: "Deadline", at: 5000 })
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("sched moves the deadline", () =>
    Effect.gen(function* () {
      const { kernel, pid } = yield* boot(
        Process.make("late", () =>
          Effect.gen(function* () {
            yield* Sys.sched({ deadline: "1 second" })
            yield* Effect.never
          })
        )
      )
      yield* TestClock.adjust("1 second")
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.deadline)
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("a child inherits the parent's wall end", () =>
    Effect.gen(function* () {
      const parent = Process.make<Kernel.BootGrant>("parent", () =>
        Effect.gen(function* () {
          yield* Sys.spawn(forever)
          yield* Effect.never
        })
      )
      const { kernel } = yield* boot(parent, { quota: { wall: "1 minute" } })
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* kernel.ps()).length, 0)
      const metrics = yield* kernel.metrics()
      assert.strictEqual(metrics.exitsByReason.Quota, 2)
    }).pipe(Effect.provide(TestKernel.layer()))
  )
})

describe("meters", () => {
  it.effect("a charge past a meter ends the process with Quota: catching it does not let the process act again", () =>
    Effect.gen(function* () {
      const after = yield* Ref.make<Array<string>>([])
      const spender = Process.make<Kernel.BootGrant>("spender", () =>
        Effect.gen(function* () {
          yield* Sys.charge({ tokens: 60 })
          yield* Sys.charge({ tokens: 60 }).pipe(
            Effect.catchCause(() =>
              Effect.gen(function* () {
                yield* Ref.update(after, (xs) => [...xs, "handler ran"])
                yield* Sys.register("still here")
                yield* Ref.update(after, (xs) => [...xs, "acted after quota"])
              })
            )
          )
          yield* Ref.update(after, (xs) => [...xs, "went on"])
        })
      )
      const { kernel, pid } = yield* boot(spender, { quota: { tokens: 100 } })
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("tokens"))
      yield* Effect.yieldNow
      const seen = yield* Ref.get(after)
      assert.notInclude(seen, "acted after quota")
      assert.notInclude(seen, "went on")
      assert.strictEqual((yield* kernel.metrics()).names, 0)
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("a charge is applied to the process and every ancestor; the tightest ancestor decides", () =>
    TestKernel.runProcess(() =>
      Effect.gen(function* () {
        const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        const grandchild = Process.make("grandchild", () =>
          Effect.gen(function* () {
            yield* Sys.charge({ toolCalls: 3, usd: 0.25 })
            yield* Sys.send((yield* Sys.caps())[0]!, "charged")
            yield* Sys.charge({ toolCalls: 10 })
          })
        )
        const child = Process.make<Kernel.BootGrant>("child", () =>
          Effect.gen(function* () {
            const [report] = yield* Sys.caps()
            const { cap } = yield* Sys.spawn(grandchild, { caps: [yield* Sys.derive(report!, ["send"])] })
            yield* Sys.send(report!, yield* Sys.waitpid(cap))
            yield* Sys.send(report!, yield* Sys.budget())
          })
        )
        const spawnForChild = yield* Sys.derive((yield* Sys.caps())[0]!, ["spawn"])
        yield* Sys.spawn(child, { caps: [me, spawnForChild], quota: { toolCalls: 5 } })
        assert.strictEqual((yield* Sys.recv()).body, "charged")
        // the grandchild has no limit of its own: the child's 5 tool calls bound it
        assert.deepStrictEqual((yield* Sys.recv()).body, Process.quota("toolCalls"))
        const childBudget = (yield* Sys.recv<{ readonly used: { readonly toolCalls: number; readonly usd: number } }>())
          .body
        assert.deepInclude(childBudget.used, { toolCalls: 13, usd: 0.25 })
        const mine = yield* Sys.budget()
        assert.deepInclude(mine.used, { toolCalls: 13, usd: 0.25 })
      })
    ).pipe(Effect.provide(TestKernel.layer()))
  )
})

describe("exit", () => {
  it.effect("a failure or a defect exits Fault with the message", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const failing = yield* kernel.boot(Process.make("failing", () => Effect.fail(new Error("no luck"))))
      const dying = yield* kernel.boot(Process.make("dying", () => Effect.die("boom")))
      const throwing = yield* kernel.boot(
        Process.make("throwing", () => {
          throw new Error("thrown while building")
        })
      )
      assert.deepStrictEqual(yield* kernel.waitExit(failing), Process.fault("no luck"))
      assert.deepStrictEqual(yield* kernel.waitExit(dying), Process.fault("boom"))
      assert.deepStrictEqual(yield* kernel.waitExit(throwing), Process.fault("thrown while building"))
      const faults = (yield* kernel.trace()).filter((e) => e._tag === "Fault").map((e) => e.pid)
      assert.deepStrictEqual(faults, [failing, dying, throwing])
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("once ended, a process's syscalls take no effect, even from an uninterruptible region", () =>
    Effect.gen(function* () {
      const attempted = yield* Ref.make(0)
      const stubborn = Process.make<Kernel.BootGrant>("stubborn", (grant) =>
        Effect.gen(function* () {
          yield* Effect.sleep("1 second")
          yield* Ref.update(attempted, (n) => n + 1)
          // past its wall quota, still running: none of these may act
          yield* Sys.register("zombie").pipe(Effect.exit)
          yield* Sys.spawn(forever).pipe(Effect.exit)
          yield* Sys.charge({ tokens: 1 }).pipe(Effect.exit)
          yield* Ref.update(attempted, (n) => n + 1)
          void grant
        }).pipe(Effect.uninterruptible)
      )
      const { kernel, pid } = yield* boot(stubborn, { quota: { wall: "500 millis" } })
      yield* TestClock.adjust("500 millis")
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("wall"))
      assert.strictEqual((yield* kernel.metrics()).fibers, 1, "its fiber still runs")
      yield* TestClock.adjust("500 millis")
      yield* Effect.yieldNow
      assert.strictEqual(yield* Ref.get(attempted), 2, "it ran to its end, uninterruptible")
      const metrics = yield* kernel.metrics()
      assert.strictEqual(metrics.names, 0)
      assert.strictEqual(metrics.spawned, 1)
      assert.strictEqual(metrics.fibers, 0)
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("a forked fiber of a killed process cannot act for it", () =>
    Effect.gen(function* () {
      const { kernel, pid } = yield* boot(
        Process.make("forker", () =>
          Effect.gen(function* () {
            yield* Effect.forkDetach(
              Effect.gen(function* () {
                yield* Effect.sleep("2 seconds")
                yield* Sys.register("detached")
              })
            )
            yield* Effect.sleep("1 second")
            yield* Sys.exit(Process.fault("early"))
          })
        )
      )
      yield* TestClock.adjust("3 seconds")
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.fault("early"))
      assert.strictEqual((yield* kernel.metrics()).names, 0)
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("orphans are re-parented to init", () =>
    Effect.gen(function* () {
      const init = Process.make<Kernel.BootGrant>("init", (grant) =>
        Effect.gen(function* () {
          const middle = Process.make("middle", () =>
            Effect.gen(function* () {
              yield* Sys.spawn(forever)
            })
          )
          const { cap } = yield* Sys.spawn(middle, { caps: [yield* Sys.derive(grant.spawn, ["spawn"])] })
          yield* Sys.waitpid(cap)
          yield* Effect.never
        })
      )
      const { kernel } = yield* boot(init)
      yield* Effect.yieldNow
      const rows = yield* kernel.ps()
      assert.deepStrictEqual(
        rows.map((p) => [p.pid, p.parent, p.name]),
        [
          [1, 0, "init"],
          [3, 1, "forever"]
        ]
      )
      assert.strictEqual(rows[0]!.children, 1)
    }).pipe(Effect.provide(TestKernel.layer()))
  )
})

describe("kernel", () => {
  it.effect("boot refuses unknown devices and a shut-down kernel", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const unknown = yield* Effect.flip(kernel.boot(forever, { grant: ["llm"] }))
      assert.deepInclude(unknown, { _tag: "KernelError", reason: "unknown-device" })
      const pid = yield* kernel.boot(forever)
      yield* kernel.shutdown()
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.shutdown)
      const after = yield* Effect.flip(kernel.boot(forever))
      assert.deepInclude(after, { _tag: "KernelError", reason: "shutdown" })
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("closing the layer's scope ends every process and runs their finalizers", () =>
    Effect.gen(function* () {
      const finalized = yield* Ref.make(0)
      const guarded = Process.make("guarded", () =>
        Effect.never.pipe(Effect.ensuring(Ref.update(finalized, (n) => n + 1)))
      )
      yield* Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        yield* kernel.boot(guarded)
        yield* kernel.boot(guarded)
        yield* Effect.yieldNow
      }).pipe(Effect.provide(TestKernel.layer()))
      assert.strictEqual(yield* Ref.get(finalized), 2)
    })
  )

  it.effect("ps, metrics and Prometheus text", () =>
    Effect.gen(function* () {
      const { kernel } = yield* boot(
        Process.make<Kernel.BootGrant>("init", () =>
          Effect.gen(function* () {
            yield* Sys.register("init")
            yield* Sys.spawn(forever)
            yield* Effect.never
          })
        )
      )
      yield* Effect.yieldNow
      const rows = yield* kernel.ps()
      assert.deepStrictEqual(
        rows.map((p) => p.name),
        ["init", "forever"]
      )
      const metrics = yield* kernel.metrics()
      assert.deepInclude(metrics, { processes: 2, spawned: 2, names: 1, exited: 0 })
      const text = yield* kernel.metricsText()
      assert.include(text, "# TYPE agentos_processes gauge\nagentos_processes 2\n")
      assert.include(text, "agentos_spawned_total 2\n")
      assert.include(text, 'agentos_exits_total{reason="Normal"} 0\n')
      for (const line of text.split("\n").filter((l) => l.length > 0 && !l.startsWith("#"))) {
        assert.match(line, /^agentos_[a-z_]+(\{[a-z]+="[A-Za-z]+"\})? \d+(\.\d+)?$/)
      }
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("waitExit of an unknown pid fails with a typed error", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const error = yield* Effect.flip(kernel.waitExit(42))
      assert.deepInclude(error, { _tag: "ExitUnknownError", pid: 42 })
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("invalid limits fail the layer with KernelConfigError", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Effect.provide(
          Kernel.Kernel.use(() => Effect.void),
          TestKernel.layer({ limits: { eventRingMax: 0 } })
        )
      )
      assert.strictEqual(error._tag, "KernelConfigError")
    })
  )

  it.effect("the exit history is bounded; caps to forgotten processes are reclaimed", () =>
    Effect.gen(function* () {
      const { kernel } = yield* boot(
        Process.make<Kernel.BootGrant>("init", () =>
          Effect.gen(function* () {
            const caps = []
            for (let i = 0; i < 5; i++) {
              const { cap } = yield* Sys.spawn(Process.make("brief", () => Effect.void))
              caps.push(cap)
            }
            const first = yield* Effect.flip(Sys.waitpid(caps[0]!))
            yield* Sys.log("info", first._tag)
            assert.deepStrictEqual(yield* Sys.waitpid(caps[4]!), Process.normal)
            yield* Effect.never
          })
        )
      )
      yield* Effect.yieldNow
      const log = (yield* kernel.trace()).find((e) => e._tag === "Log")
      assert.deepInclude(log, { message: "CapabilityError" })
      // init's spawn cap plus the caps to the 2 processes still remembered
      assert.strictEqual((yield* kernel.metrics()).caps, 3)
    }).pipe(Effect.provide(TestKernel.layer({ limits: { exitHistoryMax: 2 } })))
  )
})

describe("determinism", () => {
  const scenario = Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const worker = Process.make<number>("worker", (n) =>
      Effect.gen(function* () {
        const m = yield* Sys.recv<number>()
        yield* Effect.sleep(`${n * 10} millis`)
        yield* Sys.charge({ tokens: m.body * n })
        yield* Sys.send(m.caps[0]!, m.body + n)
      })
    )
    const init = Process.make<Kernel.BootGrant>("init", () =>
      Effect.gen(function* () {
        const workers = []
        for (let i = 1; i <= 4; i++) workers.push((yield* Sys.spawn(worker, { args: i, quota: { tokens: 30 } })).cap)
        for (const [i, w] of workers.entries()) {
          yield* Sys.send(w, i * 5, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        }
        for (let i = 0; i < 3; i++) yield* Sys.recv()
        yield* Sys.kill(workers[0]!)
      })
    )
    const pid = yield* kernel.boot(init, { quota: { wall: "1 minute" } })
    yield* TestClock.adjust("1 second")
    yield* kernel.waitExit(pid)
    return yield* kernel.trace()
  })
  const once = scenario.pipe(Effect.provide(TestKernel.layer()), Effect.provide(TestClock.layer()))

  it.effect("two identical runs under TestClock give identical traces", () =>
    Effect.gen(function* () {
      const a = yield* once
      const b = yield* once
      assert.isAbove(a.length, 20)
      assert.deepStrictEqual(a, b)
      assert.isTrue(a.some((e) => e._tag === "Exit" && e.reason._tag === "Quota"))
    })
  )
})

describe("churn", () => {
  it.effect("10k spawn/kill leaves no processes, caps, names, fibers or waiters behind", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const done = yield* Deferred.make<void>()
      const named = Process.make<number>("named", (i) =>
        Effect.gen(function* () {
          yield* Sys.register(`n${i}`)
          yield* Effect.never
        })
      )
      const init = Process.make<Kernel.BootGrant>("init", () =>
        Effect.gen(function* () {
          for (let i = 0; i < 10_000; i++) {
            const { cap } = yield* Sys.spawn(named, { args: i })
            yield* Sys.monitor(cap)
            const waiter = yield* Effect.forkChild(Sys.waitpid(cap))
            if (i % 2 === 0) yield* Sys.kill(cap)
            else yield* Fiber.interrupt(waiter)
            if (i % 2 === 1) yield* Sys.kill(cap)
            yield* Sys.recv()
            yield* Sys.revoke(cap)
          }
          yield* Deferred.succeed(done, undefined)
          yield* Effect.never
        })
      )
      yield* kernel.boot(init)
      yield* Deferred.await(done)
      const metrics = yield* kernel.metrics()
      assert.deepInclude(metrics, { processes: 1, names: 0, caps: 1, fibers: 1, spawned: 10_001, exited: 10_000 })
      assert.strictEqual(metrics.eventsByType.Spawn, 10_001)
      assert.strictEqual(metrics.eventsByType.Exit, 10_000)
      const [row] = yield* kernel.ps()
      assert.deepInclude(row, { pid: 1, children: 0, mailbox: 0, caps: 1 })
    }).pipe(Effect.provide(TestKernel.layer()))
  )
})
