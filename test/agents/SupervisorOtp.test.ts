/**
 * Supervision the OTP way, case by case against `supervisor.erl` and the "Supervisor Behaviour" design principles:
 * supervisors trap exits and are linked to their children; killing one ends its subtree; a nested supervisor's
 * restart leaves exactly its own new children; shutdown specs, restart rules, boot failures, the start handshake,
 * dynamic children, `simple_one_for_one` and significant children. Each runs on the kernel's virtual clock.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Queue } from "effect"
import { type Capability, type Kernel, Process, Supervisor, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { runOn, show } from "../security/harness.ts"

type Command = "crash" | "stop" | "shutdown"

/** Workers that take commands from host queues, one per id (across restarts). */
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
        if (command === "shutdown") return yield* Sys.exit(Process.shutdownWith("asked"))
      })
    )
  const tell = (id: string, command: Command) => Effect.andThen(Queue.offer(control(id), command), settle)
  return { worker, tell }
}

/**
 * Lets the host queues' wake-ups (delivered on macrotasks: the queues were made outside the kernel) and every process
 * they wake run.
 */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 5; i++) {
    yield* Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))
    for (let j = 0; j < 50; j++) yield* Sys.yield()
  }
})

const vt = TestKernel.layer({ virtualTime: true })
const test = <A, E>(body: (grant: Kernel.BootGrant, kernel: Kernel.KernelShape) => Effect.Effect<A, E, Sys.Sys>) =>
  runOn(body).pipe(Effect.provide(vt))

/** The names of the live processes but the test's own root (pid 1), sorted. */
const names = (kernel: Kernel.KernelShape) =>
  Effect.map(kernel.ps(), (ps) =>
    ps
      .filter((p) => p.pid !== 1)
      .map((p) => p.name)
      .sort()
  )
const spawnCap = (grant: Kernel.BootGrant) => Sys.derive(grant.spawn, ["spawn"])
const exitsOf = (kernel: Kernel.KernelShape) =>
  Effect.map(kernel.trace(), (trace) => {
    const nameOf = new Map<number, string>()
    const out: Array<[string, string]> = []
    for (const e of trace) {
      if (e._tag === "Spawn") nameOf.set(e.pid, e.name)
      if (e._tag === "Exit") out.push([nameOf.get(e.pid) ?? String(e.pid), e.reason._tag])
    }
    return out
  })

describe("supervisors are linked and trap exits", () => {
  it.effect("killing a supervisor ends its whole subtree, nested supervisors and their workers included", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const inner = Supervisor.make({
          name: "inner",
          children: [
            { id: "w1", image: worker("w1") },
            { id: "w2", image: worker("w2") }
          ]
        })
        const outer = Supervisor.make({
          name: "outer",
          children: [
            { id: "inner", image: inner, type: "supervisor", caps: [{ from: 0, rights: ["spawn"] }] },
            { id: "w3", image: worker("w3") }
          ]
        })
        const sup = yield* Sys.spawn(outer, { caps: [yield* spawnCap(grant)] })
        yield* settle
        assert.deepStrictEqual(yield* names(kernel), ["inner", "outer", "w1", "w2", "w3"])
        yield* Sys.kill(sup.cap)
        yield* settle
        assert.deepStrictEqual(yield* names(kernel), [])
      })
    )
  )

  it.effect(
    "a supervisor whose linked parent ends abnormally stops its children (reverse order) and ends with that reason",
    () =>
      test((grant, kernel) =>
        Effect.gen(function* () {
          const { worker } = makeControls()
          const sup = Supervisor.make({ children: ["a", "b"].map((id) => ({ id, image: worker(id) })) })
          const parent = Process.make("parent", () =>
            Effect.gen(function* () {
              const [spawn] = yield* Sys.caps()
              yield* Sys.spawn(sup, { caps: [spawn!], link: true })
              yield* Effect.sleep("1 second")
              return yield* Effect.die("parent broke")
            })
          )
          const p = yield* Sys.spawn(parent, { caps: [yield* spawnCap(grant)] })
          yield* Sys.waitpid(p.cap)
          yield* settle
          const exits = yield* exitsOf(kernel)
          assert.deepStrictEqual(
            exits.map(([n]) => n),
            ["parent", "b", "a", "supervisor"]
          )
          assert.deepStrictEqual(exits[3], ["supervisor", "Fault"])
          assert.deepStrictEqual(yield* names(kernel), [])
        })
      )
  )

  it.effect("a Normal exit of the linked parent leaves the supervisor running (the signal is ignored)", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = Supervisor.make({ children: [{ id: "a", image: worker("a") }] })
        const parent = Process.make("parent", () =>
          Effect.flatMap(Sys.caps(), ([spawn]) => Sys.spawn(sup, { caps: [spawn!], link: true }))
        )
        const p = yield* Sys.spawn(parent, { caps: [yield* spawnCap(grant)] })
        yield* Sys.waitpid(p.cap)
        yield* settle
        assert.deepStrictEqual(yield* names(kernel), ["a", "supervisor"])
      })
    )
  )

  it.effect("restarting a nested supervisor leaves exactly its own new children (no leaked grandchildren)", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker, tell } = makeControls()
        const inner = Supervisor.make({
          name: "inner",
          children: [
            { id: "w1", image: worker("w1") },
            { id: "w2", image: worker("w2") }
          ]
        })
        const outer = Supervisor.make({
          name: "outer",
          strategy: "one_for_all",
          intensity: 5,
          children: [
            { id: "inner", image: inner, type: "supervisor", caps: [{ from: 0, rights: ["spawn"] }] },
            { id: "x", image: worker("x") }
          ]
        })
        yield* Sys.spawn(outer, { caps: [yield* spawnCap(grant)] })
        yield* settle
        // x crashes: one_for_all stops inner (Shutdown, infinite time: it stops w2 and w1 first), then restarts all
        yield* tell("x", "crash")
        yield* settle
        assert.deepStrictEqual(yield* names(kernel), ["inner", "outer", "w1", "w2", "x"])
        const exits = (yield* exitsOf(kernel)).map(([n, r]) => `${n}:${r}`)
        assert.deepStrictEqual(exits, ["x:Fault", "w2:Shutdown", "w1:Shutdown", "inner:Shutdown"])
        // and once more, by a crash of a grandchild's supervisor itself being killed from inside
        yield* tell("w1", "crash")
        yield* settle
        assert.deepStrictEqual(yield* names(kernel), ["inner", "outer", "w1", "w2", "x"])
      })
    )
  )
})

describe("child specs: type and shutdown", () => {
  const stubborn = Process.make("stubborn", () =>
    Effect.gen(function* () {
      yield* Sys.trapExit(true)
      yield* Effect.forever(Sys.recv())
    })
  )

  it.effect("a worker's default shutdown is 5 seconds: Shutdown first, a kill at the timeout", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const sup = yield* Sys.spawn(Supervisor.make({ children: [{ id: "s", image: stubborn }] }), {
          caps: [yield* spawnCap(grant)]
        })
        yield* settle
        const t0 = yield* Clock.currentTimeMillis
        yield* Sys.term(sup.cap)
        yield* Sys.waitpid(sup.cap)
        const trace = yield* kernel.trace()
        const killed = trace.find((e) => e._tag === "Exit" && e.reason._tag === "Killed")
        assert.isDefined(killed)
        assert.strictEqual(killed!.at - t0, 5000)
      })
    )
  )

  it.effect("shutdown: kill (brutal_kill) kills at once; a child that does not trap ends at once on Shutdown", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = yield* Sys.spawn(
          Supervisor.make({
            children: [
              { id: "plain", image: worker("plain") },
              { id: "s", image: stubborn, shutdown: "kill" }
            ]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        const t0 = yield* Clock.currentTimeMillis
        yield* Sys.term(sup.cap)
        yield* Sys.waitpid(sup.cap)
        const exits = yield* exitsOf(kernel)
        assert.deepStrictEqual(exits, [
          ["stubborn", "Killed"],
          ["plain", "Shutdown"],
          ["supervisor", "Normal"]
        ])
        assert.strictEqual(yield* Clock.currentTimeMillis, t0)
      })
    )
  )

  it.effect("a supervisor child's default shutdown is infinity: its own 5 s child shutdown is waited for", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const inner = Supervisor.make({ name: "inner", children: [{ id: "s", image: stubborn }] })
        const outer = yield* Sys.spawn(
          Supervisor.make({
            name: "outer",
            children: [{ id: "inner", image: inner, type: "supervisor", caps: [{ from: 0, rights: ["spawn"] }] }]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        const t0 = yield* Clock.currentTimeMillis
        yield* Sys.term(outer.cap)
        yield* Sys.waitpid(outer.cap)
        assert.strictEqual((yield* Clock.currentTimeMillis) - t0, 5000)
        assert.deepStrictEqual(yield* exitsOf(kernel), [
          ["stubborn", "Killed"],
          ["inner", "Shutdown"],
          ["outer", "Normal"]
        ])
      })
    )
  )
})

describe("restart rules", () => {
  it.effect("transient: Normal, Shutdown and Shutdown { reason } are not restarted and do not count", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker, tell } = makeControls()
        yield* Sys.spawn(
          Supervisor.make({
            intensity: 0,
            children: ["a", "b", "c"].map((id) => ({ id, image: worker(id), restart: "transient" as const }))
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        yield* tell("a", "stop")
        yield* tell("b", "shutdown")
        assert.deepStrictEqual(yield* names(kernel), ["c", "supervisor"], "intensity 0: any counted restart ends it")
        yield* tell("c", "crash")
        assert.deepStrictEqual(yield* names(kernel), [])
      })
    )
  )

  it.effect(
    "a supervisor that reaches its intensity ends with Shutdown, so a transient parent does not restart it",
    () =>
      test((grant, kernel) =>
        Effect.gen(function* () {
          const { worker, tell } = makeControls()
          const inner = Supervisor.make({ name: "inner", intensity: 0, children: [{ id: "w", image: worker("w") }] })
          const outer = yield* Sys.spawn(
            Supervisor.make({
              name: "outer",
              children: [
                {
                  id: "inner",
                  image: inner,
                  type: "supervisor",
                  restart: "transient",
                  caps: [{ from: 0, rights: ["spawn"] }]
                }
              ]
            }),
            { caps: [yield* spawnCap(grant)] }
          )
          yield* settle
          yield* tell("w", "crash")
          assert.deepStrictEqual(yield* names(kernel), ["outer"])
          const counts = yield* Supervisor.countChildren(outer.cap)
          assert.deepStrictEqual(counts, { specs: 1, active: 0, supervisors: 1, workers: 0 })
          const reason = (yield* kernel.trace()).find((e) => e._tag === "Exit" && e.reason._tag === "Shutdown")
          assert.deepStrictEqual(
            reason?._tag === "Exit" ? reason.reason : undefined,
            Process.shutdownWith("reached_max_restart_intensity")
          )
        })
      )
  )

  it.effect("one_for_all also restarts transient children that had ended normally, and drops temporary ones", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker, tell } = makeControls()
        const sup = yield* Sys.spawn(
          Supervisor.make({
            strategy: "one_for_all",
            intensity: 5,
            children: [
              { id: "t", image: worker("t"), restart: "transient" },
              { id: "tmp", image: worker("tmp"), restart: "temporary" },
              { id: "p", image: worker("p") }
            ]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        yield* tell("t", "stop")
        assert.deepStrictEqual(yield* names(kernel), ["p", "supervisor", "tmp"])
        yield* tell("p", "crash")
        assert.deepStrictEqual(yield* names(kernel), ["p", "supervisor", "t"])
        const which = yield* Supervisor.whichChildren(sup.cap)
        assert.deepStrictEqual(
          which.map((c) => [c.id, typeof c.pid]),
          [
            ["t", "number"],
            ["p", "number"]
          ]
        )
      })
    )
  )

  it.effect("a child that fails to start at boot: the started ones are stopped, Shutdown failed_to_start_child", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const neverStarts = Process.make("never-starts", () => Effect.never)
        const sup = yield* Sys.spawn(
          Supervisor.make({
            children: [
              { id: "a", image: worker("a") },
              { id: "b", image: worker("b") },
              { id: "slow", image: neverStarts, startTimeout: "2 seconds", shutdown: "kill" },
              { id: "c", image: worker("c") }
            ]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        const reason = yield* Sys.waitpid(sup.cap)
        assert.deepStrictEqual(reason, Process.shutdownWith("failed_to_start_child"))
        assert.deepStrictEqual(yield* exitsOf(kernel), [
          ["never-starts", "Killed"],
          ["b", "Shutdown"],
          ["a", "Shutdown"],
          ["supervisor", "Shutdown"]
        ])
        assert.notInclude(
          (yield* kernel.trace()).filter((e) => e._tag === "Spawn").map((e) => (e as { name: string }).name),
          "c"
        )
      })
    )
  )
})

describe("the start handshake (Sys.started)", () => {
  it.effect("the supervisor waits for a child's Started before it starts the next", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const slowStart = Process.make("slow-start", () =>
          Effect.gen(function* () {
            yield* Effect.sleep("3 seconds")
            yield* Sys.started()
            yield* Effect.never
          })
        )
        const t0 = yield* Clock.currentTimeMillis
        yield* Sys.spawn(
          Supervisor.make({
            children: [
              { id: "slow", image: slowStart, startTimeout: "10 seconds" },
              { id: "next", image: worker("next") }
            ]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* Effect.sleep("5 seconds")
        const spawns = (yield* kernel.trace()).filter((e) => e._tag === "Spawn") as Array<{ name: string; at: number }>
        const next = spawns.find((e) => e.name === "next")
        assert.strictEqual(next!.at - t0, 3000)
      })
    )
  )

  it.effect("a child that ends before it reports Started has failed to start", () =>
    test((grant) =>
      Effect.gen(function* () {
        const quitter = Process.make("quitter", () => Effect.die("no"))
        const sup = yield* Sys.spawn(
          Supervisor.make({ children: [{ id: "q", image: quitter, startTimeout: "1 second" }] }),
          { caps: [yield* spawnCap(grant)] }
        )
        assert.deepStrictEqual(yield* Sys.waitpid(sup.cap), Process.shutdownWith("failed_to_start_child"))
      })
    )
  )
})

describe("dynamic children and introspection", () => {
  it.effect("startChild / whichChildren / countChildren / terminateChild / restartChild / deleteChild", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = yield* Sys.spawn(
          Supervisor.make({
            images: { w: worker("dyn") },
            children: [{ id: "static", image: worker("static") }]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        const started = yield* Supervisor.startChild(sup.cap, { id: "d1", image: "w", restart: "transient" })
        assert.strictEqual(started.id, "d1")
        assert.include(yield* names(kernel), "dyn")
        assert.deepStrictEqual(yield* Supervisor.countChildren(sup.cap), {
          specs: 2,
          active: 2,
          supervisors: 0,
          workers: 2
        })
        const dup = yield* Effect.flip(Supervisor.startChild(sup.cap, { id: "d1", image: "w" }))
        assert.strictEqual(dup.reason, "already_present")
        const unknown = yield* Effect.flip(Supervisor.startChild(sup.cap, { id: "d2", image: "nope" }))
        assert.strictEqual(unknown.reason, "invalid")
        const proto = yield* Effect.flip(Supervisor.startChild(sup.cap, { id: "d3", image: "constructor" }))
        assert.strictEqual(proto.reason, "invalid")
        assert.strictEqual((yield* Effect.flip(Supervisor.deleteChild(sup.cap, "d1"))).reason, "running")
        assert.strictEqual((yield* Effect.flip(Supervisor.restartChild(sup.cap, "d1"))).reason, "running")
        yield* Supervisor.terminateChild(sup.cap, "d1")
        const which = yield* Supervisor.whichChildren(sup.cap)
        assert.deepStrictEqual(which, [
          { id: "static", pid: which[0]!.pid, type: "worker" },
          { id: "d1", pid: undefined, type: "worker" }
        ])
        assert.isNumber(which[0]!.pid)
        const again = yield* Supervisor.restartChild(sup.cap, "d1")
        assert.notStrictEqual(again.pid, started.pid)
        yield* Supervisor.terminateChild(sup.cap, "d1")
        yield* Supervisor.deleteChild(sup.cap, "d1")
        assert.strictEqual((yield* Effect.flip(Supervisor.terminateChild(sup.cap, "d1"))).reason, "not_found")
        assert.deepStrictEqual(yield* Supervisor.countChildren(sup.cap), {
          specs: 1,
          active: 1,
          supervisors: 0,
          workers: 1
        })
      })
    )
  )

  it.effect("a call leaves the caller's other messages in its mailbox, in order", () =>
    test((grant) =>
      Effect.gen(function* () {
        const sup = yield* Sys.spawn(Supervisor.make({ children: [] }), { caps: [yield* spawnCap(grant)] })
        const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        yield* Sys.send(me, "one")
        yield* Sys.send(me, "two")
        yield* Supervisor.countChildren(sup.cap)
        assert.strictEqual((yield* Sys.recv()).body, "one")
        assert.strictEqual((yield* Sys.recv()).body, "two")
      })
    )
  )

  it.effect("a call to a supervisor that is gone is noproc at once; one that does not answer times out", () =>
    test((grant) =>
      Effect.gen(function* () {
        const sup = yield* Sys.spawn(Supervisor.make({ children: [] }), { caps: [yield* spawnCap(grant)] })
        yield* Sys.kill(sup.cap)
        yield* Sys.waitpid(sup.cap)
        const cap = yield* Sys.derive(sup.cap, ["send", "monitor"])
        assert.strictEqual((yield* Effect.flip(Supervisor.countChildren(cap))).reason, "noproc")
        // a process that never answers, called through a send-only cap (no monitor): the timeout answers
        const silent = yield* Sys.spawn(Process.make("silent", () => Effect.never))
        const sendOnly = yield* Sys.derive(silent.cap, ["send"])
        const error = yield* Effect.flip(Supervisor.countChildren(sendOnly, { timeout: "2 seconds" }))
        assert.strictEqual(error.reason, "timeout")
      })
    )
  )

  it.effect("a forged reply from a third process is not taken for the supervisor's (it carries no matching corr)", () =>
    test((grant) =>
      Effect.gen(function* () {
        const sup = yield* Sys.spawn(Supervisor.make({ children: [] }), { caps: [yield* spawnCap(grant)] })
        const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        const forger = Process.make("forger", () =>
          Effect.flatMap(Sys.caps(), ([to]) => Sys.send(to!, { ok: true, value: { specs: 99 } }))
        )
        yield* Sys.spawn(forger, { caps: [me] })
        const counts = yield* Supervisor.countChildren(sup.cap)
        assert.strictEqual(counts.specs, 0, show(counts))
      })
    )
  )
})

describe("simple_one_for_one", () => {
  it.effect("starts children from its template on demand, up to maxChildren, and stops them in parallel", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const slowStop = Process.make<string>("slow-stop", () =>
          Effect.gen(function* () {
            yield* Sys.trapExit(true)
            while (true) {
              const m = yield* Sys.recv()
              if (Process.isKernelMessage(m) && m.body._tag === "Exit") {
                yield* Effect.sleep("2 seconds")
                return
              }
            }
          })
        )
        const sup = yield* Sys.spawn(
          Supervisor.make({
            strategy: "simple_one_for_one",
            maxChildren: 3,
            children: [{ id: "job", image: slowStop, restart: "temporary" }]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        assert.deepStrictEqual(yield* names(kernel), ["supervisor"], "nothing starts at boot")
        const a = yield* Supervisor.startChild(sup.cap, { args: "a" })
        yield* Supervisor.startChild(sup.cap, { args: "b" })
        yield* Supervisor.startChild(sup.cap, { args: "c" })
        assert.match(a.id, /^job#/)
        assert.strictEqual((yield* Effect.flip(Supervisor.startChild(sup.cap, { args: "d" }))).reason, "max_children")
        assert.strictEqual((yield* Effect.flip(Supervisor.restartChild(sup.cap, a.id))).reason, "unsupported")
        const t0 = yield* Clock.currentTimeMillis
        yield* Sys.term(sup.cap)
        yield* Sys.waitpid(sup.cap)
        assert.strictEqual((yield* Clock.currentTimeMillis) - t0, 2000, "three 2 s shutdowns in parallel take 2 s")
      })
    )
  )

  it.effect("simple_one_for_one needs exactly one template", () =>
    test((grant) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = yield* Sys.spawn(
          Supervisor.make({
            strategy: "simple_one_for_one",
            children: [
              { id: "a", image: worker("a") },
              { id: "b", image: worker("b") }
            ]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        const reason = yield* Sys.waitpid(sup.cap)
        assert.strictEqual(reason._tag, "Fault")
      })
    )
  )
})

describe("significant children and autoShutdown", () => {
  it.effect("any_significant: the supervisor ends (Shutdown) when a significant child ends for good", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker, tell } = makeControls()
        const sup = yield* Sys.spawn(
          Supervisor.make({
            autoShutdown: "any_significant",
            children: [
              { id: "main", image: worker("main"), restart: "transient", significant: true },
              { id: "helper", image: worker("helper") }
            ]
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        yield* tell("main", "stop")
        assert.deepStrictEqual(yield* Sys.waitpid(sup.cap), Process.shutdown)
        assert.deepStrictEqual(yield* names(kernel), [])
      })
    )
  )

  it.effect("all_significant: only once every significant child has ended; never: not at all", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const { worker, tell } = makeControls()
        const sup = yield* Sys.spawn(
          Supervisor.make({
            autoShutdown: "all_significant",
            children: ["x", "y"].map((id) => ({
              id,
              image: worker(id),
              restart: "temporary" as const,
              significant: true
            }))
          }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        yield* tell("x", "stop")
        assert.include(yield* names(kernel), "supervisor")
        yield* tell("y", "crash")
        assert.deepStrictEqual(yield* Sys.waitpid(sup.cap), Process.shutdown)
        const never = yield* Sys.spawn(
          Supervisor.make({ children: [{ id: "z", image: worker("z"), restart: "temporary", significant: true }] }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* settle
        yield* tell("z", "stop")
        assert.include(yield* names(kernel), "supervisor")
        void never
      })
    )
  )

  it.effect("a permanent significant child is invalid options", () =>
    test((grant) =>
      Effect.gen(function* () {
        const { worker } = makeControls()
        const sup = yield* Sys.spawn(
          Supervisor.make({ children: [{ id: "p", image: worker("p"), significant: true }] }),
          {
            caps: [yield* spawnCap(grant)]
          }
        )
        const reason = yield* Sys.waitpid(sup.cap)
        assert.strictEqual(reason._tag, "Fault")
        assert.match((reason as { error: string }).error, /significant and permanent/)
      })
    )
  )
})

void Duration
export type _ = Capability.CapRef
