/**
 * The daemon's core in process: the `agentd` API through its JSON-RPC handler (the exact lines a socket client
 * sends), over a scripted model, the built-in tools on a real temporary directory, and a journal kept across a
 * restart. The real `agentd` process on a real socket is tested in AgentdProcess.test.ts.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, type Scope } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { AgentdApi, Journal } from "effect-agent-os"
import { daemon as daemonOf, lines, ok, pendingApproval, type Step, tmp as tmpDir } from "./coreHarness.ts"

const daemon = (store: Journal.JournalStore, script: ReadonlyArray<Step>) => daemonOf(script, store)
const tmp = () => tmpDir("agentd-core-")
const manifest = lines

const scoped = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>) => Effect.scoped(effect)

describe("agentd core", () => {
  it.live("spawn_and_run: an agent answers with the tools its manifest grants, and says what it spent", () =>
    scoped(
      Effect.gen(function* () {
        const d = yield* daemon(Journal.makeMemoryStore(), [
          { toolCalls: [{ name: "echo", arguments: { text: "ping" } }], usage: { inputTokens: 10, outputTokens: 5 } },
          { text: "pong", usage: { inputTokens: 20, outputTokens: 3 } }
        ])
        const result = ok(
          yield* d.rpc("agent.spawn_and_run", {
            manifest: manifest(["name: echoer", 'capabilities: ["tool: echo"]', "budget: { tokens: 1000 }"]),
            message: "say pong"
          })
        ) as { pid: number; answer: string; steps: number; spend: AgentdApi.Spend }
        assert.strictEqual(result.answer, "pong")
        assert.deepStrictEqual(result.spend, { tokens: 38, toolCalls: 1, usd: 0 })
        // the model was told only the granted tool
        assert.deepStrictEqual(
          d.llm.requests[0]!.tools?.map((t) => t.name),
          ["echo"]
        )
        const list = ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>
        assert.deepStrictEqual(
          list.map((a) => [a.pid, a.name, a.status]),
          [[result.pid, "echoer", "running"]]
        )
        assert.strictEqual(list[0]!.budget!.limits.tokens, 1000)
        assert.strictEqual(list[0]!.budget!.used.tokens, 38)
      })
    )
  )

  it.live("a bad manifest: every problem with its path, code -32001; nothing spawned", () =>
    scoped(
      Effect.gen(function* () {
        const d = yield* daemon(Journal.makeMemoryStore(), [])
        const r = yield* d.rpc("agent.spawn", { manifest: "name: x\nbudget: { tokens: -1 }\nbogus: 1" })
        assert.strictEqual(r.error!.code, -32001)
        const paths = (r.error!.data.problems as Array<{ path: string }>).map((p) => p.path).sort()
        assert.deepStrictEqual(paths, ["bogus", "budget.tokens"])
        assert.deepStrictEqual(ok(yield* d.rpc("agent.list")), [])
      })
    )
  )

  it.live("a tool the manifest does not grant is refused by the kernel (out-of-scope), and the run fails typed", () =>
    scoped(
      Effect.gen(function* () {
        const dir = tmp()
        fs.writeFileSync(path.join(dir, "secret.txt"), "s3cret")
        const d = yield* daemon(Journal.makeMemoryStore(), [
          { toolCalls: [{ name: "file_read", arguments: { path: path.join(dir, "secret.txt") } }] }
        ])
        const r = yield* d.rpc("agent.spawn_and_run", {
          manifest: manifest(["name: nosy", 'capabilities: ["tool: echo"]']),
          message: "read the secret"
        })
        assert.strictEqual(r.error?.code, -32002)
        assert.strictEqual(r.error!.data.reason, "run-failed")
        assert.include(r.error!.message, "out-of-scope")
        // tool.invoke on the agent's behalf is refused the same way
        const list = ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>
        const inv = yield* d.rpc("tool.invoke", {
          pid: list[0]!.pid,
          tool: "file_read",
          arguments: { path: path.join(dir, "secret.txt") }
        })
        assert.include(inv.error!.message, "out-of-scope")
        const echoed = ok(yield* d.rpc("tool.invoke", { pid: list[0]!.pid, tool: "echo", arguments: { text: "hi" } }))
        assert.deepStrictEqual(echoed, { result: "hi" })
      })
    )
  )

  it.live("approval: the call waits (waiting-approval), approved it runs; the audit events name who", () =>
    scoped(
      Effect.gen(function* () {
        const dir = tmp()
        const target = path.join(dir, "out.txt")
        const d = yield* daemon(Journal.makeMemoryStore(), [
          { toolCalls: [{ name: "file_write", arguments: { path: target, content: "hello" } }] },
          { text: "written" }
        ])
        const run = yield* Effect.forkChild(
          d.rpc("agent.spawn_and_run", {
            manifest: manifest([
              "name: writer",
              `capabilities: ["file_write: ${dir}/*"]`,
              "approval_required: [file_write]"
            ]),
            message: "write hello"
          })
        )
        const [pending] = yield* pendingApproval(d.rpc)
        assert.strictEqual(pending!.agent, "writer")
        assert.strictEqual(pending!.tool, "file_write")
        assert.deepStrictEqual(pending!.arguments, { path: target, content: "hello" })
        const agents = ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>
        assert.strictEqual(agents[0]!.status, "waiting-approval")
        assert.isFalse(fs.existsSync(target))
        ok(yield* d.rpc("approval.respond", { id: pending!.id, approve: true }))
        const result = ok(yield* Fiber.join(run)) as { answer: string }
        assert.strictEqual(result.answer, "written")
        assert.strictEqual(fs.readFileSync(target, "utf8"), "hello")
        const events = (yield* d.kernel.trace()).filter((e) => e._tag === "Approval")
        assert.deepStrictEqual(
          events.map((e) => e._tag === "Approval" && [e.decision, e.by ?? null]),
          [
            ["requested", null],
            ["approved", "tester"]
          ]
        )
        const again = yield* d.rpc("approval.respond", { id: pending!.id, approve: true })
        assert.strictEqual(again.error!.data.reason, "unknown-approval")
      })
    )
  )

  it.live("denied: the model reads a ToolError naming who and why; the file is never written", () =>
    scoped(
      Effect.gen(function* () {
        const dir = tmp()
        const target = path.join(dir, "out.txt")
        const d = yield* daemon(Journal.makeMemoryStore(), [
          { toolCalls: [{ name: "file_write", arguments: { path: target, content: "hello" } }] },
          { text: "could not write" }
        ])
        const run = yield* Effect.forkChild(
          d.rpc("agent.spawn_and_run", {
            manifest: manifest([
              "name: writer",
              `capabilities: ["file_write: ${dir}/*"]`,
              "approval_required: [file_write]"
            ]),
            message: "write hello"
          })
        )
        const [pending] = yield* pendingApproval(d.rpc)
        ok(yield* d.rpc("approval.respond", { id: pending!.id, approve: false, reason: "not in prod" }))
        assert.strictEqual((ok(yield* Fiber.join(run)) as { answer: string }).answer, "could not write")
        assert.isFalse(fs.existsSync(target))
        const toolMessage = JSON.stringify(d.llm.requests[1]!.messages)
        assert.include(toolMessage, "denied")
        assert.include(toolMessage, "tester")
        assert.include(toolMessage, "not in prod")
      })
    )
  )

  it.live("a pending approval survives a restart: same id, and approved after it the call runs once", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore()
      const dir = tmp()
      const target = path.join(dir, "out.txt")
      const spec = manifest([
        "name: writer",
        `capabilities: ["file_write: ${dir}/*"]`,
        "approval_required: [file_write]"
      ])
      const first = yield* scoped(
        Effect.gen(function* () {
          const d = yield* daemon(store, [
            { toolCalls: [{ name: "file_write", arguments: { path: target, content: "once" } }] }
          ])
          yield* Effect.forkChild(d.rpc("agent.spawn_and_run", { manifest: spec, message: "write" }))
          const [pending] = yield* pendingApproval(d.rpc)
          return pending!
        })
      )
      // the daemon is gone (its scope closed); a new one recovers from the same journal
      yield* scoped(
        Effect.gen(function* () {
          const d = yield* daemon(store, [{ text: "done after restart" }])
          const [pending] = yield* pendingApproval(d.rpc)
          assert.strictEqual(pending!.id, first.id)
          assert.deepStrictEqual(pending!.arguments, first.arguments)
          ok(yield* d.rpc("approval.respond", { id: pending!.id, approve: true }))
          for (let i = 0; i < 400 && !fs.existsSync(target); i++) yield* Effect.sleep("5 millis")
          assert.strictEqual(fs.readFileSync(target, "utf8"), "once")
          const agents = ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>
          assert.deepStrictEqual(
            agents.map((a) => a.name),
            ["writer"]
          )
        })
      )
    })
  )

  it.live("signals: kill and stop end an agent; a pid the daemon did not start is not-allowed", () =>
    scoped(
      Effect.gen(function* () {
        const d = yield* daemon(Journal.makeMemoryStore(), [])
        const a = ok(yield* d.rpc("agent.spawn", { manifest: "name: a" })) as { pid: number }
        const b = ok(yield* d.rpc("agent.spawn", { manifest: "name: b" })) as { pid: number }
        ok(yield* d.rpc("kernel.suspend", { pid: a.pid }))
        assert.strictEqual(
          (ok(yield* d.rpc("agent.status", { pid: a.pid })) as AgentdApi.AgentInfo).status,
          "suspended"
        )
        ok(yield* d.rpc("kernel.resume", { pid: a.pid }))
        ok(yield* d.rpc("kernel.kill", { pid: a.pid }))
        ok(yield* d.rpc("agent.stop", { pid: b.pid }))
        for (let i = 0; i < 100; i++) {
          const list = ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>
          if (list.every((x) => x.status === "exited")) break
          yield* Effect.sleep("5 millis")
        }
        const status = (pid: number) =>
          Effect.map(d.rpc("agent.status", { pid }), (r) => r.result as AgentdApi.AgentInfo)
        assert.deepInclude(yield* status(a.pid), { status: "exited" })
        assert.strictEqual(((yield* status(a.pid)).exit as { _tag: string })._tag, "Killed")
        assert.strictEqual(((yield* status(b.pid)).exit as { _tag: string })._tag, "Normal")
        const init = yield* d.rpc("kernel.kill", { pid: d.initPid })
        assert.strictEqual(init.error!.data.reason, "not-allowed")
        const unknown = yield* d.rpc("agent.run", { pid: 999, message: "hi" })
        assert.strictEqual(unknown.error!.data.reason, "unknown-agent")
        const ps = ok(yield* d.rpc("kernel.ps")) as ReadonlyArray<AgentdApi.ProcessRow>
        assert.isTrue(ps.some((p) => p.pid === d.initPid))
        assert.include(ok(yield* d.rpc("kernel.metrics")) as string, "agentos_processes")
        const trace = ok(yield* d.rpcStream("kernel.trace", { pid: a.pid })) as ReadonlyArray<{
          _tag: string
          pid: number
          seq: number
        }>
        assert.isTrue(trace.every((e) => e.pid === a.pid))
        assert.deepStrictEqual(
          trace.filter((e) => e._tag === "Spawn" || e._tag === "Exit").map((e) => e._tag),
          ["Spawn", "Exit"]
        )
        const later = ok(yield* d.rpcStream("kernel.trace", { since: trace[0]!.seq })) as ReadonlyArray<{ seq: number }>
        assert.isTrue(later.every((e) => e.seq > trace[0]!.seq))
      })
    )
  )
})
