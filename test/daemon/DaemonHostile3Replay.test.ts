/**
 * The third hostile review of the daemon (see DaemonHostile3.test.ts), its second half: `agentctl replay`'s verdict
 * on cut and forged files, `agentctl --timeout`, and the helper model check of `spawn_agent`. Every test asserts the
 * secure outcome.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { ScriptedLlm, OpenAiServer } from "effect-agent-os/testing"
import { Agentd, AgentdApi, BuiltinTools, Journal, JsonRpc, Tools, type EventLog } from "effect-agent-os"
import { Layer } from "effect"
import { bounded, lines, ok } from "./coreHarness.ts"
import { call, tmp } from "./processHarness.ts"
import { launch, type Ran, ctl, stackTrace, fresh } from "./hostile3Harness.ts"

/** A recorded run (an agent calls echo, answers `answer`, is stopped; then the daemon): its state directory. */
const recordings = new Map<string, string>()
const recordingOf = (answer: string) =>
  Effect.gen(function* () {
    const cached = recordings.get(answer)
    if (cached !== undefined) return cached
    const { dir, state } = fresh()
    yield* Effect.scoped(
      Effect.gen(function* () {
        const server = yield* OpenAiServer.make([
          OpenAiServer.toolCalls([{ name: "echo", arguments: { text: "hello" } }]),
          OpenAiServer.text(answer)
        ])
        const d = yield* launch(dir, ["--state", state], {}, server.baseURL)
        assert.isTrue(d.ready, d.stderr())
        const r = yield* call(d.socket, "agent.spawn_and_run", {
          manifest: lines(["name: reader", 'capabilities: ["tool: echo"]', "budget: { tokens: 20000 }"]),
          message: "go"
        })
        assert.strictEqual(r.result?.answer, answer, JSON.stringify(r))
        assert.isDefined((yield* call(d.socket, "agent.stop", { pid: r.result.pid })).result)
        yield* Effect.sleep("300 millis")
      })
    )
    recordings.set(answer, state)
    return state
  })
const recording = recordingOf("the recorded answer")

/** A copy of a state directory (journal, key, audit trail), each through its edit; the copy's journal. */
const copyOf = (
  state: string,
  edits: {
    readonly journal?: (ls: Array<string>) => Array<string>
    readonly audit?: (ls: Array<string>) => Array<string>
    readonly key?: boolean
    readonly then?: (copy: string) => void
  } = {}
) => {
  const { state: copy } = fresh()
  const split = (file: string) =>
    fs
      .readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.length > 0)
  const journal = split(path.join(state, "journal.jsonl"))
  fs.writeFileSync(path.join(copy, "journal.jsonl"), (edits.journal ?? ((x) => x))(journal).join("\n") + "\n", {
    mode: 0o600
  })
  for (const name of fs.readdirSync(state)) {
    if (/^audit(\.\d+)?\.jsonl$/.test(name)) {
      const audit = split(path.join(state, name))
      fs.writeFileSync(path.join(copy, name), (edits.audit ?? ((x) => x))(audit).join("\n") + "\n", { mode: 0o600 })
    }
  }
  if (edits.key !== false) fs.copyFileSync(path.join(state, "journal.key"), path.join(copy, "journal.key"))
  edits.then?.(copy)
  return path.join(copy, "journal.jsonl")
}

const replayOf = (journal: string, env: Record<string, string | undefined> = {}, args: ReadonlyArray<string> = []) =>
  ctl(["replay", "--json", journal, ...args], {
    cwd: path.dirname(path.dirname(journal)),
    env: { AGENTOS_JOURNAL_KEY: undefined, ...env },
    timeoutMs: 40_000
  })

const reportOf = (r: Ran): Record<string, any> | undefined => {
  try {
    return JSON.parse(r.stdout)
  } catch {
    return undefined
  }
}

const say = (r: Ran) =>
  `exit ${r.code}${r.killed ? " (killed: hung)" : ""} in ${r.ms} ms: ${r.stdout.trim().slice(0, 600)} / ${r.stderr
    .trim()
    .slice(0, 400)}`.replaceAll("\n", " ")

describe("agentctl replay", () => {
  it.live(
    "(not an attack) the untouched recording replays identical, authenticated",
    () =>
      Effect.gen(function* () {
        const state = yield* recording
        const r = yield* replayOf(copyOf(state))
        const report = reportOf(r)
        assert.strictEqual(r.code, 0, say(r))
        assert.isTrue(report?.identical === true && report.authenticated === true, say(r))
      }),
    60_000
  )

  it.live(
    "forged journals under a key the attacker lacks: an unsigned record appended, a record with another's MAC, MACs stripped (key kept or deleted), a header swapped, another state directory's key, env key mismatch: never identical, exit 1",
    () =>
      Effect.gen(function* () {
        const state = yield* recording
        const another = yield* recordingOf("another recorded answer")
        const other = fresh()
        fs.writeFileSync(path.join(other.state, "journal.key"), "d".repeat(64) + "\n", { mode: 0o600 })
        const strip = (l: string) => {
          const { mac: _mac, ...rest } = JSON.parse(l)
          return JSON.stringify(rest)
        }
        const lastSeq = (ls: ReadonlyArray<string>) =>
          Math.max(...ls.slice(1).map((l) => (JSON.parse(l).seq as number | undefined) ?? 0))
        const variants: ReadonlyArray<readonly [string, string, Record<string, string | undefined>?]> = [
          [
            "an unsigned record appended (a model answer repeated for a new op, no MAC)",
            copyOf(state, {
              journal: (ls) => {
                const model = ls.filter((l) => l.includes('"device":"llm"') && l.includes('"Success"')).at(-1)!
                const rec = JSON.parse(strip(model))
                return [...ls, JSON.stringify({ ...rec, op: rec.op + 1, seq: lastSeq(ls) + 1 })]
              }
            })
          ],
          [
            "a record appended carrying the MAC of another record",
            copyOf(state, {
              journal: (ls) => {
                const model = ls.filter((l) => l.includes('"device":"llm"') && l.includes('"Success"')).at(-1)!
                const rec = JSON.parse(model)
                return [...ls, JSON.stringify({ ...rec, op: rec.op + 1, seq: lastSeq(ls) + 1 })]
              }
            })
          ],
          ["every MAC stripped, the key kept", copyOf(state, { journal: (ls) => ls.map(strip) })],
          ["every MAC stripped, the key deleted", copyOf(state, { journal: (ls) => ls.map(strip), key: false })],
          [
            "the records' MACs stripped, the header's kept",
            copyOf(state, { journal: (ls) => [ls[0]!, ...ls.slice(1).map(strip)] })
          ],
          [
            "the key of another state directory copied in",
            copyOf(state, {
              key: false,
              then: (copy) => fs.copyFileSync(path.join(other.state, "journal.key"), path.join(copy, "journal.key"))
            })
          ],
          ["AGENTOS_JOURNAL_KEY another key than journal.key", copyOf(state), { AGENTOS_JOURNAL_KEY: "e".repeat(64) }],
          [
            "another recording's journal with its own key, beside this recording's audit trail",
            copyOf(state, {
              key: false,
              then: (copy) => {
                fs.copyFileSync(path.join(another, "journal.jsonl"), path.join(copy, "journal.jsonl"))
                fs.copyFileSync(path.join(another, "journal.key"), path.join(copy, "journal.key"))
              }
            })
          ],
          ["AGENTOS_JOURNAL_KEY empty", copyOf(state), { AGENTOS_JOURNAL_KEY: "" }],
          [
            "AGENTOS_JOURNAL_KEY empty, MACs stripped, no key file",
            copyOf(state, { journal: (ls) => ls.map(strip), key: false }),
            { AGENTOS_JOURNAL_KEY: "" }
          ],
          [
            "journal.key beside it made 0644",
            copyOf(state, { then: (copy) => fs.chmodSync(path.join(copy, "journal.key"), 0o644) })
          ],
          [
            "journal.key beside it a symlink to the right key",
            copyOf(state, {
              key: false,
              then: (copy) => fs.symlinkSync(path.join(state, "journal.key"), path.join(copy, "journal.key"))
            })
          ]
        ]
        const problems: Array<string> = []
        yield* Effect.forEach(
          variants,
          ([what, journal, env]) =>
            Effect.gen(function* () {
              const r = yield* replayOf(journal, env)
              const report = reportOf(r)
              if (r.code !== 1 || report?.identical === true) problems.push(`${what}: ${say(r)}`)
              else if (stackTrace.test(r.stderr)) problems.push(`${what}: a stack trace: ${say(r)}`)
              else if (!r.stderr.includes("agentctl:")) problems.push(`${what}: no reason on stderr: ${say(r)}`)
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    150_000
  )

  it.live(
    "the audit trail (unauthenticated) cut short, or given a forged new run of one event: the replayed events past it ('beyond') are not vouched for as identical",
    () =>
      Effect.gen(function* () {
        const state = yield* recording
        const variants: ReadonlyArray<readonly [string, string]> = [
          ["the audit trail cut to its first 2 events", copyOf(state, { audit: (ls) => ls.slice(0, 2) })],
          [
            "the audit trail's last half dropped",
            copyOf(state, { audit: (ls) => ls.slice(0, Math.ceil(ls.length / 2)) })
          ],
          [
            "a forged run (its first event again, seq 1) appended to the audit trail",
            copyOf(state, { audit: (ls) => [...ls, ls[0]!] })
          ]
        ]
        const problems: Array<string> = []
        yield* Effect.forEach(
          variants,
          ([what, journal]) =>
            Effect.gen(function* () {
              const r = yield* replayOf(journal)
              const report = reportOf(r)
              if (r.code !== 1 || report?.identical === true)
                problems.push(
                  `${what}: ${r.code === 0 ? "IDENTICAL" : `exit ${r.code}`} with events=${report?.events} ` +
                    `recorded=${report?.recorded} beyond=${report?.beyond}`
                )
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    90_000
  )

  it.live(
    "the journal's last records cut (every remaining line still verifies under the key): not identical (README: 'a record deleted' is detected)",
    () =>
      Effect.gen(function* () {
        const state = yield* recording
        const full = fs
          .readFileSync(path.join(state, "journal.jsonl"), "utf8")
          .split("\n")
          .filter((l) => l !== "")
        const problems: Array<string> = []
        // cut the records after the agent's last model answer (its final text), and after the tool result
        const cuts: ReadonlyArray<readonly [string, number]> = [
          ["after the header and 2 records", 3],
          ["half of the records", Math.ceil(full.length / 2)],
          ["everything from the final answer on", full.findIndex((l) => l.includes("the recorded answer"))]
        ]
        yield* Effect.forEach(
          cuts,
          ([what, keep]) =>
            Effect.gen(function* () {
              const r = yield* replayOf(copyOf(state, { journal: (ls) => ls.slice(0, keep) }))
              const report = reportOf(r)
              if (r.code !== 1 || report?.identical === true)
                problems.push(
                  `${what} (kept ${keep} of ${full.length} lines): ${r.code === 0 ? "IDENTICAL" : `exit ${r.code}`}, ` +
                    `events=${report?.events} recorded=${report?.recorded}`
                )
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    90_000
  )

  it.live(
    "an audit file beside the journal planted as a FIFO: exit 1; an audit.999999999999.jsonl (no name agentd writes) ignored: never a hang",
    () =>
      Effect.gen(function* () {
        const state = yield* recording
        const variants: ReadonlyArray<readonly [string, string]> = [
          [
            "audit.1.jsonl a FIFO",
            copyOf(state, { then: (copy) => execFileSync("mkfifo", [path.join(copy, "audit.1.jsonl")]) })
          ],
          [
            "audit.jsonl a FIFO",
            copyOf(state, {
              then: (copy) => {
                fs.rmSync(path.join(copy, "audit.jsonl"))
                execFileSync("mkfifo", [path.join(copy, "audit.jsonl")])
              }
            })
          ],
          [
            "an empty audit.999999999999.jsonl",
            copyOf(state, { then: (copy) => fs.writeFileSync(path.join(copy, "audit.999999999999.jsonl"), "") })
          ]
        ]
        const problems: Array<string> = []
        yield* Effect.forEach(
          variants,
          ([what, journal]) =>
            Effect.gen(function* () {
              const r = yield* ctl(["replay", journal], {
                cwd: path.dirname(journal),
                env: { AGENTOS_JOURNAL_KEY: undefined },
                timeoutMs: 15_000
              })
              if (r.killed) problems.push(`${what}: agentctl replay hung (killed after 15 s)`)
              else if (r.code !== (what.includes("999") ? 0 : 1)) problems.push(`${what}: ${say(r)}`)
            }),
          { concurrency: 3 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    60_000
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 3. agentctl --timeout
// -----------------------------------------------------------------------------------------------------------------

/** A fake daemon on a socket: answers `agent.*`/`kernel.*` after `delayMs` (never, when `null`). */
const fakeDaemon = (socket: string, delayMs: number | null, streamForever = false) =>
  Effect.acquireRelease(
    Effect.callback<net.Server>((resume) => {
      const timers = new Set<NodeJS.Timeout>()
      const server = net.createServer((c) => {
        c.on("error", () => {})
        let buffer = ""
        c.on("data", (b) => {
          buffer += String(b)
          const nl = buffer.indexOf("\n")
          if (nl === -1) return
          const request = JSON.parse(buffer.slice(0, nl))
          buffer = ""
          if (streamForever) {
            const t = setInterval(() => {
              c.write(
                JSON.stringify({
                  jsonrpc: "2.0",
                  method: "stream",
                  params: { id: request.id, item: { _tag: "Log", seq: 1, at: 0, pid: 1, message: "x" } }
                }) + "\n"
              )
            }, 50)
            timers.add(t)
            c.on("close", () => clearInterval(t))
            return
          }
          if (delayMs === null) return
          const t = setTimeout(
            () => c.write(JSON.stringify({ jsonrpc: "2.0", id: request.id, result: [] }) + "\n"),
            delayMs
          )
          timers.add(t)
        })
      })
      ;(server as any).timers = timers
      server.listen(socket, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.callback<void>((resume) => {
        for (const t of (server as any).timers as Set<NodeJS.Timeout>) clearTimeout(t)
        server.close(() => resume(Effect.void))
        ;(server as any).closeAllConnections?.()
        setTimeout(() => resume(Effect.void), 1_000)
      })
  )

describe("agentctl --timeout", () => {
  it.live(
    "garbage values (-1, -0.5, NaN, Infinity, 1e400, abc, empty, 1e-400) against a daemon that never answers: exit 1 within seconds, no stack trace, never a hang",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const socket = path.join(dir, "never.sock")
          yield* fakeDaemon(socket, null)
          const values = ["-1", "-0.5", "NaN", "Infinity", "-Infinity", "1e400", "abc", "", "1e-400", "0x10", "1_0"]
          const problems: Array<string> = []
          yield* Effect.forEach(
            values,
            (v) =>
              Effect.gen(function* () {
                const r = yield* ctl(["--socket", socket, `--timeout=${v}`, "ps"], { cwd: dir, timeoutMs: 9_000 })
                if (r.killed) problems.push(`--timeout=${JSON.stringify(v)}: hung (killed after 9 s)`)
                else if (r.code !== 1) problems.push(`--timeout=${JSON.stringify(v)}: ${say(r)}`)
                else if (stackTrace.test(r.stderr + r.stdout))
                  problems.push(`--timeout=${JSON.stringify(v)}: stack trace: ${say(r)}`)
              }),
            { concurrency: 3 }
          )
          // the separate-argument form of a negative value
          const r = yield* ctl(["--socket", socket, "--timeout", "-1", "ps"], { cwd: dir, timeoutMs: 9_000 })
          if (r.killed) problems.push(`--timeout -1: hung (killed after 9 s)`)
          assert.deepStrictEqual(problems, [])
        })
      ),
    120_000
  )

  it.live(
    "a daemon that answers just before the timeout is heard (exit 0); one that answers just after is not (exit 1, on time)",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const early = path.join(dir, "early.sock")
          const late = path.join(dir, "late.sock")
          yield* fakeDaemon(early, 2_000)
          yield* fakeDaemon(late, 4_500)
          const problems: Array<string> = []
          const a = yield* ctl(["--socket", early, "--timeout", "3.5", "--json", "ps"], { cwd: dir, timeoutMs: 20_000 })
          if (a.code !== 0) problems.push(`answer at 2 s, --timeout 3.5: ${say(a)}`)
          const b = yield* ctl(["--socket", late, "--timeout", "2", "ps"], { cwd: dir, timeoutMs: 20_000 })
          if (b.code !== 1 || !b.stderr.includes("did not answer"))
            problems.push(`answer at 4.5 s, --timeout 2: ${say(b)}`)
          // huge values: the timer must not overflow into an immediate timeout
          const c = yield* ctl(["--socket", early, "--timeout", "3000000", "--json", "ps"], {
            cwd: dir,
            timeoutMs: 20_000
          })
          if (c.code !== 0) problems.push(`answer at 2 s, --timeout 3000000 (past setTimeout's 2^31 ms): ${say(c)}`)
          assert.deepStrictEqual(problems, [])
        })
      ),
    60_000
  )

  it.live(
    "trace (without -f) against a daemon that streams forever: bounded by --timeout, exit 1",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const socket = path.join(dir, "stream.sock")
          yield* fakeDaemon(socket, null, true)
          const r = yield* ctl(["--socket", socket, "--timeout", "2", "trace"], { cwd: dir, timeoutMs: 20_000 })
          assert.isFalse(r.killed, "agentctl trace hung")
          assert.strictEqual(r.code, 1, say(r))
        })
      ),
    30_000
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 4. spawn_agent: a helper manifest's model
// -----------------------------------------------------------------------------------------------------------------

type Req = any
const contentOf = (m: { content?: unknown } | undefined) =>
  typeof m?.content === "string" ? m.content : JSON.stringify(m?.content ?? "")
const isHelper = (r: Req) => contentOf(r.messages[0]).includes("You summarize")
const cheap = { usage: { inputTokens: 1, outputTokens: 1 } }

describe("spawn_agent: the helper's model", () => {
  it.live("a helper manifest naming another model (or a near-copy of the caller's) is refused; the same one runs", () =>
    bounded(
      Effect.gen(function* () {
        const helper = (model: string | undefined, json = false) =>
          json
            ? JSON.stringify({
                name: "summarizer",
                system_prompt: "You summarize.",
                capabilities: ["tool: echo"],
                ...(model === undefined ? {} : { model })
              })
            : lines([
                "name: summarizer",
                'system_prompt: "You summarize."',
                'capabilities: ["tool: echo"]',
                ...(model === undefined ? [] : [`model: ${JSON.stringify(model)}`])
              ])
        const manifests: ReadonlyArray<readonly [string, string, boolean]> = [
          ["model-b", helper("model-b"), false],
          ["MODEL-A (case)", helper("MODEL-A"), false],
          ["'model-a ' (JSON, trailing space)", helper("model-a ", true), false],
          ["'model-a\\u0000' (JSON)", helper("model-a\u0000", true), false],
          ["model-b (JSON)", helper("model-b", true), false],
          ["the caller's own model-a", helper("model-a"), true],
          ["no model", helper(undefined), true]
        ]
        let i = 0
        const llm = ScriptedLlm.make(
          Array.from({ length: 200 }, () => (r: Req) => {
            if (isHelper(r)) return { text: "helper done", ...cheap }
            if (i < manifests.length) {
              return {
                toolCalls: [{ name: "spawn_agent", arguments: { manifest: manifests[i++]![1], message: "sum" } }],
                ...cheap
              }
            }
            return { text: "done", ...cheap }
          })
        )
        const d = yield* Effect.gen(function* () {
          const tools = yield* BuiltinTools.make()
          return yield* Agentd.make({
            llm,
            tools,
            definitions: Tools.definitions(BuiltinTools.toolkit),
            operator: "tester"
          })
        }).pipe(Effect.provide(Layer.succeed(Journal.JournalStoreService)(Journal.makeMemoryStore())))
        const events: Array<EventLog.KernelEvent> = []
        yield* d.kernel.subscribe((e) => void events.push(e))
        const handle = yield* JsonRpc.make(AgentdApi.Api, { errorCodes: AgentdApi.errorCodes }).pipe(
          Effect.provide(d.handlers)
        )
        const line = yield* handle(
          JSON.stringify({
            jsonrpc: "2.0",
            id: 1,
            method: "agent.spawn_and_run",
            params: {
              manifest: lines([
                "name: lead",
                "model: model-a",
                'system_prompt: "You lead."',
                'capabilities: ["tool: echo", "spawn_agent: [summarizer]"]',
                "budget: { tokens: 1000000, tool_calls: 100, children: 10 }"
              ]),
              message: "go"
            }
          })
        )
        const result = ok(JSON.parse(line!))
        assert.strictEqual(result.answer, "done")
        const helpers = events.filter((e) => e._tag === "Spawn" && (e as any).name === "summarizer")
        const allowed = manifests.filter(([, , ok]) => ok).length
        assert.strictEqual(helpers.length, allowed, `helpers started: ${helpers.length}, expected ${allowed}`)
        const models = new Set(llm.requests.map((r: Req) => r.model).filter((m: unknown) => m !== undefined))
        for (const m of models) assert.strictEqual(m, "model-a", `a model request went to ${String(m)}`)
      }),
      30_000
    )
  )
})
