/**
 * A real `agentd` process on a real Unix socket, driven by a raw JSON-RPC client (node:net, one JSON object a line),
 * against the test kit's loopback OpenAI-compatible server, with real YAML manifests and a real directory tree:
 * the quick start, approvals across a kill -9 and restart, and bad input that must not hurt anyone.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { OpenAiServer } from "effect-agent-os/testing"

const root = path.resolve(import.meta.dirname, "../..")
const agentdBin = path.join(root, "src/bin/agentd.ts")
const nodeArgs = ["--conditions=@effect-agent-os/source", "--experimental-strip-types", "--no-warnings"]

interface Daemon {
  readonly child: ChildProcess
  readonly socket: string
  readonly state: string
  readonly stderr: () => string
}

/** Starts agentd in `dir` and waits for its socket. */
const startDaemon = (dir: string, baseURL: string): Effect.Effect<Daemon, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Daemon, Error>((resume) => {
      const state = path.join(dir, ".agentos")
      const socket = path.join(state, "agentd.sock")
      const child = spawn(process.execPath, [...nodeArgs, agentdBin], {
        cwd: dir,
        env: { ...process.env, OPENAI_BASE_URL: baseURL, OPENAI_MODEL: "test-model", OPENAI_API_KEY: "" },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let err = ""
      child.stderr!.on("data", (b) => {
        err += String(b)
        if (err.includes("listening on")) resume(Effect.succeed({ child, socket, state, stderr: () => err }))
      })
      child.on("exit", (code) => resume(Effect.fail(new Error(`agentd exited ${code}: ${err}`))))
    }).pipe(
      Effect.timeout("20 seconds"),
      Effect.mapError((e) => new Error(String(e)))
    ),
    (d) =>
      Effect.callback<void>((resume) => {
        if (d.child.exitCode !== null || d.child.signalCode !== null) return resume(Effect.void)
        d.child.on("exit", () => resume(Effect.void))
        d.child.kill("SIGTERM")
      })
  )

/** A raw JSON-RPC client: sends one line, reads lines until the response with that id. */
const rawCall = (socket: string, request: unknown, timeoutMs = 15_000) =>
  Effect.callback<any, Error>((resume) => {
    const conn = net.createConnection(socket)
    let buffer = ""
    const timer = setTimeout(() => {
      conn.destroy()
      resume(Effect.fail(new Error(`no answer to ${JSON.stringify(request)}`)))
    }, timeoutMs)
    conn.on("connect", () => conn.write(`${typeof request === "string" ? request : JSON.stringify(request)}\n`))
    conn.on("data", (b) => {
      buffer += String(b)
      let nl: number
      while ((nl = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        const parsed = JSON.parse(line)
        if (parsed.method === "stream") continue
        clearTimeout(timer)
        conn.end()
        resume(Effect.succeed(parsed))
      }
    })
    conn.on("error", (e) => {
      clearTimeout(timer)
      resume(Effect.fail(e))
    })
  })

let ids = 0
const call = (socket: string, method: string, params?: unknown) =>
  rawCall(socket, { jsonrpc: "2.0", id: ++ids, method, ...(params === undefined ? {} : { params }) })

const waitFor = <A>(effect: Effect.Effect<A, Error>, until: (a: A) => boolean, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 300; i++) {
      const a = yield* effect
      if (until(a)) return a
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
  })

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "agentd-proc-"))

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
