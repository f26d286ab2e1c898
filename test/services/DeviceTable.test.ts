import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { TestClock } from "effect/testing"
import { Capability, Device, Journal, Kernel, Process, Sys } from "effect-agent-os"
// the table is kernel-internal: unit-tested by its source path, not exported from the package
import * as DeviceTable from "../../src/services/DeviceTable.ts"
import * as TestKernel from "effect-agent-os/testing"

interface Probe {
  readonly calls: Array<unknown>
  readonly opened: Array<number>
  readonly closed: Array<number>
  readonly interrupted: Array<unknown>
}

const probe = (): Probe => ({ calls: [], opened: [], closed: [], interrupted: [] })

/**
 * A test driver: `{ echo, tokens? }` answers `echo` and costs `tokens`; `{ fail }` fails with that reason;
 * `{ sleep }` waits that long first (interruptible); `{ gate }` waits on a Deferred.
 */
const testDriver = (p: Probe, name = "dev", meters?: ReadonlyArray<"tokens" | "toolCalls" | "usd">) =>
  Device.make({
    name,
    ...(meters === undefined ? {} : { meters }),
    open: (owner) =>
      Effect.sync(() => {
        p.opened.push(owner.pid)
        const read = (request: unknown, context: Device.CallContext) =>
          Effect.gen(function* () {
            const r = request as {
              readonly echo?: unknown
              readonly tokens?: number
              readonly fail?: string
              readonly sleep?: string
              readonly gate?: Deferred.Deferred<void>
            }
            p.calls.push({ request: r.gate === undefined ? r : "gated", op: context.op, pid: context.pid })
            if (r.sleep !== undefined) {
              yield* Effect.sleep(r.sleep as `${number} seconds`).pipe(
                Effect.onInterrupt(() => Effect.sync(() => p.interrupted.push(r)))
              )
            }
            if (r.gate !== undefined) yield* Deferred.await(r.gate)
            if (r.fail !== undefined) {
              return yield* new Device.DeviceError({ device: name, reason: r.fail, message: `failed: ${r.fail}` })
            }
            return { value: r.echo ?? null, cost: { tokens: r.tokens ?? 0 } }
          })
        return {
          read,
          write: (data: unknown) => Effect.succeed({ value: { wrote: data } }),
          close: Effect.sync(() => {
            p.closed.push(owner.pid)
          })
        }
      })
  })

const kernelWith = (p: Probe, options?: { readonly journal?: Journal.Mode; readonly limits?: object }) =>
  TestKernel.layer({ drivers: [testDriver(p)], ...options })

const run = <A, E>(
  p: Probe,
  body: (grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>,
  options?: Kernel.BootOptions
) => TestKernel.runProcess(body, { grant: ["dev"], ...options }).pipe(Effect.provide(kernelWith(p)))

const capError = (e: unknown, reason: Capability.CapabilityFailure) =>
  assert.deepInclude(e as object, { _tag: "CapabilityError", reason })

describe("Sys.open", () => {
  it.effect("opens a granted device; the handle opens the driver lazily, at the first call", () => {
    const p = probe()
    return run(p, (grant) =>
      Effect.gen(function* () {
        const handle = yield* Sys.open(grant.devices.dev!)
        assert.deepStrictEqual(p.opened, [])
        assert.strictEqual(yield* Sys.read(handle, { echo: "hi" }), "hi")
        assert.deepStrictEqual(p.opened, [1])
      })
    )
  })

  it.effect("denied: forged, missing right, wrong resource, revoked", () => {
    const p = probe()
    return run(p, (grant) =>
      Effect.gen(function* () {
        const dev = grant.devices.dev!
        capError(yield* Effect.flip(Sys.open({ id: dev.id } as unknown as Capability.CapRef)), "invalid")
        capError(yield* Effect.flip(Sys.open(yield* Sys.derive(dev, []))), "missing-right")
        const me = yield* Sys.selfCap()
        capError(yield* Effect.flip(Sys.open(me)), "missing-right")
        capError(yield* Effect.flip(Sys.open(yield* Sys.derive(grant.spawn, ["spawn"]))), "missing-right")
        const copy = yield* Sys.derive(dev, ["open"])
        yield* Sys.revoke(copy)
        capError(yield* Effect.flip(Sys.open(copy)), "revoked")
      })
    )
  })

  it.effect("boot refuses a grant for a device with no driver; two drivers with one name fail the layer", () =>
    Effect.gen(function* () {
      const p = probe()
      const error = yield* Effect.flip(
        Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          return yield* kernel.boot(
            Process.make("x", () => Effect.void),
            { grant: ["nope"] }
          )
        }).pipe(Effect.provide(kernelWith(p)))
      )
      assert.deepInclude(error, { _tag: "KernelError", reason: "unknown-device" })
      const twice = yield* Effect.flip(
        Kernel.Kernel.use(() => Effect.void).pipe(
          Effect.provide(TestKernel.layer({ drivers: [testDriver(p), testDriver(p)] }))
        )
      )
      assert.strictEqual(twice._tag, "KernelConfigError")
    })
  )
})

describe("drivers are decoded when the table is built", () => {
  const open = () => Effect.succeed({ read: () => Effect.succeed({ value: "ok" }) })
  /** Builds a kernel over drivers given as untyped values, as a host reading them from config would. */
  const build = (drivers: ReadonlyArray<unknown>) =>
    Effect.flip(
      Kernel.Kernel.use(() => Effect.void).pipe(
        Effect.provide(TestKernel.layer({ drivers: drivers as ReadonlyArray<Device.Driver> }))
      )
    )

  it.effect("valid options are accepted: meters, a policy, scheduled true", () =>
    Kernel.Kernel.use(() => Effect.void).pipe(
      Effect.provide(
        TestKernel.layer({
          drivers: [
            Device.make({ name: "a", open, meters: ["tokens", "usd"], scheduled: { concurrency: 2, agingMs: 500 } }),
            Device.make({ name: "b", open, scheduled: true, meters: undefined })
          ]
        })
      )
    )
  )

  it.effect("scheduled concurrency 0 (every call would hang) fails the layer with KernelConfigError naming it", () =>
    Effect.gen(function* () {
      const error = yield* build([Device.make({ name: "llm", open, scheduled: { concurrency: 0 } })])
      assert.strictEqual(error._tag, "KernelConfigError")
      assert.include(error.message, `driver "llm"`)
      assert.include(error.message, `["scheduled"]["concurrency"]`)
    })
  )

  it.effect("every problem of every driver at once: name, open, meters, policy, a repeated name", () =>
    Effect.gen(function* () {
      const error = yield* build([
        { name: "", open: 3 },
        { name: "x", open, meters: ["tokens", "seconds"], scheduled: { agingMs: 1.5, tokensPerMinute: -1 } },
        { name: "x", open, scheduled: "yes" },
        null
      ])
      assert.strictEqual(error._tag, "KernelConfigError")
      const message = error.message
      for (const part of [
        `driver #1`,
        `["name"]`,
        `["open"]`,
        `driver "x"`,
        `["meters"][1]`,
        `["scheduled"]["agingMs"]`,
        `["scheduled"]["tokensPerMinute"]`,
        `["scheduled"]`,
        `driver #4`
      ]) {
        assert.include(message, part)
      }
    })
  )

  it("makeUnsafe decodes too: an invalid driver throws the KernelConfigError", () => {
    assert.throws(() => DeviceTable.makeUnsafe([{ name: "d", open, meters: ["nope" as "tokens"] }]), /meters/)
  })

  it.effect("the table keeps the decoded copy: the object given can neither change nor re-answer its options", () => {
    const p = probe()
    let reads = 0
    // a hostile driver object: the first read of `scheduled` says one slot, any later read says none (a hang)
    const driver = {
      ...testDriver(p),
      get scheduled() {
        return reads++ === 0 ? { concurrency: 1 } : { concurrency: 0 }
      }
    }
    return Effect.gen(function* () {
      const fiber = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.dev!)
            // swapped after the kernel was built: must not be used
            ;(driver as { open: unknown }).open = () => Effect.die("the swapped open ran")
            return yield* Sys.read(handle, { echo: "admitted" })
          }),
        { grant: ["dev"], quota: { wall: "10 seconds" } }
      ).pipe(Effect.forkChild)
      yield* TestClock.adjust("20 seconds")
      assert.strictEqual(yield* Fiber.join(fiber), "admitted")
      assert.strictEqual(reads, 1, "the options were read once")
    }).pipe(Effect.provide(TestKernel.layer({ drivers: [driver] })))
  })
})

describe("Sys.read / write", () => {
  it.effect("a read's cost is charged to the caller and every ancestor, with a Charge event", () => {
    const p = probe()
    return Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const child = Process.make("child", () =>
        Effect.gen(function* () {
          const [dev, back] = yield* Sys.caps()
          const handle = yield* Sys.open(dev!)
          yield* Sys.read(handle, { echo: 1, tokens: 30 })
          yield* Sys.send(back!, yield* Sys.budget())
        })
      )
      const pid = yield* kernel.boot(
        Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const back = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            yield* Sys.spawn(child, { caps: [yield* Sys.derive(grant.devices.dev!, ["open"]), back] })
            const childBudget = (yield* Sys.recv<{ readonly used: { readonly tokens: number } }>()).body
            assert.strictEqual(childBudget.used.tokens, 30)
            assert.strictEqual((yield* Sys.budget()).used.tokens, 30)
          })
        ),
        { grant: ["dev"] }
      )
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.normal)
      const charge = (yield* kernel.trace()).find((e) => e._tag === "Charge")
      assert.deepInclude(charge, { pid: 2, tokens: 30, toolCalls: 0, usd: 0 })
    }).pipe(Effect.provide(kernelWith(p)))
  })

  it.effect("denied: a handle without read, a revoked handle, a handle held by another process", () => {
    const p = probe()
    return run(p, (grant) =>
      Effect.gen(function* () {
        const handle = yield* Sys.open(grant.devices.dev!)
        const writeOnly = yield* Sys.attenuate(handle, { rights: ["write"] })
        capError(yield* Effect.flip(Sys.read(writeOnly, { echo: 1 })), "missing-right")
        assert.deepStrictEqual(yield* Sys.write(writeOnly, "x"), { wrote: "x" })
        const readOnly = yield* Sys.derive(handle, ["read"])
        capError(yield* Effect.flip(Sys.write(readOnly, "x")), "missing-right")
        const { cap } = yield* Sys.spawn(Process.make("holder", () => Effect.forever(Sys.recv())))
        const given = yield* Sys.derive(handle, ["read"])
        yield* Sys.send(cap, "take", { caps: [given] })
        capError(yield* Effect.flip(Sys.read(given, { echo: 1 })), "moved")
        capError(yield* Effect.flip(Sys.read(yield* Sys.selfCap(), { echo: 1 })), "missing-right")
        yield* Sys.revoke(handle)
        capError(yield* Effect.flip(Sys.read(handle, { echo: 1 })), "revoked")
        capError(yield* Effect.flip(Sys.read(readOnly, { echo: 1 })), "revoked")
      })
    )
  })

  it.effect("a driver error reaches the process as a DeviceError it can catch", () => {
    const p = probe()
    return run(p, (grant) =>
      Effect.gen(function* () {
        const handle = yield* Sys.open(grant.devices.dev!)
        const error = yield* Effect.flip(Sys.read(handle, { fail: "unavailable" }))
        assert.deepInclude(error, { _tag: "DeviceError", device: "dev", reason: "unavailable" })
      })
    )
  })

  it.effect("a meter used up: the call does not start and the process ends with Quota", () => {
    const p = probe()
    return Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(
        Process.make<Kernel.BootGrant>("spender", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.dev!)
            yield* Sys.charge({ tokens: 10 })
            yield* Sys.read(handle, { echo: "never" })
          })
        ),
        { grant: ["dev"], quota: { tokens: 10 } }
      )
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("tokens"))
      assert.deepStrictEqual(p.calls, [])
      assert.deepStrictEqual(p.opened, [])
    }).pipe(Effect.provide(kernelWith(p)))
  })

  it.effect("a charge past the quota ends the process; the overshoot is the one call in flight", () => {
    const p = probe()
    return Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(
        Process.make<Kernel.BootGrant>("spender", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.dev!)
            for (;;) yield* Sys.read(handle, { echo: "x", tokens: 40 })
          })
        ),
        { grant: ["dev"], quota: { tokens: 100 } }
      )
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("tokens"))
      assert.strictEqual(p.calls.length, 3)
      const charged = (yield* kernel.trace()).filter((e) => e._tag === "Charge")
      assert.strictEqual(charged.length, 3, "120 tokens charged: 20 over, less than one call")
    }).pipe(Effect.provide(kernelWith(p)))
  })

  it.effect("a driver that charges no meters runs even when the meters are used up", () => {
    const p = probe()
    return TestKernel.runProcess(
      (grant) =>
        Effect.gen(function* () {
          yield* Sys.charge({ tokens: 5 })
          const handle = yield* Sys.open(grant.devices.free!)
          assert.strictEqual(yield* Sys.read(handle, { echo: "ok" }), "ok")
        }),
      { grant: ["free"], quota: { tokens: 5 } }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [testDriver(p, "free", [])] })))
  })
})

describe("Sys.readAll", () => {
  it.effect("runs the calls concurrently, numbers ops in request order, returns results in order", () => {
    const p = probe()
    return run(p, (grant) =>
      Effect.gen(function* () {
        const handle = yield* Sys.open(grant.devices.dev!)
        const gate = yield* Deferred.make<void>()
        const all = yield* Effect.forkChild(
          Sys.readAll(handle, [
            { echo: "a", gate },
            { echo: "b", gate },
            { echo: "c", gate }
          ])
        )
        yield* Effect.yieldNow
        assert.strictEqual(p.calls.length, 3, "all three started before any finished")
        yield* Deferred.succeed(gate, undefined)
        assert.deepStrictEqual(yield* Fiber.join(all), ["a", "b", "c"])
        assert.deepStrictEqual(
          p.calls.map((c) => (c as { readonly op: number }).op),
          [1, 2, 3]
        )
        assert.strictEqual(yield* Sys.read(handle, { echo: "d" }), "d")
        assert.strictEqual((p.calls[3] as { readonly op: number }).op, 4)
      })
    )
  })

  it.effect("every call runs to its end; the first failure in request order fails the whole", () => {
    const p = probe()
    return run(p, (grant) =>
      Effect.gen(function* () {
        const handle = yield* Sys.open(grant.devices.dev!)
        const error = yield* Effect.flip(
          Sys.readAll(handle, [{ echo: 1 }, { fail: "first" }, { fail: "second" }, { echo: 4, tokens: 2 }])
        )
        assert.strictEqual(error._tag === "DeviceError" && error.reason, "first")
        assert.strictEqual(p.calls.length, 4)
        assert.strictEqual((yield* Sys.budget()).used.tokens, 2)
        const bad = yield* Effect.flip(Sys.readAll(handle, "nope" as unknown as ReadonlyArray<unknown>))
        assert.strictEqual(bad._tag, "ArgumentError")
      })
    )
  })
})

describe("cancellation and handle lifetime", () => {
  it.effect("killing a process interrupts its driver call: nothing is charged or journaled", () =>
    Effect.gen(function* () {
      const p = probe()
      const store = Journal.makeMemoryStore()
      const program = Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const pid = yield* kernel.boot(
          Process.make<Kernel.BootGrant>("slow", (grant) =>
            Effect.gen(function* () {
              const handle = yield* Sys.open(grant.devices.dev!)
              yield* Sys.read(handle, { echo: "late", sleep: "10 seconds", tokens: 5 })
            })
          ),
          { grant: ["dev"], quota: { wall: "1 second" } }
        )
        yield* TestClock.adjust("1 second")
        assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("wall"))
        assert.strictEqual(p.interrupted.length, 1)
        assert.isFalse((yield* kernel.trace()).some((e) => e._tag === "Charge"))
        assert.deepStrictEqual(p.closed, [1], "the handle closed with its process")
      })
      yield* program.pipe(
        Effect.provide(TestKernel.layer({ drivers: [testDriver(p)], journal: "record" })),
        Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
      )
      assert.deepStrictEqual(store.records, [])
    })
  )

  it.effect("revoking the handle cap closes the handle; a derived cap does not", () => {
    const p = probe()
    return run(p, (grant) =>
      Effect.gen(function* () {
        const handle = yield* Sys.open(grant.devices.dev!)
        const copy = yield* Sys.derive(handle, ["read"])
        yield* Sys.read(copy, { echo: 1 })
        yield* Sys.revoke(copy)
        assert.deepStrictEqual(p.closed, [])
        yield* Sys.revoke(handle)
        yield* Effect.yieldNow
        assert.deepStrictEqual(p.closed, [1])
      })
    )
  })
})

describe("journal", () => {
  const worker = Process.make<Kernel.BootGrant>("worker", (grant) =>
    Effect.gen(function* () {
      const handle = yield* Sys.open(grant.devices.dev!)
      const a = yield* Sys.read(handle, { echo: "one", tokens: 3 })
      const failed = yield* Effect.flip(Sys.read(handle, { fail: "flaky" }))
      const rest = yield* Sys.readAll(handle, [
        { echo: "two", tokens: 1 },
        { echo: "three", tokens: 1 }
      ])
      yield* Effect.sleep("1 second")
      const last = yield* Sys.read(handle, { echo: "four", tokens: 2 })
      yield* Sys.log("info", JSON.stringify([a, failed._tag === "DeviceError" && failed.reason, rest, last]))
    })
  )

  const session = (p: Probe, mode: Journal.Mode, store: Journal.JournalStore) =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(worker, { grant: ["dev"] })
      yield* TestClock.adjust("1 second")
      const reason = yield* kernel.waitExit(pid)
      return { reason, trace: yield* kernel.trace() }
    }).pipe(
      Effect.provide(TestKernel.layer({ drivers: [testDriver(p)], journal: mode })),
      Effect.provide(Layer.succeed(Journal.JournalStoreService)(store)),
      Effect.provide(TestClock.layer())
    )

  it.effect("record, then replay with no driver touched: same results, identical trace", () =>
    Effect.gen(function* () {
      const live = probe()
      const store = Journal.makeMemoryStore()
      const recorded = yield* session(live, "record", store)
      assert.deepStrictEqual(recorded.reason, Process.normal)
      assert.strictEqual(store.records.length, 5)
      assert.strictEqual(live.calls.length, 5)
      const offline = probe()
      const replayed = yield* session(offline, "replay", Journal.makeMemoryStore(store.records))
      assert.deepStrictEqual(offline.calls, [])
      assert.deepStrictEqual(offline.opened, [])
      assert.deepStrictEqual(replayed.trace, recorded.trace)
      const log = replayed.trace.find((e) => e._tag === "Log")
      assert.deepInclude(log, { message: JSON.stringify(["one", "flaky", ["two", "three"], "four"]) })
    })
  )

  it.effect("replay with a missing entry fails the call with JournalError missing", () =>
    Effect.gen(function* () {
      const p = probe()
      const result = yield* session(p, "replay", Journal.makeMemoryStore([]))
      assert.strictEqual(result.reason._tag, "Fault")
      assert.include((result.reason as { readonly error: string }).error, "JournalError")
      assert.deepStrictEqual(p.calls, [])
    })
  )

  it.effect("recover: the persisted prefix is replayed, then the run goes live and appends", () =>
    Effect.gen(function* () {
      const full = Journal.makeMemoryStore()
      const recorded = yield* session(probe(), "record", full)
      // a crash after three records: recover from that prefix
      const prefix = Journal.makeMemoryStore(full.records.slice(0, 3))
      const p = probe()
      const recovered = yield* session(p, "recover", prefix)
      assert.deepStrictEqual(
        p.calls.map((c) => (c as { readonly op: number }).op),
        [4, 5],
        "only the calls after the prefix ran live"
      )
      assert.deepStrictEqual(prefix.records, full.records)
      assert.deepStrictEqual(recovered.trace, recorded.trace)
    })
  )

  it.effect("replay of another program fails with JournalError mismatch", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore([
        { pid: 1, op: 1, device: "dev", call: "write", result: { _tag: "Success", value: null, cost: {} } }
      ])
      const p = probe()
      const exit = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.dev!)
            return yield* Sys.read(handle, { echo: 1 })
          }),
        { grant: ["dev"] }
      ).pipe(
        Effect.provide(TestKernel.layer({ drivers: [testDriver(p)], journal: "replay" })),
        Effect.provide(Layer.succeed(Journal.JournalStoreService)(store)),
        Effect.exit
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(exit)
      assert.deepInclude(error, { _tag: "JournalError", reason: "mismatch" })
    })
  )
})
