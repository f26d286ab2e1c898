/**
 * Exposes the syscall surface to a running process: the only way a process image touches anything.
 *
 * `Sys` is provided by the kernel to each process fiber (and inherited by the fibers that process forks, so they act
 * as the same process). Every call checks that the process is still alive (a call made after the process was killed
 * or ran out of quota interrupts the caller and takes no effect) and that it is not suspended (a suspended process
 * parks at its next syscall until resumed), then checks capabilities, charges, journals an event and acts.
 *
 * Use the accessors (`Sys.send(...)`, `Sys.recv()`) inside an image, or `yield* Sys.Sys` for the service itself.
 *
 * @since 0.1.0
 */
import type { PolicySet } from "./Policy.ts"
import type { Duration, Fiber } from "effect"
import { Context, Effect, Schema } from "effect"
import type { Budget, Cost, Quota, QuotaError } from "./Accounts.ts"
import type { CapabilityError, CapRef, Right, ToolGrants } from "./Capability.ts"
import type { MemoryError, Segment } from "./ContextMemory.ts"
import type { DeviceError } from "./Device.ts"
import type { JournalError } from "./Journal.ts"
import type { NameError } from "./NameRegistry.ts"
import type { ExitReason, Image, Message, MonitorRef, StatedReason } from "./Process.ts"
import type { Option } from "effect"
import { eagerOf } from "./internal/eagerSys.ts"

/**
 * Options of `Sys.send`.
 *
 * - `caps`: caps to move to the receiver with the message (all must be held by the sender; ownership moves);
 * - `corr`: a correlation value the receiver can echo in its reply;
 * - `deadline`: how long the message stays deliverable; past it, it is dropped at delivery.
 *
 * @category models
 */
export interface SendOptions {
  readonly caps?: ReadonlyArray<CapRef> | undefined
  readonly corr?: string | number | undefined
  readonly deadline?: Duration.Input | undefined
  /**
   * Never park: when the receiver's mailbox is full the message is dropped (a `Drop` event with reason `full`, its
   * caps revoked) and the send returns. What a server replying to a caller it does not trust uses (Erlang's
   * `nosuspend`).
   */
  readonly nosuspend?: boolean | undefined
}

/**
 * Options of `Sys.attenuate`. `tools` narrows a device cap (or a handle) to the tools it names: a call through it (or
 * through a handle opened with it) must be a request `{ tool, … }` naming one of them, else `CapabilityError`
 * `out-of-scope`; the request is copied before it is checked, so the tool checked is the tool the driver runs. Each
 * narrowing adds a layer: a tool passes only if every layer grants it, and the driver gets each layer's `scope`.
 *
 * @category models
 */
export interface AttenuateOptions {
  readonly rights?: ReadonlyArray<Right> | undefined
  readonly expiresIn?: Duration.Input | undefined
  readonly tools?: ToolGrants | undefined
  /**
   * A typed pipe: on a process cap, a Schema (no services) every body sent through the cap (and every cap derived
   * from it) must decode as, checked by the kernel on the copied body before anything is delivered; the receiver gets
   * the decoded value. Narrowing again adds a layer: a body must decode through each, in order.
   */
  readonly message?: Schema.Schema<any> | undefined
  /**
   * What a body that does not decode does: `fail` (default; the send fails with an `ArgumentError` naming the
   * Schema's issue) or `drop` (dead-lettered: a `Drop` event `invalid`, the send returns, the caps on it stay the
   * sender's).
   */
  readonly invalid?: "fail" | "drop" | undefined
}

/**
 * Options of `Sys.spawn`.
 *
 * - `args`: the image's argument;
 * - `caps`: caps moved to the child (it holds exactly these, readable with `Sys.caps()`); derive first to keep one;
 * - `quota`: the child's quota, carved from the caller's (see `Accounts`);
 * - `link`: link caller and child (as `Sys.link`: an exit signal goes each way when one of them ends);
 * - `priority`: scheduling priority, an integer in `[KernelConfig.priorityMin, priorityMax]` (default the caller's,
 *   or the child's ceiling if that is lower); read by the inference scheduler;
 * - `priorityMax`: the child's priority ceiling (default the caller's own ceiling, which it may not exceed): the
 *   highest priority the child may take with `Sys.sched`;
 * - `deadline`: the child ends with `Deadline` this long after it starts;
 * - `policies`: policy sets (`Policy.make`) the child's driver calls must pass too, after its parent's own chain
 *   (a child can only be more bound than its parent, never less).
 *
 * @category models
 */
export interface SpawnOptions<A> {
  readonly args?: A
  readonly caps?: ReadonlyArray<CapRef> | undefined
  readonly quota?: Quota | undefined
  readonly link?: boolean | undefined
  readonly priority?: number | undefined
  readonly priorityMax?: number | undefined
  readonly deadline?: Duration.Input | undefined
  readonly policies?: PolicySet | ReadonlyArray<PolicySet> | undefined
}

/**
 * What `Sys.spawn` returns: the child's pid and a cap to it with `send`, `monitor` and `kill`.
 *
 * @category models
 */
export interface Spawned {
  readonly pid: number
  readonly cap: CapRef
}

/**
 * A spawn the kernel refused for a reason other than a capability or a quota field:
 *
 * - `children`: the caller's `children` quota is used up (it frees when a child exits);
 * - `processes`: `KernelConfig.processesMax` live processes;
 * - `depth`: the tree is `KernelConfig.spawnDepthMax` deep;
 * - `caps`: more than `KernelConfig.capsPerMessageMax` caps, or the same cap twice.
 *
 * @category errors
 */
export class SpawnError extends Schema.TaggedError<SpawnError>()("SpawnError", {
  reason: Schema.Literals(["children", "processes", "depth", "caps"]),
  limit: Schema.Number
}) {
  override get message(): string {
    return `spawn refused: ${this.reason} (limit ${this.limit})`
  }
}

/**
 * A syscall argument the kernel cannot act on (not a cap error): a message carrying too many caps or one cap twice,
 * a negative charge, an unknown right name, a deadline that is not a duration (or a later one for `sched`), a body
 * that is not plain data or is larger than `KernelConfig.messageBytesMax`, an exit reason that only the kernel may
 * set, a value whose getter throws. The kernel reads every argument once, into a copy of its own, before it checks it.
 *
 * @category errors
 */
export class ArgumentError extends Schema.TaggedError<ArgumentError>()("ArgumentError", {
  call: Schema.String,
  message: Schema.String
}) {}

/**
 * `waitpid` on a process whose exit record the kernel no longer keeps (`KernelConfig.exitHistoryMax`).
 *
 * @category errors
 */
export class ExitUnknownError extends Schema.TaggedError<ExitUnknownError>()("ExitUnknownError", {
  pid: Schema.Number
}) {
  override get message(): string {
    return `exit of pid ${this.pid} is no longer retained`
  }
}

/**
 * What a driver call can fail with.
 *
 * @category errors
 */
export type DeviceCallError = CapabilityError | DeviceError | JournalError | ArgumentError

/**
 * A log level for `Sys.log`.
 *
 * @category models
 */
export type LogLevel = "debug" | "info" | "warn" | "error"

/**
 * The syscall surface.
 *
 * @category models
 */
export interface SysShape {
  /** The caller's pid. */
  readonly self: () => Effect.Effect<number>
  /** A fresh cap to the caller itself with `send` and `monitor`, to hand to others for replies. */
  readonly selfCap: () => Effect.Effect<CapRef, CapabilityError>
  /** The caps the process was started with, in the order given (for init: spawn, then devices by name). */
  readonly caps: () => Effect.Effect<ReadonlyArray<CapRef>>
  /** Takes the next message, parking while the mailbox is empty. */
  readonly recv: <T = unknown>() => Effect.Effect<Message<T>>
  /**
   * A selective receive: takes the oldest message whose `corr` is `match.corr` (and whose sender is `match.from`, or
   * the process the cap `match.sender` designates, when given; without `corr`, any message from that sender — `from:
   * 0` for the kernel's own), or the kernel `Down` whose ref is `match.ref`, parking until one comes; every other
   * message stays in the mailbox, in order, for `recv`. What a call waits for: its reply from the callee (`sender`:
   * no third process can answer in its place, whatever `corr` it guesses), or the `Down` of a monitor on the callee.
   * `sender` needs a live cap the caller holds, of any rights (`CapabilityError` otherwise); its pid stays hidden.
   */
  readonly recvMatch: <T = unknown>(match: {
    readonly corr?: string | number | undefined
    readonly from?: number | undefined
    readonly sender?: CapRef | undefined
    readonly ref?: MonitorRef | undefined
  }) => Effect.Effect<Message<T>, ArgumentError | CapabilityError>
  /**
   * Sends to a process (right `send`); parks while the receiver's mailbox is full. A dead receiver drops it. The body
   * is copied at send (plain data: primitives, arrays, plain objects, `Date`s, `CapRef`s), so the receiver never
   * sees what the sender does with its object later.
   */
  readonly send: (
    to: CapRef,
    body: unknown,
    options?: SendOptions
  ) => Effect.Effect<void, CapabilityError | ArgumentError>
  /** Starts a child process (needs a cap with right `spawn`). */
  readonly spawn: <A>(
    image: Image<A>,
    options?: SpawnOptions<A>
  ) => Effect.Effect<Spawned, CapabilityError | QuotaError | SpawnError | ArgumentError>
  /**
   * Ends the caller with `reason` (default `Normal`): `Normal`, `Shutdown` or `Fault { error }`; the other reasons are
   * the kernel's to set (`ArgumentError`).
   */
  readonly exit: (reason?: ExitReason) => Effect.Effect<never, ArgumentError>
  /** A copy of a held cap with a subset of its rights, owned by the caller. */
  readonly derive: (cap: CapRef, rights: ReadonlyArray<Right>) => Effect.Effect<CapRef, CapabilityError | ArgumentError>
  /**
   * A copy with fewer rights, an expiry (`expiresIn` from now), and/or narrowed to some tools (`tools`, on a device cap
   * or a handle: see `AttenuateOptions`); caveats only ever narrow.
   */
  readonly attenuate: (cap: CapRef, options: AttenuateOptions) => Effect.Effect<CapRef, CapabilityError | ArgumentError>
  /** Revokes a held cap and everything derived from it. */
  readonly revoke: (cap: CapRef) => Effect.Effect<void, CapabilityError>
  /**
   * Makes a monitor: a `Down { pid, reason, ref }` message when the target ends (at once, with its recorded reason,
   * if it already has). Every call is a monitor of its own, with its own ref and its own `Down`. Right `monitor`.
   */
  readonly monitor: (cap: CapRef) => Effect.Effect<MonitorRef, CapabilityError>
  /**
   * Ends a monitor the caller made: no `Down` for it comes after this (one already in the mailbox stays). `false`
   * when the ref names no active monitor of the caller's (ended, already delivered, someone else's).
   */
  readonly demonitor: (ref: MonitorRef) => Effect.Effect<boolean, ArgumentError>
  /**
   * Links the caller and the target (rights `monitor` and `kill`): when either ends, the other gets an exit signal
   * with its reason. A process that does not trap exits ends with that reason (a `Normal` one is ignored); one that
   * traps them gets an `Exit { pid, reason }` message. Linking to a process that has ended sends the caller its exit
   * signal at once (its recorded reason). Linking twice is one link; linking to oneself does nothing.
   */
  readonly link: (cap: CapRef) => Effect.Effect<void, CapabilityError>
  /** Removes the link between the caller and the target (right `monitor`); `false` when there was none. */
  readonly unlink: (cap: CapRef) => Effect.Effect<boolean, CapabilityError>
  /**
   * Traps exit signals (`on`) or not: while trapping, exit signals arrive as `Exit` messages instead of ending the
   * caller. `Sys.kill` is never trapped. Returns the previous setting.
   */
  readonly trapExit: (on: boolean) => Effect.Effect<boolean, ArgumentError>
  /**
   * Sends the target an exit signal with `reason` (right `kill`; OTP's `exit/2`): a target that traps exits gets an
   * `Exit { pid: caller, reason }` message; one that does not ends with `reason`, except that it ignores `Normal`. The
   * reason is one a process may state (`Normal`, `Shutdown`, `Fault`). Signals to a mailbox that is full are dropped.
   */
  readonly exitSignal: (cap: CapRef, reason: ExitReason) => Effect.Effect<void, CapabilityError | ArgumentError>
  /**
   * Reports the caller started (OTP's `init_ack`): a `Started { pid }` message to its parent, once (a second call does
   * nothing). A supervisor waits for it from a child whose spec has a `startTimeout`.
   */
  readonly started: () => Effect.Effect<void>
  /** Waits for the target to end and returns why (works after its death too). Right `monitor`. */
  readonly waitpid: (cap: CapRef) => Effect.Effect<ExitReason, CapabilityError | ExitUnknownError>
  /**
   * Ends the target with `reason`: by default `Killed { by: caller }`; a caller may also state `Normal`, `Shutdown`
   * or `Fault { error }`. Right `kill`.
   */
  readonly kill: (cap: CapRef, reason?: ExitReason) => Effect.Effect<void, CapabilityError | ArgumentError>
  /** Stops the target at its next syscall until `resume`. Right `kill`. */
  readonly suspend: (cap: CapRef) => Effect.Effect<void, CapabilityError>
  /** Lets a suspended target go on. Right `kill`. */
  readonly resume: (cap: CapRef) => Effect.Effect<void, CapabilityError>
  /** Sends the target a `Term { from }` message, which it handles itself. Right `kill`. */
  readonly term: (cap: CapRef) => Effect.Effect<void, CapabilityError>
  /** Registers the caller under a name; cleared when it exits. */
  readonly register: (name: string) => Effect.Effect<void, NameError | ArgumentError>
  /** Drops a name the caller holds. */
  readonly unregister: (name: string) => Effect.Effect<void, NameError | ArgumentError>
  /** A send-only cap to the process registered under `name`, if any. */
  readonly lookup: (name: string) => Effect.Effect<Option.Option<CapRef>, CapabilityError | ArgumentError>
  /** The caller's account. */
  readonly budget: () => Effect.Effect<Budget>
  /**
   * Charges the caller (and its ancestors) for work done outside a device. Past a limit the caller ends with
   * `Quota`; that is not an error it can catch.
   */
  readonly charge: (cost: Cost) => Effect.Effect<void, ArgumentError>
  /**
   * Changes the caller's priority (within `[KernelConfig.priorityMin, its ceiling]`) and/or its deadline (from now;
   * only ever earlier than the one it has).
   */
  readonly sched: (options: {
    readonly priority?: number | undefined
    readonly deadline?: Duration.Input | undefined
  }) => Effect.Effect<void, ArgumentError>
  /**
   * Opens a device (right `open` on a device cap) and returns a handle cap with `read` and `write`. The handle closes
   * when that cap is revoked, at the latest when the process holding it ends.
   */
  readonly open: (device: CapRef) => Effect.Effect<CapRef, CapabilityError>
  /**
   * One driver call (right `read`): refused to start while a meter the driver charges is used up (the process ends
   * with `Quota`), journaled by `(pid, op)`, charged to the caller and its ancestors, and cancelled (the driver's
   * work interrupted) if the caller is ended meanwhile.
   */
  readonly read: <A = unknown>(handle: CapRef, request: unknown) => Effect.Effect<A, DeviceCallError>
  /**
   * Several driver calls at once under one wait: op numbers are assigned in request order, every call runs to its
   * end (so each is journaled), and the results come back in request order; the first failure in request order
   * fails the whole.
   */
  readonly readAll: <A = unknown>(
    handle: CapRef,
    requests: ReadonlyArray<unknown>
  ) => Effect.Effect<ReadonlyArray<A>, DeviceCallError>
  /** A driver write (right `write`), metered and journaled like `read`. */
  readonly write: <A = unknown>(handle: CapRef, data: unknown) => Effect.Effect<A, DeviceCallError>
  /**
   * Adds a segment to the caller's context memory and returns its id. `tokens` is its size when known (else
   * estimated); a `pin`ned segment is never paged out. Past the high watermark of the `mem` quota, unpinned segments
   * are paged out, least recently used first; pinned segments alone over the quota end the caller with `Quota`.
   */
  readonly remember: (
    body: unknown,
    options?: { readonly tokens?: number | undefined; readonly pin?: boolean | undefined }
  ) => Effect.Effect<number, ArgumentError>
  /** The segments in the working set, oldest first. */
  readonly workingSet: () => Effect.Effect<ReadonlyArray<Segment>>
  /** The best `k` (default 3) swapped segments for `query`, paged back into the working set, best first. */
  readonly recall: (query: string, k?: number) => Effect.Effect<ReadonlyArray<Segment>, ArgumentError>
  /** Drops a segment (in memory or in swap). */
  readonly forget: (id: number) => Effect.Effect<void, MemoryError>
  /** Pins (default) or unpins a segment; pinning a swapped one pages it back in. */
  readonly pin: (id: number, on?: boolean) => Effect.Effect<void, MemoryError>
  /** Lets other processes run. */
  readonly yield: () => Effect.Effect<void>
  /**
   * Writes a `Log` event (and an Effect log line annotated with the pid). The message is truncated at
   * `KernelConfig.logMessageLengthMax`; fields larger than `logFieldsBytesMax` (or not plain data) are replaced by a
   * `{ dropped }` marker.
   */
  readonly log: (level: LogLevel, message: string, fields?: Record<string, unknown>) => Effect.Effect<void>
}

/**
 * The per-process syscall service.
 *
 * @category services
 */
export class Sys extends Context.Service<Sys, SysShape>()("effect-agent-os/Sys") {}

/** @category accessors */
export const self = (): Effect.Effect<number, never, Sys> => Sys.use((sys) => sys.self())
/** @category accessors */
export const selfCap = (): Effect.Effect<CapRef, CapabilityError, Sys> => Sys.use((sys) => sys.selfCap())
/** @category accessors */
export const caps = (): Effect.Effect<ReadonlyArray<CapRef>, never, Sys> => Sys.use((sys) => sys.caps())
const sysOf = (fiber: Fiber.Fiber<unknown, unknown>): SysShape => Context.getUnsafe(fiber.context, Sys)

/** @category accessors */
export const recv = <T = unknown>(): Effect.Effect<Message<T>, never, Sys> =>
  Effect.withFiber((fiber) => {
    const sys = sysOf(fiber)
    return eagerOf(sys)?.recvNow<T>(fiber) ?? sys.recv<T>()
  })
/** @category accessors */
export const send = (
  to: CapRef,
  body: unknown,
  options?: SendOptions
): Effect.Effect<void, CapabilityError | ArgumentError, Sys> =>
  Effect.withFiber((fiber) => {
    const sys = sysOf(fiber)
    return eagerOf(sys)?.sendNow(fiber, to, body, options) ?? sys.send(to, body, options)
  })
/** @category accessors */
export const spawn = <A>(
  image: Image<A>,
  options?: SpawnOptions<A>
): Effect.Effect<Spawned, CapabilityError | QuotaError | SpawnError | ArgumentError, Sys> =>
  Sys.use((sys) => sys.spawn(image, options))
/**
 * Ends the caller: with no reason `Normal`; a stated reason may only be `Normal`, `Shutdown` or `Fault` (else
 * `ArgumentError`).
 *
 * @category accessors
 */
export function exit(reason?: StatedReason): Effect.Effect<never, never, Sys>
export function exit(reason: ExitReason): Effect.Effect<never, ArgumentError, Sys>
export function exit(reason?: ExitReason): Effect.Effect<never, ArgumentError, Sys> {
  return Sys.use((sys) => sys.exit(reason))
}
/** @category accessors */
export const derive = (
  cap: CapRef,
  rights: ReadonlyArray<Right>
): Effect.Effect<CapRef, CapabilityError | ArgumentError, Sys> => Sys.use((sys) => sys.derive(cap, rights))
/** @category accessors */
export const attenuate = (
  cap: CapRef,
  options: AttenuateOptions
): Effect.Effect<CapRef, CapabilityError | ArgumentError, Sys> => Sys.use((sys) => sys.attenuate(cap, options))
/** @category accessors */
export const revoke = (cap: CapRef): Effect.Effect<void, CapabilityError, Sys> => Sys.use((sys) => sys.revoke(cap))
/** @category accessors */
export const monitor = (cap: CapRef): Effect.Effect<MonitorRef, CapabilityError, Sys> =>
  Sys.use((sys) => sys.monitor(cap))
/** @category accessors */
export const recvMatch = <T = unknown>(match: {
  readonly corr?: string | number | undefined
  readonly from?: number | undefined
  readonly sender?: CapRef | undefined
  readonly ref?: MonitorRef | undefined
}): Effect.Effect<Message<T>, ArgumentError | CapabilityError, Sys> => Sys.use((sys) => sys.recvMatch<T>(match))
/** @category accessors */
export const demonitor = (ref: MonitorRef): Effect.Effect<boolean, ArgumentError, Sys> =>
  Sys.use((sys) => sys.demonitor(ref))
/** @category accessors */
export const link = (cap: CapRef): Effect.Effect<void, CapabilityError, Sys> => Sys.use((sys) => sys.link(cap))
/** @category accessors */
export const unlink = (cap: CapRef): Effect.Effect<boolean, CapabilityError, Sys> => Sys.use((sys) => sys.unlink(cap))
/** @category accessors */
export const trapExit = (on: boolean): Effect.Effect<boolean, ArgumentError, Sys> => Sys.use((sys) => sys.trapExit(on))
/**
 * Sends an exit signal (right `kill`): trapped as an `Exit` message, else the target ends with `reason` (`Normal` is
 * ignored). A stated reason may only be `Normal`, `Shutdown` or `Fault` (else `ArgumentError`).
 *
 * @category accessors
 */
export const exitSignal = (
  cap: CapRef,
  reason: ExitReason
): Effect.Effect<void, CapabilityError | ArgumentError, Sys> => Sys.use((sys) => sys.exitSignal(cap, reason))
/** @category accessors */
export const started = (): Effect.Effect<void, never, Sys> => Sys.use((sys) => sys.started())
/** @category accessors */
export const waitpid = (cap: CapRef): Effect.Effect<ExitReason, CapabilityError | ExitUnknownError, Sys> =>
  Sys.use((sys) => sys.waitpid(cap))
/**
 * Ends the target (right `kill`): with no reason `Killed { by: caller }`; a stated reason may only be `Normal`,
 * `Shutdown` or `Fault` (else `ArgumentError`).
 *
 * @category accessors
 */
export function kill(cap: CapRef, reason?: StatedReason): Effect.Effect<void, CapabilityError, Sys>
export function kill(cap: CapRef, reason: ExitReason): Effect.Effect<void, CapabilityError | ArgumentError, Sys>
export function kill(cap: CapRef, reason?: ExitReason): Effect.Effect<void, CapabilityError | ArgumentError, Sys> {
  return Sys.use((sys) => sys.kill(cap, reason))
}
/** @category accessors */
export const suspend = (cap: CapRef): Effect.Effect<void, CapabilityError, Sys> => Sys.use((sys) => sys.suspend(cap))
/** @category accessors */
export const resume = (cap: CapRef): Effect.Effect<void, CapabilityError, Sys> => Sys.use((sys) => sys.resume(cap))
/** @category accessors */
export const term = (cap: CapRef): Effect.Effect<void, CapabilityError, Sys> => Sys.use((sys) => sys.term(cap))
/** @category accessors */
export const register = (name: string): Effect.Effect<void, NameError | ArgumentError, Sys> =>
  Sys.use((sys) => sys.register(name))
/** @category accessors */
export const unregister = (name: string): Effect.Effect<void, NameError | ArgumentError, Sys> =>
  Sys.use((sys) => sys.unregister(name))
/** @category accessors */
export const lookup = (name: string): Effect.Effect<Option.Option<CapRef>, CapabilityError | ArgumentError, Sys> =>
  Sys.use((sys) => sys.lookup(name))
/** @category accessors */
export const budget = (): Effect.Effect<Budget, never, Sys> => Sys.use((sys) => sys.budget())
/** @category accessors */
export const charge = (cost: Cost): Effect.Effect<void, ArgumentError, Sys> => Sys.use((sys) => sys.charge(cost))
/** @category accessors */
export const sched = (options: {
  readonly priority?: number | undefined
  readonly deadline?: Duration.Input | undefined
}): Effect.Effect<void, ArgumentError, Sys> => Sys.use((sys) => sys.sched(options))
/** @category accessors */
export const open = (device: CapRef): Effect.Effect<CapRef, CapabilityError, Sys> => Sys.use((sys) => sys.open(device))
/** @category accessors */
export const read = <A = unknown>(handle: CapRef, request: unknown): Effect.Effect<A, DeviceCallError, Sys> =>
  Effect.withFiber((fiber) => {
    const sys = sysOf(fiber)
    return eagerOf(sys)?.readNow<A>(fiber, handle, request) ?? sys.read<A>(handle, request)
  })
/** @category accessors */
export const readAll = <A = unknown>(
  handle: CapRef,
  requests: ReadonlyArray<unknown>
): Effect.Effect<ReadonlyArray<A>, DeviceCallError, Sys> => Sys.use((sys) => sys.readAll<A>(handle, requests))
/** @category accessors */
export const write = <A = unknown>(handle: CapRef, data: unknown): Effect.Effect<A, DeviceCallError, Sys> =>
  Sys.use((sys) => sys.write<A>(handle, data))
/** @category accessors */
export const remember = (
  body: unknown,
  options?: { readonly tokens?: number | undefined; readonly pin?: boolean | undefined }
): Effect.Effect<number, ArgumentError, Sys> => Sys.use((sys) => sys.remember(body, options))
/** @category accessors */
export const workingSet = (): Effect.Effect<ReadonlyArray<Segment>, never, Sys> => Sys.use((sys) => sys.workingSet())
/** @category accessors */
export const recall = (query: string, k?: number): Effect.Effect<ReadonlyArray<Segment>, ArgumentError, Sys> =>
  Sys.use((sys) => sys.recall(query, k))
/** @category accessors */
export const forget = (id: number): Effect.Effect<void, MemoryError, Sys> => Sys.use((sys) => sys.forget(id))
/** @category accessors */
export const pin = (id: number, on?: boolean): Effect.Effect<void, MemoryError, Sys> =>
  Sys.use((sys) => sys.pin(id, on))
/**
 * Lets other processes run (named `yield_` because `yield` is reserved in generators' scope).
 *
 * @category accessors
 */
export const yield_ = (): Effect.Effect<void, never, Sys> =>
  Effect.withFiber((fiber) => {
    const sys = sysOf(fiber)
    return eagerOf(sys)?.yieldNow(fiber) ?? sys.yield()
  })
export { yield_ as yield }
/** @category accessors */
export const log = (
  level: LogLevel,
  message: string,
  fields?: Record<string, unknown>
): Effect.Effect<void, never, Sys> => Sys.use((sys) => sys.log(level, message, fields))
