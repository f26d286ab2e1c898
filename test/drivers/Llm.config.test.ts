// How Llm.make reads its configuration when no key is set: a server of the user's own needs none, OpenAI does.
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect } from "effect"
import { type Device, Llm } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"

const context: Device.CallContext = { pid: 1, op: 1, priority: 0, deadline: undefined }

describe("Llm.make configuration", () => {
  it.live("OPENAI_BASE_URL alone (no key) works, and sends no Authorization header", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([OpenAiServer.text("keyless")])
      const env = ConfigProvider.fromEnvRecord({ OPENAI_BASE_URL: server.baseURL, OPENAI_MODEL: "local-model" })
      const driver = yield* Llm.make().pipe(Effect.provideService(ConfigProvider.ConfigProvider, env))
      const handle = yield* driver.open({ pid: 1 })
      const { value } = yield* handle.read({ messages: [{ role: "user", content: "hi" }] }, context)
      assert.strictEqual((value as Llm.LlmReply).text, "keyless")
      const [request] = yield* server.requests
      assert.isUndefined(request!.headers.authorization)
    })
  )

  it.effect("OpenAI's own endpoint without a key is a ConfigError naming OPENAI_API_KEY", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Llm.make({ model: "gpt-4o-mini" }).pipe(
          Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnvRecord({}))
        )
      )
      assert.include(String(error), "OPENAI_API_KEY")
    })
  )
})
