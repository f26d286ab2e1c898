// The package check's program, run from the installed tarball with plain `node` (compiled by tsc), with tsx, and as
// one esbuild bundle run where no node_modules is in reach: it boots a kernel, spawns a process that makes driver
// calls (a scripted LLM from the test kit, the Worker driver's thread pool), and runs a Sandbox (QuickJS on a worker
// thread, from the runner and engine the package inlines). It exits non-zero on any surprise.
import { Effect } from "effect"
import { Kernel, type Llm, Process, Sandbox, Sys, Worker } from "effect-agent-os"
import { ScriptedLlm } from "effect-agent-os/testing"

interface Found {
  readonly text: string
  readonly sum: number
}

const child = Process.make<{ readonly n: number }>("child", ({ n }) =>
  Effect.gen(function* () {
    const [llmCap, workerCap, replyTo] = yield* Sys.caps()
    if (llmCap === undefined || workerCap === undefined || replyTo === undefined) return yield* Sys.exit()
    const llm = yield* Sys.open(llmCap)
    const reply = yield* Sys.read<Llm.LlmReply>(llm, { messages: [{ role: "user", content: "hello?" }] })
    const worker = yield* Sys.open(workerCap)
    const sum = yield* Sys.read<number>(worker, { task: "add", input: { a: n, b: 1 } })
    yield* Sys.send(replyTo, { text: reply.text, sum } satisfies Found)
  })
)

const sandboxed = Sandbox.make(`const [reply] = await sys.caps(); await sys.send(reply, "from the sandbox")`, {
  allow: ["caps", "send"]
})

const init = Process.make<Kernel.BootGrant>("init", (grant) =>
  Effect.gen(function* () {
    const llm = grant.devices["llm"]
    const worker = grant.devices["worker"]
    if (llm === undefined || worker === undefined) return yield* Effect.die("no device caps in the boot grant")
    const me = yield* Sys.selfCap()
    yield* Sys.spawn(child, {
      args: { n: 41 },
      caps: [llm, worker, yield* Sys.derive(me, ["send"])],
      quota: { tokens: 1_000, toolCalls: 5 }
    })
    const found = yield* Sys.recv<Found>()
    yield* Sys.log("info", `child: ${found.body.text} ${found.body.sum}`)
    const { cap } = yield* Sys.spawn(sandboxed, {
      caps: [yield* Sys.derive(me, ["send"])],
      quota: { wall: "10 seconds" }
    })
    const fromSandbox = yield* Sys.recv<string>()
    yield* Sys.log("info", `sandbox: ${fromSandbox.body}`)
    const reason = yield* Sys.waitpid(cap)
    yield* Sys.log("info", `sandbox exited: ${reason._tag}`)
  })
)

const program = Effect.gen(function* () {
  const kernel = yield* Kernel.Kernel
  const pid = yield* kernel.boot(init, { grant: ["llm", "worker"] })
  const reason = yield* kernel.waitExit(pid)
  const logs = (yield* kernel.trace()).flatMap((event) => (event._tag === "Log" ? [event.message] : []))
  const expected = ["child: hello from the model 42", "sandbox: from the sandbox", "sandbox exited: Normal"]
  if (reason._tag !== "Normal" || JSON.stringify(logs) !== JSON.stringify(expected)) {
    return yield* Effect.die(`unexpected run: ${JSON.stringify({ reason, logs })}`)
  }
  const realm = Object.isFrozen(Object.prototype) && Object.isFrozen(Array.prototype) ? "hardened" : "open"
  console.log(`ran from the installed package: ${logs.join("; ")} (realm: ${realm})`)
})

const drivers = [ScriptedLlm.make([{ text: "hello from the model" }]), Worker.driver({ module: "tasks.mjs" })] as const

Effect.runPromise(program.pipe(Effect.provide(Kernel.layer({ drivers })))).catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
