/**
 * Boots and observes processes from the host program: the kernel as a service an Effect app embeds.
 *
 * `boot` starts a root process (the first one is init, pid 1, which inherits orphans); `waitExit`, `ps`, `trace`,
 * `metrics` and `metricsText` read the kernel's state; `shutdown` ends every process with `Shutdown`. Closing the
 * scope of the layer that built the kernel shuts it down.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer, Schema, type Scope } from "effect"
import type * as ContextMemory from "./ContextMemory.ts"
import type * as Device from "./Device.ts"
import * as Journal from "./Journal.ts"
import type * as KernelConfig from "./KernelConfig.ts"
import type { Quota, QuotaError } from "./Accounts.ts"
import type { CapRef } from "./Capability.ts"
import { CapabilityTable } from "./CapabilityTable.ts"
import { DeviceTable } from "./DeviceTable.ts"
import { EventLog, type KernelEvent, type KernelEventTag } from "./EventLog.ts"
import { NameRegistry } from "./NameRegistry.ts"
import type { ExitReason, Image } from "./Process.ts"
import { type ProcessInfo, ProcessTable } from "./ProcessTable.ts"
import type { Answer as ApprovalAnswer, PendingApproval } from "./internal/approvals.ts"
import { abi, quotaOf, Snapshot, SnapshotError } from "./Snapshot.ts"
import { unencodableIn } from "./internal/snapshotOf.ts"
import type { ArgumentError, ExitUnknownError, SpawnError } from "./Sys.ts"
import type { PolicySet } from "./Policy.ts"

export type { ProcessInfo }
export type { Answer as ApprovalAnswer, PendingApproval } from "./internal/approvals.ts"

/**
 * What init receives as its argument: a cap with right `spawn`, and one cap with right `open` per granted device.
 *
 * @category models
 */
export interface BootGrant {
  readonly spawn: CapRef
  readonly devices: Readonly<Record<string, CapRef>>
}

/**
 * Options of `boot`: the devices to grant (by driver name) and the root quota (unlimited when absent).
 *
 * @category models
 */
export interface BootOptions {
  readonly grant?: ReadonlyArray<string> | undefined
  readonly quota?: Quota | undefined
  /** Policy sets (`Policy.make`) every driver call of the root and of its whole tree must pass. */
  readonly policies?: PolicySet | ReadonlyArray<PolicySet> | undefined
}

/**
 * `boot` refused: the kernel was shut down, or a granted device has no driver; `respond` to an approval nobody waits
 * for (`unknown-approval`: answered already, timed out, its caller ended, or never asked).
 *
 * @category errors
 */
export class KernelError extends Schema.TaggedError<KernelError>()("KernelError", {
  reason: Schema.Literals(["shutdown", "unknown-device", "unknown-approval"]),
  message: Schema.String
}) {}

const decodeSnapshot = Schema.decodeUnknownExit(Snapshot)

/**
 * Kernel-wide counters and gauges.
 *
 * @category models
 */
export interface KernelMetrics {
  readonly processes: number
  /** Process fibers still running, ended processes finishing an uninterruptible region included. */
  readonly fibers: number
  readonly spawned: number
  readonly exited: number
  readonly exitsByReason: Readonly<Record<ExitReason["_tag"], number>>
  readonly messagesSent: number
  readonly messagesDropped: number
  readonly syscalls: number
  readonly denied: number
  readonly caps: number
  readonly names: number
  readonly events: number
  readonly eventsByType: Readonly<Record<KernelEventTag, number>>
}

/**
 * @category models
 */
export interface KernelShape {
  /** Starts a root process; its argument is the boot grant (an image that takes no argument may ignore it). */
  readonly boot: <A extends BootGrant | void = BootGrant>(
    init: Image<A>,
    options?: BootOptions
  ) => Effect.Effect<number, KernelError | QuotaError | SpawnError | ArgumentError>
  readonly waitExit: (pid: number) => Effect.Effect<ExitReason, ExitUnknownError>
  readonly ps: () => Effect.Effect<ReadonlyArray<ProcessInfo>>
  readonly trace: (n?: number) => Effect.Effect<ReadonlyArray<KernelEvent>>
  readonly metrics: () => Effect.Effect<KernelMetrics>
  readonly metricsText: () => Effect.Effect<string>
  readonly shutdown: () => Effect.Effect<void>
  /**
   * The driver calls waiting for a human's answer (tools granted with `approval`), oldest first: `{ id, pid, name,
   * device, tool, request, requestedAt }`; `id` is the call's idempotency key `"<pid>:<op>"`.
   */
  readonly approvals: () => Effect.Effect<ReadonlyArray<PendingApproval>>
  /**
   * Answers a waiting call: approved, it runs; denied, it reads back the driver's denial (a tools device's
   * `ToolError` `denied`, naming `by` and `reason`). An `Approval` event records it.
   */
  readonly respond: (id: string, answer: ApprovalAnswer) => Effect.Effect<void, KernelError>
  /**
   * Calls `listener` with every kernel event from now on, synchronously (an audit trail, a live trace); the scope
   * closing unsubscribes. A listener must not block: buffer, and write elsewhere.
   */
  readonly subscribe: (listener: (event: KernelEvent) => void) => Effect.Effect<void, never, Scope.Scope>
  /** A JSON-safe image of a running process (memory, waiting messages, remaining budget, priority, deadline). */
  readonly snapshot: (pid: number) => Effect.Effect<Snapshot, SnapshotError>
  /**
   * Resumes a snapshot (decoded with its Schema, so it may come from JSON or another program) as a new root process
   * running `image`: its memory restored, its messages waiting (their caps were not kept), its quota what the
   * snapshot had left, its priority and remaining deadline. Options as for `boot` (`quota` is ignored: the snapshot's
   * budget applies).
   */
  readonly restore: <A extends BootGrant | void = BootGrant>(
    snapshot: unknown,
    image: Image<A>,
    options?: BootOptions
  ) => Effect.Effect<number, SnapshotError | KernelError | QuotaError | SpawnError | ArgumentError>
}

/**
 * @category services
 */
export class Kernel extends Context.Service<Kernel, KernelShape>()("effect-agent-os/Kernel") {}

const gauge = (name: string, help: string, value: number) =>
  `# HELP ${name} ${help}\n# TYPE ${name} gauge\n${name} ${value}\n`
const counter = (name: string, help: string, value: number) =>
  `# HELP ${name} ${help}\n# TYPE ${name} counter\n${name} ${value}\n`
const labelled = (name: string, help: string, label: string, values: Readonly<Record<string, number>>) =>
  `# HELP ${name} ${help}\n# TYPE ${name} counter\n` +
  Object.entries(values)
    .map(([key, value]) => `${name}{${label}="${key}"} ${value}\n`)
    .join("")

/**
 * Renders metrics in the Prometheus text exposition format, every name prefixed `agentos_`.
 *
 * @category formatting
 */
export const prometheusText = (m: KernelMetrics): string =>
  gauge("agentos_processes", "Live processes.", m.processes) +
  gauge("agentos_fibers", "Process fibers still running.", m.fibers) +
  counter("agentos_spawned_total", "Processes started.", m.spawned) +
  counter("agentos_exited_total", "Processes ended.", m.exited) +
  labelled("agentos_exits_total", "Processes ended, by exit reason.", "reason", m.exitsByReason) +
  counter("agentos_messages_sent_total", "Messages sent.", m.messagesSent) +
  counter("agentos_messages_dropped_total", "Messages dropped (dead receiver or deadline).", m.messagesDropped) +
  counter("agentos_syscalls_total", "Syscalls that passed their checks.", m.syscalls) +
  counter("agentos_syscalls_denied_total", "Syscalls refused with a typed error.", m.denied) +
  gauge("agentos_capabilities", "Live capabilities.", m.caps) +
  gauge("agentos_names", "Registered names.", m.names) +
  counter("agentos_events_total", "Events emitted.", m.events) +
  labelled("agentos_events_by_type_total", "Events emitted, by type.", "type", m.eventsByType)

/**
 * Builds the kernel over its services.
 *
 * @category constructors
 */
export const make: Effect.Effect<
  KernelShape,
  never,
  ProcessTable | EventLog | CapabilityTable | NameRegistry | DeviceTable | Scope.Scope
> = Effect.gen(function* () {
  const table = yield* ProcessTable
  const events = yield* EventLog
  const journal = yield* Effect.serviceOption(Journal.Journal)
  if (journal._tag === "Some") {
    // the calls a crash left in flight, which this run does again: said once, before any process starts
    const calls = journal.value.rerun()
    if (calls.length > 0) events.emit({ _tag: "Recover", pid: 0, calls })
  }
  const caps = yield* CapabilityTable
  const names = yield* NameRegistry
  const known = new Set((yield* DeviceTable).names())
  const metrics = (): KernelMetrics => {
    const c = table.counters
    return {
      processes: table.live().length,
      fibers: c.fibers,
      spawned: c.spawned,
      exited: c.exited,
      exitsByReason: { ...c.exitsByReason },
      messagesSent: c.messagesSent,
      messagesDropped: c.messagesDropped,
      syscalls: c.syscalls,
      denied: c.denied,
      caps: caps.size(),
      names: names.size(),
      events: events.lastSeq(),
      eventsByType: events.counts()
    }
  }
  /** The device names a boot grants, or why it cannot (the kernel is down, a name has no driver). */
  const grantOf = (options: BootOptions | undefined): ReadonlyArray<string> | KernelError => {
    if (table.isShutdown()) return new KernelError({ reason: "shutdown", message: "the kernel has been shut down" })
    const grant = Array.from(new Set(options?.grant ?? []))
    const unknown = grant.filter((name) => !known.has(name))
    return unknown.length === 0
      ? grant
      : new KernelError({ reason: "unknown-device", message: `no driver for device(s): ${unknown.join(", ")}` })
  }
  // `shutdownTimeoutMs` is real time: it bounds how long closing waits for fibers stuck in the outside world (a
  // driver call that does not answer), which a virtual or test clock would never move past
  const shutdown = Effect.provideService(table.shutdown, Clock.Clock, Clock.Clock.defaultValue())
  const kernel: KernelShape = {
    boot: (init, options) =>
      Effect.suspend((): Effect.Effect<number, KernelError | QuotaError | SpawnError | ArgumentError> => {
        const grant = grantOf(options)
        if (grant instanceof KernelError) return Effect.fail(grant)
        // nothing restored, so no SnapshotError
        return table.boot(
          init as unknown as Image<BootGrant>,
          (bootGrant) => bootGrant,
          grant,
          options?.quota,
          undefined,
          options?.policies
        ) as Effect.Effect<number, KernelError | QuotaError | SpawnError | ArgumentError>
      }),
    waitExit: table.waitExit,
    ps: () => Effect.sync(() => table.live().map(table.info)),
    trace: (n) => Effect.sync(() => events.trace(n)),
    metrics: () => Effect.sync(metrics),
    metricsText: () => Effect.sync(() => prometheusText(metrics())),
    shutdown: () => shutdown,
    approvals: () => Effect.sync(() => table.approvals.list()),
    respond: (id, answer) =>
      Effect.suspend(() => {
        const copied = {
          approve: answer.approve === true,
          by: String(answer.by),
          reason: answer.reason === undefined ? undefined : String(answer.reason)
        }
        return table.approvals.respond(String(id), copied)
          ? Effect.void
          : Effect.fail(new KernelError({ reason: "unknown-approval", message: `no call waits for approval ${id}` }))
      }),
    subscribe: (listener) =>
      Effect.acquireRelease(
        Effect.sync(() => events.subscribe(listener)),
        (off) => Effect.sync(off)
      ),
    snapshot: (pid) =>
      Effect.suspend(() => {
        const snapshot = table.snapshot(pid)
        if (snapshot === undefined) {
          return Effect.fail(new SnapshotError({ reason: "unknown-process", message: `pid ${pid} is not running` }))
        }
        // a snapshot is JSON-safe or it is not given: a value JSON would change is named, never carried silently
        const unencodable = unencodableIn(pid, snapshot)
        if (unencodable !== undefined) return Effect.fail(unencodable)
        return Effect.succeed(snapshot)
      }),
    restore: (input, image, options) =>
      Effect.suspend(
        (): Effect.Effect<number, SnapshotError | KernelError | QuotaError | SpawnError | ArgumentError> => {
          const decoded = decodeSnapshot(input)
          if (decoded._tag === "Failure") {
            return Effect.fail(
              new SnapshotError({ reason: "invalid", message: `not a snapshot: ${String(decoded.cause)}` })
            )
          }
          const snapshot = decoded.value
          if (snapshot.abi !== abi) {
            return Effect.fail(
              new SnapshotError({ reason: "abi-mismatch", message: `snapshot ABI ${snapshot.abi}, kernel ABI ${abi}` })
            )
          }
          const grant = grantOf(options)
          if (grant instanceof KernelError) return Effect.fail(grant)
          const b = snapshot.budget
          const quota = {
            tokens: quotaOf(b.tokens),
            toolCalls: quotaOf(b.toolCalls),
            usd: quotaOf(b.usd),
            mem: quotaOf(b.mem),
            mailbox: b.mailbox,
            wall: b.wallMs === null ? undefined : b.wallMs
          }
          return table.boot(image as unknown as Image<BootGrant>, (bootGrant) => bootGrant, grant, quota, {
            priority: snapshot.priority,
            deadlineInMs: quotaOf(snapshot.deadlineInMs),
            memory: snapshot.memory,
            mailbox: snapshot.mailbox
          })
        }
      )
  }
  yield* Effect.addFinalizer(() => shutdown)
  return kernel
})

/**
 * The kernel service alone; `Kernel.layer` (in `layers/Kernel.ts`) provides its dependencies.
 *
 * @category layers
 */
export const layerWithoutDependencies: Layer.Layer<
  Kernel,
  never,
  ProcessTable | EventLog | CapabilityTable | NameRegistry | DeviceTable
> = Layer.effect(Kernel)(make)

/**
 * Options of `Kernel.layer`:
 *
 * - `limits`: the limits to change from `KernelConfig.defaults`;
 * - `drivers`: device drivers, or effects building them from the host app's services (their requirements become the
 *   layer's); each name may appear once;
 * - `journal`: the journal mode (default `live`), over the `Journal.JournalStoreService` in context, or in memory;
 * - `journalEnd`: in `replay`, what the end of one process's journal ends: the run (default) or the call
 *   (`Journal.JournalOptions`);
 * - `memory`: the context-memory recaller factory and pager (default BM25 and a marker pager);
 * - `virtualTime`: run every process on a virtual clock that jumps to the next timer whenever all processes are
 *   blocked (see `VirtualTime`).
 *
 * @category models
 */
export interface KernelOptions<Drivers extends ReadonlyArray<DriverInput> = ReadonlyArray<DriverInput>> {
  readonly limits?: Partial<KernelConfig.KernelLimits> | undefined
  readonly drivers?: Drivers | undefined
  readonly journal?: Journal.Mode | undefined
  readonly journalEnd?: "run" | "call" | undefined
  readonly virtualTime?: boolean | undefined
  readonly memory?: Partial<ContextMemory.MemoryOptions> | undefined
}

/** A driver, or an effect that builds one from the host app's services. */
export type DriverInput = Device.Driver | Effect.Effect<Device.Driver, any, any>

/** What building the given drivers can fail with. */
export type DriversError<D> = D extends Effect.Effect<Device.Driver, infer E, any> ? E : never

/** What building the given drivers requires of the host (the kernel layer gives them its scope and its limits). */
export type DriversServices<D> = Exclude<
  D extends Effect.Effect<Device.Driver, any, infer R> ? R : never,
  Scope.Scope | KernelConfig.KernelConfig
>
