#!/usr/bin/env node
/**
 * `agentctl`: the operator's command line for `agentd`, over its Unix socket (`--socket`, default
 * `$AGENTD_SOCKET` or `.agentos/agentd.sock`).
 *
 * ```sh
 * agentctl ps | spawn FILE | run FILE MESSAGE | stop PID | kill PID | suspend PID | resume PID
 * agentctl trace [-f] [--pid N] [--tree] [--since SEQ] | approvals | approve ID | deny ID [--reason TEXT]
 * agentctl validate FILE | replay JOURNAL | mcp FILE...
 * ```
 *
 * `--timeout SECONDS` bounds the wait for the daemon's answer (default 30; `run` and `trace -f` unbounded unless it
 * is given; 0: no limit). `--json` prints data as JSON (one document, or one event per line for `trace`). A failure prints
 * `agentctl: <what went wrong>` on stderr (a manifest's every problem with its path) and exits with status 1.
 *
 * @since 0.1.0
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, Fiber, Option, Stream } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as Client from "../daemon/Client.ts"
import * as Manifest from "../daemon/Manifest.ts"
import * as Replay from "../daemon/Replay.ts"

const version = "0.1.0"

/** A failure already worded for the operator. */
class Failed {
  readonly message: string
  constructor(message: string) {
    this.message = message
  }
}

const defaultSocket = process.env.AGENTD_SOCKET ?? ".agentos/agentd.sock"

/** Seconds a one-shot request waits for the daemon's answer when `--timeout` is not given. */
const defaultTimeoutSeconds = 30

const root = Command.make("agentctl").pipe(
  Command.withSharedFlags({
    socket: Flag.String("socket").pipe(
      Flag.withDefault(defaultSocket),
      Flag.withDescription("agentd's socket (default $AGENTD_SOCKET or .agentos/agentd.sock)")
    ),
    json: Flag.Boolean("json").pipe(Flag.withDefault(false), Flag.withDescription("print data as JSON")),
    timeout: Flag.String("timeout").pipe(
      Flag.optional,
      Flag.withDescription(
        `seconds to wait for the daemon's answer (default ${defaultTimeoutSeconds}; run and trace -f wait as long ` +
          "as it takes unless given; 0: no limit)"
      )
    )
  }),
  Command.withDescription("operate an effect-agent-os daemon (agentd)")
)

/** The shared flags and a client on the socket. */
const context = Effect.map(root, ({ socket, json, timeout }) => ({ json, timeout, client: Client.make({ socket }) }))

/**
 * Bounds a request by `--timeout`: a daemon that never answers is an error, not a hang. `waits` (run, trace -f):
 * unbounded unless the flag is given.
 */
const bounded = <A, R>(
  timeout: Option.Option<string>,
  waits: boolean,
  effect: Effect.Effect<A, Failed, R>
): Effect.Effect<A, Failed, R> => {
  // plain decimal seconds only: "1e-400" would read as 0, which is "no limit"
  const text = Option.getOrUndefined(timeout)
  if (text !== undefined && !/^\d{1,9}(\.\d{1,9})?$/.test(text)) {
    return Effect.fail(
      new Failed(`--timeout must be seconds (e.g. 30 or 2.5; 0 for no limit), not ${JSON.stringify(text)}`)
    )
  }
  const seconds = text !== undefined ? Number(text) : waits ? 0 : defaultTimeoutSeconds
  if (seconds === 0) return effect
  return effect.pipe(
    Effect.timeoutOrElse({
      duration: Math.ceil(seconds * 1000),
      orElse: () => Effect.fail(new Failed(`agentd did not answer within ${seconds} s (--timeout)`))
    })
  )
}

const describeProblems = (data: unknown): Array<string> => {
  const problems = (data as { readonly problems?: ReadonlyArray<{ path?: unknown; message?: unknown }> })?.problems
  if (!Array.isArray(problems)) return []
  return problems.map(
    (p) => `  ${typeof p.path === "string" && p.path !== "" ? p.path : "(root)"}: ${String(p.message)}`
  )
}

/** The operator's words for a failed call. */
const wording = (error: Client.ClientError): string => {
  if (error.reason !== "rpc") return error.message
  const reason = (error.data as { readonly reason?: unknown })?.reason
  const lines = [typeof reason === "string" ? `${error.message} (${reason})` : error.message]
  lines.push(...describeProblems(error.data))
  return lines.join("\n")
}

const call = (method: string, params?: Record<string, unknown>) =>
  Effect.flatMap(context, ({ client, timeout }) =>
    bounded(
      timeout,
      method === "agent.run",
      client.call(method, params).pipe(Effect.mapError((error) => new Failed(wording(error))))
    )
  )

const print = (json: boolean, data: unknown, human: () => string) =>
  Console.log(json ? JSON.stringify(data, null, 2) : human())

const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<unknown>>): string => {
  const cells = [header, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? "-" : String(c))))]
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)))
  return cells
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join("  ")
        .trimEnd()
    )
    .join("\n")
}

interface Budget {
  readonly limits: Record<string, number | null>
  readonly used: Record<string, number>
}
const spent = (b: Budget | null | undefined, key: string) =>
  b === null || b === undefined ? "-" : b.limits[key] === null ? `${b.used[key]}` : `${b.used[key]}/${b.limits[key]}`

const pidArgument = Argument.Int("pid").pipe(Argument.withDescription("the agent's pid"))

const readFile = (file: string) =>
  Effect.tryPromise({
    try: () => import("node:fs/promises").then((fs) => fs.readFile(file, "utf8")),
    catch: (error) => new Failed(`cannot read ${file}: ${(error as Error).message}`)
  })

// ---- commands ----------------------------------------------------------------------------------------------------

const ps = Command.make("ps", {}, () =>
  Effect.gen(function* () {
    const { json } = yield* context
    const rows = (yield* call("kernel.ps")) as ReadonlyArray<{
      pid: number
      name: string
      parent: number
      status: string
      caps: number
      budget: Budget
    }>
    yield* print(json, rows, () =>
      table(
        ["PID", "NAME", "PARENT", "STATUS", "TOKENS", "TOOL CALLS", "USD", "CAPS"],
        rows.map((r) => [
          r.pid,
          r.name,
          r.parent,
          r.status,
          spent(r.budget, "tokens"),
          spent(r.budget, "toolCalls"),
          spent(r.budget, "usd"),
          r.caps
        ])
      )
    )
  })
).pipe(Command.withDescription("list the kernel's processes"))

const spawn = Command.make(
  "spawn",
  { file: Argument.String("file").pipe(Argument.withDescription("the agent's manifest (YAML or JSON)")) },
  ({ file }) =>
    Effect.gen(function* () {
      const { json } = yield* context
      const spawned = (yield* call("agent.spawn", { manifest: yield* readFile(file) })) as { pid: number; name: string }
      yield* print(json, spawned, () => `${spawned.pid} ${spawned.name}`)
    })
).pipe(Command.withDescription("start an agent from a manifest; prints its pid"))

/** Progress lines on stderr from the agent's events (its own and its conversation's) until interrupted. */
const progress = (client: Client.Client, pid: number) => {
  let models = 0
  let tools = 0
  const spend = { tokens: 0, toolCalls: 0, usd: 0 }
  const say = (line: string) => Effect.sync(() => process.stderr.write(`agentctl: [${pid}] ${line}\n`))
  return client.stream("kernel.trace", { pid, tree: true, follow: true }).pipe(
    Stream.runForEach((item) => {
      const e = item as Record<string, unknown>
      if (e._tag === "Charge") {
        const tokens = Number(e.tokens) || 0
        const toolCalls = Number(e.toolCalls) || 0
        spend.tokens += tokens
        spend.toolCalls += toolCalls
        spend.usd += Number(e.usd) || 0
        if (tokens > 0) models++
        if (toolCalls > 0) tools++
        const what = toolCalls > 0 ? `tool call ${tools}` : `model call ${models}`
        return say(`${what} · spent ${spend.tokens} tokens, ${spend.toolCalls} tool calls, $${spend.usd.toFixed(4)}`)
      }
      if (e._tag === "Approval") {
        if (e.decision === "requested") {
          return say(`${String(e.tool)} waits for approval ${String(e.id)} (agentctl approve|deny ${String(e.id)})`)
        }
        return say(`${String(e.tool)} ${String(e.decision)}${e.by === undefined ? "" : ` by ${String(e.by)}`}`)
      }
      if (e._tag === "Denied") return say(`denied: ${String(e.call)}: ${String(e.error)}`)
      return Effect.void
    }),
    Effect.ignore
  )
}

const run = Command.make(
  "run",
  {
    file: Argument.String("file").pipe(Argument.withDescription("the agent's manifest (YAML or JSON)")),
    message: Argument.String("message").pipe(Argument.withDescription("what to ask the agent"))
  },
  ({ file, message }) =>
    Effect.gen(function* () {
      const { json, client } = yield* context
      const spawned = (yield* call("agent.spawn", { manifest: yield* readFile(file) })) as { pid: number; name: string }
      yield* Effect.sync(() => process.stderr.write(`agentctl: started ${spawned.name} as pid ${spawned.pid}\n`))
      const watcher = yield* Effect.forkChild(progress(client, spawned.pid))
      const answer = (yield* call("agent.run", { pid: spawned.pid, message }).pipe(
        Effect.ensuring(Fiber.interrupt(watcher))
      )) as { answer: string; steps: number; spend: { tokens: number; toolCalls: number; usd: number } }
      const result = { pid: spawned.pid, ...answer }
      if (json) return yield* print(true, result, () => "")
      yield* Effect.sync(() =>
        process.stderr.write(
          `agentctl: [${spawned.pid}] done in ${answer.steps} steps · ${answer.spend.tokens} tokens, ` +
            `${answer.spend.toolCalls} tool calls, $${answer.spend.usd.toFixed(4)}\n`
        )
      )
      yield* Console.log(answer.answer)
    })
).pipe(Command.withDescription("start an agent from a manifest and ask it one message; progress on stderr"))

const signal = (name: "stop" | "kill" | "suspend" | "resume", method: string, done: string, description: string) =>
  Command.make(name, { pid: pidArgument }, ({ pid }) =>
    Effect.gen(function* () {
      const { json } = yield* context
      const result = yield* call(method, { pid })
      yield* print(json, result, () => `${done} ${pid}`)
    })
  ).pipe(Command.withDescription(description))

const stop = signal("stop", "agent.stop", "stopped", "stop an agent (it ends with Shutdown; not restarted)")
const kill = signal("kill", "kernel.kill", "killed", "kill an agent (untrappable; not restarted)")
const suspend = signal("suspend", "kernel.suspend", "suspended", "suspend an agent")
const resume = signal("resume", "kernel.resume", "resumed", "resume a suspended agent")

const describeEvent = (e: Record<string, unknown>): string => {
  const { _tag, seq, at, pid, ...rest } = e
  const time = typeof at === "number" ? new Date(at).toISOString() : String(at)
  const details = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" ")
  return `${String(seq).padStart(6)} ${time} ${String(pid).padStart(4)} ${String(_tag).padEnd(8)} ${details}`
}

const trace = Command.make(
  "trace",
  {
    follow: Flag.Boolean("follow").pipe(
      Flag.withAlias("f"),
      Flag.withDefault(false),
      Flag.withDescription("go on printing new events")
    ),
    pid: Flag.Int("pid").pipe(Flag.optional, Flag.withDescription("only this process's events")),
    tree: Flag.Boolean("tree").pipe(Flag.withDefault(false), Flag.withDescription("with --pid, its descendants too")),
    since: Flag.Int("since").pipe(Flag.optional, Flag.withDescription("only events after this seq"))
  },
  ({ follow, pid, since, tree }) =>
    Effect.gen(function* () {
      const { json, client, timeout } = yield* context
      const params: Record<string, unknown> = { follow }
      if (Option.isSome(pid)) params.pid = pid.value
      if (Option.isSome(since)) params.since = since.value
      if (tree) params.tree = true
      yield* bounded(
        timeout,
        follow,
        client.stream("kernel.trace", params).pipe(
          Stream.runForEach((item) =>
            Console.log(json ? JSON.stringify(item) : describeEvent(item as Record<string, unknown>))
          ),
          Effect.mapError((error) => new Failed(wording(error)))
        )
      )
    })
).pipe(Command.withDescription("print the kernel's events (-f: and follow new ones)"))

const approvals = Command.make("approvals", {}, () =>
  Effect.gen(function* () {
    const { json } = yield* context
    const rows = (yield* call("approval.list")) as ReadonlyArray<{
      id: string
      pid: number
      agent: string
      tool: string
      arguments: unknown
      requestedAt: number
    }>
    yield* print(json, rows, () =>
      rows.length === 0
        ? "no approvals pending"
        : table(
            ["ID", "PID", "AGENT", "TOOL", "ARGUMENTS", "REQUESTED"],
            rows.map((r) => [
              r.id,
              r.pid,
              r.agent,
              r.tool,
              JSON.stringify(r.arguments),
              new Date(r.requestedAt).toISOString()
            ])
          )
    )
  })
).pipe(Command.withDescription("list the tool calls waiting for an operator's answer"))

const approve = Command.make("approve", { id: Argument.String("id") }, ({ id }) =>
  Effect.gen(function* () {
    const { json } = yield* context
    const result = yield* call("approval.respond", { id, approve: true })
    yield* print(json, result, () => `approved ${id}`)
  })
).pipe(Command.withDescription("let a waiting tool call run"))

const deny = Command.make(
  "deny",
  {
    id: Argument.String("id"),
    reason: Flag.String("reason").pipe(Flag.optional, Flag.withDescription("why (the agent reads it)"))
  },
  ({ id, reason }) =>
    Effect.gen(function* () {
      const { json } = yield* context
      const result = yield* call("approval.respond", {
        id,
        approve: false,
        ...(Option.isSome(reason) ? { reason: reason.value } : {})
      })
      yield* print(json, result, () => `denied ${id}`)
    })
).pipe(Command.withDescription("refuse a waiting tool call (it reads back a ToolError naming you and why)"))

const validate = Command.make("validate", { file: Argument.String("file") }, ({ file }) =>
  Effect.gen(function* () {
    const { json } = yield* Effect.map(root, ({ json }) => ({ json }))
    const text = yield* readFile(file)
    const decoded = yield* Effect.exit(Manifest.decode(text))
    if (decoded._tag === "Success") {
      const m = decoded.value
      return yield* print(json, { valid: true, manifest: m }, () => `${file}: valid (${m.name})`)
    }
    const error = decoded.cause.reasons.find((r) => r._tag === "Fail")?.error
    if (!(error instanceof Manifest.ManifestError)) return yield* Effect.die(decoded.cause)
    if (json) yield* print(true, { valid: false, problems: error.problems }, () => "")
    return yield* Effect.fail(new Failed([`${file}: invalid`, ...describeProblems(error)].join("\n")))
  })
).pipe(Command.withDescription("check a manifest without a daemon; every problem with its path"))

const replay = Command.make(
  "replay",
  {
    journal: Argument.String("journal").pipe(
      Argument.withDescription("an agentd journal (e.g. .agentos/journal.jsonl)")
    ),
    audit: Flag.String("audit").pipe(
      Flag.optional,
      Flag.withDescription("the audit directory to compare with (default: the journal's directory)")
    )
  },
  ({ journal, audit }) =>
    Effect.gen(function* () {
      const { json } = yield* Effect.map(root, ({ json }) => ({ json }))
      const report = yield* Replay.replay({
        journal,
        ...(Option.isSome(audit) ? { audit: audit.value } : {})
      }).pipe(Effect.mapError((error) => new Failed(error.message)))
      yield* print(json, report, () => Replay.describe(report))
      if (!report.identical) {
        return yield* Effect.fail(
          new Failed(
            report.recorded === null || report.auditGaps > 0
              ? "the replay could not be compared with a complete recording"
              : report.divergences.length > 0 || report.difference !== null
                ? "the replay is not identical to the recording"
                : report.unmatched.journal > 0 || report.unmatched.audit > 0
                  ? "the journal and the audit trail do not cover the same run (one of them was cut)"
                  : "the journal could not be verified (no integrity key): the replay does not vouch for it"
          )
        )
      }
    })
).pipe(Command.withDescription("replay an agentd journal offline (no model, no tool) and compare it with the audit"))

const mcp = Command.make(
  "mcp",
  {
    files: Argument.String("file").pipe(
      Argument.variadic({ min: 1 }),
      Argument.withDescription("agent manifests: each becomes a tool")
    )
  },
  ({ files }) =>
    Effect.gen(function* () {
      const { socket } = yield* root
      const manifests = yield* Effect.forEach(files, (file) =>
        Effect.map(readFile(file), (text) => ({ source: file, text }))
      )
      // loaded only here: the other commands do not need the MCP SDK
      const McpServe = yield* Effect.tryPromise({
        try: () => import("../daemon/McpServe.ts"),
        catch: (error) =>
          new Failed(`agentctl mcp needs @modelcontextprotocol/sdk installed: ${(error as Error).message}`)
      })
      yield* McpServe.serve({ socket, manifests }).pipe(Effect.mapError((error) => new Failed(error.message)))
    })
).pipe(
  Command.withDescription(
    "serve agents as MCP tools over stdio (each manifest a tool; a call runs the agent on agentd)"
  )
)

const app = root.pipe(
  Command.withSubcommands([
    ps,
    spawn,
    run,
    stop,
    kill,
    suspend,
    resume,
    trace,
    approvals,
    approve,
    deny,
    validate,
    replay,
    mcp
  ])
)

const main = Command.run(app, { version }).pipe(
  Effect.catch((error: unknown) =>
    Effect.andThen(
      Effect.sync(() => {
        if (error instanceof Failed) process.stderr.write(`agentctl: ${error.message}\n`)
      }),
      Effect.fail(error)
    )
  ),
  Effect.provide(NodeServices.layer)
)

NodeRuntime.runMain(main, { disableErrorReporting: true })
