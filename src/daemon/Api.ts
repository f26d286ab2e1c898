/**
 * The `agentd` API: one `effect/rpc` `RpcGroup`, served as JSON-RPC 2.0 (newline-delimited on a Unix socket, and
 * `POST /rpc` over HTTP on 127.0.0.1 with a bearer token). Method names are aaOS's, then the kernel's.
 *
 * | method | params | result |
 * |---|---|---|
 * | `agent.spawn` | `{ manifest }` (YAML or JSON text) | `{ pid, name }` |
 * | `agent.run` | `{ pid, message }` | `{ answer, steps, spend }` |
 * | `agent.spawn_and_run` | `{ manifest, message }` | `{ pid, answer, steps, spend }` |
 * | `agent.stop` | `{ pid }` | `{ pid }` |
 * | `agent.list` | — | `[{ pid, name, status, budget }]` |
 * | `agent.status` | `{ pid }` | `{ pid, name, status, budget }` |
 * | `tool.list` | — | `[{ name, description, parameters }]` (JSON Schema) |
 * | `tool.invoke` | `{ pid, tool, arguments }` | `{ result }` (on behalf of that agent: its caps, budget, approvals) |
 * | `approval.list` | — | `[{ id, pid, agent, tool, arguments, requestedAt }]` |
 * | `approval.respond` | `{ id, approve, reason? }` | `{ id, approved }` |
 * | `kernel.ps` | — | `[{ pid, name, parent, status, priority, children, mailbox, caps, startedAt, budget }]` |
 * | `kernel.kill`, `kernel.suspend`, `kernel.resume` | `{ pid }` | `{ pid }` |
 * | `kernel.trace` | `{ pid?, since?, follow?, tree? }` | a stream: the kernel events the ring still holds (of `pid`, and with `tree` of its descendants too; `seq` after `since`), oldest first, then with `follow` each new one as it comes |
 * | `kernel.metrics` | — | Prometheus text |
 *
 * Errors: a `ManifestError` (code `-32001`, every problem with its path in `data.problems`) or an `AgentdError`
 * (code `-32002`, `data.reason` one of `unknown-agent`, `not-running`, `busy`, `run-failed`, `unknown-tool`,
 * `unknown-approval`, `not-allowed`, `shutdown`).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { Rpc, RpcGroup } from "effect/rpc"
import { KernelEvent } from "../services/EventLog.ts"
import { ManifestError } from "./Manifest.ts"

/**
 * What went wrong with a daemon call that is not a manifest problem.
 *
 * - `unknown-agent`: no agent (or process) with that pid; `not-running`: it has ended;
 * - `busy`: the agent is answering another message (one `agent.run` at a time per agent);
 * - `run-failed`: the agent failed to answer (its error, or how it ended, in `message`);
 * - `unknown-tool`: `tool.invoke` of a tool the daemon does not have;
 * - `unknown-approval`: nothing waits under that id (answered, timed out, or its caller ended);
 * - `not-allowed`: a kernel signal to a process the daemon did not start;
 * - `shutdown`: the daemon is stopping.
 *
 * @category errors
 */
export class AgentdError extends Schema.TaggedError<AgentdError>()("AgentdError", {
  reason: Schema.Literals([
    "unknown-agent",
    "not-running",
    "busy",
    "run-failed",
    "unknown-tool",
    "unknown-approval",
    "not-allowed",
    "shutdown"
  ]),
  message: Schema.String
}) {}

/**
 * The JSON-RPC code of each application error.
 *
 * @category codes
 */
export const errorCodes = { ManifestError: -32001, AgentdError: -32002 } as const

const Pid = Schema.Int.check(Schema.isGreaterThan(0))

/** What a process has spent and may still spend (a JSON-safe `Accounts.Budget`: `null` for no limit). */
export const BudgetInfo = Schema.Struct({
  limits: Schema.Struct({
    tokens: Schema.NullOr(Schema.Number),
    toolCalls: Schema.NullOr(Schema.Number),
    usd: Schema.NullOr(Schema.Number),
    children: Schema.NullOr(Schema.Number)
  }),
  used: Schema.Struct({
    tokens: Schema.Number,
    toolCalls: Schema.Number,
    usd: Schema.Number,
    children: Schema.Number
  }),
  /** Kernel-clock millis when its wall quota ends it; `null` for none. */
  wallEndsAt: Schema.NullOr(Schema.Number)
})
export type BudgetInfo = typeof BudgetInfo.Type

/** What one `agent.run` cost. */
export const Spend = Schema.Struct({ tokens: Schema.Number, toolCalls: Schema.Number, usd: Schema.Number })
export type Spend = typeof Spend.Type

/** A row of `agent.list`. */
export const AgentInfo = Schema.Struct({
  pid: Schema.Number,
  name: Schema.String,
  status: Schema.Literals(["running", "suspended", "waiting-approval", "exited"]),
  budget: Schema.NullOr(BudgetInfo),
  /** How it ended, once it has. */
  exit: Schema.optionalKey(Schema.Unknown)
})
export type AgentInfo = typeof AgentInfo.Type

/** A row of `kernel.ps`. */
export const ProcessRow = Schema.Struct({
  pid: Schema.Number,
  name: Schema.String,
  parent: Schema.Number,
  status: Schema.Literals(["running", "suspended", "waiting-approval"]),
  priority: Schema.Number,
  children: Schema.Number,
  mailbox: Schema.Number,
  caps: Schema.Number,
  startedAt: Schema.Number,
  budget: BudgetInfo
})
export type ProcessRow = typeof ProcessRow.Type

/** A row of `tool.list`. */
export const ToolInfo = Schema.Struct({
  name: Schema.String,
  description: Schema.String,
  parameters: Schema.Unknown
})

/** A row of `approval.list`. */
export const ApprovalInfo = Schema.Struct({
  id: Schema.String,
  pid: Schema.Number,
  agent: Schema.String,
  tool: Schema.String,
  arguments: Schema.Unknown,
  /** Kernel-clock millis (the daemon's kernel runs on the real clock: epoch millis). */
  requestedAt: Schema.Number
})
export type ApprovalInfo = typeof ApprovalInfo.Type

/** A kernel event on the wire: JSON-safe (a non-finite number is written as a string, as the audit trail does). */
export const TraceEvent = Schema.toCodecJson(KernelEvent)

const RunResult = { answer: Schema.String, steps: Schema.Number, spend: Spend }
const Errors = Schema.Union([ManifestError, AgentdError])
const PidOnly = { pid: Pid }

/**
 * The API.
 *
 * @category api
 */
export class Api extends RpcGroup.make(
  Rpc.make("agent.spawn", {
    payload: { manifest: Schema.String },
    success: Schema.Struct({ pid: Schema.Number, name: Schema.String }),
    error: Errors
  }),
  Rpc.make("agent.run", {
    payload: { pid: Pid, message: Schema.String },
    success: Schema.Struct(RunResult),
    error: Errors
  }),
  Rpc.make("agent.spawn_and_run", {
    payload: { manifest: Schema.String, message: Schema.String },
    success: Schema.Struct({ pid: Schema.Number, ...RunResult }),
    error: Errors
  }),
  Rpc.make("agent.stop", { payload: PidOnly, success: Schema.Struct(PidOnly), error: AgentdError }),
  Rpc.make("agent.list", { success: Schema.Array(AgentInfo) }),
  Rpc.make("agent.status", { payload: PidOnly, success: AgentInfo, error: AgentdError }),
  Rpc.make("tool.list", { success: Schema.Array(ToolInfo) }),
  Rpc.make("tool.invoke", {
    payload: { pid: Pid, tool: Schema.String, arguments: Schema.optionalKey(Schema.Unknown) },
    success: Schema.Struct({ result: Schema.Unknown }),
    error: AgentdError
  }),
  Rpc.make("approval.list", { success: Schema.Array(ApprovalInfo) }),
  Rpc.make("approval.respond", {
    payload: { id: Schema.String, approve: Schema.Boolean, reason: Schema.optionalKey(Schema.String) },
    success: Schema.Struct({ id: Schema.String, approved: Schema.Boolean }),
    error: AgentdError
  }),
  Rpc.make("kernel.ps", { success: Schema.Array(ProcessRow) }),
  Rpc.make("kernel.kill", { payload: PidOnly, success: Schema.Struct(PidOnly), error: AgentdError }),
  Rpc.make("kernel.suspend", { payload: PidOnly, success: Schema.Struct(PidOnly), error: AgentdError }),
  Rpc.make("kernel.resume", { payload: PidOnly, success: Schema.Struct(PidOnly), error: AgentdError }),
  Rpc.make("kernel.trace", {
    payload: {
      pid: Schema.optionalKey(Schema.Int),
      since: Schema.optionalKey(Schema.Int),
      follow: Schema.optionalKey(Schema.Boolean),
      tree: Schema.optionalKey(Schema.Boolean)
    },
    success: TraceEvent,
    stream: true
  }),
  Rpc.make("kernel.metrics", { success: Schema.String })
) {}
