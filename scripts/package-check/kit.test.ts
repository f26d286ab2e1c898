// The package check's test: the installed `effect-agent-os/testing` under @effect/vitest, on the TestClock.
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Llm, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const echo = Process.make("echo", () =>
  Effect.gen(function* () {
    const message = yield* Sys.recv<string>()
    const replyTo = message.caps[0]
    if (replyTo !== undefined) yield* Sys.send(replyTo, message.body)
  })
)

it.effect("a process answers, and a scripted model replies, through the installed test kit", () =>
  TestKernel.runProcess(
    (grant) =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(echo)
        yield* Sys.send(cap, "ping", { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        assert.strictEqual((yield* Sys.recv<string>()).body, "ping")
        const llm = yield* Sys.open(grant.devices["llm"]!)
        const reply = yield* Sys.read<Llm.LlmReply>(llm, { messages: [{ role: "user", content: "hi" }] })
        assert.strictEqual(reply.text, "scripted")
      }),
    { grant: ["llm"] }
  ).pipe(Effect.provide(TestKernel.layer({ drivers: [TestKernel.ScriptedLlm.make([{ text: "scripted" }])] })))
)
