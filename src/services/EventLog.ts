/**
 * Records every syscall, charge, spawn, exit, signal and fault as a typed event in a bounded ring.
 *
 * Events carry a sequence number (from 1, never reused) and the kernel-clock time in millis. Nothing in an event
 * depends on wall time or object identity, so two runs of the same program under `TestClock` produce identical
 * traces. The ring keeps the newest `KernelConfig.eventRingMax` events; per-tag counters keep counting past it.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer, Schema } from "effect"
import { KernelConfig } from "./KernelConfig.ts"
import { makeEventRing } from "./internal/eventRing.ts"
import { ExitReason } from "./Process.ts"

const base = { seq: Schema.Number, at: Schema.Number, pid: Schema.Number }

/**
 * The syscalls named in `Syscall` and `Denied` events.
 *
 * @category models
 */
export type SyscallName =
  | "remember"
  | "workingSet"
  | "recall"
  | "forget"
  | "pin"
  | "self"
  | "caps"
  | "budget"
  | "yield"
  | "send"
  | "recv"
  | "recvMatch"
  | "spawn"
  | "exit"
  | "derive"
  | "attenuate"
  | "revoke"
  | "monitor"
  | "demonitor"
  | "link"
  | "unlink"
  | "trapExit"
  | "exitSignal"
  | "started"
  | "waitpid"
  | "register"
  | "unregister"
  | "lookup"
  | "sched"
  | "charge"
  | "selfCap"
  | "kill"
  | "suspend"
  | "resume"
  | "term"
  | "open"
  | "read"
  | "write"

/**
 * A kernel event. `pid` is the process the event is about (0 for the kernel itself).
 *
 * - `Spawn { parent, name }`; `Exit { reason }`; `Fault { error }` (just before its `Exit`);
 * - `Syscall { call, target? }`: a call that passed its checks (`target`: the pid or cap id it acted on);
 * - `Denied { call, error, reason }`: a call refused with a typed error;
 * - `Charge { tokens, toolCalls, usd }`: a metered charge;
 * - `Signal { signal, target }`: kill, suspend, resume or term sent by `pid`;
 * - `Drop { reason, target }`: a message not delivered (dead receiver, its deadline passed, a kernel `Term` past
 *   the receiver's bound for kernel messages: `overflow`, or a `nosuspend` send to a full mailbox: `full`);
 * - `Log { level, message }`: `Sys.log`;
 * - `Recover { calls }`: once, when a kernel starts in `recover` mode with calls that were in flight when the
 *   recorded run stopped; each `{ pid, op, device, call }` runs again live (journaling is at least once);
 * - `Approval { id, device, tool, decision, by?, reason? }`: a call of a tool granted with `approval` asked for an
 *   answer (`requested`), or got one (`approved`, `denied`; `by: "timeout"` when its timeout passed first);
 * - `Policy { rule, decision, device, tool?, on }`: a policy rule decided a call (`on: "call"`), a message sent
 *   (`on: "send"`, device `""`) or a call's result
 *   (`on: "result"`) otherwise than a plain allow (`deny`, `kill`, `approve`); see `Policy`.
 *
 * @category models
 */
export const KernelEvent = Schema.Union([
  Schema.TaggedStruct("Spawn", { ...base, parent: Schema.Number, name: Schema.String }),
  Schema.TaggedStruct("Exit", { ...base, reason: ExitReason }),
  Schema.TaggedStruct("Fault", { ...base, error: Schema.String }),
  Schema.TaggedStruct("Syscall", { ...base, call: Schema.String, target: Schema.optionalKey(Schema.Number) }),
  Schema.TaggedStruct("Denied", { ...base, call: Schema.String, error: Schema.String, reason: Schema.String }),
  Schema.TaggedStruct("Charge", { ...base, tokens: Schema.Number, toolCalls: Schema.Number, usd: Schema.Number }),
  Schema.TaggedStruct("Signal", {
    ...base,
    signal: Schema.Literals(["kill", "suspend", "resume", "term", "exit"]),
    target: Schema.Number
  }),
  Schema.TaggedStruct("Drop", {
    ...base,
    reason: Schema.Literals(["dead", "deadline", "overflow", "full", "invalid"]),
    target: Schema.Number
  }),
  Schema.TaggedStruct("Log", {
    ...base,
    level: Schema.String,
    message: Schema.String,
    fields: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
  }),
  Schema.TaggedStruct("Recover", {
    ...base,
    calls: Schema.Array(
      Schema.Struct({
        pid: Schema.Number,
        op: Schema.Number,
        device: Schema.String,
        call: Schema.Literals(["open", "read", "write"])
      })
    )
  }),
  Schema.TaggedStruct("Approval", {
    ...base,
    id: Schema.String,
    device: Schema.String,
    tool: Schema.String,
    decision: Schema.Literals(["requested", "approved", "denied"]),
    by: Schema.optionalKey(Schema.String),
    reason: Schema.optionalKey(Schema.String)
  }),
  Schema.TaggedStruct("Policy", {
    ...base,
    rule: Schema.String,
    decision: Schema.Literals(["deny", "kill", "approve"]),
    device: Schema.String,
    tool: Schema.optionalKey(Schema.String),
    on: Schema.Literals(["call", "result", "send"])
  })
])
export type KernelEvent = typeof KernelEvent.Type

/** @category models */
export type KernelEventTag = KernelEvent["_tag"]

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never

/** An event before the log numbers and stamps it. */
export type EventInput = DistributiveOmit<KernelEvent, "seq" | "at">

/**
 * The event log's interface. Emitting is synchronous: the kernel calls it inside its own critical sections.
 *
 * @category models
 */
export interface EventLogShape {
  readonly emit: (event: EventInput) => void
  /**
   * Emits a `Syscall` event without allocating: the hot path of every send and recv. `target` is `-1` for none.
   */
  readonly syscall: (pid: number, call: SyscallName, target: number) => void
  /** Emits a `Spawn` event without allocating. */
  readonly spawn: (pid: number, parent: number, name: string) => void
  /** Emits a `Charge` event without allocating: the hot path of every metered driver call. */
  readonly charge: (pid: number, tokens: number, toolCalls: number, usd: number) => void
  /** The newest `n` events (all kept, when `n` is absent), oldest first. */
  readonly trace: (n?: number) => ReadonlyArray<KernelEvent>
  /** Events emitted so far, per tag (not limited by the ring). */
  readonly counts: () => Readonly<Record<KernelEventTag, number>>
  /** Sequence number of the last event (0 before the first). */
  readonly lastSeq: () => number
  /**
   * Calls `listener` with every event from now on, synchronously as it is emitted, stamped as `trace` would return
   * it (an audit trail, a live `trace -f`); the returned function unsubscribes. A listener that throws is ignored;
   * one must not block (buffer and write elsewhere).
   */
  readonly subscribe: (listener: (event: KernelEvent) => void) => () => void
}

/**
 * @category services
 */
export class EventLog extends Context.Service<EventLog, EventLogShape>()("effect-agent-os/EventLog") {}

/**
 * Reads the limit from `KernelConfig` and stamps events with the `Clock` in the context the layer is built in.
 *
 * @category layers
 */
export const layer: Layer.Layer<EventLog, never, KernelConfig> = Layer.effect(EventLog)(
  Effect.gen(function* () {
    const config = yield* KernelConfig
    const clock = yield* Clock.clockWith(Effect.succeed)
    return makeEventRing(config.eventRingMax, () => clock.currentTimeMillisUnsafe())
  })
)
