/**
 * `spawn_agent { manifest, message }`: a helper started from a manifest named in the caller's `spawn_agent:`, with
 * caps and budget never wider than the caller's own — each success beside its refusal, through the daemon's API.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import type { AgentdApi } from "effect-agent-os"
import { daemon, lines, ok, type Step, tmp } from "./coreHarness.ts"

const usage = (inputTokens: number, outputTokens: number) => ({ usage: { inputTokens, outputTokens } })

/** The text of the last tool result a request carried. */
const lastToolResult = (request: { messages: ReadonlyArray<{ role: string; content?: unknown }> }) =>
  String([...request.messages].reverse().find((m) => m.role === "tool")?.content)

const parentManifest = (dir: string, extra: ReadonlyArray<string> = []) =>
  lines([
    "name: lead",
    "capabilities:",
    '  - "tool: echo"',
    `  - "file_read: ${dir}/public/*"`,
    '  - "spawn_agent: [summarizer]"',
    "budget: { tokens: 1000, tool_calls: 10, children: 1 }",
    ...extra
  ])

/** A helper manifest asking for more than the parent has: every path, file_write, a big budget. */
const helperManifest = (budget = "{ tokens: 300 }") =>
  lines([
    "name: summarizer",
    'system_prompt: "You summarize."',
    'capabilities: ["tool: echo", "file_read: /**", "file_write: /**"]',
    `budget: ${budget}`
  ])

describe("spawn_agent", () => {
  it.live(
    "a helper from a listed manifest answers the caller; it gets only the caller's tools and paths; its spend is the caller's",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          fs.mkdirSync(path.join(dir, "public"))
          fs.writeFileSync(path.join(dir, "public", "notes.txt"), "public notes")
          fs.writeFileSync(path.join(dir, "secret.txt"), "s3cret")
          const script: ReadonlyArray<Step> = [
            // the caller asks for a helper
            {
              toolCalls: [{ name: "spawn_agent", arguments: { manifest: helperManifest(), message: "summarize" } }],
              ...usage(10, 5)
            },
            // the helper tries a path its manifest names but the caller may not read, and one both allow
            {
              toolCalls: [
                { name: "file_read", arguments: { path: path.join(dir, "secret.txt") } },
                { name: "file_read", arguments: { path: path.join(dir, "public", "notes.txt") } }
              ],
              ...usage(20, 5)
            },
            { text: "summary: public notes", ...usage(30, 5) },
            // the caller reads the helper's answer
            { text: "the helper said: summary: public notes", ...usage(40, 5) }
          ]
          const d = yield* daemon(script)
          const result = ok(
            yield* d.rpc("agent.spawn_and_run", { manifest: parentManifest(dir), message: "get a summary" })
          ) as { pid: number; answer: string; spend: AgentdApi.Spend }
          assert.strictEqual(result.answer, "the helper said: summary: public notes")
          const requests = d.llm.requests
          assert.strictEqual(requests.length, 4)
          // the helper was offered only what both allow (no file_write, no spawn_agent), under its own prompt
          assert.deepStrictEqual(requests[1]!.tools?.map((t) => t.name).sort(), ["echo", "file_read"])
          assert.include(JSON.stringify(requests[1]!.messages[0]), "You summarize.")
          // the caller's layer still confines the helper: the secret is refused, the public file read
          const helperResults = JSON.stringify(requests[2]!.messages.filter((m) => m.role === "tool"))
          assert.notInclude(helperResults, "s3cret")
          assert.include(helperResults, "public notes")
          // the caller read the helper's answer as the tool's result
          const toolResult = JSON.parse(lastToolResult(requests[3]!))
          assert.strictEqual(toolResult.agent, "summarizer")
          assert.strictEqual(toolResult.answer, "summary: public notes")
          // the helper's model calls are charged to the caller: 15 + 25 + 35 + 45 tokens
          assert.strictEqual(result.spend.tokens, 120)
          // the helper was stopped once it answered
          const ps = ok(yield* d.rpc("kernel.ps")) as ReadonlyArray<AgentdApi.ProcessRow>
          assert.isFalse(ps.some((p) => p.name === "summarizer"))
        })
      )
  )

  it.live("a manifest whose name is not listed, or that does not decode: the model reads why; nothing starts", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const dir = tmp()
        const other = helperManifest().replace("name: summarizer", "name: escalator")
        const d = yield* daemon([
          { toolCalls: [{ name: "spawn_agent", arguments: { manifest: other, message: "x" } }] },
          { toolCalls: [{ name: "spawn_agent", arguments: { manifest: "name: [", message: "x" } }] },
          { text: "gave up" }
        ])
        const result = ok(yield* d.rpc("agent.spawn_and_run", { manifest: parentManifest(dir), message: "go" }))
        assert.strictEqual(result.answer, "gave up")
        const requests = d.llm.requests
        assert.include(lastToolResult(requests[1]!), 'may not spawn \\"escalator\\"')
        assert.include(lastToolResult(requests[2]!), "the manifest is invalid")
        const ps = ok(yield* d.rpc("kernel.ps")) as ReadonlyArray<AgentdApi.ProcessRow>
        assert.isFalse(ps.some((p) => p.name === "escalator"))
      })
    )
  )

  it.live("an agent without spawn_agent in its manifest cannot call it: the kernel refuses (out-of-scope)", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const d = yield* daemon([
          { toolCalls: [{ name: "spawn_agent", arguments: { manifest: helperManifest(), message: "x" } }] }
        ])
        const r = yield* d.rpc("agent.spawn_and_run", {
          manifest: lines(["name: plain", 'capabilities: ["tool: echo"]']),
          message: "go"
        })
        assert.strictEqual(r.error?.data.reason, "run-failed")
        assert.include(r.error!.message, "out-of-scope")
        assert.strictEqual(d.llm.requests.length, 1, "no helper asked a model")
      })
    )
  )

  it.live("a helper budget wider than what the caller has left: the kernel refuses it, the model reads why", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const dir = tmp()
        const d = yield* daemon([
          {
            toolCalls: [
              { name: "spawn_agent", arguments: { manifest: helperManifest("{ tokens: 5000 }"), message: "x" } }
            ]
          },
          { text: "no helper" }
        ])
        const result = ok(yield* d.rpc("agent.spawn_and_run", { manifest: parentManifest(dir), message: "go" }))
        assert.strictEqual(result.answer, "no helper")
        assert.include(lastToolResult(d.llm.requests[1]!), "refused")
        assert.strictEqual(d.llm.requests.length, 2, "the helper never ran")
      })
    )
  )

  it.live("approval_required on spawn_agent: the helper waits for the operator; denied, nothing starts", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const dir = tmp()
        const d = yield* daemon([
          { toolCalls: [{ name: "spawn_agent", arguments: { manifest: helperManifest(), message: "x" } }] },
          { text: "not allowed to delegate" }
        ])
        const run = yield* Effect.forkChild(
          d.rpc("agent.spawn_and_run", {
            manifest: parentManifest(dir, ["approval_required: [spawn_agent]"]),
            message: "go"
          })
        )
        let pending: ReadonlyArray<AgentdApi.ApprovalInfo> = []
        for (let i = 0; i < 400 && pending.length === 0; i++) {
          pending = ok(yield* d.rpc("approval.list"))
          if (pending.length === 0) yield* Effect.sleep("5 millis")
        }
        assert.strictEqual(pending[0]?.tool, "spawn_agent")
        ok(yield* d.rpc("approval.respond", { id: pending[0]!.id, approve: false, reason: "no delegation" }))
        const result = ok(yield* Fiber.join(run))
        assert.strictEqual(result.answer, "not allowed to delegate")
        assert.include(lastToolResult(d.llm.requests[1]!), "no delegation")
        assert.strictEqual(d.llm.requests.length, 2)
      })
    )
  )
})
