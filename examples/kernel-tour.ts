/**
 * A tour of the kernel: boots init, which spawns a metered worker and a client; the client gets a send-only cap to
 * the worker (delegation), is refused when it tries to kill it, and asks questions until the worker's token budget
 * runs out and the kernel ends it with `Quota`. Prints `ps`, exit reasons, metrics and the event trace.
 *
 * Run: npm start
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { type EventLog, Kernel, Process, Sys } from "effect-agent-os"

interface Question {
  readonly question: string
}

/** Answers questions; each answer costs 40 tokens, charged to the worker and every ancestor. */
const worker = Process.make("worker", () =>
  Effect.forever(
    Effect.gen(function* () {
      const m = yield* Sys.recv<Question>()
      yield* Sys.charge({ tokens: 40 })
      yield* Sys.send(m.caps[0]!, `the answer to "${m.body.question}" is 42`)
    })
  )
)

/** Holds a send-only cap to the worker (its first start cap) and a cap to report to init (its second). */
const client = Process.make("client", () =>
  Effect.gen(function* () {
    const [toWorker, toInit] = yield* Sys.caps()
    const denied = yield* Effect.flip(Sys.kill(toWorker!))
    yield* Sys.send(toInit!, `client tried to kill the worker: ${denied.message}`)
    const me = yield* Sys.selfCap()
    for (const question of ["life", "the universe", "everything"]) {
      yield* Sys.send(toWorker!, { question }, { caps: [yield* Sys.derive(me, ["send"])] })
      const reply = yield* Sys.recv<string>().pipe(Effect.timeoutOption("100 millis"))
      yield* Sys.send(toInit!, reply._tag === "Some" ? `client got: ${reply.value.body}` : `no answer to "${question}"`)
    }
  })
)

const init = Process.make<Kernel.BootGrant>("init", (grant) =>
  Effect.gen(function* () {
    const w = yield* Sys.spawn(worker, { quota: { tokens: 100 } })
    yield* Sys.monitor(w.cap)
    const sendOnly = yield* Sys.derive(w.cap, ["send"])
    const report = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
    const c = yield* Sys.spawn(client, { caps: [sendOnly, report] })
    for (let seen = 0; seen < 5; seen++) {
      const m = yield* Sys.recv<unknown>()
      if (Process.isKernelMessage(m) && m.body._tag === "Down") {
        yield* Sys.log("info", `worker ${m.body.pid} is down: ${JSON.stringify(m.body.reason)}`)
      } else {
        yield* Sys.log("info", String(m.body))
      }
    }
    yield* Sys.waitpid(c.cap)
    void grant
  })
)

const formatEvent = (e: EventLog.KernelEvent) => {
  const { _tag, seq, at, pid, ...rest } = e
  const details = Object.entries(rest)
    .map(([key, value]) => `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" ")
  return `#${String(seq).padStart(3)} +${String(at).padStart(4)}ms pid ${pid}  ${_tag.padEnd(8)} ${details}`
}

const program = Effect.gen(function* () {
  const kernel = yield* Kernel.Kernel
  const pid = yield* kernel.boot(init, { quota: { wall: "10 seconds" } })
  yield* Console.log(`booted init as pid ${pid}; processes:`)
  for (const p of yield* kernel.ps()) {
    yield* Console.log(`  pid ${p.pid} ${p.name.padEnd(7)} parent ${p.parent} caps ${p.caps}`)
  }
  const reason = yield* kernel.waitExit(pid)
  yield* Console.log(`\ninit exited: ${JSON.stringify(reason)}`)
  const trace = yield* kernel.trace()
  const start = trace[0]?.at ?? 0
  yield* Console.log(`\nevent trace (${trace.length} events):`)
  for (const e of trace) yield* Console.log(formatEvent({ ...e, at: e.at - start }))
  const metrics = yield* kernel.metrics()
  yield* Console.log(`\nmetrics: ${JSON.stringify({ spawned: metrics.spawned, exits: metrics.exitsByReason })}`)
})

program.pipe(Effect.provide(Kernel.layer()), NodeRuntime.runMain)
