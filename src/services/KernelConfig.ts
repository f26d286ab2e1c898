/**
 * Holds every limit the kernel enforces, in one place, each with its default and the reason for it.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Schema } from "effect"

/**
 * The limits. Names put the unit or qualifier last (`mailboxMessagesMax`, `shutdownTimeoutMs`).
 *
 * @category models
 */
export interface KernelLimits {
  /** Live processes at once, kernel-wide. Default 100 000: a parked process costs about 1 KB. */
  readonly processesMax: number
  /**
   * Default mailbox bound (messages) for a process whose quota sets none; a full mailbox parks senders. Default 1024.
   */
  readonly mailboxMessagesMax: number
  /** Events kept in the in-memory ring read by `trace`; older events are overwritten. Default 10 000. */
  readonly eventRingMax: number
  /**
   * Exit reasons kept after death for `waitpid`/`waitExit`. When an entry is evicted (oldest first) the caps that
   * still point at that dead process are revoked, so churn cannot grow the cap table. Default 10 000.
   */
  readonly exitHistoryMax: number
  /** Depth of the process tree below a booted root (spawn recursion). Default 64. */
  readonly spawnDepthMax: number
  /** Caps carried by one message or one spawn. Default 64. */
  readonly capsPerMessageMax: number
  /**
   * Caps one process may hold at once. A syscall that would give it one more (derive, attenuate, selfCap, lookup, open,
   * spawn's cap to the child, a message or spawn carrying caps to it) fails with `CapabilityError { reason: "limit" }`
   * and changes nothing. Default 100 000 (a parent holds one cap per child, and `processesMax` is 100 000).
   */
  readonly capsPerProcessMax: number
  /**
   * Size of a message body, estimated while it is copied at send (two bytes a string code unit, eight for anything
   * else and for each array slot); a larger body is an `ArgumentError`. Default 1 048 576 (1 MiB).
   */
  readonly messageBytesMax: number
  /** Requests in one `Sys.readAll`. Default 1024. */
  readonly readAllRequestsMax: number
  /** Size of a `Sys.log` call's fields, estimated the same way; larger fields are replaced by a marker. Default 4096. */
  readonly logFieldsBytesMax: number
  /** Lowest scheduling priority. Default 0. */
  readonly priorityMin: number
  /**
   * Highest scheduling priority, the ceiling of every root process (a child's ceiling is its parent's, or lower if the
   * parent says so at spawn). The inference scheduler's aging bound is stated in terms of this range. Default 10.
   */
  readonly priorityMax: number
  /** Registered names, kernel-wide. Default 10 000. */
  readonly namesMax: number
  /** Length of a registered name, in UTF-16 code units. Default 256. */
  readonly nameLengthMax: number
  /** Length of a log message, in UTF-16 code units; longer messages are truncated. Default 4096. */
  readonly logMessageLengthMax: number
  /**
   * Scheduler batches run on the microtask queue before one is run from a macrotask, so that sockets and timers are
   * never starved by busy processes. Lower favours I/O latency, higher favours IPC throughput. Default 256.
   */
  readonly schedulerBatchesPerMacrotask: number
  /**
   * How long `shutdown` (and closing the kernel layer) waits for process fibers to finish their finalizers.
   * Default 5000.
   */
  readonly shutdownTimeoutMs: number
  /**
   * Worker threads one worker or WASM device may run (each a separate heap on another core); a driver asking for
   * more is refused when it is built. Default 4.
   */
  readonly workerPoolMax: number
  /** Context memory pages out once the working set passes this fraction of the `mem` quota. Default 0.8. */
  readonly memoryHighWatermark: number
  /** ... down to this fraction of the `mem` quota (below the high watermark). Default 0.6. */
  readonly memoryLowWatermark: number
  /**
   * Size of one context-memory segment, estimated while it is copied at `Sys.remember` like a message body; a larger
   * body ends the process with `Quota { mem }` (as does one larger than its `mem` quota, eight bytes a token). Bounds
   * the copy's work whatever the quota. Default 67 108 864 (64 MiB).
   */
  readonly segmentBytesMax: number
  /**
   * Tokens one process's swap may hold (the segments paged out of its working set, kept for `Sys.recall`); a page-out
   * past it ends the process with `Quota { mem }`. Default 16 777 216.
   */
  readonly swapTokensMax: number
  /**
   * Bytes of one journal line (`JournalFileStore`): a longer line read is `corrupt`, a longer record to write is
   * `unencodable`. Bounds what one record holds in memory while it is decoded. Default 16 777 216 (16 MiB).
   */
  readonly journalLineBytesMax: number
  /**
   * Bytes of a journal file: a larger file (or one that grows past it while it is read) is an `io` error at load, and
   * an append that would pass it is refused. `load` reads the whole file into memory. Default 1 073 741 824 (1 GiB).
   */
  readonly journalFileBytesMax: number
}

/**
 * The documented defaults.
 *
 * @category defaults
 */
export const defaults: KernelLimits = {
  processesMax: 100_000,
  mailboxMessagesMax: 1024,
  eventRingMax: 10_000,
  exitHistoryMax: 10_000,
  spawnDepthMax: 64,
  capsPerMessageMax: 64,
  capsPerProcessMax: 100_000,
  messageBytesMax: 1_048_576,
  logFieldsBytesMax: 4096,
  readAllRequestsMax: 1024,
  priorityMin: 0,
  priorityMax: 10,
  namesMax: 10_000,
  nameLengthMax: 256,
  logMessageLengthMax: 4096,
  schedulerBatchesPerMacrotask: 256,
  shutdownTimeoutMs: 5000,
  workerPoolMax: 4,
  memoryHighWatermark: 0.8,
  memoryLowWatermark: 0.6,
  segmentBytesMax: 67_108_864,
  swapTokensMax: 16_777_216,
  journalLineBytesMax: 16_777_216,
  journalFileBytesMax: 1_073_741_824
}

const PositiveInt = Schema.Int.check(Schema.isGreaterThan(0))
const Fraction = Schema.Finite.check(Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(1))

/**
 * Decodes partial limits given by a user: counts and sizes are positive integers, priorities integers, watermarks
 * fractions in (0, 1].
 *
 * @category schemas
 */
export const KernelLimitsInput = Schema.Struct({
  processesMax: Schema.optionalKey(PositiveInt),
  mailboxMessagesMax: Schema.optionalKey(PositiveInt),
  eventRingMax: Schema.optionalKey(PositiveInt),
  exitHistoryMax: Schema.optionalKey(PositiveInt),
  spawnDepthMax: Schema.optionalKey(PositiveInt),
  capsPerMessageMax: Schema.optionalKey(PositiveInt),
  capsPerProcessMax: Schema.optionalKey(PositiveInt),
  messageBytesMax: Schema.optionalKey(PositiveInt),
  logFieldsBytesMax: Schema.optionalKey(PositiveInt),
  readAllRequestsMax: Schema.optionalKey(PositiveInt),
  priorityMin: Schema.optionalKey(Schema.Int),
  priorityMax: Schema.optionalKey(Schema.Int),
  namesMax: Schema.optionalKey(PositiveInt),
  nameLengthMax: Schema.optionalKey(PositiveInt),
  logMessageLengthMax: Schema.optionalKey(PositiveInt),
  schedulerBatchesPerMacrotask: Schema.optionalKey(PositiveInt),
  shutdownTimeoutMs: Schema.optionalKey(PositiveInt),
  workerPoolMax: Schema.optionalKey(PositiveInt),
  memoryHighWatermark: Schema.optionalKey(Fraction),
  memoryLowWatermark: Schema.optionalKey(Fraction),
  segmentBytesMax: Schema.optionalKey(PositiveInt),
  swapTokensMax: Schema.optionalKey(PositiveInt),
  journalLineBytesMax: Schema.optionalKey(PositiveInt),
  journalFileBytesMax: Schema.optionalKey(PositiveInt)
})

/**
 * A limit given to `Kernel.layer` was out of its range (most are positive integers).
 *
 * @category errors
 */
export class KernelConfigError extends Schema.TaggedError<KernelConfigError>()("KernelConfigError", {
  message: Schema.String
}) {}

/**
 * The kernel's limits as a service.
 *
 * @category services
 */
export class KernelConfig extends Context.Service<KernelConfig, KernelLimits>()("effect-agent-os/KernelConfig") {}

/**
 * Validates partial limits and fills in the defaults.
 *
 * @category constructors
 */
export const make = (options?: Partial<KernelLimits>): Effect.Effect<KernelLimits, KernelConfigError> =>
  Schema.decodeUnknownEffect(KernelLimitsInput)(options ?? {}).pipe(
    Effect.map((given) => ({ ...defaults, ...given })),
    Effect.mapError((error) => new KernelConfigError({ message: `invalid kernel limits: ${error.message}` })),
    Effect.filterOrFail(
      (limits) => limits.memoryLowWatermark < limits.memoryHighWatermark,
      () => new KernelConfigError({ message: "invalid kernel limits: memoryLowWatermark must be below the high one" })
    ),
    Effect.filterOrFail(
      (limits) => limits.priorityMin <= limits.priorityMax,
      () => new KernelConfigError({ message: "invalid kernel limits: priorityMin must not be above priorityMax" })
    )
  )

/**
 * @category layers
 */
export const layer = (options?: Partial<KernelLimits>): Layer.Layer<KernelConfig, KernelConfigError> =>
  Layer.effect(KernelConfig)(make(options))
