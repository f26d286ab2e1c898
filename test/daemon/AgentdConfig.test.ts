/**
 * The agentd configuration file: decoded by one Schema with every problem at its path; and a real agentd started
 * with it (the file's LLM server and model win over the environment; a bad file stops agentd before it listens).
 */
import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect, Exit } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { AgentdConfig } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"
import { agentdBin, call, nodeArgs, startDaemon, tmp } from "./processHarness.ts"

describe("AgentdConfig", () => {
  it.effect("decodes every field; flags-style names come back in kernel units", () =>
    Effect.gen(function* () {
      const config = yield* AgentdConfig.decode(
        [
          "llm:",
          "  base_url: http://127.0.0.1:8080/v1",
          "  model: local",
          "  api_key_env: MY_KEY",
          "  timeout: 30 seconds",
          "http: 8081",
          "socket: /tmp/a.sock",
          "audit: { file_bytes: 65536, files: 2 }"
        ].join("\n")
      )
      assert.deepStrictEqual(config.llm.baseURL, "http://127.0.0.1:8080/v1")
      assert.strictEqual(config.llm.model, "local")
      assert.strictEqual(config.llm.apiKeyEnv, "MY_KEY")
      assert.strictEqual(Duration.toMillis(config.llm.timeout!), 30_000)
      assert.strictEqual(config.http, 8081)
      assert.deepStrictEqual(config.audit, { fileBytes: 65536, files: 2 })
      assert.deepStrictEqual(yield* AgentdConfig.decode(""), { llm: {}, audit: {} })
    })
  )

  it.effect("every problem at once, with its path; unknown fields and a key written in the file included", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        AgentdConfig.decode(
          [
            "llm: { model: '', api_key: sk-secret, timeout: soon }",
            "http: 70000",
            "audit: { files: 0 }",
            "bogus: 1"
          ].join("\n")
        )
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = (exit as Exit.Failure<unknown, AgentdConfig.AgentdConfigError>).cause.reasons[0] as any
      const paths = (error.error.problems as Array<{ path: string }>).map((p) => p.path).sort()
      assert.deepStrictEqual(paths, ["audit.files", "bogus", "http", "llm.api_key", "llm.model", "llm.timeout"])
      const notYaml = yield* Effect.exit(AgentdConfig.decode("llm: [\n"))
      assert.isTrue(Exit.isFailure(notYaml))
    })
  )

  it.live(
    "agentd --config: the file's server and model win over the environment; a bad file stops agentd",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const server = yield* OpenAiServer.make([OpenAiServer.text("configured")])
          const file = path.join(dir, "agentd.yaml")
          fs.writeFileSync(file, `llm:\n  base_url: ${server.baseURL}\n  model: from-config\n`)
          // the environment points at a port nobody listens on: only the file's server can answer
          const d = yield* startDaemon(dir, "http://127.0.0.1:9/v1", ["--config", file])
          const r = yield* call(d.socket, "agent.spawn_and_run", { manifest: "name: a", message: "hi" })
          assert.strictEqual(r.result?.answer, "configured", JSON.stringify(r.error))
          assert.strictEqual((yield* server.received)[0].model, "from-config")

          fs.writeFileSync(file, "llm: { colour: blue }\nhttp: -1\n")
          const refused = yield* Effect.callback<{ code: number | null; stderr: string }>((resume) => {
            const child = spawn(
              process.execPath,
              [...nodeArgs, agentdBin, "--state", path.join(dir, "s2"), "--config", file],
              {
                cwd: dir,
                stdio: ["ignore", "ignore", "pipe"]
              }
            )
            let stderr = ""
            child.stderr!.on("data", (b) => (stderr += String(b)))
            child.on("exit", (code) => resume(Effect.succeed({ code, stderr })))
          })
          assert.strictEqual(refused.code, 2)
          assert.include(refused.stderr, "llm.colour")
          assert.include(refused.stderr, "http")
          assert.isFalse(fs.existsSync(path.join(dir, "s2", "agentd.sock")))
        })
      ),
    60_000
  )
})
