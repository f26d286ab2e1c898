/**
 * A second hostile review of the daemon, on its newer features: `spawn_agent` (a hostile model writing the helper's
 * manifest), `tool.invoke` of it, `kernel.trace` streams, `--http`, `agentctl` against a hostile "daemon",
 * `agentctl replay` on edited journals, and the files of the state directory. Each test is an attack from the public
 * API (JSON-RPC, manifests, the scripted model, the CLI, files) that ASSERTS THE SECURE OUTCOME: a failing test is an
 * attack that worked. Every test is bounded in time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option } from "effect"
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as path from "node:path"
import { Agentd, AgentdApi, BuiltinTools, type EventLog, Journal, JsonRpc, Tools } from "effect-agent-os"
import { OpenAiServer, ScriptedLlm } from "effect-agent-os/testing"
import { bounded, tmp as coreTmp, lines, ok, type Response } from "./coreHarness.ts"
import { agentctl, agentctlBin, agentdBin, call, nodeArgs, startDaemon, tmp as procTmp } from "./processHarness.ts"

// -----------------------------------------------------------------------------------------------------------------
// the in-process daemon: its JSON-RPC handler, every kernel event, and a count of the kernel subscriptions alive
// -----------------------------------------------------------------------------------------------------------------

type Req = any
type Step = ScriptedLlm.Step
type Script = ReadonlyArray<Step | ((request: Req) => Step)>

const core = (script: Script) =>
  Effect.gen(function* () {
    const llm = ScriptedLlm.make(script)
    const tools = yield* BuiltinTools.make()
    const d = yield* Agentd.make({
      llm,
      tools,
      definitions: Tools.definitions(BuiltinTools.toolkit),
      operator: "tester"
    })
    const events: Array<EventLog.KernelEvent> = []
    yield* d.kernel.subscribe((e) => void events.push(e))
    // every subscription made from now on (the trace streams') is counted while it lives
    const live = { subscriptions: 0 }
    const original = d.kernel.subscribe
    ;(d.kernel as { subscribe: typeof original }).subscribe = (listener) =>
      Effect.andThen(
        Effect.acquireRelease(
          Effect.sync(() => void live.subscriptions++),
          () => Effect.sync(() => void live.subscriptions--)
        ),
        original(listener)
      )
    const handle = yield* JsonRpc.make(AgentdApi.Api, { errorCodes: AgentdApi.errorCodes }).pipe(
      Effect.provide(d.handlers)
    )
    let id = 0
    const request = (method: string, params?: unknown) =>
      JSON.stringify({ jsonrpc: "2.0", id: ++id, method, ...(params === undefined ? {} : { params }) })
    const rpc = (method: string, params?: unknown) =>
      Effect.map(handle(request(method, params)), (line) => JSON.parse(line!) as Response)
    const rpcStream = (method: string, params?: unknown) =>
      Effect.gen(function* () {
        const items: Array<any> = []
        const line = yield* handle(request(method, params), {
          emit: (l) => Effect.sync(() => void items.push(JSON.parse(l).params.item)),
          closed: Effect.never
        })
        const final = JSON.parse(line!) as Response
        return final.error === undefined ? { result: items } : { error: final.error }
      })
    return { ...d, llm, handle, rpc, rpcStream, events, live }
  }).pipe(Effect.provide(Layer.succeed(Journal.JournalStoreService)(Journal.makeMemoryStore())))

/** A script of `n` steps, each decided by `step` from the request (whoever asks: the caller or a helper). */
const routed = (step: (request: Req) => Step, n = 600): Script => Array.from({ length: n }, () => step)

const contentOf = (m: { content?: unknown } | undefined) =>
  typeof m?.content === "string" ? m.content : JSON.stringify(m?.content ?? "")
const isHelper = (r: Req) => contentOf(r.messages[0]).includes("You summarize")
const lastUser = (r: Req) => contentOf([...r.messages].reverse().find((m: { role: string }) => m.role === "user"))
const afterTool = (r: Req) => r.messages.at(-1)?.role === "tool"
const cheap = { usage: { inputTokens: 1, outputTokens: 1 } }

/** The caller: one `spawn_agent` call per model step, in order, then `final`. */
const leadSequence = (calls: ReadonlyArray<Record<string, unknown>>, final = "done") => {
  let i = 0
  return (_: Req): Step =>
    i < calls.length
      ? { toolCalls: [{ name: "spawn_agent", arguments: calls[i++]! }], ...cheap }
      : { text: final, ...cheap }
}

const helperManifest = (caps: ReadonlyArray<string>, extra: ReadonlyArray<string> = []) =>
  lines(["name: summarizer", 'system_prompt: "You summarize."', `capabilities: ${JSON.stringify(caps)}`, ...extra])

const leadManifest = (
  caps: ReadonlyArray<string>,
  budget = "{ tokens: 1000000, tool_calls: 100, children: 2 }",
  extra: ReadonlyArray<string> = []
) =>
  lines([
    "name: lead",
    'system_prompt: "You lead."',
    `capabilities: ${JSON.stringify(caps)}`,
    `budget: ${budget}`,
    ...extra
  ])

const spawnsOf = (events: ReadonlyArray<EventLog.KernelEvent>, name: string) =>
  events.filter((e): e is Extract<EventLog.KernelEvent, { _tag: "Spawn" }> => e._tag === "Spawn" && e.name === name)

/** The tool results the caller (not a helper) read, in its last request. */
const leadToolResults = (requests: ReadonlyArray<Req>) => {
  const last = [...requests].reverse().find((r) => !isHelper(r))
  return (last?.messages ?? [])
    .filter((m: { role: string }) => m.role === "tool")
    .map((m: { content?: unknown }) => contentOf(m))
}

/** A loopback HTTP server that counts the requests it gets. */
const probe = Effect.acquireRelease(
  Effect.callback<{ readonly port: number; readonly hits: () => number; readonly server: http.Server }>((resume) => {
    let hits = 0
    const server = http.createServer((_, res) => {
      hits++
      res.end("probe reached")
    })
    server.listen(0, "127.0.0.1", () =>
      resume(Effect.succeed({ port: (server.address() as net.AddressInfo).port, hits: () => hits, server }))
    )
  }),
  (p) => Effect.callback<void>((resume) => void p.server.close(() => resume(Effect.void)))
)

const waitUntil = (what: string, test: () => boolean, tries = 600) =>
  Effect.gen(function* () {
    for (let i = 0; i < tries; i++) {
      if (test()) return
      yield* Effect.sleep("5 millis")
    }
    return assert.fail(`timed out waiting for ${what}`)
  })

// -----------------------------------------------------------------------------------------------------------------
// 1. spawn_agent: a hostile model writes the helper's manifest
// -----------------------------------------------------------------------------------------------------------------

describe("spawn_agent escalation", () => {
  it.live("a helper manifest naming tools, paths and hosts the caller lacks gets none of them", () =>
    bounded(
      Effect.gen(function* () {
        const dir = coreTmp("hostile2-")
        fs.mkdirSync(path.join(dir, "public"))
        fs.mkdirSync(path.join(dir, "out"))
        fs.writeFileSync(path.join(dir, "public", "notes.txt"), "public notes")
        fs.writeFileSync(path.join(dir, "secret.txt"), "s3cret")
        const server = yield* probe
        const attacks = [
          { name: "file_write", arguments: { path: path.join(dir, "out", "pwned.txt"), content: "x" } },
          { name: "file_write", arguments: { path: path.join(dir, "public", "pwned.txt"), content: "x" } },
          { name: "http_get", arguments: { url: `http://127.0.0.1:${server.port}/` } },
          { name: "file_read", arguments: { path: path.join(dir, "secret.txt") } },
          { name: "file_read", arguments: { path: `${dir}/public/../secret.txt` } },
          { name: "file_read", arguments: { path: "/etc/passwd" } }
        ]
        const helper = helperManifest(["tool: echo", "file_read: /**", "file_write: /**", "http_get: *:*"])
        const lead = leadSequence(attacks.map((_, i) => ({ manifest: helper, message: `attack ${i}` })))
        const d = yield* core(
          routed((r) =>
            isHelper(r)
              ? afterTool(r)
                ? { text: "helper done", ...cheap }
                : { toolCalls: [attacks[Number(/attack (\d+)/.exec(lastUser(r))![1])]!], ...cheap }
              : lead(r)
          )
        )
        const result = ok(
          yield* d.rpc("agent.spawn_and_run", {
            manifest: leadManifest(["tool: echo", `file_read: ${dir}/public/*`, "spawn_agent: [summarizer]"]),
            message: "go"
          })
        )
        assert.strictEqual(result.answer, "done")
        // the attacks did reach a helper each (else this test proves nothing)
        assert.strictEqual(spawnsOf(d.events, "summarizer").length, attacks.length)
        assert.isFalse(fs.existsSync(path.join(dir, "out", "pwned.txt")), "the helper wrote outside the caller's caps")
        assert.isFalse(fs.existsSync(path.join(dir, "public", "pwned.txt")), "the helper wrote with file_read's globs")
        assert.strictEqual(server.hits(), 0, "the helper reached a host the caller may not")
        const seen = JSON.stringify(d.llm.requests)
        assert.notInclude(seen, "s3cret")
        assert.notInclude(seen, "root:x:0")
        for (const r of d.llm.requests.filter(isHelper)) {
          for (const t of r.tools ?? [])
            assert.include(["echo", "file_read"], t.name, "offered a tool the caller lacks")
        }
      }),
      30_000
    )
  )

  it.live("a helper granted spawn_agent in its manifest cannot start a grandchild (YAML or JSON manifest)", () =>
    bounded(
      Effect.gen(function* () {
        const yaml = helperManifest(["tool: echo", "spawn_agent: [summarizer]"])
        const json = JSON.stringify({
          name: "summarizer",
          system_prompt: "You summarize.",
          capabilities: ["tool: echo", "spawn_agent: [summarizer]", "tool: spawn_agent"]
        })
        const lead = leadSequence([
          { manifest: yaml, message: "yaml" },
          { manifest: json, message: "json" }
        ])
        const d = yield* core(
          routed((r) =>
            isHelper(r)
              ? afterTool(r)
                ? { text: "helper done", ...cheap }
                : {
                    toolCalls: [
                      {
                        name: "spawn_agent",
                        arguments: { manifest: lastUser(r) === "json" ? json : yaml, message: "x" }
                      }
                    ],
                    ...cheap
                  }
              : lead(r)
          )
        )
        ok(
          yield* d.rpc("agent.spawn_and_run", {
            manifest: leadManifest(["tool: echo", "spawn_agent: [summarizer]"]),
            message: "go"
          })
        )
        // the caller's two helpers, and no helper of a helper
        const helpers = spawnsOf(d.events, "summarizer")
        assert.strictEqual(helpers.length, 2, JSON.stringify(helpers))
        const helperPids = new Set(helpers.map((h) => h.pid))
        assert.isFalse(
          d.events.some((e) => e._tag === "Spawn" && helperPids.has(e.parent)),
          "a helper spawned a process"
        )
        for (const r of d.llm.requests.filter(isHelper)) {
          assert.notInclude(
            (r.tools ?? []).map((t: { name: string }) => t.name),
            "spawn_agent"
          )
        }
      }),
      30_000
    )
  )

  it.live(
    "a helper budget wider than the caller's (tool_calls, wall, children, tokens) is refused; children: 0 allows none",
    () =>
      bounded(
        Effect.gen(function* () {
          const budgets = ["{ tool_calls: 1000 }", "{ wall: 1 hour }", "{ children: 5 }", "{ tokens: 5000000 }"]
          const lead = leadSequence(
            budgets.map((b, i) => ({ manifest: helperManifest(["tool: echo"], [`budget: ${b}`]), message: `b${i}` }))
          )
          const d = yield* core(routed((r) => (isHelper(r) ? { text: "helper ran", ...cheap } : lead(r))))
          ok(
            yield* d.rpc("agent.spawn_and_run", {
              manifest: leadManifest(
                ["tool: echo", "spawn_agent: [summarizer]"],
                "{ tokens: 1000000, tool_calls: 10, wall: 1 minute, children: 1 }"
              ),
              message: "go"
            })
          )
          assert.deepStrictEqual(spawnsOf(d.events, "summarizer"), [], "a helper wider than its caller started")
          const results = leadToolResults(d.llm.requests)
          assert.strictEqual(results.length, budgets.length)
          for (const text of results) assert.include(text, "refused", text)

          // a caller with `children: 0` may have no helper at all, even one that asks for no budget
          const lead0 = leadSequence([{ manifest: helperManifest(["tool: echo"]), message: "x" }])
          const d0 = yield* core(routed((r) => (isHelper(r) ? { text: "helper ran", ...cheap } : lead0(r))))
          ok(
            yield* d0.rpc("agent.spawn_and_run", {
              manifest: leadManifest(["tool: echo", "spawn_agent: [summarizer]"], "{ tokens: 100000, children: 0 }"),
              message: "go"
            })
          )
          assert.deepStrictEqual(spawnsOf(d0.events, "summarizer"), [], "children: 0, and a helper started")
        }),
        30_000
      )
  )

  it.live(
    "a caller whose file_write needs approval: its helper's file_write (no approval in its manifest) waits too",
    () =>
      bounded(
        Effect.gen(function* () {
          const dir = coreTmp("hostile2-")
          fs.mkdirSync(path.join(dir, "out"))
          const target = path.join(dir, "out", "report.txt")
          const lead = leadSequence([{ manifest: helperManifest([`file_write: ${dir}/out/*`]), message: "write" }])
          const d = yield* core(
            routed((r) =>
              isHelper(r)
                ? afterTool(r)
                  ? { text: "helper done", ...cheap }
                  : {
                      toolCalls: [{ name: "file_write", arguments: { path: target, content: "unapproved" } }],
                      ...cheap
                    }
                : lead(r)
            )
          )
          const run = yield* Effect.forkChild(
            d.rpc("agent.spawn_and_run", {
              manifest: leadManifest([`file_write: ${dir}/out/*`, "spawn_agent: [summarizer]"], undefined, [
                "approval_required: [file_write]"
              ]),
              message: "go"
            })
          )
          let pending: ReadonlyArray<AgentdApi.ApprovalInfo> = []
          yield* waitUntil("an approval request or the write", () => fs.existsSync(target) || pending.length > 0).pipe(
            Effect.race(
              Effect.forever(
                Effect.gen(function* () {
                  pending = ok(yield* d.rpc("approval.list"))
                  yield* Effect.sleep("5 millis")
                })
              )
            )
          )
          assert.isFalse(fs.existsSync(target), "the helper wrote without the approval its caller needs")
          assert.strictEqual(pending[0]?.tool, "file_write")
          ok(yield* d.rpc("approval.respond", { id: pending[0]!.id, approve: false, reason: "no" }))
          ok(yield* Fiber.join(run))
          assert.isFalse(fs.existsSync(target))
        }),
        30_000
      )
  )

  it.live("the caller's policies bind its helper; a helper manifest's own `policies:` cannot loosen them", () =>
    bounded(
      Effect.gen(function* () {
        const dir = coreTmp("hostile2-")
        fs.writeFileSync(path.join(dir, "secret.txt"), "s3cret")
        fs.writeFileSync(path.join(dir, "notes.txt"), "plain notes")
        const helper = helperManifest([`file_read: ${dir}/*`], ["policies: [{ name: open, decision: allow }]"])
        const lead = leadSequence([
          { manifest: helper, message: "secret.txt" },
          { manifest: helper, message: "notes.txt" }
        ])
        const d = yield* core(
          routed((r) =>
            isHelper(r)
              ? afterTool(r)
                ? { text: `helper read: ${contentOf(r.messages.at(-1))}`, ...cheap }
                : { toolCalls: [{ name: "file_read", arguments: { path: path.join(dir, lastUser(r)) } }], ...cheap }
              : lead(r)
          )
        )
        ok(
          yield* d.rpc("agent.spawn_and_run", {
            manifest: leadManifest([`file_read: ${dir}/*`, "spawn_agent: [summarizer]"], undefined, [
              "policies:",
              '  - { name: no-secret, match: { tool: file_read, arguments: { path: { glob: "/**/secret*" } } }, decision: deny }',
              "  - { name: rest, decision: allow }"
            ]),
            message: "go"
          })
        )
        const seen = JSON.stringify(d.llm.requests)
        assert.include(seen, "plain notes", "the helper read what the policy allows (else the test proves nothing)")
        assert.notInclude(seen, "s3cret", "the helper escaped its caller's policy")
      }),
      30_000
    )
  )

  it.live(
    "a manifest argument that is no string, a missing message, a YAML alias bomb, a 3 MB manifest: bounded, no widening",
    () =>
      bounded(
        Effect.gen(function* () {
          const bomb = lines([
            'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
            "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
            "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
            "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
            "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
            "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]",
            "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]",
            "name: summarizer",
            "system_prompt: *h"
          ])
          const huge = helperManifest(["tool: echo"], [`budget: { tokens: 10 }`]).replace(
            'system_prompt: "You summarize."',
            `system_prompt: ${JSON.stringify("You summarize. " + "x".repeat(3 * 1024 * 1024))}`
          )
          const lead = leadSequence([
            { manifest: { name: "summarizer", capabilities: ["file_read: /**"] }, message: "object" },
            { manifest: 42, message: "number" },
            { manifest: helperManifest(["tool: echo"]) },
            { manifest: bomb, message: "bomb" },
            { manifest: huge, message: "huge" }
          ])
          const d = yield* core(routed((r) => (isHelper(r) ? { text: "helper ran", ...cheap } : lead(r))))
          const started = Date.now()
          const r = yield* d.rpc("agent.spawn_and_run", {
            manifest: leadManifest(["tool: echo", "spawn_agent: [summarizer]"]),
            message: "go"
          })
          assert.isBelow(Date.now() - started, 20_000)
          // none of the malformed ones started a helper; the huge one may (it is valid), with its 10 tokens at most
          const helpers = spawnsOf(d.events, "summarizer")
          assert.isAtMost(helpers.length, 1, JSON.stringify(helpers))
          assert.isBelow(JSON.stringify(r).length, 100_000, "the answer echoes a bomb or a huge manifest")
          for (const text of leadToolResults(d.llm.requests)) assert.isBelow(text.length, 20_000)
          const results = leadToolResults(d.llm.requests)
          for (const text of results.slice(0, 3)) assert.include(text, "invalid-input")
          assert.include(results[3], "the manifest is invalid")
          // the 3 MB manifest is too big to pass the kernel: the turn fails typed, it does not hang or widen anything
          assert.isTrue(r.error === undefined || r.error.data?.reason === "run-failed", JSON.stringify(r).slice(0, 300))
          ok(yield* d.rpc("kernel.ps"))
        }),
        40_000
      )
  )

  it.live(
    "50 spawn_agent calls in one turn: at most `children` helpers live at once, at most `tool_calls` in all",
    () =>
      bounded(
        Effect.gen(function* () {
          const helper = helperManifest(["tool: echo"])
          const many = (n: number) => ({
            toolCalls: Array.from({ length: n }, (_, i) => ({
              name: "spawn_agent",
              arguments: { manifest: helper, message: `m${i}` }
            })),
            ...cheap
          })
          const measure = (events: ReadonlyArray<EventLog.KernelEvent>) => {
            const liveNow = new Set<number>()
            let max = 0
            let total = 0
            for (const e of events) {
              if (e._tag === "Spawn" && e.name === "summarizer") {
                liveNow.add(e.pid)
                total++
                max = Math.max(max, liveNow.size)
              } else if (e._tag === "Exit") liveNow.delete(e.pid)
            }
            return { max, total }
          }
          // tool_calls: 10 — 50 calls cannot start more than 10 helpers
          let first = true
          const d = yield* core(
            routed((r) =>
              isHelper(r) ? { text: "ok", ...cheap } : first ? ((first = false), many(50)) : { text: "done", ...cheap }
            )
          )
          yield* d.rpc("agent.spawn_and_run", {
            manifest: leadManifest(["spawn_agent: [summarizer]"], "{ tokens: 100000, tool_calls: 10, children: 2 }"),
            message: "go"
          })
          assert.isAtMost(measure(d.events).total, 10)
          // tool_calls: 200, children: 2 — never more than 2 helpers live at once
          let first2 = true
          const d2 = yield* core(
            routed((r) =>
              isHelper(r)
                ? { text: "ok", ...cheap }
                : first2
                  ? ((first2 = false), many(50))
                  : { text: "done", ...cheap }
            )
          )
          yield* d2.rpc("agent.spawn_and_run", {
            manifest: leadManifest(["spawn_agent: [summarizer]"], "{ tokens: 100000, tool_calls: 200, children: 2 }"),
            message: "go"
          })
          const m = measure(d2.events)
          assert.isAtMost(m.max, 2)
          assert.isAtMost(m.total, 50)
          assert.isAbove(m.total, 2, "the helpers ran (else this test proves nothing)")
          // every helper ended: none left behind
          const ps = ok(yield* d2.rpc("kernel.ps")) as ReadonlyArray<AgentdApi.ProcessRow>
          assert.isFalse(ps.some((p) => p.name === "summarizer"))
        }),
        60_000
      )
  )

  it.live(
    "a helper's spend is its caller's: a helper that spends the caller's tokens ends the caller, no more calls",
    () =>
      bounded(
        Effect.gen(function* () {
          const lead = leadSequence([{ manifest: helperManifest(["tool: echo"]), message: "spend" }], "still going")
          const d = yield* core(
            routed((r) => (isHelper(r) ? { text: "spent", usage: { inputTokens: 400, outputTokens: 100 } } : lead(r)))
          )
          const r = yield* d.rpc("agent.spawn_and_run", {
            manifest: leadManifest(["tool: echo", "spawn_agent: [summarizer]"], "{ tokens: 100, children: 1 }"),
            message: "go"
          })
          // the caller's first call and the helper's: then the subtree is out of tokens, nobody may ask again
          assert.strictEqual(d.llm.requests.length, 2, `asked ${d.llm.requests.length} times; ${JSON.stringify(r)}`)
          assert.isDefined(r.error, `the caller answered past its budget: ${JSON.stringify(r.result)}`)
          const list = ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>
          assert.strictEqual(list[0]!.status, "exited")
          assert.strictEqual((list[0]!.exit as { _tag?: string } | undefined)?._tag, "Quota")
        }),
        30_000
      )
  )

  it.live("a helper cannot pick another model than the one its caller's manifest pins", () =>
    bounded(
      Effect.gen(function* () {
        const lead = leadSequence([
          { manifest: helperManifest(["tool: echo"], ["model: expensive-model"]), message: "x" }
        ])
        const d = yield* core(routed((r) => (isHelper(r) ? { text: "helper ran", ...cheap } : lead(r))))
        ok(
          yield* d.rpc("agent.spawn_and_run", {
            manifest: leadManifest(["tool: echo", "spawn_agent: [summarizer]"], undefined, ["model: cheap-model"]),
            message: "go"
          })
        )
        const helperRequests = d.llm.requests.filter(isHelper)
        for (const r of helperRequests) {
          assert.notStrictEqual(r.model, "expensive-model", "the model chose its helper's model over the operator's")
        }
      }),
      30_000
    )
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 2. tool.invoke of spawn_agent through the API
// -----------------------------------------------------------------------------------------------------------------

describe("tool.invoke spawn_agent", () => {
  it.live("on behalf of an agent with the grant: a confined child of that agent, charged to it; without: refused", () =>
    bounded(
      Effect.gen(function* () {
        const dir = coreTmp("hostile2-")
        fs.mkdirSync(path.join(dir, "public"))
        fs.writeFileSync(path.join(dir, "secret.txt"), "s3cret")
        const d = yield* core(
          routed((r) =>
            isHelper(r)
              ? afterTool(r)
                ? { text: `helper read: ${contentOf(r.messages.at(-1)).slice(0, 200)}`, ...cheap }
                : {
                    toolCalls: [{ name: "file_read", arguments: { path: path.join(dir, "secret.txt") } }],
                    usage: { inputTokens: 30, outputTokens: 7 }
                  }
              : { text: "lead", ...cheap }
          )
        )
        const withGrant = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", {
            manifest: leadManifest(
              ["tool: echo", `file_read: ${dir}/public/*`, "spawn_agent: [summarizer]"],
              "{ tokens: 10000, children: 1 }"
            )
          })
        )
        const without = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", { manifest: lines(["name: plain", 'capabilities: ["tool: echo"]']) })
        )
        const escalated = helperManifest(["tool: echo", "file_read: /**"])
        const r = yield* d.rpc("tool.invoke", {
          pid: withGrant.pid,
          tool: "spawn_agent",
          arguments: { manifest: escalated, message: "read the secret" }
        })
        assert.notInclude(JSON.stringify(r), "s3cret")
        assert.notInclude(JSON.stringify(d.llm.requests), "s3cret")
        const helpers = spawnsOf(d.events, "summarizer")
        assert.strictEqual(helpers.length, 1, JSON.stringify(r))
        // a child of the agent's own process tree, its model calls charged to the agent
        const ps = (ok(yield* d.rpc("kernel.ps")) as ReadonlyArray<AgentdApi.ProcessRow>).concat()
        assert.strictEqual(helpers[0]!.parent, withGrant.pid)
        const row = ps.find((p) => p.pid === withGrant.pid)!
        assert.isAtLeast(row.budget.used.tokens, 37, "the helper's spend was not charged to the agent")
        // a name it does not list: a ToolError, nothing starts
        const other = yield* d.rpc("tool.invoke", {
          pid: withGrant.pid,
          tool: "spawn_agent",
          arguments: { manifest: escalated.replace("name: summarizer", "name: escalator"), message: "x" }
        })
        // the device's reason comes through unchanged (it names the helper the caller may not start)
        const otherError = (other.result as { result?: { _tag?: string; message?: string } })?.result
        assert.strictEqual(otherError?._tag, "ToolError", JSON.stringify(other))
        assert.include(otherError?.message, "escalator", JSON.stringify(other))
        assert.notInclude(otherError?.message ?? "", "did not allow a spawn")
        // without the grant: the kernel refuses it, nothing starts
        const refused = yield* d.rpc("tool.invoke", {
          pid: without.pid,
          tool: "spawn_agent",
          arguments: { manifest: helperManifest(["tool: echo"]), message: "x" }
        })
        assert.include(JSON.stringify(refused), "out-of-scope")
        assert.strictEqual(spawnsOf(d.events, "summarizer").length, 1)
        assert.isFalse(d.events.some((e) => e._tag === "Spawn" && e.name === "escalator"))
      }),
      30_000
    )
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 3. kernel.trace streams
// -----------------------------------------------------------------------------------------------------------------

const traceLine = (params: unknown, id?: number) =>
  JSON.stringify({ jsonrpc: "2.0", ...(id === undefined ? {} : { id }), method: "kernel.trace", params })
const neverClosed = { emit: () => Effect.void, closed: Effect.never }

describe("kernel.trace", () => {
  it.live("a follow sent as a notification runs nothing: answered at once with nothing, no subscription", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* core([])
        ok(yield* d.rpc("agent.spawn", { manifest: "name: a" }))
        for (const params of [{ follow: true }, { follow: true, pid: 2, tree: true }, {}]) {
          const out = yield* d.handle(traceLine(params), neverClosed).pipe(Effect.timeoutOption("2 seconds"))
          assert.deepStrictEqual(out, Option.some(undefined), JSON.stringify(params))
          assert.strictEqual(d.live.subscriptions, 0)
        }
      })
    )
  )

  it.live("a trace in a batch is -32600 (follow or not) and subscribes nothing; the batch's other requests run", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* core([])
        const batch = `[${traceLine({ follow: true }, 1)},${traceLine({}, 2)},${JSON.stringify({ jsonrpc: "2.0", id: 3, method: "kernel.ps" })}]`
        const out = yield* d.handle(batch, neverClosed).pipe(Effect.timeoutOption("2 seconds"))
        assert.isTrue(Option.isSome(out), "the batch never answered")
        const answers = JSON.parse(Option.getOrThrow(out)!) as Array<Response & { id: number }>
        const byId = new Map(answers.map((a) => [a.id, a]))
        assert.strictEqual(byId.get(1)?.error?.code, -32600)
        assert.strictEqual(byId.get(2)?.error?.code, -32600)
        assert.isArray(byId.get(3)?.result)
        assert.strictEqual(d.live.subscriptions, 0)
      })
    )
  )

  it.live("pid, since, follow, tree of the wrong types (and unknown keys, by position, 1e400) are -32602", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* core([])
        const cases: ReadonlyArray<string> = [
          traceLine({ follow: true, pid: "2" }, 1),
          traceLine({ follow: true, pid: 1.5 }, 2),
          traceLine({ follow: true, since: "0" }, 3),
          traceLine({ follow: "yes" }, 4),
          traceLine({ follow: 1 }, 5),
          traceLine({ follow: true, tree: "true" }, 6),
          traceLine({ follow: true, pid: 2, extra: true }, 7),
          traceLine([true, 2], 8),
          traceLine({ follow: true, pid: null }, 9),
          '{"jsonrpc":"2.0","id":10,"method":"kernel.trace","params":{"follow":true,"since":1e400}}'
        ]
        for (const line of cases) {
          const out = yield* d.handle(line, neverClosed).pipe(Effect.timeoutOption("2 seconds"))
          assert.isTrue(Option.isSome(out), `no answer (a follow ran?): ${line}`)
          assert.strictEqual((JSON.parse(Option.getOrThrow(out)!) as Response).error?.code, -32602, line)
        }
        assert.strictEqual(d.live.subscriptions, 0)
      })
    )
  )

  it.live("50 followers that go away (half of them not reading) leave no subscription; the daemon still answers", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* core([])
        ok(yield* d.rpc("agent.spawn", { manifest: "name: a" }))
        const followers = yield* Effect.forEach(
          Array.from({ length: 50 }, (_, i) => i),
          (i) =>
            Effect.gen(function* () {
              const gone = yield* Deferred.make<void>()
              let got = 0
              const fiber = yield* Effect.forkChild(
                d.handle(traceLine({ follow: true }, i + 1), {
                  // the odd ones stop reading after their first item: their emit never returns (a full socket)
                  emit: () => (got++ > 0 && i % 2 === 1 ? Effect.never : Effect.void),
                  closed: Deferred.await(gone)
                })
              )
              return { gone, fiber, got: () => got }
            })
        )
        yield* waitUntil("every follower's first items", () => followers.every((f) => f.got() > 0))
        assert.strictEqual(d.live.subscriptions, 50, "the followers are subscribed (else this test proves nothing)")
        // more events while they follow
        ok(yield* d.rpc("agent.spawn", { manifest: "name: b" }))
        for (const f of followers) yield* Deferred.succeed(f.gone, undefined)
        for (const f of followers) {
          const out = yield* Fiber.join(f.fiber).pipe(Effect.timeoutOption("5 seconds"))
          assert.deepStrictEqual(out, Option.some(undefined), "a follower outlived its client")
        }
        yield* waitUntil("the subscriptions to be released", () => d.live.subscriptions === 0)
        ok(yield* d.rpc("agent.spawn", { manifest: "name: c" }))
        assert.strictEqual((ok(yield* d.rpc("agent.list")) as ReadonlyArray<unknown>).length, 3)
      }),
      30_000
    )
  )
})

// -----------------------------------------------------------------------------------------------------------------
// real processes: agentd (started or refusing to start), agentctl, a hostile "daemon"
// -----------------------------------------------------------------------------------------------------------------

interface Launched {
  readonly ready: boolean
  readonly code: number | null
  readonly child: ChildProcess
  readonly socket: string
  readonly state: string
  readonly stderr: () => string
  /** stdout and stderr together. */
  readonly output: () => string
}

/** agentd in `dir`: `ready` once it listens, or its exit code when it refused to start. Stopped with the scope. */
const launch = (dir: string, args: ReadonlyArray<string> = [], env: Record<string, string> = {}) =>
  Effect.acquireRelease(
    Effect.callback<Launched>((resume) => {
      const state = path.join(dir, ".agentos")
      const socket = path.join(state, "agentd.sock")
      const child = spawn(process.execPath, [...nodeArgs, agentdBin, ...args], {
        cwd: dir,
        env: {
          ...process.env,
          OPENAI_BASE_URL: "http://127.0.0.1:9/v1",
          OPENAI_MODEL: "test-model",
          OPENAI_API_KEY: "",
          ...env
        },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let err = ""
      let all = ""
      let done = false
      const settle = (ready: boolean, code: number | null) => {
        if (done) return
        done = true
        resume(Effect.succeed({ ready, code, child, socket, state, stderr: () => err, output: () => all }))
      }
      child.stdout!.on("data", (b) => void (all += String(b)))
      child.stderr!.on("data", (b) => {
        err += String(b)
        all += String(b)
        if (err.includes("state in")) settle(true, null)
      })
      // "close", not "exit": its stderr is read to the end first
      child.on("close", (code) => settle(false, code))
    }).pipe(Effect.timeout("25 seconds"), Effect.orDie),
    (l) =>
      Effect.callback<void>((resume) => {
        if (l.child.exitCode !== null || l.child.signalCode !== null) return resume(Effect.void)
        l.child.on("exit", () => resume(Effect.void))
        l.child.kill("SIGTERM")
      })
  )

const stateDir = (dir: string) => {
  const state = path.join(dir, ".agentos")
  fs.mkdirSync(state, { mode: 0o700 })
  return state
}

describe("--http", () => {
  it.live(
    "no token, a wrong one, one in the query, another scheme; GET, another content type, a huge body: refused, nothing runs",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = procTmp()
          const d = yield* launch(dir, ["--http", "0"])
          assert.isTrue(d.ready, d.stderr())
          const url = /http on (\S+)/.exec(d.stderr())![1]!
          const tokenFile = path.join(d.state, "agentd.token")
          assert.strictEqual(fs.statSync(tokenFile).mode & 0o777, 0o600)
          const token = fs.readFileSync(tokenFile, "utf8").trim()
          const body = JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "agent.spawn",
            params: { manifest: "name: via-http" }
          })
          const json = { "Content-Type": "application/json" }
          const bearer = { Authorization: `Bearer ${token}` }
          const statusOf = (target: string, init: RequestInit) =>
            Effect.promise(() =>
              fetch(target, init).then(
                async (r) => ({ status: r.status, text: await r.text() }),
                (error) => ({ status: -1, text: String(error) })
              )
            )
          const cases: ReadonlyArray<readonly [string, string, RequestInit, number]> = [
            ["no token", url, { method: "POST", headers: json, body }, 401],
            ["wrong token", url, { method: "POST", headers: { ...json, Authorization: "Bearer wrong" }, body }, 401],
            ["token + 1", url, { method: "POST", headers: { ...json, Authorization: `Bearer ${token}x` }, body }, 401],
            [
              "token - 1",
              url,
              { method: "POST", headers: { ...json, Authorization: `Bearer ${token.slice(0, -1)}` }, body },
              401
            ],
            ["query token", `${url}?token=${token}`, { method: "POST", headers: json, body }, 401],
            ["query access_token", `${url}?access_token=${token}`, { method: "POST", headers: json, body }, 401],
            ["another header", url, { method: "POST", headers: { ...json, "X-Auth-Token": token }, body }, 401],
            [
              "basic",
              url,
              {
                method: "POST",
                headers: { ...json, Authorization: `Basic ${Buffer.from(`agentd:${token}`).toString("base64")}` },
                body
              },
              401
            ],
            [
              "another scheme",
              url,
              { method: "POST", headers: { ...json, Authorization: `Token ${token}` }, body },
              401
            ],
            ["GET", url, { method: "GET", headers: bearer }, 405],
            ["text/plain", url, { method: "POST", headers: { ...bearer, "Content-Type": "text/plain" }, body }, 415],
            [
              "form",
              url,
              { method: "POST", headers: { ...bearer, "Content-Type": "application/x-www-form-urlencoded" }, body },
              415
            ],
            [
              "json-ish",
              url,
              { method: "POST", headers: { ...bearer, "Content-Type": "application/jsonp" }, body },
              415
            ],
            [
              "another path",
              url.replace(/\/rpc$/, "/RPC"),
              { method: "POST", headers: { ...json, ...bearer }, body },
              404
            ],
            [
              "2 MiB body",
              url,
              {
                method: "POST",
                headers: { ...json, ...bearer },
                body: body.replace("{", "{" + " ".repeat(2 * 1024 * 1024))
              },
              413
            ]
          ]
          for (const [what, target, init, expected] of cases) {
            const r = yield* statusOf(target, init)
            // a refusal may also reach the client as a reset (it was answered before the body was read)
            assert.isTrue(
              r.status === expected || (expected === 413 && r.status === -1),
              `${what}: ${r.status} ${r.text}`
            )
          }
          // a chunked body with no length, growing past the bound: 413 once it passes, the connection closed
          const chunked = yield* Effect.callback<number>((resume) => {
            const req = http.request(url, {
              method: "POST",
              headers: { ...json, ...bearer, "Transfer-Encoding": "chunked" }
            })
            req.on("response", (res) => {
              res.resume()
              resume(Effect.succeed(res.statusCode ?? 0))
            })
            req.on("error", () => resume(Effect.succeed(-1)))
            req.write(body.slice(0, -1))
            const chunk = " ".repeat(256 * 1024)
            let sent = 0
            const more = () => {
              while (sent < 64 && !req.destroyed) {
                sent++
                if (!req.write(chunk)) return void req.once("drain", more)
              }
              req.end()
            }
            more()
            return Effect.sync(() => req.destroy())
          }).pipe(Effect.timeout("20 seconds"), Effect.orDie)
          assert.isTrue(chunked === 413 || chunked === -1, `chunked: ${chunked}`)
          // nothing ran
          assert.deepStrictEqual((yield* call(d.socket, "agent.list")).result, [])
          // and the real token works (else the refusals prove nothing)
          const good = yield* statusOf(url, { method: "POST", headers: { ...json, ...bearer }, body })
          assert.strictEqual(good.status, 200, good.text)
        })
      ),
    60_000
  )

  it.live(
    "20 HTTP followers that abort: the daemon goes on answering on both transports",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = procTmp()
          const d = yield* launch(dir, ["--http", "0"])
          assert.isTrue(d.ready, d.stderr())
          const url = /http on (\S+)/.exec(d.stderr())![1]!
          const token = fs.readFileSync(path.join(d.state, "agentd.token"), "utf8").trim()
          const follow = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "kernel.trace", params: { follow: true } })
          yield* Effect.forEach(
            Array.from({ length: 20 }, (_, i) => i),
            () =>
              Effect.promise(async () => {
                const controller = new AbortController()
                const response = await fetch(url, {
                  method: "POST",
                  headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
                  body: follow,
                  signal: controller.signal
                })
                const reader = response.body!.getReader()
                await reader.read()
                controller.abort()
                await reader.read().catch(() => undefined)
              }),
            { concurrency: 20 }
          )
          for (let i = 0; i < 5; i++) {
            const spawned = yield* call(d.socket, "agent.spawn", { manifest: `name: after${i}` })
            assert.isDefined(spawned.result, JSON.stringify(spawned))
          }
          const post = yield* Effect.promise(() =>
            fetch(url, {
              method: "POST",
              headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
              body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "agent.list" })
            }).then((r) => r.json() as Promise<{ result: ReadonlyArray<unknown> }>)
          )
          assert.strictEqual(post.result.length, 5)
        })
      ),
    60_000
  )

  it.live(
    "a token file others may read, a symlinked one, or one without a token: agentd refuses to start",
    () =>
      Effect.gen(function* () {
        const token = "a".repeat(64)
        const variants: ReadonlyArray<readonly [string, (state: string) => void]> = [
          [
            "0644",
            (state) => {
              fs.writeFileSync(path.join(state, "agentd.token"), token)
              fs.chmodSync(path.join(state, "agentd.token"), 0o644)
            }
          ],
          [
            "0660",
            (state) => {
              fs.writeFileSync(path.join(state, "agentd.token"), token)
              fs.chmodSync(path.join(state, "agentd.token"), 0o660)
            }
          ],
          [
            "symlink",
            (state) => {
              const elsewhere = path.join(path.dirname(state), "token.txt")
              fs.writeFileSync(elsewhere, token, { mode: 0o600 })
              fs.symlinkSync(elsewhere, path.join(state, "agentd.token"))
            }
          ],
          ["short", (state) => fs.writeFileSync(path.join(state, "agentd.token"), "short", { mode: 0o600 })]
        ]
        yield* Effect.forEach(
          variants,
          ([what, prepare]) =>
            Effect.scoped(
              Effect.gen(function* () {
                const dir = procTmp()
                const state = stateDir(dir)
                prepare(state)
                const before = fs.readFileSync(path.join(state, "agentd.token"), "utf8")
                const d = yield* launch(dir, ["--http", "0"])
                assert.isFalse(d.ready, `${what}: agentd started with an unsafe token file\n${d.stderr()}`)
                assert.notStrictEqual(d.code, 0, what)
                // (agentd's fatal error goes to stdout, through Effect's logger)
                assert.include(d.output(), "agentd.token", what)
                assert.strictEqual(fs.readFileSync(path.join(state, "agentd.token"), "utf8"), before, what)
              })
            ),
          { concurrency: 2 }
        )
      }),
    90_000
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 5. agentctl against a hostile "daemon"
// -----------------------------------------------------------------------------------------------------------------

/** A fake agentd on `socket`: `behave` gets each connection's first request. Closed with the scope. */
const fakeDaemon = (socket: string, behave: (request: any, connection: net.Socket) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly server: net.Server; readonly connections: Set<net.Socket> }>((resume) => {
      const connections = new Set<net.Socket>()
      const server = net.createServer((connection) => {
        connections.add(connection)
        connection.on("close", () => connections.delete(connection))
        connection.on("error", () => {})
        let buffer = ""
        let answered = false
        connection.on("data", (b) => {
          if (answered) return
          buffer += String(b)
          const nl = buffer.indexOf("\n")
          if (nl === -1) return
          answered = true
          behave(JSON.parse(buffer.slice(0, nl)), connection)
        })
      })
      server.listen(socket, () => resume(Effect.succeed({ server, connections })))
    }),
    ({ server, connections }) =>
      Effect.callback<void>((resume) => {
        for (const c of connections) c.destroy()
        server.close(() => resume(Effect.void))
      })
  )

/** Writes `bytes` of one never-ending line, as fast as the socket takes them. */
const hugeLine = (connection: net.Socket, bytes: number) => {
  const chunk = Buffer.alloc(1024 * 1024, 0x61)
  let sent = 0
  const more = () => {
    while (sent < bytes && !connection.destroyed) {
      sent += chunk.length
      if (!connection.write(chunk)) return void connection.once("drain", more)
    }
  }
  connection.write('{"jsonrpc":"2.0","id":1,"result":"')
  more()
}

describe("agentctl against a hostile daemon", () => {
  it.live(
    "garbage, another version, an error without a code, a close without an answer, a 100 MB line, a wrong result: exit 1, bounded",
    () =>
      Effect.gen(function* () {
        const behaviours: ReadonlyArray<readonly [string, (request: any, connection: net.Socket) => void, string]> = [
          ["garbage", (_, c) => void c.write("this is not JSON at all\n"), "not a JSON-RPC 2.0 message"],
          [
            "another version",
            (r, c) => void c.write(`${JSON.stringify({ jsonrpc: "1.0", id: r.id, result: [] })}\n`),
            "not a JSON-RPC 2.0 message"
          ],
          [
            "error without code",
            (r, c) => void c.write(`${JSON.stringify({ jsonrpc: "2.0", id: r.id, error: { message: "boom" } })}\n`),
            "without code"
          ],
          [
            "error with a string code",
            (r, c) =>
              void c.write(
                `${JSON.stringify({ jsonrpc: "2.0", id: r.id, error: { code: "-32000", message: "x" } })}\n`
              ),
            "without code"
          ],
          ["close", (_, c) => void c.destroy(), "closed"],
          [
            "answer for another id, then close",
            (r, c) => void c.end(`${JSON.stringify({ jsonrpc: "2.0", id: r.id + 1, result: [] })}\n`),
            "closed"
          ],
          ["100 MB line", (_, c) => hugeLine(c, 100 * 1024 * 1024), "longer than"],
          [
            "a result of the wrong shape",
            (r, c) => void c.write(`${JSON.stringify({ jsonrpc: "2.0", id: r.id, result: "rows?" })}\n`),
            ""
          ]
        ]
        yield* Effect.forEach(
          behaviours,
          ([what, behave, says]) =>
            Effect.scoped(
              Effect.gen(function* () {
                const dir = procTmp()
                const socket = path.join(dir, "fake.sock")
                yield* fakeDaemon(socket, behave)
                const started = Date.now()
                const r = yield* agentctl(["ps"], { cwd: dir, socket, timeoutMs: 25_000 })
                assert.isBelow(Date.now() - started, 25_000, `${what}: agentctl hung`)
                assert.strictEqual(
                  r.code,
                  1,
                  `${what}: exit ${r.code}\n${r.stdout.slice(0, 300)}\n${r.stderr.slice(0, 500)}`
                )
                assert.isBelow(r.stdout.length + r.stderr.length, 100_000, `${what}: echoed the hostile answer`)
                if (says !== "") assert.include(r.stderr, says, what)
              })
            ),
          { concurrency: 2 }
        )
      }),
    120_000
  )

  it.live(
    "a daemon that never answers: agentctl ends on SIGINT, and with --timeout it ends by itself, exit 1",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = procTmp()
          const socket = path.join(dir, "fake.sock")
          yield* fakeDaemon(socket, () => {})
          const child = spawn(process.execPath, [...nodeArgs, agentctlBin, "--socket", socket, "ps"], {
            cwd: dir,
            stdio: ["ignore", "pipe", "pipe"]
          })
          yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
          const exited = Effect.callback<number | null>((resume) => {
            if (child.exitCode !== null) return resume(Effect.succeed(child.exitCode))
            child.on("exit", (code) => resume(Effect.succeed(code)))
          })
          yield* Effect.sleep("3 seconds")
          child.kill("SIGINT")
          const code = yield* exited.pipe(Effect.timeoutOption("10 seconds"))
          assert.isTrue(Option.isSome(code), "agentctl did not end on SIGINT")
          assert.notStrictEqual(Option.getOrThrow(code), 0)
          // a one-shot request is bounded (30 s by default; here 1 s), and so is `run` when --timeout is given
          for (const args of [["ps"], ["approve", "x"], ["run", path.join(dir, "none.yaml"), "hi"]]) {
            if (args[0] === "run") fs.writeFileSync(args[1]!, "name: a\n")
            const r = yield* agentctl(["--socket", socket, "--timeout", "1", ...args], { cwd: dir, timeoutMs: 20_000 })
            assert.strictEqual(r.code, 1, `${args[0]}: ${r.stdout} ${r.stderr}`)
            assert.include(r.stderr, "did not answer within 1 s")
          }
        })
      ),
    60_000
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 6. agentctl replay on edited journals
// -----------------------------------------------------------------------------------------------------------------

/** One recorded run: an agent calls echo, then answers `answer`, and is stopped; then the daemon. Its state directory. */
const recordings = new Map<string, string>()
const recording = (answer: string, manifest: (dir: string) => string) =>
  Effect.gen(function* () {
    const cached = recordings.get(answer)
    if (cached !== undefined) return cached
    const dir = procTmp()
    yield* Effect.scoped(
      Effect.gen(function* () {
        const server = yield* OpenAiServer.make([
          OpenAiServer.toolCalls([{ name: "echo", arguments: { text: "hello" } }]),
          OpenAiServer.text(answer)
        ])
        const d = yield* startDaemon(dir, server.baseURL)
        const r = yield* call(d.socket, "agent.spawn_and_run", { manifest: manifest(dir), message: "go" })
        assert.strictEqual(r.result?.answer, answer, JSON.stringify(r))
        // stopped before the daemon is: an agent still alive at shutdown makes even an untouched journal diverge
        // (see the last test of this block)
        assert.isDefined((yield* call(d.socket, "agent.stop", { pid: r.result.pid })).result)
        yield* Effect.sleep("300 millis")
      })
    )
    const state = path.join(dir, ".agentos")
    recordings.set(answer, state)
    return state
  })

const recordedManifest = (dir: string) =>
  lines(["name: reader", `capabilities: ["tool: echo", "file_read: ${dir}/public/*"]`, "budget: { tokens: 20000 }"])

/** A copy of the recording's state directory whose journal lines went through `edit`; the journal's path. */
const edited = (state: string, edit: (lines: Array<string>) => Array<string>) => {
  const dir = procTmp()
  const copy = path.join(dir, ".agentos")
  fs.mkdirSync(copy, { mode: 0o700 })
  for (const name of fs.readdirSync(state)) {
    // the audit trail, and the journal's integrity key (an operator replays with the state directory's key)
    if (name.startsWith("audit") || name === "journal.key")
      fs.copyFileSync(path.join(state, name), path.join(copy, name))
  }
  const text = fs.readFileSync(path.join(state, "journal.jsonl"), "utf8")
  const journal = path.join(copy, "journal.jsonl")
  fs.writeFileSync(journal, edit(text.split("\n").filter((l) => l.length > 0)).join("\n") + "\n")
  return journal
}

const lineWith = (ls: ReadonlyArray<string>, needle: string) => {
  const i = ls.findIndex((l) => l.includes(needle))
  assert.notStrictEqual(i, -1, `no journal line with ${needle}`)
  return i
}

const replayOf = (journal: string) =>
  agentctl(["replay", journal], { cwd: path.dirname(path.dirname(journal)), timeoutMs: 60_000 })

describe("agentctl replay", () => {
  it.live(
    "a deleted, reordered, repeated or foreign record, another program's header; a directory, a missing file, a FIFO: exit 1",
    () =>
      Effect.gen(function* () {
        const a = yield* recording("final answer one", recordedManifest)
        const b = yield* recording("final answer two", recordedManifest)
        const bLines = fs.readFileSync(path.join(b, "journal.jsonl"), "utf8").split("\n")
        // the untouched journal replays identical (else the refusals below prove nothing)
        const clean = yield* replayOf(edited(a, (ls) => ls))
        assert.strictEqual(clean.code, 0, clean.stdout + clean.stderr)
        assert.include(clean.stdout, "identical")
        const fifoDir = procTmp()
        const fifo = path.join(fifoDir, "journal.jsonl")
        execFileSync("mkfifo", [fifo])
        const dirJournal = path.join(procTmp(), "journal.jsonl")
        fs.mkdirSync(dirJournal)
        const variants: ReadonlyArray<readonly [string, string]> = [
          [
            "a deleted record",
            edited(a, (ls) => ls.filter((_, i) => i !== lineWith(ls, '"device":"tools","call":"read","digest"') + 1))
          ],
          [
            // (moving lines alone changes nothing: records are keyed by pid and op; their results are swapped here)
            "two model answers swapped",
            edited(a, (ls) => {
              const i = lineWith(ls, '"seq":4,')
              const j = lineWith(ls, '"seq":6,')
              const first = JSON.parse(ls[i]!)
              const second = JSON.parse(ls[j]!)
              const out = [...ls]
              out[i] = JSON.stringify({ ...first, result: second.result })
              out[j] = JSON.stringify({ ...second, result: first.result })
              return out
            })
          ],
          [
            "a record repeated",
            edited(a, (ls) => {
              const i = lineWith(ls, '"seq":5,')
              return [...ls.slice(0, i + 1), ls[i]!, ...ls.slice(i + 1)]
            })
          ],
          [
            "a record from another journal",
            edited(a, (ls) => {
              const i = lineWith(ls, "final answer one")
              const out = [...ls]
              out[i] = bLines[lineWith(bLines, "final answer two")]!
              return out
            })
          ],
          [
            "another program's header",
            edited(a, (ls) => [ls[0]!.replace('"program":"agentd"', '"program":"other"'), ...ls.slice(1)])
          ],
          ["a directory", dirJournal],
          ["a missing file", path.join(procTmp(), "nope.jsonl")],
          ["a FIFO", fifo]
        ]
        const problems: Array<string> = []
        yield* Effect.forEach(
          variants,
          ([what, journal]) =>
            Effect.gen(function* () {
              const r = yield* replayOf(journal)
              const said = `${r.stdout.trim()} / ${r.stderr.trim()}`.replaceAll("\n", " / ")
              if (r.code !== 1) problems.push(`${what}: exit ${r.code}: ${said}`)
              else if (!r.stderr.includes("agentctl:")) problems.push(`${what}: no reason on stderr: ${said}`)
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    150_000
  )

  it.live(
    "a replay that diverged never calls itself identical (a record from another journal)",
    () =>
      Effect.gen(function* () {
        const a = yield* recording("final answer one", recordedManifest)
        const b = yield* recording("final answer two", recordedManifest)
        const bLines = fs.readFileSync(path.join(b, "journal.jsonl"), "utf8").split("\n")
        const journal = edited(a, (ls) => {
          const out = [...ls]
          out[lineWith(ls, "final answer one")] = bLines[lineWith(bLines, "final answer two")]!
          return out
        })
        const r = yield* replayOf(journal)
        assert.strictEqual(r.code, 1)
        // refused as tampered at load (another journal's MAC), or diverged when it was read
        assert.match(r.stdout + r.stderr, /diverged|tampered|MAC/)
        assert.notInclude(r.stdout, "identical", `the report of a diverged replay:\n${r.stdout}`)
      }),
    90_000
  )

  it.live(
    "records edited consistently (the final answer with its reply's digest; a manifest's glob widened): exit 1",
    () =>
      Effect.gen(function* () {
        const a = yield* recording("final answer one", recordedManifest)
        const text = fs.readFileSync(path.join(a, "journal.jsonl"), "utf8")
        // the reply init wrote for the run, as the journal's digest names it (checked: the test models it exactly)
        const run = JSON.parse(text.split("\n").find((l) => l.includes('"_tag":"Run"'))!).result.value
        const reply = (answer: string) =>
          Journal.requestDigest("agentd", "write", { _tag: "Answer", id: run.id, pid: run.pid, answer, steps: 2 })
        assert.include(text, reply("final answer one"))
        const rewritten = edited(a, (ls) =>
          ls.map((l) =>
            l
              .replaceAll("final answer one", "final answer EVIL")
              .replaceAll(reply("final answer one"), reply("final answer EVIL"))
          )
        )
        const recordedDir = path.dirname(a)
        const widened = edited(a, (ls) =>
          ls.map((l) => l.replaceAll(`file_read: ${recordedDir}/public/*`, "file_read: /**"))
        )
        assert.include(fs.readFileSync(widened, "utf8"), "file_read: /**")
        // the same edit, and the key removed: a journal with MACs and no key to check them is refused
        const keyless = edited(a, (ls) => ls.map((l) => l.replaceAll("final answer one", "final answer EVIL")))
        fs.rmSync(path.join(path.dirname(keyless), "journal.key"))
        // the MACs stripped as well: nothing verifies it, so the replay does not vouch for it
        const stripped = edited(a, (ls) =>
          ls.map((l) => {
            const { mac: _mac, ...rest } = JSON.parse(l.replaceAll("final answer one", "final answer EVIL"))
            return JSON.stringify(rest)
          })
        )
        fs.rmSync(path.join(path.dirname(stripped), "journal.key"))
        const outcomes: Array<string> = []
        for (const [what, journal] of [
          ["the final answer rewritten", rewritten],
          ["the agent's file_read glob widened to /**", widened],
          ["the final answer rewritten, the key removed", keyless],
          ["the final answer rewritten, the MACs stripped and the key removed", stripped]
        ] as const) {
          const r = yield* replayOf(journal)
          if (r.code !== 1) outcomes.push(`${what}: exit ${r.code}: ${r.stdout.trim().replaceAll("\n", " / ")}`)
        }
        assert.deepStrictEqual(outcomes, [], "an edited journal replayed as identical")
      }),
    90_000
  )

  it.live(
    "(not an attack) an untouched journal of a daemon stopped while its agent lives replays identical",
    () =>
      Effect.gen(function* () {
        const dir = procTmp()
        yield* Effect.scoped(
          Effect.gen(function* () {
            const server = yield* OpenAiServer.make([
              OpenAiServer.toolCalls([{ name: "echo", arguments: { text: "hello" } }]),
              OpenAiServer.text("an answer")
            ])
            const d = yield* startDaemon(dir, server.baseURL)
            const r = yield* call(d.socket, "agent.spawn_and_run", { manifest: recordedManifest(dir), message: "go" })
            assert.strictEqual(r.result?.answer, "an answer", JSON.stringify(r))
          })
        )
        const r = yield* replayOf(path.join(dir, ".agentos", "journal.jsonl"))
        assert.strictEqual(r.code, 0, `a false divergence: ${r.stdout}\n${r.stderr}`)
      }),
    60_000
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 7. the files of the state directory
// -----------------------------------------------------------------------------------------------------------------

describe("the state directory", () => {
  it.live(
    "audit.jsonl or journal.jsonl planted as a symlink: agentd never writes through it",
    () =>
      Effect.gen(function* () {
        const dir = procTmp()
        const state = stateDir(dir)
        const victims = { audit: path.join(dir, "victim-audit.txt"), journal: path.join(dir, "victim-journal.txt") }
        fs.writeFileSync(victims.audit, "precious\n")
        fs.writeFileSync(victims.journal, "")
        fs.symlinkSync(victims.audit, path.join(state, "audit.jsonl"))
        fs.symlinkSync(victims.journal, path.join(state, "journal.jsonl"))
        const ready = yield* Effect.scoped(
          Effect.gen(function* () {
            const d = yield* launch(dir)
            if (d.ready) yield* call(d.socket, "agent.spawn", { manifest: "name: a" })
            return d.ready
          })
        )
        const written = [
          fs.readFileSync(victims.audit, "utf8") === "precious\n"
            ? []
            : ["the audit trail went through audit.jsonl's link"],
          fs.readFileSync(victims.journal, "utf8") === "" ? [] : ["the journal went through journal.jsonl's link"]
        ].flat()
        assert.deepStrictEqual(written, [], `agentd ${ready ? "started" : "refused"}`)
      }),
    60_000
  )

  it.live(
    "an existing audit.jsonl others may write (0666): agentd refuses it or makes it 0600",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = procTmp()
          const state = stateDir(dir)
          const audit = path.join(state, "audit.jsonl")
          fs.writeFileSync(audit, "")
          fs.chmodSync(audit, 0o666)
          const d = yield* launch(dir)
          if (!d.ready) return
          yield* call(d.socket, "agent.spawn", { manifest: "name: a" })
          const mode = fs.statSync(audit).mode & 0o777
          assert.strictEqual(mode & 0o077, 0, `agentd appends its audit trail to a file of mode ${mode.toString(8)}`)
        })
      ),
    60_000
  )

  it.live(
    "an existing state directory others may write (0777): agentd refuses it or makes it 0700",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = procTmp()
          const state = stateDir(dir)
          fs.chmodSync(state, 0o777)
          const d = yield* launch(dir)
          if (!d.ready) return
          const mode = fs.statSync(state).mode & 0o777
          assert.strictEqual(mode & 0o077, 0, `agentd runs on a state directory of mode ${mode.toString(8)}`)
        })
      ),
    60_000
  )

  it.live(
    "an agentd.yaml others may write, pointing the LLM elsewhere: agentd neither trusts it nor sends the key",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const attacker = yield* OpenAiServer.make([
            OpenAiServer.text("exfiltrated"),
            OpenAiServer.text("exfiltrated")
          ])
          const dir = procTmp()
          const state = stateDir(dir)
          const config = path.join(state, "agentd.yaml")
          fs.writeFileSync(config, `llm: { base_url: "${attacker.baseURL}" }\n`)
          fs.chmodSync(config, 0o666)
          const d = yield* launch(dir, [], { OPENAI_API_KEY: "sk-operator-secret" })
          if (d.ready) {
            yield* call(d.socket, "agent.spawn_and_run", { manifest: "name: a", message: "my private prompt" })
          }
          const reached = yield* attacker.requests
          assert.deepStrictEqual(
            reached.map((r) => String(r.headers.authorization ?? "")),
            [],
            "the prompt and the operator's key went to the server a world-writable config named"
          )
        })
      ),
    60_000
  )
})
