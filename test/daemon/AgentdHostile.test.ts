/**
 * A security review of the daemon: a hostile operator client and a hostile model (the scripted LLM's answers) attack
 * the `agentd` API in process (its JSON-RPC handler, the exact lines a socket client sends), and each test asserts
 * the secure outcome. Every test is bounded in time.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import * as fs from "node:fs"
import * as path from "node:path"
import { AgentdApi } from "effect-agent-os"
import {
  bounded,
  daemon as daemonOf,
  lines,
  ok,
  pendingApproval,
  reasonOf,
  type Rpc,
  type Step,
  tmp as tmpDir
} from "./coreHarness.ts"

const daemon = daemonOf
const tmp = () => tmpDir("agentd-hostile-")

const waitFor = <A>(what: string, probe: Effect.Effect<A | undefined>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 400; i++) {
      const a = yield* probe
      if (a !== undefined) return a
      yield* Effect.sleep("5 millis")
    }
    return assert.fail(`timed out waiting for ${what}`)
  })

const statusOf = (rpc: Rpc, pid: number) =>
  Effect.map(rpc("agent.status", { pid }), (r) => r.result as AgentdApi.AgentInfo)

const exited = (rpc: Rpc, pid: number) =>
  waitFor(
    `agent ${pid} to exit`,
    Effect.map(statusOf(rpc, pid), (s) => (s.status === "exited" ? s : undefined))
  )

/** The conversation process of agent `pid` (its child in `kernel.ps`). */
const conversationOf = (rpc: Rpc, pid: number) =>
  waitFor(
    "the conversation process",
    Effect.map(
      rpc("kernel.ps"),
      (r) => (r.result as ReadonlyArray<AgentdApi.ProcessRow>).find((p) => p.parent === pid)?.pid
    )
  )

const spawnProblems = (rpc: Rpc, manifest: string) =>
  Effect.gen(function* () {
    const r = yield* rpc("agent.spawn", { manifest })
    assert.isDefined(r.error, `spawned: ${JSON.stringify(r.result)} from ${manifest.slice(0, 200)}`)
    assert.strictEqual(r.error!.code, -32001, JSON.stringify(r.error))
    return (r.error!.data.problems as ReadonlyArray<{ path: string; message: string }>).map((p) => p.path)
  })

// -----------------------------------------------------------------------------------------------------------------
// (a) manifests trying to widen their authority
// -----------------------------------------------------------------------------------------------------------------

describe("hostile manifests", () => {
  it.live("`tool: file_read` (any spacing) grants the tool without a glob: it reads no path at all", () =>
    bounded(
      Effect.gen(function* () {
        const dir = tmp()
        const secret = path.join(dir, "secret.txt")
        fs.writeFileSync(secret, "s3cret")
        const d = yield* daemon([])
        for (const cap of ["tool:file_read", "tool: file_read", "  tool  :   file_read  ", "tool:\tfile_read"]) {
          const { pid } = ok<{ pid: number }>(
            yield* d.rpc("agent.spawn", { manifest: `name: a\ncapabilities: [${JSON.stringify(cap)}]` })
          )
          for (const p of [secret, "/etc/passwd", "/", dir]) {
            const r = yield* d.rpc("tool.invoke", { pid, tool: "file_read", arguments: { path: p } })
            const text = JSON.stringify(r)
            assert.notInclude(text, "s3cret")
            assert.notInclude(text, "root:")
            assert.include(text, "may not read any path", `${cap} ${p}: ${text}`)
          }
          // nor may it write: file_write was not granted
          const w = yield* d.rpc("tool.invoke", {
            pid,
            tool: "file_write",
            arguments: { path: path.join(dir, "w.txt"), content: "x" }
          })
          assert.include(JSON.stringify(w), "out-of-scope")
          assert.isFalse(fs.existsSync(path.join(dir, "w.txt")))
        }
      })
    )
  )

  it.live("odd casing of a kind or of a tool does not grant the real tool", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        assert.deepStrictEqual(
          yield* spawnProblems(d.rpc, 'name: a\ncapabilities: ["TOOL: echo", "File_Read: /tmp/*", "tool echo"]'),
          ["capabilities[0]", "capabilities[1]", "capabilities[2]"]
        )
        // `tool: ECHO` names a tool that does not exist: granted, it grants nothing real
        const { pid } = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", { manifest: 'name: b\ncapabilities: ["tool: ECHO", "tool: File_Read"]' })
        )
        const echo = yield* d.rpc("tool.invoke", { pid, tool: "echo", arguments: { text: "hi" } })
        assert.include(JSON.stringify(echo), "out-of-scope")
        const read = yield* d.rpc("tool.invoke", { pid, tool: "file_read", arguments: { path: "/etc/passwd" } })
        assert.include(JSON.stringify(read), "out-of-scope")
        assert.notInclude(JSON.stringify(read), "root:")
      })
    )
  )

  it.live("a glob `/*` is allowed and confines to the root's direct entries; `/**` is the whole tree, as written", () =>
    bounded(
      Effect.gen(function* () {
        const dir = tmp()
        const secret = path.join(dir, "secret.txt")
        fs.writeFileSync(secret, "s3cret")
        const d = yield* daemon([])
        const { pid } = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", { manifest: 'name: a\ncapabilities: ["file_read: /*"]' })
        )
        const deep = yield* d.rpc("tool.invoke", { pid, tool: "file_read", arguments: { path: secret } })
        assert.notInclude(JSON.stringify(deep), "s3cret")
        assert.include(JSON.stringify(deep), "outside the allowed paths")
        // a `..` walk from a root entry resolves before it is matched
        const walk = yield* d.rpc("tool.invoke", {
          pid,
          tool: "file_read",
          arguments: { path: `/tmp/../${path.relative("/", secret)}` }
        })
        assert.notInclude(JSON.stringify(walk), "s3cret")
        // file_write was not granted by a file_read glob
        const w = yield* d.rpc("tool.invoke", {
          pid,
          tool: "file_write",
          arguments: { path: path.join(dir, "w"), content: "x" }
        })
        assert.include(JSON.stringify(w), "out-of-scope")
        // `/**` is everything readable: the operator wrote that, the daemon takes it literally
        const all = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", { manifest: 'name: b\ncapabilities: ["file_read: /**"]' })
        )
        const r = ok(yield* d.rpc("tool.invoke", { pid: all.pid, tool: "file_read", arguments: { path: secret } }))
        assert.include(JSON.stringify(r), "s3cret")
      })
    )
  )

  it.live("`..` and `.` segments in a glob, a relative glob, a NUL: the manifest is refused", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        const caps = [
          "file_read: /tmp/../etc/*",
          "file_write: /tmp/x/..",
          "file_read: /tmp/./*",
          "file_read: ../etc/*",
          "file_read: tmp/*",
          "file_write: /tmp/\u0000/*",
          "file_read: /tmp/*/../../**"
        ]
        const problems = yield* spawnProblems(d.rpc, `name: a\ncapabilities: ${JSON.stringify(caps)}`)
        assert.deepStrictEqual(
          problems,
          caps.map((_, i) => `capabilities[${i}]`)
        )
        assert.deepStrictEqual(ok(yield* d.rpc("agent.list")), [])
      })
    )
  )

  it.live("approval_required naming a tool not granted is refused (no approval-free widening by typo)", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        assert.deepStrictEqual(
          yield* spawnProblems(
            d.rpc,
            'name: a\ncapabilities: ["tool: echo"]\napproval_required: [file_write, File_Write, "", echo]'
          ),
          ["approval_required[0]", "approval_required[1]", "approval_required[2]"]
        )
        assert.deepStrictEqual(ok(yield* d.rpc("agent.list")), [])
      })
    )
  )

  it.live("budget overflow values are refused: infinities, NaN, unsafe integers, negatives, strings", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        const cases: ReadonlyArray<readonly [string, string]> = [
          ["tokens: .inf", "budget.tokens"],
          ["tokens: 1e400", "budget.tokens"],
          ["tokens: .nan", "budget.tokens"],
          ["tokens: -1", "budget.tokens"],
          ["tokens: 1.5", "budget.tokens"],
          ['tokens: "100"', "budget.tokens"],
          ["usd: .inf", "budget.usd"],
          ["usd: -0.01", "budget.usd"],
          ["tool_calls: -.inf", "budget.tool_calls"],
          ["children: 1e400", "budget.children"],
          ['wall: "forever"', "budget.wall"]
        ]
        for (const [field, at] of cases) {
          const problems = yield* spawnProblems(d.rpc, `name: a\nbudget: { ${field} }`)
          assert.isAbove(problems.length, 0, field)
          assert.isTrue(
            problems.every((p) => p === at),
            `${field}: ${problems}`
          )
        }
        // a huge but finite limit is accepted and shown as a number, not turned into "no limit" by an overflow
        for (const big of ["9007199254740993", "1e300"]) {
          const r = yield* d.rpc("agent.spawn", { manifest: `name: big\nbudget: { tokens: ${big}, children: ${big} }` })
          if (r.error === undefined) {
            const s = yield* statusOf(d.rpc, r.result.pid)
            assert.isNumber(s.budget!.limits.tokens)
            assert.isTrue(s.budget!.limits.tokens! > 1e15)
          } else {
            assert.strictEqual(r.error.code, -32001)
          }
        }
        // JSON manifests carry the same checks
        assert.deepStrictEqual(yield* spawnProblems(d.rpc, '{"name":"a","budget":{"tokens":1e400,"usd":-1}}'), [
          "budget.tokens",
          "budget.usd"
        ])
      })
    )
  )

  it.live("a huge manifest is answered in bounded time (accepted or refused), the daemon still answers after", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        const huge = "name: big\nsystem_prompt: " + JSON.stringify("x".repeat(4 * 1024 * 1024))
        const r = yield* d.rpc("agent.spawn", { manifest: huge })
        assert.isTrue(r.error === undefined || r.error.code === -32001)
        const manyCaps = `name: caps\ncapabilities: ${JSON.stringify(Array.from({ length: 20_000 }, (_, i) => `tool: t${i}`))}`
        const r2 = yield* d.rpc("agent.spawn", { manifest: manyCaps })
        // past the kernel's tool limit the spawn is refused (a run-failed from the kernel's ArgumentError)
        assert.isTrue(r2.error === undefined || r2.error.code === -32001 || r2.error.data?.reason === "run-failed")
        assert.isTrue(r2.error === undefined || !r2.error.message.includes("\n    at "), "no stack to the client")
        const manyBad = `name: bad\ncapabilities: ${JSON.stringify(Array.from({ length: 20_000 }, (_, i) => `nope${i}`))}`
        const r3 = yield* d.rpc("agent.spawn", { manifest: manyBad })
        assert.strictEqual(r3.error!.code, -32001)
        const deep = "name: deep\nsystem_prompt: " + "[".repeat(5000) + "]".repeat(5000)
        const r4 = yield* d.rpc("agent.spawn", { manifest: deep })
        assert.strictEqual(r4.error?.code, -32001)
        const deepJson = '{"name":"deep","system_prompt":' + "[".repeat(5000) + "]".repeat(5000) + "}"
        const r5 = yield* d.rpc("agent.spawn", { manifest: deepJson })
        assert.strictEqual(r5.error?.code, -32001)
        ok(yield* d.rpc("agent.list"))
      }),
      30_000
    )
  )

  it.live("a YAML alias bomb (billion laughs) is refused in bounded time and memory", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        const bomb = [
          'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
          "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]",
          "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]",
          "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]",
          "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]",
          "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]",
          "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]",
          "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]",
          "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]"
        ]
        const started = Date.now()
        for (const tail of [
          ["name: x", "system_prompt: *i"],
          ["name: x", "capabilities: *i"],
          ["name: x", "budget: *i"]
        ]) {
          const r = yield* d.rpc("agent.spawn", { manifest: lines([...bomb, ...tail]) })
          assert.strictEqual(r.error?.code, -32001, JSON.stringify(r).slice(0, 300))
          // the error names problems, it does not echo a billion lols
          assert.isBelow(JSON.stringify(r).length, 100_000)
        }
        // an alias of a scalar into a field: the same value twice is fine, and a self-reference is refused
        const cyc = yield* d.rpc("agent.spawn", { manifest: "name: x\nbudget: &b { tokens: 1, usd: *b }" })
        assert.strictEqual(cyc.error?.code, -32001)
        assert.isBelow(Date.now() - started, 10_000)
        ok(yield* d.rpc("agent.list"))
      }),
      20_000
    )
  )

  it.live("duplicate keys: a second `name` or `budget` does not silently replace the first", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        for (const m of [
          "name: good\nname: evil",
          "name: a\nbudget: { tokens: 10 }\nbudget: { tokens: 100000000 }",
          "name: a\nbudget: { tokens: 10, tokens: 100000000 }",
          'name: a\ncapabilities: ["tool: echo"]\ncapabilities: ["file_read: /**"]'
        ]) {
          const r = yield* d.rpc("agent.spawn", { manifest: m })
          assert.strictEqual(r.error?.code, -32001, `${m} → ${JSON.stringify(r)}`)
        }
      })
    )
  )

  it.live("a name with path separators, `..`, NUL, newline, or too long is refused", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        for (const name of [
          "../etc",
          "a/b",
          "..",
          ".",
          "a\\b",
          "/abs",
          "a\u0000b",
          "a\nb",
          "x".repeat(65),
          "",
          "-a",
          "ä"
        ]) {
          assert.deepStrictEqual(yield* spawnProblems(d.rpc, JSON.stringify({ name })), ["name"], JSON.stringify(name))
        }
        // a spawn_agent list may not smuggle one either
        assert.deepStrictEqual(yield* spawnProblems(d.rpc, 'name: a\ncapabilities: ["spawn_agent: [ok, ../evil]"]'), [
          "capabilities[0]"
        ])
      })
    )
  )
})

// -----------------------------------------------------------------------------------------------------------------
// (b) a hostile model
// -----------------------------------------------------------------------------------------------------------------

describe("hostile model", () => {
  it.live("calls to tools it was not granted (and to ones that do not exist) never run", () =>
    bounded(
      Effect.gen(function* () {
        const dir = tmp()
        const target = path.join(dir, "pwned.txt")
        for (const call of [
          { name: "file_write", arguments: { path: target, content: "pwned" } },
          { name: "http_get", arguments: { url: "http://127.0.0.1:1/" } },
          { name: "spawn_agent", arguments: { name: "x" } },
          { name: "rm_rf", arguments: {} },
          { name: "__proto__", arguments: {} },
          { name: "ECHO", arguments: { text: "x" } }
        ]) {
          const d = yield* daemon([{ toolCalls: [call] }, { text: "done" }])
          const r = yield* d.rpc("agent.spawn_and_run", {
            manifest: 'name: m\ncapabilities: ["tool: echo"]',
            message: "go"
          })
          // either the run fails, or the model is told no; the tool never ran
          const text = JSON.stringify(r) + JSON.stringify(d.llm.requests.slice(1).map((q) => q.messages))
          assert.isTrue(r.error !== undefined || /out-of-scope|unknown|not/i.test(text), `${call.name}: ${text}`)
          assert.isFalse(fs.existsSync(target))
        }
      }),
      20_000
    )
  )

  it.live("`../` and a symlink out of the allowed tree are refused, as the model's call and as tool.invoke", () =>
    bounded(
      Effect.gen(function* () {
        const root = tmp()
        const allowed = path.join(root, "allowed")
        fs.mkdirSync(allowed)
        const secret = path.join(root, "secret.txt")
        fs.writeFileSync(secret, "s3cret")
        fs.symlinkSync(secret, path.join(allowed, "link.txt"))
        fs.symlinkSync(root, path.join(allowed, "up"))
        const attempts = [
          { name: "file_read", arguments: { path: `${allowed}/../secret.txt` } },
          { name: "file_read", arguments: { path: `${allowed}/link.txt` } },
          { name: "file_read", arguments: { path: `${allowed}/up/secret.txt` } },
          { name: "file_write", arguments: { path: `${allowed}/up/evil.txt`, content: "x" } },
          { name: "file_write", arguments: { path: `${allowed}/link.txt`, content: "overwritten" } },
          { name: "file_read", arguments: { path: "allowed/../secret.txt" } }
        ]
        const d = yield* daemon([{ toolCalls: attempts }, { text: "tried" }])
        const manifest = `name: m\ncapabilities: ["file_read: ${allowed}/**", "file_write: ${allowed}/**"]`
        const r = yield* d.rpc("agent.spawn_and_run", { manifest, message: "escape" })
        const seen = JSON.stringify(r) + JSON.stringify(d.llm.requests.map((q) => q.messages))
        assert.notInclude(seen, "s3cret")
        assert.strictEqual(fs.readFileSync(secret, "utf8"), "s3cret")
        assert.isFalse(fs.existsSync(path.join(root, "evil.txt")))
        const { pid } = (ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>)[0]!
        for (const a of attempts) {
          const inv = yield* d.rpc("tool.invoke", { pid, tool: a.name, arguments: a.arguments })
          assert.notInclude(JSON.stringify(inv), "s3cret")
          // a refused call is the model-facing ToolError, not a result
          assert.isTrue(inv.error !== undefined || inv.result?.result?._tag === "ToolError", JSON.stringify(inv))
        }
        assert.strictEqual(fs.readFileSync(secret, "utf8"), "s3cret")
        assert.isFalse(fs.existsSync(path.join(root, "evil.txt")))
      })
    )
  )

  it.live("arguments as a JSON string are confined exactly as an object is", () =>
    bounded(
      Effect.gen(function* () {
        const root = tmp()
        const allowed = path.join(root, "allowed")
        fs.mkdirSync(allowed)
        fs.writeFileSync(path.join(root, "secret.txt"), "s3cret")
        fs.writeFileSync(path.join(allowed, "ok.txt"), "fine")
        const asString = (args: unknown) => JSON.stringify(args) as unknown as Record<string, unknown>
        const d = yield* daemon([
          {
            toolCalls: [
              { name: "file_read", arguments: asString({ path: `${allowed}/../secret.txt` }) },
              { name: "file_read", arguments: asString({ path: `${allowed}/ok.txt` }) }
            ]
          },
          { text: "done" }
        ])
        const r = yield* d.rpc("agent.spawn_and_run", {
          manifest: `name: m\ncapabilities: ["file_read: ${allowed}/*"]`,
          message: "read"
        })
        const seen = JSON.stringify(r) + JSON.stringify(d.llm.requests.map((q) => q.messages))
        assert.notInclude(seen, "s3cret")
        // via the API: a string argument is refused or confined, never read outside
        const { pid } = (ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>)[0]!
        const inv = yield* d.rpc("tool.invoke", {
          pid,
          tool: "file_read",
          arguments: JSON.stringify({ path: `${root}/secret.txt` })
        })
        assert.notInclude(JSON.stringify(inv), "s3cret")
      })
    )
  )

  it.live(
    "file_write with approval: a getter-laden argument shows and writes the same path; huge content is refused before approval",
    () =>
      bounded(
        Effect.gen(function* () {
          const dir = tmp()
          const shown = path.join(dir, "shown.txt")
          const other = path.join(dir, "other.txt")
          let reads = 0
          const tricky = {
            get path() {
              return reads++ < 1 ? shown : other
            },
            content: "hello",
            toJSON: undefined
          } as unknown as Record<string, unknown>
          const huge = { path: path.join(dir, "huge.txt"), content: "x".repeat(2 * 1024 * 1024) }
          const d = yield* daemon([
            { toolCalls: [{ name: "file_write", arguments: tricky }] },
            { toolCalls: [{ name: "file_write", arguments: huge }] },
            { text: "done" }
          ])
          const run = yield* Effect.forkChild(
            d.rpc("agent.spawn_and_run", {
              manifest: lines(["name: w", `capabilities: ["file_write: ${dir}/*"]`, "approval_required: [file_write]"]),
              message: "write"
            })
          )
          const [first] = yield* pendingApproval(d.rpc)
          const shownPath = (first!.arguments as { path: string }).path
          assert.isFalse(fs.existsSync(shown) || fs.existsSync(other), "nothing written before the approval")
          ok(yield* d.rpc("approval.respond", { id: first!.id, approve: true }))
          // the huge call is refused by the kernel before any approval: the turn fails, nothing is written
          const result = yield* Fiber.join(run)
          assert.strictEqual(reasonOf(result), "run-failed")
          assert.include(result.error!.message, "larger than")
          assert.isFalse(fs.existsSync(huge.path))
          assert.deepStrictEqual(ok(yield* d.rpc("approval.list")), [])
          // what was approved is exactly what was written: the path shown, never the other one
          assert.deepStrictEqual(
            [shown, other].filter((p) => fs.existsSync(p)),
            [shownPath]
          )
        }),
        20_000
      )
  )

  it.live("a model calling tools forever is ended by tool_calls: exited with Quota", () =>
    bounded(
      Effect.gen(function* () {
        const script: Array<Step> = Array.from({ length: 200 }, (_, i) => ({
          toolCalls: [{ name: "echo", arguments: { text: `loop ${i}` } }]
        }))
        const d = yield* daemon(script)
        const r = yield* d.rpc("agent.spawn_and_run", {
          manifest: 'name: loop\ncapabilities: ["tool: echo"]\nbudget: { tool_calls: 3 }',
          message: "loop"
        })
        assert.strictEqual(reasonOf(r), "run-failed")
        const { pid } = (ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>)[0]!
        const s = yield* exited(d.rpc, pid)
        assert.deepStrictEqual(s.exit, { _tag: "Quota", resource: "toolCalls" })
        assert.isAtMost(d.llm.requests.length, 5)
      })
    )
  )

  it.live("a model that exceeds its tokens is ended with Quota tokens", () =>
    bounded(
      Effect.gen(function* () {
        const script: Array<Step> = Array.from({ length: 50 }, (_, i) => ({
          toolCalls: [{ name: "echo", arguments: { text: `t ${i}` } }],
          usage: { inputTokens: 400, outputTokens: 400 }
        }))
        const d = yield* daemon(script)
        const r = yield* d.rpc("agent.spawn_and_run", {
          manifest: 'name: talker\ncapabilities: ["tool: echo"]\nbudget: { tokens: 1000 }',
          message: "talk"
        })
        assert.strictEqual(reasonOf(r), "run-failed")
        const { pid } = (ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>)[0]!
        const s = yield* exited(d.rpc, pid)
        assert.deepStrictEqual(s.exit, { _tag: "Quota", resource: "tokens" })
        assert.isAtMost(d.llm.requests.length, 3)
      })
    )
  )
})

// -----------------------------------------------------------------------------------------------------------------
// (a) a hostile operator client
// -----------------------------------------------------------------------------------------------------------------

describe("hostile operator", () => {
  it.live("tool.invoke on behalf of init, of an agent's conversation, of pids that are no agent: refused", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([])
        const { pid } = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", { manifest: 'name: a\ncapabilities: ["tool: echo"]' })
        )
        const conversation = yield* conversationOf(d.rpc, pid)
        for (const target of [d.initPid, conversation, 999, 2 ** 31]) {
          const r = yield* d.rpc("tool.invoke", { pid: target, tool: "echo", arguments: { text: "x" } })
          assert.strictEqual(reasonOf(r), "unknown-agent", `pid ${target}`)
        }
        for (const bad of [0, -1, 1.5, "2", null, 1e400]) {
          const r = yield* d.rpc("tool.invoke", { pid: bad, tool: "echo", arguments: { text: "x" } })
          assert.strictEqual(r.error?.code, -32602, `pid ${JSON.stringify(bad)}: ${JSON.stringify(r)}`)
        }
        assert.deepStrictEqual(ok(yield* d.rpc("tool.invoke", { pid, tool: "echo", arguments: { text: "x" } })), {
          result: "x"
        })
      })
    )
  )

  it.live(
    "kernel.kill / suspend / resume of init or of an agent's conversation are not-allowed; both keep running",
    () =>
      bounded(
        Effect.gen(function* () {
          const d = yield* daemon([{ text: "still here" }])
          const { pid } = ok<{ pid: number }>(yield* d.rpc("agent.spawn", { manifest: "name: a" }))
          const conversation = yield* conversationOf(d.rpc, pid)
          for (const method of ["kernel.kill", "kernel.suspend", "kernel.resume"]) {
            for (const target of [d.initPid, conversation, 12345]) {
              assert.strictEqual(reasonOf(yield* d.rpc(method, { pid: target })), "not-allowed", `${method} ${target}`)
            }
            assert.strictEqual(reasonOf(yield* d.rpc("agent.stop", { pid: d.initPid })), "unknown-agent")
            assert.strictEqual(reasonOf(yield* d.rpc("agent.stop", { pid: conversation })), "unknown-agent")
          }
          const ps = ok<ReadonlyArray<AgentdApi.ProcessRow>>(yield* d.rpc("kernel.ps"))
          assert.strictEqual(ps.find((p) => p.pid === d.initPid)?.status, "running")
          assert.strictEqual(ps.find((p) => p.pid === conversation)?.status, "running")
          assert.strictEqual(ok(yield* d.rpc("agent.run", { pid, message: "hi" })).answer, "still here")
        })
      )
  )

  it.live("approval.respond with ids of other forms answers nothing; the real request still waits", () =>
    bounded(
      Effect.gen(function* () {
        const dir = tmp()
        const target = path.join(dir, "out.txt")
        const d = yield* daemon([
          { toolCalls: [{ name: "file_write", arguments: { path: target, content: "hello" } }] },
          { text: "done" }
        ])
        const run = yield* Effect.forkChild(
          d.rpc("agent.spawn_and_run", {
            manifest: lines(["name: w", `capabilities: ["file_write: ${dir}/*"]`, "approval_required: [file_write]"]),
            message: "write"
          })
        )
        const [pending] = yield* pendingApproval(d.rpc)
        const [p, op] = pending!.id.split(":")
        for (const id of [
          "1:1",
          "",
          "__proto__",
          "constructor",
          "toString",
          "hasOwnProperty",
          `${p}:${Number(op) + 1}`,
          `${Number(p) + 1}:${op}`,
          ` ${pending!.id}`,
          `${pending!.id} `,
          pending!.id.toUpperCase() === pending!.id ? `${pending!.id}0` : pending!.id.toUpperCase(),
          "x".repeat(100_000)
        ]) {
          if (id === pending!.id) continue
          const r = yield* d.rpc("approval.respond", { id, approve: true })
          assert.strictEqual(reasonOf(r), "unknown-approval", JSON.stringify(id).slice(0, 40))
        }
        for (const bad of [1, null, { id: pending!.id }, [pending!.id]]) {
          const r = yield* d.rpc("approval.respond", { id: bad, approve: true })
          assert.strictEqual(r.error?.code, -32602)
        }
        const r = yield* d.rpc("approval.respond", { id: pending!.id, approve: "yes" })
        assert.strictEqual(r.error?.code, -32602)
        assert.isFalse(fs.existsSync(target))
        const still = ok<ReadonlyArray<AgentdApi.ApprovalInfo>>(yield* d.rpc("approval.list"))
        assert.deepStrictEqual(
          still.map((a) => a.id),
          [pending!.id]
        )
        ok(yield* d.rpc("approval.respond", { id: pending!.id, approve: false, reason: "no" }))
        ok(yield* Fiber.join(run))
        assert.isFalse(fs.existsSync(target))
      })
    )
  )

  it.live("a denied tool.invoke reads a ToolError naming the operator and the reason", () =>
    bounded(
      Effect.gen(function* () {
        const dir = tmp()
        const target = path.join(dir, "out.txt")
        const d = yield* daemon([])
        const { pid } = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", {
            manifest: lines(["name: w", `capabilities: ["file_write: ${dir}/*"]`, "approval_required: [file_write]"])
          })
        )
        const inv = yield* Effect.forkChild(
          d.rpc("tool.invoke", { pid, tool: "file_write", arguments: { path: target, content: "x" } })
        )
        const [pending] = yield* pendingApproval(d.rpc)
        assert.strictEqual(pending!.pid > 0, true)
        assert.strictEqual((yield* statusOf(d.rpc, pid)).status, "waiting-approval")
        ok(yield* d.rpc("approval.respond", { id: pending!.id, approve: false, reason: "never in prod" }))
        const r = JSON.stringify(yield* Fiber.join(inv))
        assert.include(r, "denied")
        assert.include(r, "tester")
        assert.include(r, "never in prod")
        assert.isFalse(fs.existsSync(target))
      })
    )
  )

  it.live("agent.run on a busy agent is `busy`; the first run is unaffected", () =>
    bounded(
      Effect.gen(function* () {
        const dir = tmp()
        const d = yield* daemon([
          { toolCalls: [{ name: "file_write", arguments: { path: path.join(dir, "a"), content: "1" } }] },
          { text: "first" },
          { text: "third" }
        ])
        const { pid } = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", {
            manifest: lines(["name: w", `capabilities: ["file_write: ${dir}/*"]`, "approval_required: [file_write]"])
          })
        )
        const first = yield* Effect.forkChild(d.rpc("agent.run", { pid, message: "one" }))
        const [pending] = yield* pendingApproval(d.rpc)
        const concurrent = yield* Effect.all(
          Array.from({ length: 5 }, () => d.rpc("agent.run", { pid, message: "two" })),
          { concurrency: "unbounded" }
        )
        for (const r of concurrent) assert.strictEqual(reasonOf(r), "busy")
        ok(yield* d.rpc("approval.respond", { id: pending!.id, approve: true }))
        assert.strictEqual(ok(yield* Fiber.join(first)).answer, "first")
        assert.strictEqual(ok(yield* d.rpc("agent.run", { pid, message: "three" })).answer, "third")
      })
    )
  )

  it.live("concurrent spawn_and_run of many agents: distinct pids, every one answered", () =>
    bounded(
      Effect.gen(function* () {
        const n = 30
        const d = yield* daemon(Array.from({ length: n }, (_, i) => ({ text: `answer ${i}` })))
        const results = yield* Effect.all(
          Array.from({ length: n }, (_, i) =>
            d.rpc("agent.spawn_and_run", { manifest: `name: agent-${i}\nbudget: { tokens: 100000 }`, message: "hi" })
          ),
          { concurrency: "unbounded" }
        )
        const pids = results.map((r) => ok<{ pid: number }>(r).pid)
        assert.strictEqual(new Set(pids).size, n)
        assert.strictEqual(new Set(results.map((r) => r.result.answer)).size, n)
        const list = ok<ReadonlyArray<AgentdApi.AgentInfo>>(yield* d.rpc("agent.list"))
        assert.strictEqual(list.length, n)
        assert.isFalse(pids.includes(d.initPid))
      }),
      20_000
    )
  )

  it.live("agent.stop twice, and run / invoke / signal after stop: not-running, nothing restarts it", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([{ text: "never" }])
        const { pid } = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", { manifest: 'name: a\ncapabilities: ["tool: echo"]\nrestart: permanent' })
        )
        ok(yield* d.rpc("agent.stop", { pid }))
        yield* exited(d.rpc, pid)
        yield* Effect.sleep("20 millis")
        assert.strictEqual(reasonOf(yield* d.rpc("agent.stop", { pid })), "not-running")
        assert.strictEqual(reasonOf(yield* d.rpc("agent.run", { pid, message: "hi" })), "not-running")
        assert.strictEqual(
          reasonOf(yield* d.rpc("tool.invoke", { pid, tool: "echo", arguments: { text: "x" } })),
          "not-running"
        )
        for (const method of ["kernel.kill", "kernel.suspend", "kernel.resume"]) {
          assert.strictEqual(reasonOf(yield* d.rpc(method, { pid })), "not-running", method)
        }
        // stopped by the operator: a permanent agent is not restarted
        const list = ok<ReadonlyArray<AgentdApi.AgentInfo>>(yield* d.rpc("agent.list"))
        assert.deepStrictEqual(
          list.map((a) => [a.pid, a.status]),
          [[pid, "exited"]]
        )
        assert.strictEqual(d.llm.requests.length, 0)
      })
    )
  )

  it.live("an immediate second stop, racing the first, is refused typed and ends nothing else", () =>
    bounded(
      Effect.gen(function* () {
        const d = yield* daemon([{ text: "b answers" }])
        const a = ok<{ pid: number }>(yield* d.rpc("agent.spawn", { manifest: "name: a" }))
        const b = ok<{ pid: number }>(yield* d.rpc("agent.spawn", { manifest: "name: b" }))
        const [one, two] = yield* Effect.all(
          [d.rpc("agent.stop", { pid: a.pid }), d.rpc("agent.stop", { pid: a.pid })],
          {
            concurrency: "unbounded"
          }
        )
        ok(one)
        assert.include(["not-running"], two.error === undefined ? "not-running" : reasonOf(two))
        yield* exited(d.rpc, a.pid)
        assert.strictEqual(ok(yield* d.rpc("agent.run", { pid: b.pid, message: "hi" })).answer, "b answers")
      })
    )
  )
})

// -----------------------------------------------------------------------------------------------------------------
// restart and recovery
// -----------------------------------------------------------------------------------------------------------------

describe("restart", () => {
  it.live("a transient agent that crashes is restarted at most 3 times in 60 s, then left ended", () =>
    bounded(
      Effect.gen(function* () {
        // every model call costs more than the budget: each run ends the agent with Quota (abnormal)
        const d = yield* daemon(
          Array.from({ length: 20 }, () => ({ text: "x", usage: { inputTokens: 50, outputTokens: 50 } }))
        )
        const first = ok<{ pid: number }>(
          yield* d.rpc("agent.spawn", { manifest: "name: crashy\nrestart: transient\nbudget: { tokens: 10 }" })
        )
        const pids = [first.pid]
        for (let crash = 0; crash < 6; crash++) {
          const current = pids[pids.length - 1]!
          const r = yield* d.rpc("agent.run", { pid: current, message: "crash" })
          assert.strictEqual(reasonOf(r), "run-failed")
          yield* exited(d.rpc, current)
          // a restart, if any, shows as a new running agent of the same name
          const next = yield* Effect.gen(function* () {
            for (let i = 0; i < 40; i++) {
              const list = ok<ReadonlyArray<AgentdApi.AgentInfo>>(yield* d.rpc("agent.list"))
              const fresh = list.find((a) => a.name === "crashy" && a.status === "running")
              if (fresh !== undefined) return fresh.pid
              yield* Effect.sleep("5 millis")
            }
            return undefined
          })
          if (next === undefined) break
          assert.isFalse(pids.includes(next))
          pids.push(next)
        }
        assert.strictEqual(pids.length, 4, `pids: ${pids}`)
        const list = ok<ReadonlyArray<AgentdApi.AgentInfo>>(yield* d.rpc("agent.list"))
        assert.isTrue(list.every((a) => a.status === "exited"))
        for (const a of list) assert.strictEqual((a.exit as { _tag: string })._tag, "Quota")
      }),
      20_000
    )
  )
})
