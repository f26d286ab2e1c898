import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, type Duration, Effect, Exit, Queue, Ref, Schedule } from "effect"
import { TestClock } from "effect/testing"
import { type Capability, Kernel, Process, Supervisor, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

type Command = "crash" | "stop"

/** Lets every runnable process run until nothing is left to do at the current instant. */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow
})

/**
 * Per-child control queues: a child named `id` takes its next command from `control(id)`, across restarts, and
 * `crash` ends it with a `Fault`, `stop` with `Normal`.
 */
const makeControls = () => {
  const queues = new Map<string, Queue.Queue<Command>>()
  const control = (id: string) => {
    let queue = queues.get(id)
    if (queue === undefined) {
      queue = Effect.runSync(Queue.unbounded<Command>())
      queues.set(id, queue)
    }
    return queue
  }
  const worker = (id: string) =>
    Process.make(id, () =>
      Effect.gen(function* () {
        const command = yield* Queue.take(control(id))
        if (command === "crash") return yield* Effect.fail(`${id} crashed`)
      })
    )
  const tell = (id: string, command: Command) => Queue.offer(control(id), command).pipe(Effect.andThen(settle))
  return { worker, tell }
}

type Job = {
  readonly effect: (supervisor: Capability.CapRef) => Effect.Effect<unknown, unknown, Sys.Sys>
  readonly done: Deferred.Deferred<Exit.Exit<unknown, unknown>>
}

/**
 * Boots an init that spawns `supervisor` with start caps `[spawn cap, send cap to init]`, monitors it, and records
 * every `Down` and every other message it receives. `inInit(f)` runs `f(supervisorCap)` inside init and gives back its
 * exit; `term()` makes init send the supervisor `Term`.
 */
const boot = (supervisor: Process.Image<void>, options?: { readonly caps?: "none" }) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const downs = yield* Ref.make<Array<Process.Down>>([])
    const inbox = yield* Ref.make<Array<Process.Message>>([])
    const started = yield* Deferred.make<number>()
    const jobs = yield* Queue.unbounded<Job>()
    const init = Process.make<Kernel.BootGrant>("init", (grant) =>
      Effect.gen(function* () {
        const toInit = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        const caps = options?.caps === "none" ? [] : [grant.spawn, toInit]
        const { cap, pid } = yield* Sys.spawn(supervisor, { caps })
        yield* Sys.monitor(cap)
        yield* Deferred.succeed(started, pid)
        yield* Effect.forkChild(
          Effect.forever(
            Effect.gen(function* () {
              const job = yield* Queue.take(jobs)
              yield* Deferred.succeed(job.done, yield* Effect.exit(job.effect(cap)))
            })
          )
        )
        while (true) {
          const message = yield* Sys.recv()
          if (Process.isKernelMessage(message) && message.body._tag === "Down") {
            const down = message.body
            yield* Ref.update(downs, (all) => [...all, down])
          } else {
            yield* Ref.update(inbox, (all) => [...all, message])
          }
        }
      })
    )
    yield* kernel.boot(init)
    const pid = yield* Deferred.await(started)
    yield* settle
    const events = () =>
      kernel.trace().pipe(
        Effect.map((trace) => {
          const names = new Map<number, string>()
          const spawns: Array<string> = []
          const exits: Array<{ name: string; reason: Process.ExitReason; at: number }> = []
          for (const event of trace) {
            if (event._tag === "Spawn") {
              names.set(event.pid, event.name)
              spawns.push(event.name)
            } else if (event._tag === "Exit") {
              exits.push({ name: names.get(event.pid) ?? String(event.pid), reason: event.reason, at: event.at })
            }
          }
          return { spawns, exits }
        })
      )
    const spawnCount = (name: string) =>
      events().pipe(Effect.map(({ spawns }) => spawns.filter((n) => n === name).length))
    const exitNames = () => events().pipe(Effect.map(({ exits }) => exits.map((e) => e.name)))
    const alive = () => kernel.ps().pipe(Effect.map((ps) => ps.map((p) => p.name)))
    const inInit = <A, E>(effect: (supervisor: Capability.CapRef) => Effect.Effect<A, E, Sys.Sys>) =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<Exit.Exit<unknown, unknown>>()
        yield* Queue.offer(jobs, { effect, done })
        yield* settle
        return (yield* Deferred.await(done)) as Exit.Exit<A, E>
      })
    const term = () => inInit((cap) => Sys.term(cap)).pipe(Effect.andThen(settle))
    return { kernel, pid, downs, inbox, events, spawnCount, exitNames, alive, inInit, term }
  })

const advance = (duration: Duration.Input) => TestClock.adjust(duration).pipe(Effect.andThen(settle))

const run = <A, E>(effect: Effect.Effect<A, E, Kernel.Kernel>) => effect.pipe(Effect.provide(TestKernel.layer()))

const abc = (worker: (id: string) => Process.Image<void>, restart: Supervisor.Restart = "permanent") =>
  ["a", "b", "c"].map((id) => ({ id, image: worker(id), restart }))

describe("Supervisor strategies", () => {
  it.effect("one_for_one restarts only the child that ended", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ strategy: "one_for_one", intensity: 5, children: abc(worker) }))
        assert.deepStrictEqual((yield* sup.events()).spawns, ["init", "supervisor", "a", "b", "c"])
        yield* tell("b", "crash")
        assert.deepStrictEqual((yield* sup.events()).spawns, ["init", "supervisor", "a", "b", "c", "b"])
        assert.deepStrictEqual(yield* sup.exitNames(), ["b"])
        assert.sameMembers(yield* sup.alive(), ["init", "supervisor", "a", "b", "c"])
      })
    )
  )

  it.effect("one_for_all shuts the others down in reverse start order, then restarts all in start order", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ strategy: "one_for_all", intensity: 5, children: abc(worker) }))
        yield* tell("b", "crash")
        const { exits, spawns } = yield* sup.events()
        assert.deepStrictEqual(
          exits.map((e) => [e.name, e.reason._tag]),
          [
            ["b", "Fault"],
            ["c", "Shutdown"],
            ["a", "Shutdown"]
          ]
        )
        assert.deepStrictEqual(spawns.slice(2), ["a", "b", "c", "a", "b", "c"])
        assert.sameMembers(yield* sup.alive(), ["init", "supervisor", "a", "b", "c"])
      })
    )
  )

  it.effect("rest_for_one restarts the child and those started after it", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ strategy: "rest_for_one", intensity: 5, children: abc(worker) }))
        yield* tell("b", "crash")
        assert.deepStrictEqual(yield* sup.exitNames(), ["b", "c"])
        assert.deepStrictEqual((yield* sup.events()).spawns.slice(2), ["a", "b", "c", "b", "c"])
        yield* tell("a", "crash")
        assert.deepStrictEqual(yield* sup.exitNames(), ["b", "c", "a", "c", "b"])
        assert.deepStrictEqual((yield* sup.events()).spawns.slice(2), ["a", "b", "c", "b", "c", "a", "b", "c"])
        assert.sameMembers(yield* sup.alive(), ["init", "supervisor", "a", "b", "c"])
      })
    )
  )
})

describe("Supervisor restart types", () => {
  it.effect("permanent restarts after a normal and after an abnormal exit", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 5, children: [{ id: "a", image: worker("a") }] }))
        yield* tell("a", "stop")
        assert.strictEqual(yield* sup.spawnCount("a"), 2)
        yield* tell("a", "crash")
        assert.strictEqual(yield* sup.spawnCount("a"), 3)
        assert.include(yield* sup.alive(), "a")
      })
    )
  )

  it.effect("transient restarts after an abnormal exit only", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(
          Supervisor.make({ intensity: 5, children: [{ id: "a", image: worker("a"), restart: "transient" }] })
        )
        yield* tell("a", "crash")
        assert.strictEqual(yield* sup.spawnCount("a"), 2)
        yield* tell("a", "stop")
        assert.strictEqual(yield* sup.spawnCount("a"), 2)
        assert.deepStrictEqual(yield* sup.alive(), ["init", "supervisor"], "the supervisor stays up")
      })
    )
  )

  it.effect("temporary never restarts, after either exit, and its exits do not count as restarts", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 0, children: abc(worker, "temporary") }))
        yield* tell("a", "crash")
        yield* tell("b", "stop")
        assert.strictEqual(yield* sup.spawnCount("a"), 1)
        assert.strictEqual(yield* sup.spawnCount("b"), 1)
        assert.deepStrictEqual(yield* sup.alive(), ["init", "supervisor", "c"])
      })
    )
  )
})

describe("Supervisor intensity", () => {
  it.effect("N restarts within the period are fine; the N+1-th stops the children and ends with Shutdown", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 2, period: "10 seconds", children: abc(worker) }))
        yield* tell("c", "crash")
        yield* advance("5 seconds")
        yield* tell("c", "crash")
        yield* advance(4999)
        assert.strictEqual(yield* sup.spawnCount("c"), 3)
        assert.include(yield* sup.alive(), "supervisor")
        assert.deepStrictEqual(yield* Ref.get(sup.downs), [])
        yield* tell("c", "crash")
        assert.strictEqual(yield* sup.spawnCount("c"), 3, "not restarted a third time")
        assert.deepStrictEqual(yield* sup.exitNames(), ["c", "c", "c", "b", "a", "supervisor"])
        assert.deepStrictEqual(yield* sup.alive(), ["init"])
        const downs = yield* Ref.get(sup.downs)
        assert.strictEqual(downs.length, 1)
        assert.strictEqual(downs[0]!.pid, sup.pid)
        assert.deepStrictEqual(downs[0]!.reason, Process.shutdownWith("reached_max_restart_intensity"))
      })
    )
  )

  it.effect("restarts spread beyond the period do not escalate", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 1, period: "10 seconds", children: abc(worker) }))
        for (let i = 0; i < 4; i++) {
          yield* tell("a", "crash")
          // a restart counts while it is at most `period` old: one millisecond more and it no longer does
          yield* advance(10_001)
        }
        assert.strictEqual(yield* sup.spawnCount("a"), 5)
        assert.include(yield* sup.alive(), "supervisor")
        assert.deepStrictEqual(yield* Ref.get(sup.downs), [])
        // two within the period: the second is one too many
        yield* tell("a", "crash")
        yield* advance(9999)
        yield* tell("b", "crash")
        assert.deepStrictEqual(yield* sup.alive(), ["init"])
        assert.deepStrictEqual(
          (yield* Ref.get(sup.downs))[0]!.reason,
          Process.shutdownWith("reached_max_restart_intensity")
        )
      })
    )
  )

  it.effect("a restart exactly `period` old still counts (supervisor.erl: R >= Now - Period)", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 1, period: "10 seconds", children: abc(worker) }))
        yield* tell("a", "crash")
        yield* advance("10 seconds")
        yield* tell("a", "crash")
        assert.deepStrictEqual(yield* sup.alive(), ["init"])
        assert.deepStrictEqual(
          (yield* Ref.get(sup.downs))[0]!.reason,
          Process.shutdownWith("reached_max_restart_intensity")
        )
      })
    )
  )

  it.effect("intensity 0 allows no restart", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 0, children: abc(worker) }))
        yield* tell("b", "crash")
        assert.deepStrictEqual(yield* sup.exitNames(), ["b", "c", "a", "supervisor"])
      })
    )
  )

  it.effect("recordRestart: a restart counts while it is at most the period old (inclusive)", () =>
    Effect.sync(() => {
      const first = Supervisor.recordRestart([], 0, 1, 1000)
      assert.deepStrictEqual(first, { allowed: true, history: [0] })
      assert.isFalse(Supervisor.recordRestart(first.history, 999, 1, 1000).allowed)
      assert.isFalse(Supervisor.recordRestart(first.history, 1000, 1, 1000).allowed)
      assert.deepStrictEqual(Supervisor.recordRestart(first.history, 1001, 1, 1000), { allowed: true, history: [1001] })
    })
  )
})

describe("Supervisor shutdown", () => {
  it.effect("Term shuts the children down in reverse start order and exits Normal", () =>
    run(
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ children: abc(worker) }))
        yield* sup.term()
        const { exits } = yield* sup.events()
        assert.deepStrictEqual(
          exits.map((e) => [e.name, e.reason._tag]),
          [
            ["c", "Shutdown"],
            ["b", "Shutdown"],
            ["a", "Shutdown"],
            ["supervisor", "Normal"]
          ]
        )
        const downs = yield* Ref.get(sup.downs)
        assert.deepStrictEqual(
          downs.map((d) => ({ pid: d.pid, reason: d.reason })),
          [{ pid: sup.pid, reason: Process.normal }]
        )
      })
    )
  )

  it.effect("under the TestClock: a worker's default shutdown is 5 s, a supervisor child's is infinity", () =>
    run(
      Effect.gen(function* () {
        const stubborn = Process.make("stubborn", () =>
          Effect.gen(function* () {
            yield* Sys.trapExit(true)
            yield* Effect.forever(Sys.recv())
          })
        )
        const inner = Supervisor.make({ name: "inner", children: [{ id: "s", image: stubborn }] })
        const sup = yield* boot(
          Supervisor.make({
            children: [{ id: "inner", image: inner, type: "supervisor", caps: [{ from: 0, rights: ["spawn"] }] }]
          })
        )
        yield* sup.term()
        yield* advance(4999)
        assert.deepStrictEqual(yield* sup.exitNames(), [])
        yield* advance(1)
        yield* advance(0)
        const { exits } = yield* sup.events()
        assert.deepStrictEqual(
          exits.map((e) => [e.name, e.reason._tag, e.at]),
          [
            ["stubborn", "Killed", 5000],
            ["inner", "Shutdown", 5000],
            ["supervisor", "Normal", 5000]
          ]
        )
      })
    )
  )

  it.effect(
    "under the TestClock: startTimeout waits for Sys.started, and a child that never reports fails the start",
    () =>
      run(
        Effect.gen(function* () {
          const { worker } = makeControls()
          const late = Process.make("late", () =>
            Effect.gen(function* () {
              yield* Effect.sleep("3 seconds")
              yield* Sys.started()
              yield* Effect.never
            })
          )
          const sup = yield* boot(
            Supervisor.make({
              children: [
                { id: "late", image: late, startTimeout: "10 seconds" },
                { id: "next", image: worker("next") }
              ]
            })
          )
          assert.deepStrictEqual((yield* sup.events()).spawns, ["init", "supervisor", "late"])
          yield* advance(2999)
          assert.deepStrictEqual((yield* sup.events()).spawns, ["init", "supervisor", "late"])
          yield* advance(1)
          assert.deepStrictEqual((yield* sup.events()).spawns, ["init", "supervisor", "late", "next"])
          const silent = Process.make("silent", () => Effect.never)
          const sup2 = yield* boot(
            Supervisor.make({ children: [{ id: "silent", image: silent, startTimeout: "1 second", shutdown: "kill" }] })
          )
          yield* advance(1000)
          const downs = yield* Ref.get(sup2.downs)
          assert.deepStrictEqual(
            downs.map((d) => d.reason),
            [Process.shutdownWith("failed_to_start_child")]
          )
        })
      )
  )

  it.effect("a shutdown duration sends the exit signal Shutdown first and kills only at the timeout", () =>
    run(
      Effect.gen(function* () {
        // both trap exits; polite ends when the supervisor's Shutdown arrives (after a second's cleanup), stubborn
        // ignores it
        const polite = Process.make("polite", () =>
          Effect.gen(function* () {
            yield* Sys.trapExit(true)
            while (true) {
              const m = yield* Sys.recv()
              if (Process.isKernelMessage(m) && m.body._tag === "Exit" && m.body.reason._tag === "Shutdown") {
                yield* Effect.sleep(999)
                return
              }
            }
          })
        )
        const stubborn = Process.make("stubborn", () =>
          Effect.gen(function* () {
            yield* Sys.trapExit(true)
            yield* Effect.forever(Sys.recv())
          })
        )
        const sup = yield* boot(
          Supervisor.make({
            children: [
              { id: "polite", image: polite, shutdown: "1 second" },
              { id: "stubborn", image: stubborn, shutdown: "1 second" }
            ]
          })
        )
        yield* sup.term()
        yield* advance(999)
        assert.deepStrictEqual(yield* sup.exitNames(), [])
        yield* advance(1)
        yield* advance(0)
        // stubborn (started last) is stopped first: killed at 1000; polite gets its signal then, and ends 999 later
        yield* advance(999)
        const { exits } = yield* sup.events()
        assert.deepStrictEqual(
          exits.map((e) => [e.name, e.reason._tag, e.at]),
          [
            ["stubborn", "Killed", 1000],
            ["polite", "Normal", 1999],
            ["supervisor", "Normal", 1999]
          ]
        )
      })
    )
  )

  it.effect("a supervisor without a spawn cap ends with Shutdown failed_to_start_child, and logs the child", () =>
    run(
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ children: abc(worker) }), { caps: "none" })
        const downs = yield* Ref.get(sup.downs)
        assert.deepStrictEqual(downs[0]!.reason, Process.shutdownWith("failed_to_start_child"))
        const logs = (yield* sup.kernel.trace()).flatMap((e) => (e._tag === "Log" ? [e.message] : []))
        assert.isTrue(
          logs.some((m) => /^start of child a failed: /.test(m)),
          logs.join("; ")
        )
      })
    )
  )

  it.effect("invalid options end it with a Fault", () =>
    run(
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ children: [...abc(worker), { id: "a", image: worker("a") }] }))
        assert.deepStrictEqual(
          (yield* Ref.get(sup.downs))[0]!.reason,
          Process.fault("invalid supervisor options: duplicate child id a")
        )
      })
    )
  )

  it.effect("unexpected messages are dropped, not fatal", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 5, children: abc(worker) }))
        yield* sup.inInit((cap) => Sys.send(cap, { _tag: "RestartDue", generation: 1 }))
        yield* sup.inInit((cap) => Sys.send(cap, { _tag: "Down", pid: 3, reason: Process.normal }))
        yield* sup.inInit((cap) => Sys.send(cap, "garbage"))
        assert.deepStrictEqual((yield* sup.events()).spawns.slice(2), ["a", "b", "c"])
        yield* tell("a", "crash")
        assert.deepStrictEqual((yield* sup.events()).spawns.slice(2), ["a", "b", "c", "a"])
      })
    )
  )
})

describe("Supervisor backoff", () => {
  it.effect(
    "exponential: not restarted before the delay, restarted at it; the schedule restarts after a quiet period",
    () =>
      run(
        Effect.gen(function* () {
          const { tell, worker } = makeControls()
          const sup = yield* boot(
            Supervisor.make({
              intensity: 10,
              period: "10 seconds",
              backoff: Schedule.exponential("100 millis"),
              children: abc(worker)
            })
          )
          const restartAt = (delay: number) =>
            Effect.gen(function* () {
              const before = yield* sup.spawnCount("a")
              yield* tell("a", "crash")
              yield* advance(delay - 1)
              assert.strictEqual(yield* sup.spawnCount("a"), before, `not restarted before ${delay} ms`)
              yield* advance(1)
              assert.strictEqual(yield* sup.spawnCount("a"), before + 1, `restarted at ${delay} ms`)
            })
          yield* restartAt(100)
          yield* restartAt(200)
          yield* restartAt(400)
          yield* advance("10 seconds")
          yield* restartAt(100)
          assert.sameMembers(yield* sup.alive(), ["init", "supervisor", "a", "b", "c"])
        })
      )
  )

  it.effect("spaced: every restart waits the same delay; other children restart on their own timers", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(
          Supervisor.make({ intensity: 10, backoff: Schedule.spaced("1 second"), children: abc(worker) })
        )
        yield* tell("a", "crash")
        yield* advance(500)
        yield* tell("b", "crash")
        yield* advance(499)
        assert.deepStrictEqual([yield* sup.spawnCount("a"), yield* sup.spawnCount("b")], [1, 1])
        yield* advance(1)
        assert.deepStrictEqual([yield* sup.spawnCount("a"), yield* sup.spawnCount("b")], [2, 1])
        yield* advance(500)
        assert.deepStrictEqual([yield* sup.spawnCount("a"), yield* sup.spawnCount("b")], [2, 2])
        const restarts = (yield* sup.events()).spawns.slice(5)
        assert.deepStrictEqual(restarts, ["a", "b"])
      })
    )
  )

  it.effect("a Term during a backoff delay still shuts down at once", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ backoff: Schedule.spaced("1 minute"), children: abc(worker) }))
        yield* tell("a", "crash")
        yield* sup.term()
        assert.deepStrictEqual(yield* sup.exitNames(), ["a", "c", "b", "supervisor"])
        yield* advance("1 minute")
        assert.strictEqual(yield* sup.spawnCount("a"), 1)
      })
    )
  )

  it.effect("a RestartDue sent by another process does not cut a backoff short", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ backoff: Schedule.spaced("1 minute"), children: abc(worker) }))
        yield* tell("a", "crash")
        for (let generation = 0; generation < 3; generation++) {
          yield* sup.inInit((cap) => Sys.send(cap, { _tag: "RestartDue", generation }))
        }
        assert.strictEqual(yield* sup.spawnCount("a"), 1)
        yield* advance("1 minute")
        assert.strictEqual(yield* sup.spawnCount("a"), 2)
      })
    )
  )

  it.effect("a backoff schedule that ends gives up like a reached intensity", () =>
    run(
      Effect.gen(function* () {
        const { tell, worker } = makeControls()
        const sup = yield* boot(Supervisor.make({ intensity: 10, backoff: Schedule.recurs(1), children: abc(worker) }))
        yield* tell("a", "crash")
        yield* tell("a", "crash")
        assert.deepStrictEqual(
          (yield* Ref.get(sup.downs))[0]!.reason,
          Process.shutdownWith("reached_max_restart_intensity")
        )
      })
    )
  )
})

describe("Supervisor caps and quota", () => {
  it.effect("a restarted child gets fresh caps; its predecessor's are revoked with it", () =>
    run(
      Effect.gen(function* () {
        const control = yield* Queue.unbounded<Command>()
        // sends init a derivation of its start cap (revoked transitively when the child's own cap is), then waits
        const reporter = Process.make("reporter", () =>
          Effect.gen(function* () {
            const caps = yield* Sys.caps()
            yield* Sys.send(caps[0]!, "hello", { caps: [yield* Sys.derive(caps[0]!, ["send"])] })
            if ((yield* Queue.take(control)) === "crash") return yield* Effect.fail("crash")
          })
        )
        const sup = yield* boot(
          Supervisor.make({
            intensity: 5,
            children: [{ id: "r", image: reporter, caps: [{ from: 1, rights: ["send"] }] }]
          })
        )
        const first = (yield* Ref.get(sup.inbox))[0]!
        assert.strictEqual(first.body, "hello")
        assert.isTrue(Exit.isSuccess(yield* sup.inInit(() => Sys.send(first.caps[0]!, "works while r lives"))))
        yield* Queue.offer(control, "crash")
        yield* settle
        const inbox = yield* Ref.get(sup.inbox)
        const second = inbox.find((m) => m.body === "hello" && m !== first)!
        assert.isDefined(second)
        assert.notStrictEqual(second.from, first.from)
        const stale = yield* sup.inInit(() => Sys.send(first.caps[0]!, "too late"))
        assert.isTrue(Exit.isFailure(stale))
        assert.deepInclude(Exit.isFailure(stale) ? Cause.squash(stale.cause) : {}, {
          _tag: "CapabilityError",
          reason: "revoked"
        })
        assert.isTrue(Exit.isSuccess(yield* sup.inInit(() => Sys.send(second.caps[0]!, "fresh"))))
      })
    )
  )

  it.effect("a restarted child gets its quota afresh", () =>
    run(
      Effect.gen(function* () {
        const control = yield* Queue.unbounded<Command>()
        const budgets = yield* Ref.make<Array<{ used: number; limit: number }>>([])
        const spender = Process.make("spender", () =>
          Effect.gen(function* () {
            yield* Sys.charge({ tokens: 60 })
            const budget = yield* Sys.budget()
            yield* Ref.update(budgets, (all) => [...all, { used: budget.used.tokens, limit: budget.limits.tokens }])
            if ((yield* Queue.take(control)) === "crash") return yield* Effect.fail("crash")
          })
        )
        const sup = yield* boot(
          Supervisor.make({ intensity: 5, children: [{ id: "s", image: spender, quota: { tokens: 100 } }] })
        )
        yield* Queue.offer(control, "crash")
        yield* settle
        yield* Queue.offer(control, "stop")
        yield* settle
        assert.deepStrictEqual(yield* Ref.get(budgets), [
          { used: 60, limit: 100 },
          { used: 60, limit: 100 },
          { used: 60, limit: 100 }
        ])
        assert.strictEqual(yield* sup.spawnCount("spender"), 3)
        assert.isFalse((yield* sup.events()).exits.some((e) => e.reason._tag === "Quota"))
      })
    )
  )
})
