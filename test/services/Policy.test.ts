/**
 * Policies enforced by the kernel at the membrane — the Agent OS README scenario for real: a SQL tool over a real
 * SQLite database (`node:sqlite`), an agent asked by its model to `DROP TABLE users`. Each decision beside the run
 * without the policy (so the test can fail), fail closed, results screened, inheritance that only tightens, and a
 * process that patches built-ins or forges a policy set.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { DatabaseSync } from "node:sqlite"
import { Kernel, Policy, Process, ReactAgent, Sys, Tools } from "effect-agent-os"
import { ScriptedLlm } from "effect-agent-os/testing"

const Sql = Tool.make("sql", {
  description: "Runs one SQL statement.",
  parameters: Schema.Struct({ statement: Schema.String }),
  success: Schema.Unknown
})
const toolkit = Toolkit.make(Sql)

/** A database with a `users` table of three rows, and a tools device running statements on it. */
const database = () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "policy-"))
  const file = path.join(dir, "app.db")
  const db = new DatabaseSync(file)
  db.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('a'), ('b'), ('c')")
  const statements: Array<string> = []
  const users = () => {
    const check = new DatabaseSync(file)
    try {
      const table = check.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'users'").all()
      return table.length === 0
        ? undefined
        : (check.prepare("SELECT COUNT(*) AS n FROM users").get() as { n: number }).n
    } finally {
      check.close()
    }
  }
  return { db, statements, users }
}

const sqlTools = (db: DatabaseSync, statements: Array<string>) =>
  Tools.make(toolkit, {
    sql: ({ statement }) =>
      Effect.sync(() => {
        statements.push(statement)
        if (/^\s*select/i.test(statement)) return db.prepare(statement).all()
        db.exec(statement)
        return "ok"
      })
  })

const readOnly = `
- name: read-only
  match:
    tool: sql
    arguments:
      statement: { regex: "(?i)\\\\b(drop|delete|truncate|alter|update|insert)\\\\b" }
  decision: kill
- name: rest
  decision: allow
`

/** Runs a ReactAgent (caps llm, tools, reply) under `policies` (given at boot, so its whole tree inherits them). */
const runAgent = (
  script: ReadonlyArray<ScriptedLlm.Step>,
  policies: ReadonlyArray<Policy.PolicySet> | undefined,
  options: { readonly respond?: boolean | undefined } = {}
) =>
  Effect.gen(function* () {
    const { db, statements, users } = database()
    const llm = ScriptedLlm.make(script)
    const tools = yield* sqlTools(db, statements)
    const result = yield* Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const root = Process.make<Kernel.BootGrant>("root", (grant) =>
        Effect.gen(function* () {
          const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const { cap, pid } = yield* Sys.spawn(ReactAgent.make({ tools: Tools.definitions(toolkit) }), {
            args: { task: "clean up the database" },
            caps: [grant.devices.llm!, grant.devices.tools!, replyTo]
          })
          yield* Sys.monitor(cap)
          const replies: Array<unknown> = []
          while (true) {
            const message = yield* Sys.recv()
            if (!Process.isKernelMessage(message)) replies.push(message.body)
            else if (message.body._tag === "Down" && message.body.pid === pid) {
              yield* Sys.log("info", JSON.stringify({ replies, reason: message.body.reason }))
              return
            }
          }
        })
      )
      const pid = yield* kernel.boot(root, { grant: ["llm", "tools"], ...(policies === undefined ? {} : { policies }) })
      if (options.respond !== undefined) {
        for (let i = 0; i < 400; i++) {
          const pending = yield* kernel.approvals()
          if (pending.length > 0) {
            yield* kernel.respond(pending[0]!.id, { approve: options.respond, by: "tester", reason: "checked" })
            break
          }
          yield* Effect.sleep("5 millis")
        }
      }
      yield* kernel.waitExit(pid)
      const trace = yield* kernel.trace()
      const log = trace.find((e) => e._tag === "Log") as { message: string }
      return { ...(JSON.parse(log.message) as { replies: Array<any>; reason: Process.ExitReason }), trace }
    }).pipe(Effect.provide(Kernel.layer({ drivers: [llm, tools] })))
    db.close()
    return { ...result, statements, users: users(), llm }
  })

const drop: ScriptedLlm.Step = { toolCalls: [{ name: "sql", arguments: { statement: "DROP TABLE users" } }] }

describe("Policy", () => {
  it.live(
    "the README scenario: under read-only, DROP TABLE never reaches the database and the agent ends with Policy",
    () =>
      Effect.gen(function* () {
        const policy = yield* Policy.decode(readOnly)
        const guarded = yield* runAgent([drop, { text: "dropped" }], [policy])
        assert.deepStrictEqual(guarded.reason, Process.policy("read-only"))
        assert.deepStrictEqual(guarded.statements, [], "the statement never reached the database")
        assert.strictEqual(guarded.users, 3, "the table and its rows are still there")
        const event = guarded.trace.find((e) => e._tag === "Policy") as any
        assert.deepInclude(event, { rule: "read-only", decision: "kill", device: "tools", tool: "sql", on: "call" })
        // the same agent without the policy drops the table
        const open = yield* runAgent([drop, { text: "dropped" }], undefined)
        assert.deepStrictEqual(open.reason, Process.normal)
        assert.deepStrictEqual(open.statements, ["DROP TABLE users"])
        assert.isUndefined(open.users, "the table is gone")
      })
  )

  it.live("deny: the tool call reads back a denial naming the rule, the agent goes on; a SELECT passes", () =>
    Effect.gen(function* () {
      const policy = yield* Policy.decode(readOnly.replace("decision: kill", "decision: deny"))
      const run = yield* runAgent(
        [drop, { toolCalls: [{ name: "sql", arguments: { statement: "SELECT name FROM users" } }] }, { text: "kept" }],
        [policy]
      )
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.strictEqual(run.replies[0].answer, "kept")
      assert.deepStrictEqual(run.statements, ["SELECT name FROM users"])
      assert.strictEqual(run.users, 3)
      const denied = JSON.stringify(run.llm.requests[1]!.messages.filter((m) => m.role === "tool"))
      assert.include(denied, "denied")
      assert.include(denied, "policy:read-only")
      assert.isTrue(run.trace.some((e) => e._tag === "Policy" && (e as any).decision === "deny"))
    })
  )

  it.live("fail closed: a call no rule matches is denied (default-deny); so is every call of an empty set", () =>
    Effect.gen(function* () {
      const selects = yield* Policy.decode(`
- name: model
  match: { device: llm }
  decision: allow
- name: selects
  match: { tool: sql, arguments: { statement: { regex: "(?i)^\\\\s*select\\\\b" } } }
  decision: allow
`)
      const run = yield* runAgent([drop, { text: "nothing" }], [selects])
      assert.deepStrictEqual(run.reason, Process.normal)
      assert.deepStrictEqual(run.statements, [])
      assert.strictEqual(run.users, 3)
      assert.isTrue(run.trace.some((e) => e._tag === "Policy" && (e as any).rule === "default-deny"))
      // an empty set allows nothing: not even the model call
      const none = yield* runAgent([drop], [yield* Policy.make([])])
      assert.strictEqual(none.llm.requests.length, 0, "the model was never called")
      assert.strictEqual(none.users, 3)
    })
  )

  it.live("approve: the call waits for an answer; approved it runs, denied it reads the denial", () =>
    Effect.gen(function* () {
      const policy = yield* Policy.decode(readOnly.replace("decision: kill", "decision: approve"))
      const approved = yield* runAgent([drop, { text: "dropped" }], [policy], { respond: true })
      assert.deepStrictEqual(approved.statements, ["DROP TABLE users"])
      assert.isUndefined(approved.users)
      const denied = yield* runAgent([drop, { text: "kept" }], [policy], { respond: false })
      assert.deepStrictEqual(denied.statements, [])
      assert.strictEqual(denied.users, 3)
      assert.include(JSON.stringify(denied.llm.requests[1]!.messages), "tester")
    })
  )

  it.live("results: a model reply matching a result rule never reaches the agent, which ends with Policy", () =>
    Effect.gen(function* () {
      const policy = yield* Policy.decode(`
- name: no-leak
  match: { device: llm, result: { regex: "SECRET-[0-9]+" } }
  decision: kill
- name: rest
  decision: allow
`)
      const run = yield* runAgent([{ text: "the key is SECRET-42" }], [policy])
      assert.deepStrictEqual(run.reason, Process.policy("no-leak"))
      assert.deepStrictEqual(run.replies, [], "no answer carried the reply")
      assert.isTrue(run.trace.some((e) => e._tag === "Policy" && (e as any).on === "result"))
      const clean = yield* runAgent([{ text: "nothing to hide" }], [policy])
      assert.deepStrictEqual(clean.reason, Process.normal)
    })
  )

  it.effect("a policy text: every problem at once with its path; unknown fields and bad regexes refused", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        Policy.decode(`
- name: a
  match: { tool: sql, colour: red, arguments: { q: { regex: "(" } } }
  decision: allow
- name: ""
  decision: maybe
- name: c
  match: { result: { glob: "*" } }
  decision: approve
`)
      )
      assert.isTrue(Exit.isFailure(exit))
      const error = (exit as any).cause.reasons[0].error as Policy.PolicyError
      const paths = error.problems.map((p) => p.path).sort()
      assert.includeMembers(paths, ["[0].match.colour", "[1].name", "[1].decision"])
      const regex = yield* Effect.exit(
        Policy.decode(`[{ "name": "a", "match": { "arguments": { "q": { "regex": "(" } } }, "decision": "deny" }]`)
      )
      assert.strictEqual((regex as any).cause.reasons[0].error.problems[0].path, "[0].match.arguments.q.regex")
      const approveOnResult = yield* Effect.exit(
        Policy.decode(`[{ "name": "c", "match": { "result": { "glob": "*" } }, "decision": "approve" }]`)
      )
      assert.strictEqual((approveOnResult as any).cause.reasons[0].error.problems[0].path, "[0].decision")
      assert.isTrue(Exit.isFailure(yield* Effect.exit(Policy.decode("- [unclosed"))))
    })
  )

  it.live("inherited and only tightened: a child given a permissive set is still bound; a forged set is refused", () =>
    Effect.gen(function* () {
      const { db, statements, users } = database()
      const tools = yield* sqlTools(db, statements)
      const strict = yield* Policy.decode(readOnly)
      const permissive = yield* Policy.decode("- { name: anything, decision: allow }")
      const outcome = yield* Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const child = Process.make<void>("child", () =>
          Effect.gen(function* () {
            const [cap] = yield* Sys.caps()
            const handle = yield* Sys.open(cap!)
            yield* Sys.read(handle, { tool: "sql", input: { statement: "DELETE FROM users" } })
          })
        )
        const root = Process.make<Kernel.BootGrant>("root", (grant) =>
          Effect.gen(function* () {
            const forged = yield* Effect.exit(
              Sys.spawn(child, { policies: [{ _tag: "PolicySet", rules: [] } as unknown as Policy.PolicySet] })
            )
            assert.isTrue(Exit.isFailure(forged), "a look-alike policy set is refused")
            const { cap } = yield* Sys.spawn(child, {
              caps: [yield* Sys.derive(grant.devices.tools!, ["open"])],
              policies: permissive
            })
            yield* Sys.monitor(cap)
            const down = yield* Sys.recv()
            yield* Sys.log("info", JSON.stringify((down.body as any).reason))
          })
        )
        const pid = yield* kernel.boot(root, { grant: ["tools"], policies: strict })
        yield* kernel.waitExit(pid)
        const log = (yield* kernel.trace()).find((e) => e._tag === "Log") as { message: string }
        return JSON.parse(log.message)
      }).pipe(Effect.provide(Kernel.layer({ drivers: [tools] })))
      db.close()
      assert.deepStrictEqual(outcome, Process.policy("read-only"))
      assert.deepStrictEqual(statements, [])
      assert.strictEqual(users(), 3)
    })
  )

  it.live("a process that patches RegExp.prototype.exec and JSON.parse is judged all the same", () =>
    Effect.gen(function* () {
      const { db, statements, users } = database()
      const tools = yield* sqlTools(db, statements)
      const strict = yield* Policy.decode(readOnly)
      const reason = yield* Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const root = Process.make<Kernel.BootGrant>("root", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.tools!)
            const exec = RegExp.prototype.exec
            const parse = JSON.parse
            RegExp.prototype.exec = () => null
            JSON.parse = () => ({ statement: "SELECT 1" })
            try {
              yield* Sys.read(handle, { tool: "sql", arguments: '{"statement":"DROP TABLE users"}' })
            } finally {
              RegExp.prototype.exec = exec
              JSON.parse = parse
            }
          })
        )
        const pid = yield* kernel.boot(root, { grant: ["tools"], policies: strict })
        return yield* kernel.waitExit(pid)
      }).pipe(Effect.provide(Kernel.layer({ drivers: [tools] })))
      db.close()
      assert.deepStrictEqual(reason, Process.policy("read-only"))
      assert.deepStrictEqual(statements, [])
      assert.strictEqual(users(), 3)
    })
  )
})
