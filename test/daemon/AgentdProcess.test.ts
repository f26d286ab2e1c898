/**
 * A real `agentd` process on a real Unix socket, driven by a raw JSON-RPC client (node:net, one JSON object a line),
 * against the test kit's loopback OpenAI-compatible server, with real YAML manifests and a real directory tree:
 * the quick start, approvals across a kill -9 and restart, and bad input that must not hurt anyone.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { OpenAiServer } from "effect-agent-os/testing"
import { agentdBin, call, nodeArgs, rawCall, root, startDaemon, tmp, waitFor } from "./processHarness.ts"

describe("agentd process", () => {
  it.live(
    "the quick start: one agent.spawn_and_run over the socket; the socket is 0600; a second daemon refuses",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const server = yield* OpenAiServer.make([
            OpenAiServer.toolCalls([{ name: "echo", arguments: { text: "hello from a tool" } }]),
            OpenAiServer.text("The tool said: hello from a tool")
          ])
          const d = yield* startDaemon(dir, server.baseURL)
          assert.strictEqual(fs.statSync(d.socket).mode & 0o777, 0o600)
          assert.strictEqual(fs.statSync(d.state).mode & 0o777, 0o700)
          const yaml = fs.readFileSync(path.join(root, "test/daemon/fixtures/echo-agent.yaml"), "utf8")
          const r = yield* call(d.socket, "agent.spawn_and_run", { manifest: yaml, message: "use the echo tool" })
          assert.isUndefined(r.error, JSON.stringify(r.error))
          assert.strictEqual(r.result.answer, "The tool said: hello from a tool")
          assert.strictEqual(r.result.spend.toolCalls, 1)
          assert.isAbove(r.result.spend.tokens, 0)
          const list = yield* call(d.socket, "agent.list")
          assert.strictEqual(list.result[0].name, "echo-agent")
          // the model got the idempotency key and only the granted tool
          const received = yield* server.received
          assert.deepStrictEqual(
            received[0].tools.map((t: { function: { name: string } }) => t.function.name),
            ["echo"]
          )
          const second = spawn(process.execPath, [...nodeArgs, agentdBin], {
            cwd: dir,
            stdio: ["ignore", "ignore", "pipe"]
          })
          const code = yield* Effect.callback<number | null>((resume) => {
            let err = ""
            second.stderr!.on("data", (b) => (err += String(b)))
            second.on("exit", (c) => {
              assert.include(err, "another agentd")
              resume(Effect.succeed(c))
            })
          })
          assert.notStrictEqual(code, 0)
        })
      ),
    60_000
  )

  it.live(
    "kill -9 while an approval is pending: restarted, the agent is recovered, the approval still pending, approved it runs once",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const out = path.join(dir, "out")
          fs.mkdirSync(out)
          const target = path.join(out, "report.txt")
          const server = yield* OpenAiServer.make([
            OpenAiServer.toolCalls([{ name: "file_write", arguments: { path: target, content: "approved text" } }])
          ])
          const yaml = [
            "name: writer",
            `capabilities: ["file_write: ${out}/*"]`,
            "approval_required: [file_write]",
            "budget: { tokens: 100000, tool_calls: 5 }"
          ].join("\n")
          const first = yield* Effect.scoped(
            Effect.gen(function* () {
              const d = yield* startDaemon(dir, server.baseURL)
              // the run's client waits; its answer never comes (the daemon dies)
              yield* Effect.forkChild(
                Effect.ignore(call(d.socket, "agent.spawn_and_run", { manifest: yaml, message: "write the report" }))
              )
              const pending = yield* waitFor(
                call(d.socket, "approval.list"),
                (r) => r.result?.length === 1,
                "an approval"
              )
              const agents = yield* call(d.socket, "agent.list")
              assert.strictEqual(agents.result[0].status, "waiting-approval")
              d.child.kill("SIGKILL")
              yield* Effect.callback<void>((resume) => {
                d.child.on("exit", () => resume(Effect.void))
              })
              return { approval: pending.result[0], agent: agents.result[0] }
            })
          )
          assert.isFalse(fs.existsSync(target))
          yield* server.enqueue(OpenAiServer.text("report written"))
          const d = yield* startDaemon(dir, server.baseURL)
          const pending = yield* waitFor(
            call(d.socket, "approval.list"),
            (r) => r.result?.length === 1,
            "the approval again"
          )
          assert.strictEqual(pending.result[0].id, first.approval.id)
          assert.deepStrictEqual(pending.result[0].arguments, first.approval.arguments)
          const agents = yield* call(d.socket, "agent.list")
          assert.strictEqual(agents.result[0].pid, first.agent.pid)
          assert.strictEqual(agents.result[0].status, "waiting-approval")
          const answered = yield* call(d.socket, "approval.respond", { id: pending.result[0].id, approve: true })
          assert.deepStrictEqual(answered.result, { id: pending.result[0].id, approved: true })
          yield* waitFor(
            Effect.sync(() => fs.existsSync(target)),
            (x) => x,
            "the file"
          )
          assert.strictEqual(fs.readFileSync(target, "utf8"), "approved text")
          // the model was asked once before the crash and once after (its first answer came from the journal)
          yield* waitFor(server.received, (r) => r.length === 2, "the second model call")
        })
      ),
    90_000
  )

  it.live(
    "bad input never hurts: malformed JSON, wrong types, unknown methods, a huge line, abandoned and 100 concurrent clients",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const server = yield* OpenAiServer.make([])
          const d = yield* startDaemon(dir, server.baseURL)
          const spawned = yield* call(d.socket, "agent.spawn", { manifest: "name: steady" })
          const pid = spawned.result.pid
          assert.strictEqual((yield* rawCall(d.socket, "{not json")).error.code, -32700)
          assert.strictEqual((yield* rawCall(d.socket, "[]")).error.code, -32600)
          assert.strictEqual((yield* call(d.socket, "no.such")).error.code, -32601)
          assert.strictEqual((yield* call(d.socket, "agent.run", { pid: "one", message: 2 })).error.code, -32602)
          assert.strictEqual((yield* call(d.socket, "agent.spawn", { manifest: "name: [" })).error.code, -32001)
          // a line over the bound: the connection is answered with an error (if the client still reads) and closed
          const huge = yield* Effect.callback<string>((resume) => {
            const c = net.createConnection(d.socket)
            let got = ""
            c.on("data", (b) => (got += String(b)))
            c.on("error", () => {})
            c.on("close", () => resume(Effect.succeed(got)))
            c.write(`{"jsonrpc":"2.0","id":1,"method":"agent.list","x":"${"a".repeat(3_000_000)}"}\n`)
          })
          if (huge !== "") assert.isDefined(JSON.parse(huge.split("\n")[0]!).error)
          // abandoned connections: opened, half a line, never finished
          const abandoned = Array.from({ length: 20 }, () => {
            const c = net.createConnection(d.socket)
            c.on("error", () => {})
            c.write('{"jsonrpc":"2.0","id":1,"meth')
            return c
          })
          // 100 concurrent clients
          const answers = yield* Effect.forEach(
            Array.from({ length: 100 }, (_, i) => i),
            () => call(d.socket, "agent.status", { pid }),
            { concurrency: "unbounded" }
          )
          assert.isTrue(answers.every((a) => a.result?.name === "steady"))
          for (const c of abandoned) c.destroy()
          // the agent was not affected
          const status = yield* call(d.socket, "agent.status", { pid })
          assert.strictEqual(status.result.status, "running")
        })
      ),
    60_000
  )
})
