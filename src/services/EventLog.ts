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
  | "spawn"
  | "exit"
  | "derive"
  | "attenuate"
  | "revoke"
  | "monitor"
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
 * - `Drop { reason, target }`: a message not delivered (dead receiver, its deadline passed, or a kernel `Term` past
 *   the receiver's bound for kernel messages: `overflow`);
 * - `Log { level, message }`: `Sys.log`.
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
    signal: Schema.Literals(["kill", "suspend", "resume", "term"]),
    target: Schema.Number
  }),
  Schema.TaggedStruct("Drop", {
    ...base,
    reason: Schema.Literals(["dead", "deadline", "overflow"]),
    target: Schema.Number
  }),
  Schema.TaggedStruct("Log", {
    ...base,
    level: Schema.String,
    message: Schema.String,
    fields: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown))
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
  /** The newest `n` events (all kept, when `n` is absent), oldest first. */
  readonly trace: (n?: number) => ReadonlyArray<KernelEvent>
  /** Events emitted so far, per tag (not limited by the ring). */
  readonly counts: () => Readonly<Record<KernelEventTag, number>>
  /** Sequence number of the last event (0 before the first). */
  readonly lastSeq: () => number
}

/**
 * @category services
 */
export class EventLog extends Context.Service<EventLog, EventLogShape>()("effect-agent-os/EventLog") {}

/**
 * Makes a log over a clock function (kernel-clock millis).
 *
 * The ring is columnar: `Syscall` and `Spawn` events, by far the most frequent, are stored in typed arrays and only
 * turned into objects when `trace` reads them; other events are stored as the objects they were emitted as.
 *
 * @category constructors
 */
export const makeUnsafe = (ringMax: number, now: () => number): EventLogShape => {
  const at = new Float64Array(ringMax)
  const pids = new Float64Array(ringMax)
  const targets = new Float64Array(ringMax)
  // what a columnar slot holds: the syscall name (Syscall) or the process name (Spawn)
  const texts = new Array<string | undefined>(ringMax)
  const spawns = new Uint8Array(ringMax)
  const objects = new Array<KernelEvent | undefined>(ringMax)
  let seq = 0
  const counts: Record<KernelEventTag, number> = {
    Spawn: 0,
    Exit: 0,
    Fault: 0,
    Syscall: 0,
    Denied: 0,
    Charge: 0,
    Signal: 0,
    Drop: 0,
    Log: 0
  }
  const column = (pid: number, text: string, target: number, spawn: 0 | 1) => {
    seq++
    const i = seq % ringMax
    at[i] = now()
    pids[i] = pid
    texts[i] = text
    targets[i] = target
    spawns[i] = spawn
    objects[i] = undefined
  }
  const materialize = (s: number): KernelEvent => {
    const i = s % ringMax
    const object = objects[i]
    if (object !== undefined) return object
    const target = targets[i]!
    if (spawns[i] === 1) return { _tag: "Spawn", seq: s, at: at[i]!, pid: pids[i]!, parent: target, name: texts[i]! }
    return target < 0
      ? { _tag: "Syscall", seq: s, at: at[i]!, pid: pids[i]!, call: texts[i]! }
      : { _tag: "Syscall", seq: s, at: at[i]!, pid: pids[i]!, call: texts[i]!, target }
  }
  return {
    emit(event) {
      seq++
      const stamped = event as unknown as { seq: number; at: number }
      stamped.seq = seq
      stamped.at = now()
      objects[seq % ringMax] = event as KernelEvent
      counts[event._tag]++
    },
    syscall(pid, call, target) {
      counts.Syscall++
      column(pid, call, target, 0)
    },
    spawn(pid, parent, name) {
      counts.Spawn++
      column(pid, name, parent, 1)
    },
    trace(n) {
      const kept = Math.min(seq, ringMax)
      const take = n === undefined ? kept : Math.max(0, Math.min(Math.floor(n), kept))
      const out: Array<KernelEvent> = []
      for (let s = seq - take + 1; s <= seq; s++) out.push(materialize(s))
      return out
    },
    counts: () => ({ ...counts }),
    lastSeq: () => seq
  }
}

/**
 * Reads the limit from `KernelConfig` and stamps events with the `Clock` in the context the layer is built in.
 *
 * @category layers
 */
export const layer: Layer.Layer<EventLog, never, KernelConfig> = Layer.effect(EventLog)(
  Effect.gen(function* () {
    const config = yield* KernelConfig
    const clock = yield* Clock.clockWith(Effect.succeed)
    return makeUnsafe(config.eventRingMax, () => clock.currentTimeMillisUnsafe())
  })
)
