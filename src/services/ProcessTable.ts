/**
 * Runs processes: spawns image fibers, serves their syscalls, and ends them with a reason, releasing everything they
 * held.
 *
 * This is the kernel's chokepoint. Each process is a fiber forked with no parent (a child outlives its parent unless
 * linked) whose context holds its own `Sys`. A process ends *logically* the moment the kernel decides it (kill,
 * quota, deadline, fault, normal return): from then on, none of its syscalls takes effect, even if its fiber is still
 * finishing an uninterruptible region. Ending a process revokes its caps, closes its mailbox, clears its names,
 * re-parents its children to init, delivers `Down` to links and monitors, wakes `waitpid` callers and records an
 * `Exit` event, all in one synchronous step.
 *
 * @since 0.1.0
 */
import type { Fiber } from "effect"
import { Cause, Clock, Context, Duration, Effect, Exit, Layer, Option, Scheduler } from "effect"
import * as Accounts from "./Accounts.ts"
import { type CapRef, CapabilityError, type Resource, type Right, rightBit, rightsMask } from "./Capability.ts"
import { CapabilityTable, type CapabilityTableShape } from "./CapabilityTable.ts"
import { type CallContext, type DeviceResult, DeviceError, type Handle } from "./Device.ts"
import { DeviceTable, type DeviceTableShape, type HandleEntry } from "./DeviceTable.ts"
import { EventLog, type EventLogShape, type SyscallName } from "./EventLog.ts"
import type { CapRecord } from "./internal/capRef.ts"
import { durationMillis } from "./internal/duration.ts"
import { eager, type EagerSys } from "./internal/eagerSys.ts"
import { CompletionGate } from "./internal/completionGate.ts"
import { KernelScheduler } from "./internal/scheduler.ts"
import { makeAdvancer, VirtualTime } from "./VirtualTime.ts"
import { InferenceScheduler } from "./InferenceScheduler.ts"
import { Journal, JournalError, type JournalRecord, type JournalShape } from "./Journal.ts"
import { KernelConfig, type KernelLimits } from "./KernelConfig.ts"
import { Mailbox, type MailboxOwner, type Receiver } from "./Mailbox.ts"
import { NameRegistry, type NameRegistryShape } from "./NameRegistry.ts"
import * as Process from "./Process.ts"
import {
  ArgumentError,
  type DeviceCallError,
  ExitUnknownError,
  type LogLevel,
  type SendOptions,
  type Spawned,
  SpawnError,
  type SpawnOptions,
  Sys,
  type SysShape
} from "./Sys.ts"

const SEND = rightBit("send")
const MONITOR = rightBit("monitor")
const SPAWN = rightBit("spawn")
const KILL = rightBit("kill")
const OPEN = rightBit("open")
const READ = rightBit("read")
const WRITE = rightBit("write")
const allMeters: ReadonlyArray<Accounts.Meter> = ["tokens", "toolCalls", "usd"]
const CHILD_RIGHTS = SEND | MONITOR | KILL
const SELF_RIGHTS = SEND | MONITOR

/**
 * A live (or just ended) process, as the kernel sees it. Fields that most processes never use are allocated lazily,
 * so an idle process costs little more than its fiber.
 *
 * @category models
 */
export class Proc implements MailboxOwner {
  readonly pid: number
  readonly name: string
  parent: Proc | undefined
  readonly depth: number
  readonly account: Accounts.Account
  readonly mailbox: Mailbox
  readonly kernel: Kernel
  readonly startCaps: ReadonlyArray<CapRef>
  readonly startedAt: number
  readonly sys: ProcessSys
  fiber: Fiber.Fiber<void, unknown> | undefined = undefined
  /** Set once the process has ended; every later syscall is a no-op interrupt. */
  exitReason: Process.ExitReason | undefined = undefined
  /** `undefined` while running; while suspended, the callbacks of syscalls parked until `resume`. */
  suspended: Array<() => void> | undefined = undefined
  children: Set<Proc> | undefined = undefined
  links: Set<Proc> | undefined = undefined
  watchers: Set<Proc> | undefined = undefined
  watching: Set<Proc> | undefined = undefined
  exitWaiters: Set<(reason: Process.ExitReason) => void> | undefined = undefined
  timer: Fiber.Fiber<void> | undefined = undefined
  selfCap: CapRecord | undefined = undefined
  spawnCap: CapRecord | undefined = undefined
  /** Driver calls made so far: the next call is op `ops + 1` (the journal key with the pid). */
  ops = 0
  priority: number
  /** Absolute kernel-clock millis of the scheduling deadline; `undefined` for none. */
  deadlineAt: number | undefined

  constructor(
    kernel: Kernel,
    pid: number,
    name: string,
    parent: Proc | undefined,
    account: Accounts.Account,
    startCaps: ReadonlyArray<CapRef>,
    now: number,
    priority: number,
    deadlineAt: number | undefined
  ) {
    this.pid = pid
    this.name = name
    this.parent = parent
    this.depth = parent === undefined ? 0 : parent.depth + 1
    this.account = account
    this.startCaps = startCaps
    this.startedAt = now
    this.priority = priority
    this.deadlineAt = deadlineAt
    this.kernel = kernel
    this.mailbox = new Mailbox(account.mailboxMax, this)
    this.sys = new ProcessSys(this)
  }

  now(): number {
    return this.kernel.now()
  }

  handTo(receiver: Receiver, message: Process.Message): void {
    receiver(
      this.exitReason === undefined && this.suspended === undefined ? Effect.succeed(message) : settle(this, message)
    )
  }

  dropped(message: Process.Message): void {
    this.kernel.counters.messagesDropped++
    this.kernel.events.emit({ _tag: "Drop", pid: message.from, reason: "deadline", target: this.pid })
  }
}

/**
 * A row of `ps`.
 *
 * @category models
 */
export interface ProcessInfo {
  readonly pid: number
  readonly name: string
  readonly parent: number
  readonly status: "running" | "suspended"
  readonly priority: number
  readonly children: number
  readonly mailbox: number
  readonly caps: number
  readonly startedAt: number
  readonly budget: Accounts.Budget
}

/**
 * Counters for `metrics`.
 *
 * @category models
 */
export interface Counters {
  spawned: number
  /** Process fibers still running (a killed process's fiber may finish an uninterruptible region after its exit). */
  fibers: number
  exited: number
  messagesSent: number
  messagesDropped: number
  syscalls: number
  denied: number
  exitsByReason: Record<Process.ExitReason["_tag"], number>
}

/**
 * The process table's interface, used by `Kernel`.
 *
 * @category models
 */
export interface ProcessTableShape {
  /** Starts a root process (init is the first), with a spawn cap and the given device caps as its start caps. */
  readonly boot: <A>(
    image: Process.Image<A>,
    args: (grant: { readonly spawn: CapRef; readonly devices: Record<string, CapRef> }) => A,
    devices: ReadonlyArray<string>,
    quota: Accounts.Quota | undefined
  ) => Effect.Effect<number, Accounts.QuotaError | SpawnError>
  readonly get: (pid: number) => Proc | undefined
  readonly live: () => ReadonlyArray<Proc>
  readonly info: (proc: Proc) => ProcessInfo
  /** The exit reason of an ended process, while the history keeps it. */
  readonly exitOf: (pid: number) => Process.ExitReason | undefined
  /** Waits for `pid` to end (or returns its recorded reason). */
  readonly waitExit: (pid: number) => Effect.Effect<Process.ExitReason, ExitUnknownError>
  /** Ends a process now (kernel-initiated). */
  readonly terminate: (proc: Proc, reason: Process.ExitReason) => void
  /** Ends every process with `Shutdown` and waits (bounded) for their fibers. */
  readonly shutdown: Effect.Effect<void>
  readonly isShutdown: () => boolean
  readonly counters: Readonly<Counters>
  readonly now: () => number
}

/**
 * @category services
 */
export class ProcessTable extends Context.Service<ProcessTable, ProcessTableShape>()("effect-agent-os/ProcessTable") {}

/** Millis of an optional user duration; `NaN` when it is not a duration ≥ 0. */
const toMillis = (input: Duration.Input | undefined): number | undefined =>
  input === undefined ? undefined : durationMillis(input)

interface Kernel {
  readonly limits: KernelLimits
  readonly caps: CapabilityTableShape
  readonly events: EventLogShape
  readonly names: NameRegistryShape
  readonly procs: Map<number, Proc>
  readonly counters: Counters
  readonly now: () => number
  readonly spawnChild: <A>(
    parent: Proc,
    image: Process.Image<A>,
    options: SpawnOptions<A> | undefined
  ) => Effect.Effect<Spawned, CapabilityError | Accounts.QuotaError | SpawnError | ArgumentError>
  readonly terminate: (proc: Proc, reason: Process.ExitReason) => void
  readonly exitOf: (pid: number) => Process.ExitReason | undefined
  readonly armTimer: (proc: Proc) => void
  readonly deliver: (to: Proc, body: Process.KernelMessage) => void
  readonly devices: DeviceTableShape
  readonly journal: JournalShape
  readonly closeHandle: (id: number) => void
  readonly driverCall: (
    proc: Proc,
    entry: HandleEntry,
    call: "read" | "write",
    payload: unknown,
    op: number
  ) => Effect.Effect<unknown, DeviceError | JournalError>
}

/** Validates caps to move (held, live, unexpired, no duplicates, within the per-message bound). */
const checkMovable = (
  kernel: Kernel,
  pid: number,
  call: SyscallName,
  refs: ReadonlyArray<CapRef>
): ReadonlyArray<CapRecord> | CapabilityError | ArgumentError => {
  if (!Array.isArray(refs)) return new ArgumentError({ call, message: "caps must be an array" })
  if (refs.length > kernel.limits.capsPerMessageMax) {
    return new ArgumentError({ call, message: `more than ${kernel.limits.capsPerMessageMax} caps` })
  }
  const records: Array<CapRecord> = []
  for (const ref of refs) {
    const record = kernel.caps.check(call, pid, ref, 0, kernel.now)
    if (record instanceof CapabilityError) return record
    if (records.includes(record)) return new ArgumentError({ call, message: `${record.ref} given twice` })
    records.push(record)
  }
  return records
}

const parkWhileSuspended = (proc: Proc): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const waiters = proc.suspended
    if (waiters === undefined) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    waiters.push(wake)
    return Effect.sync(() => {
      const at = proc.suspended?.indexOf(wake) ?? -1
      if (at >= 0) proc.suspended!.splice(at, 1)
    })
  })

/**
 * Runs `body` as a syscall of `proc`: not at all once the process has ended (the caller is interrupted), and only
 * after `resume` while it is suspended.
 */
const enter = <A, E>(proc: Proc, body: () => Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    if (proc.exitReason !== undefined) return Effect.interrupt
    if (proc.suspended !== undefined) return Effect.andThen(parkWhileSuspended(proc), enter(proc, body))
    return body()
  })

/** What a blocking syscall returns once woken: nothing if the process ended meanwhile, later if it was suspended. */
const settle = <A>(proc: Proc, value: A): Effect.Effect<A> =>
  proc.exitReason !== undefined
    ? Effect.interrupt
    : proc.suspended !== undefined
      ? Effect.andThen(
          parkWhileSuspended(proc),
          Effect.suspend(() => settle(proc, value))
        )
      : Effect.succeed(value)

/**
 * The `Sys` of one process. Methods live on the prototype; an instance is two pointers.
 *
 * @category models
 */
export class ProcessSys implements SysShape, EagerSys {
  // JS-private: a process that reaches its own `Sys` object cannot reach the kernel through it
  readonly #proc: Proc
  constructor(proc: Proc) {
    this.#proc = proc
  }
  private get proc(): Proc {
    return this.#proc
  }

  /** The accessors' fast path (see `internal/eagerSys.ts`). */
  get [eager](): EagerSys {
    return this
  }
  private get kernel(): Kernel {
    return this.#proc.kernel
  }

  private deny<E extends { readonly _tag: string; readonly reason?: string }>(call: SyscallName, error: E) {
    this.kernel.counters.denied++
    this.kernel.events.emit({
      _tag: "Denied",
      pid: this.proc.pid,
      call,
      error: error._tag,
      reason: error.reason ?? ("message" in error ? String((error as { message: unknown }).message) : "")
    })
    return Effect.fail(error)
  }

  private syscall(call: SyscallName, target?: number): void {
    this.kernel.counters.syscalls++
    this.kernel.events.syscall(this.proc.pid, call, target ?? -1)
  }

  /** Checks a cap designating a live-or-dead process. */
  private processCap(call: SyscallName, ref: unknown, rights: number): CapRecord | CapabilityError {
    const record = this.kernel.caps.check(call, this.proc.pid, ref, rights, this.kernel.now)
    if (record instanceof CapabilityError) return record
    if (record.resource._tag !== "Process")
      return new CapabilityError({ call, reason: "wrong-resource", cap: record.id })
    return record
  }

  self(): Effect.Effect<number> {
    return enter(this.proc, () => {
      this.syscall("self")
      return Effect.succeed(this.proc.pid)
    })
  }

  selfCap(): Effect.Effect<CapRef> {
    return enter(this.proc, () => {
      const proc = this.proc
      let record = proc.selfCap
      if (record === undefined || record.revoked || record.owner !== proc.pid) {
        record = this.kernel.caps.mint(proc.pid, { _tag: "Process", pid: proc.pid }, SELF_RIGHTS)
        proc.selfCap = record
      }
      this.syscall("selfCap", record.id)
      return Effect.succeed(record.ref)
    })
  }

  caps(): Effect.Effect<ReadonlyArray<CapRef>> {
    return enter(this.proc, () => {
      this.syscall("caps")
      return Effect.succeed(this.proc.startCaps)
    })
  }

  recv<T = unknown>(): Effect.Effect<Process.Message<T>> {
    return Effect.suspend(() => this.recvNow<T>())
  }

  recvNow<T>(): Effect.Effect<Process.Message<T>> {
    const proc = this.proc
    if (proc.exitReason !== undefined || proc.suspended !== undefined) return enter(proc, () => this.recvNow<T>())
    this.syscall("recv")
    const ready = proc.mailbox.poll()
    if (ready !== undefined) return Effect.succeed(ready as Process.Message<T>)
    return Effect.callback<Process.Message<T>>((resume) => {
      const receiver = resume as Receiver
      proc.mailbox.parkReceiver(receiver)
      return Effect.sync(() => proc.mailbox.cancelReceiver(receiver))
    })
  }

  send(to: CapRef, body: unknown, options?: SendOptions): Effect.Effect<void, CapabilityError | ArgumentError> {
    return Effect.suspend(() => this.sendNow(to, body, options))
  }

  sendNow(
    to: unknown,
    body: unknown,
    options: SendOptions | undefined
  ): Effect.Effect<void, CapabilityError | ArgumentError> {
    {
      const kernel = this.kernel
      const proc = this.proc
      if (proc.exitReason !== undefined || proc.suspended !== undefined) {
        return enter(proc, () => this.sendNow(to, body, options))
      }
      const record = this.processCap("send", to, SEND)
      if (record instanceof CapabilityError) return this.deny("send", record)
      const targetPid = (record.resource as { readonly pid: number }).pid
      let moved: ReadonlyArray<CapRecord> | undefined
      if (options?.caps !== undefined && options.caps.length > 0) {
        const checked = checkMovable(kernel, proc.pid, "send", options.caps)
        if (!Array.isArray(checked)) return this.deny("send", checked as CapabilityError | ArgumentError)
        moved = checked
      }
      let deadline: number | undefined
      if (options?.deadline !== undefined) {
        const ms = toMillis(options.deadline)
        if (ms === undefined || Number.isNaN(ms)) {
          return this.deny("send", new ArgumentError({ call: "send", message: "deadline is not a duration ≥ 0" }))
        }
        deadline = kernel.now() + ms
      }
      this.syscall("send", targetPid)
      kernel.counters.messagesSent++
      const target = kernel.procs.get(targetPid)
      if (target === undefined || target.exitReason !== undefined) {
        // a dead receiver drops the message; caps sent with it die with it
        if (moved !== undefined) for (const cap of moved) kernel.caps.revoke(cap)
        kernel.counters.messagesDropped++
        kernel.events.emit({ _tag: "Drop", pid: proc.pid, reason: "dead", target: targetPid })
        return Effect.void
      }
      const refs: ReadonlyArray<CapRef> = moved === undefined ? noCaps : moved.map((cap) => cap.ref)
      if (moved !== undefined) for (const cap of moved) kernel.caps.transfer(cap, targetPid)
      const message: Process.Message = {
        from: proc.pid,
        body,
        caps: refs,
        corr: options?.corr,
        deadline
      }
      if (target.mailbox.offer(message)) return Effect.void
      return Effect.callback<void>((resume) => {
        const cancel = target.mailbox.parkSender(message, () => resume(settle(proc, undefined)))
        return Effect.sync(() => {
          cancel()
          // the sender gave up (it was killed while parked): its message is never delivered
          if (moved !== undefined) for (const cap of moved) kernel.caps.revoke(cap)
        })
      })
    }
  }

  spawn<A>(
    image: Process.Image<A>,
    options?: SpawnOptions<A>
  ): Effect.Effect<Spawned, CapabilityError | Accounts.QuotaError | SpawnError | ArgumentError> {
    return enter(this.proc, () => this.kernel.spawnChild(this.proc, image, options))
  }

  exit(reason?: Process.ExitReason): Effect.Effect<never> {
    return enter(this.proc, () => {
      this.syscall("exit")
      this.kernel.terminate(this.proc, reason ?? Process.normal)
      return Effect.interrupt
    })
  }

  derive(cap: CapRef, rights: ReadonlyArray<Right>): Effect.Effect<CapRef, CapabilityError> {
    return enter(
      this.proc,
      () => this.narrow("derive", cap, rights, undefined) as Effect.Effect<CapRef, CapabilityError>
    )
  }

  attenuate(
    cap: CapRef,
    options: { readonly rights?: ReadonlyArray<Right> | undefined; readonly expiresIn?: Duration.Input | undefined }
  ): Effect.Effect<CapRef, CapabilityError | ArgumentError> {
    return enter(this.proc, () => this.narrow("attenuate", cap, options.rights, options.expiresIn))
  }

  private narrow(
    call: "derive" | "attenuate",
    cap: CapRef,
    rights: ReadonlyArray<Right> | undefined,
    expiresIn: Duration.Input | undefined
  ): Effect.Effect<CapRef, CapabilityError | ArgumentError> {
    const kernel = this.kernel
    const now = kernel.now()
    const record = kernel.caps.check(call, this.proc.pid, cap, 0, kernel.now)
    if (record instanceof CapabilityError) return this.deny(call, record)
    let mask = record.rights
    if (rights !== undefined) {
      const asked = Array.isArray(rights) ? rightsMask(rights) : undefined
      if (asked === undefined) {
        return this.deny(call, new ArgumentError({ call, message: "rights must be an array of right names" }))
      }
      if ((asked & record.rights) !== asked) {
        return this.deny(call, new CapabilityError({ call, reason: "amplification", cap: record.id }))
      }
      mask = asked
    }
    let expiresAt = record.expiresAt
    if (expiresIn !== undefined) {
      const ms = toMillis(expiresIn)
      if (ms === undefined || Number.isNaN(ms)) {
        return this.deny(call, new ArgumentError({ call, message: "expiresIn is not a duration ≥ 0" }))
      }
      expiresAt = Math.min(expiresAt, now + ms)
    }
    const derived = kernel.caps.derive(record, mask, expiresAt)
    this.syscall(call, derived.id)
    return Effect.succeed(derived.ref)
  }

  revoke(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return enter(this.proc, () => {
      const record = this.kernel.caps.check("revoke", this.proc.pid, cap, 0, never)
      if (record instanceof CapabilityError) return this.deny("revoke", record)
      this.syscall("revoke", record.id)
      this.kernel.caps.revoke(record)
      return Effect.void
    })
  }

  monitor(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return enter(this.proc, () => {
      const kernel = this.kernel
      const proc = this.proc
      const record = this.processCap("monitor", cap, MONITOR)
      if (record instanceof CapabilityError) return this.deny("monitor", record)
      const pid = (record.resource as { readonly pid: number }).pid
      this.syscall("monitor", pid)
      const target = kernel.procs.get(pid)
      if (target === undefined || target.exitReason !== undefined) {
        kernel.deliver(proc, { _tag: "Down", pid, reason: kernel.exitOf(pid) ?? Process.fault("noproc") })
        return Effect.void
      }
      ;(target.watchers ??= new Set()).add(proc)
      ;(proc.watching ??= new Set()).add(target)
      return Effect.void
    })
  }

  waitpid(cap: CapRef): Effect.Effect<Process.ExitReason, CapabilityError | ExitUnknownError> {
    return enter(this.proc, (): Effect.Effect<Process.ExitReason, CapabilityError | ExitUnknownError> => {
      const kernel = this.kernel
      const proc = this.proc
      const record = this.processCap("waitpid", cap, MONITOR)
      if (record instanceof CapabilityError) return this.deny("waitpid", record)
      const pid = (record.resource as { readonly pid: number }).pid
      this.syscall("waitpid", pid)
      const target = kernel.procs.get(pid)
      if (target === undefined || target.exitReason !== undefined) {
        const reason = target?.exitReason ?? kernel.exitOf(pid)
        return reason === undefined ? this.deny("waitpid", new ExitUnknownError({ pid })) : Effect.succeed(reason)
      }
      return Effect.callback<Process.ExitReason>((resume) => {
        const waiter = (reason: Process.ExitReason) => resume(settle(proc, reason))
        ;(target.exitWaiters ??= new Set()).add(waiter)
        return Effect.sync(() => {
          target.exitWaiters?.delete(waiter)
        })
      })
    })
  }

  private signal(
    signal: "kill" | "suspend" | "resume" | "term",
    cap: CapRef,
    act: (target: Proc) => void
  ): Effect.Effect<void, CapabilityError> {
    return enter(this.proc, () => {
      const kernel = this.kernel
      const record = this.processCap(signal, cap, KILL)
      if (record instanceof CapabilityError) return this.deny(signal, record)
      const pid = (record.resource as { readonly pid: number }).pid
      kernel.counters.syscalls++
      kernel.events.emit({ _tag: "Signal", pid: this.proc.pid, signal, target: pid })
      const target = kernel.procs.get(pid)
      if (target !== undefined && target.exitReason === undefined) act(target)
      // a process that killed itself does not go on
      return this.proc.exitReason !== undefined ? Effect.interrupt : Effect.void
    })
  }

  kill(cap: CapRef, reason?: Process.ExitReason): Effect.Effect<void, CapabilityError> {
    return this.signal("kill", cap, (target) => this.kernel.terminate(target, reason ?? Process.killed(this.proc.pid)))
  }

  suspend(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return this.signal("suspend", cap, (target) => {
      target.suspended ??= []
    })
  }

  resume(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return this.signal("resume", cap, (target) => {
      const waiters = target.suspended
      target.suspended = undefined
      if (waiters !== undefined) for (const wake of waiters) wake()
    })
  }

  term(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return this.signal("term", cap, (target) => this.kernel.deliver(target, { _tag: "Term", from: this.proc.pid }))
  }

  register(name: string): Effect.Effect<void, import("./NameRegistry.ts").NameError> {
    return enter(this.proc, () => {
      const error = this.kernel.names.register(name, this.proc.pid)
      if (error !== undefined) return this.deny("register", error)
      this.syscall("register")
      return Effect.void
    })
  }

  unregister(name: string): Effect.Effect<void, import("./NameRegistry.ts").NameError> {
    return enter(this.proc, () => {
      const error = this.kernel.names.unregister(name, this.proc.pid)
      if (error !== undefined) return this.deny("unregister", error)
      this.syscall("unregister")
      return Effect.void
    })
  }

  lookup(name: string): Effect.Effect<Option.Option<CapRef>> {
    return enter(this.proc, () => {
      const pid = this.kernel.names.whereis(name)
      this.syscall("lookup", pid)
      if (pid === undefined) return Effect.succeed(Option.none())
      const record = this.kernel.caps.mint(this.proc.pid, { _tag: "Process", pid }, SEND)
      return Effect.succeed(Option.some(record.ref))
    })
  }

  budget(): Effect.Effect<Accounts.Budget> {
    return enter(this.proc, () => {
      this.syscall("budget")
      return Effect.succeed(Accounts.budget(this.proc.account))
    })
  }

  charge(cost: Accounts.Cost): Effect.Effect<void, ArgumentError> {
    return enter(this.proc, () => {
      if (typeof cost !== "object" || cost === null || !Accounts.isValidCost(cost)) {
        return this.deny("charge", new ArgumentError({ call: "charge", message: "a cost is finite numbers ≥ 0" }))
      }
      const kernel = this.kernel
      kernel.counters.syscalls++
      kernel.events.emit({
        _tag: "Charge",
        pid: this.proc.pid,
        tokens: cost.tokens ?? 0,
        toolCalls: cost.toolCalls ?? 0,
        usd: cost.usd ?? 0
      })
      const breach = Accounts.charge(this.proc.account, cost)
      if (breach === undefined) return Effect.void
      kernel.terminate(this.proc, Process.quota(breach))
      return Effect.interrupt
    })
  }

  sched(options: {
    readonly priority?: number | undefined
    readonly deadline?: Duration.Input | undefined
  }): Effect.Effect<void, ArgumentError> {
    return enter(this.proc, () => {
      const proc = this.proc
      if (options.priority !== undefined && !Number.isInteger(options.priority)) {
        return this.deny("sched", new ArgumentError({ call: "sched", message: "priority must be an integer" }))
      }
      const ms = toMillis(options.deadline)
      if (ms !== undefined && Number.isNaN(ms)) {
        return this.deny("sched", new ArgumentError({ call: "sched", message: "deadline is not a duration ≥ 0" }))
      }
      this.syscall("sched")
      if (options.priority !== undefined) proc.priority = options.priority
      if (ms !== undefined) {
        proc.deadlineAt = this.kernel.now() + ms
        this.kernel.armTimer(proc)
      }
      return Effect.void
    })
  }

  open(device: CapRef): Effect.Effect<CapRef, CapabilityError> {
    return enter(this.proc, () => {
      const kernel = this.kernel
      const proc = this.proc
      const record = kernel.caps.check("open", proc.pid, device, OPEN, kernel.now)
      if (record instanceof CapabilityError) return this.deny("open", record)
      const driver = record.resource._tag === "Device" ? kernel.devices.driver(record.resource.name) : undefined
      if (driver === undefined) {
        return this.deny("open", new CapabilityError({ call: "open", reason: "wrong-resource", cap: record.id }))
      }
      const entry = kernel.devices.create(driver, proc.pid)
      const handle = kernel.caps.mint(
        proc.pid,
        { _tag: "Handle", device: driver.name, handle: entry.id },
        READ | WRITE,
        Infinity,
        () => kernel.closeHandle(entry.id)
      )
      this.syscall("open", handle.id)
      return Effect.succeed(handle.ref)
    })
  }

  read<A = unknown>(handle: CapRef, request: unknown): Effect.Effect<A, DeviceCallError> {
    return enter(this.proc, () => this.callNow("read", handle, [request], false) as Effect.Effect<A, DeviceCallError>)
  }

  readAll<A = unknown>(
    handle: CapRef,
    requests: ReadonlyArray<unknown>
  ): Effect.Effect<ReadonlyArray<A>, DeviceCallError> {
    return enter(
      this.proc,
      () => this.callNow("read", handle, requests, true) as Effect.Effect<ReadonlyArray<A>, DeviceCallError>
    )
  }

  write<A = unknown>(handle: CapRef, data: unknown): Effect.Effect<A, DeviceCallError> {
    return enter(this.proc, () => this.callNow("write", handle, [data], false) as Effect.Effect<A, DeviceCallError>)
  }

  /** Checks the handle cap and the meters, numbers the ops in request order, then runs the calls. */
  private callNow(
    call: "read" | "write",
    ref: CapRef,
    payloads: ReadonlyArray<unknown>,
    many: boolean
  ): Effect.Effect<unknown, DeviceCallError> {
    const kernel = this.kernel
    const proc = this.proc
    if (!Array.isArray(payloads)) {
      return this.deny(call, new ArgumentError({ call, message: "readAll takes an array of requests" }))
    }
    const record = kernel.caps.check(call, proc.pid, ref, call === "read" ? READ : WRITE, kernel.now)
    if (record instanceof CapabilityError) return this.deny(call, record)
    const entry = record.resource._tag === "Handle" ? kernel.devices.get(record.resource.handle) : undefined
    if (entry === undefined) {
      return this.deny(call, new CapabilityError({ call, reason: "wrong-resource", cap: record.id }))
    }
    // a meter this driver charges is used up somewhere up the chain: the call must not start
    const dry = Accounts.exhausted(proc.account, entry.driver.meters ?? allMeters)
    if (dry !== undefined) {
      kernel.terminate(proc, Process.quota(dry))
      return Effect.interrupt
    }
    const first = proc.ops + 1
    proc.ops += payloads.length
    this.syscall(call, entry.id)
    if (!many) return kernel.driverCall(proc, entry, call, payloads[0], first)
    return Effect.forEach(
      payloads,
      (payload, i) => Effect.exit(kernel.driverCall(proc, entry, call, payload, first + i)),
      {
        concurrency: "unbounded"
      }
    ).pipe(
      Effect.flatMap((exits) => {
        const values: Array<unknown> = []
        for (const exit of exits) {
          if (Exit.isFailure(exit)) return exit
          values.push(exit.value)
        }
        return Effect.succeed(values)
      })
    )
  }

  yield(): Effect.Effect<void> {
    return Effect.suspend(() => this.yieldNow())
  }

  yieldNow(): Effect.Effect<void> {
    const proc = this.proc
    if (proc.exitReason !== undefined || proc.suspended !== undefined) return enter(proc, () => this.yieldNow())
    this.syscall("yield")
    return Effect.yieldNow
  }

  log(level: LogLevel, message: string, fields?: Record<string, unknown>): Effect.Effect<void> {
    return enter(this.proc, () => {
      const max = this.kernel.limits.logMessageLengthMax
      const text = String(message)
      const truncated = text.length > max ? text.slice(0, max) : text
      this.kernel.events.emit(
        fields === undefined
          ? { _tag: "Log", pid: this.proc.pid, level, message: truncated }
          : { _tag: "Log", pid: this.proc.pid, level, message: truncated, fields }
      )
      const severity = level === "debug" ? "Debug" : level === "info" ? "Info" : level === "warn" ? "Warn" : "Error"
      return Effect.logWithLevel(severity)(truncated).pipe(
        Effect.annotateLogs({ ...fields, pid: this.proc.pid, process: this.proc.name })
      )
    })
  }
}

const noCaps: ReadonlyArray<CapRef> = Object.freeze([])
const noCost: Accounts.Cost = Object.freeze({})
/** A clock for checks that ignore expiry (revoking an expired cap is allowed). */
const never = () => -Infinity

/**
 * Builds the process table over the other kernel services. The `Clock` and other references of the context the
 * table is built in (a `TestClock`, say) are the ones every process runs with.
 *
 * @category constructors
 */
export const make: Effect.Effect<
  ProcessTableShape,
  never,
  KernelConfig | CapabilityTable | EventLog | NameRegistry | DeviceTable | Journal | InferenceScheduler
> = Effect.gen(function* () {
  const limits = yield* KernelConfig
  const caps = yield* CapabilityTable
  const events = yield* EventLog
  const names = yield* NameRegistry
  const devices = yield* DeviceTable
  const journal = yield* Journal
  const inference = yield* InferenceScheduler
  const clock = yield* Clock.clockWith(Effect.succeed)
  const now = () => clock.currentTimeMillisUnsafe()
  // Effect's default scheduler is replaced by the kernel's shared run queue; any other scheduler in context (the
  // TestClock's, which tracks the fibers a sleep wakes so `adjust` can wait for them) is kept as it is
  // Under virtual time the kernel's run queue is required: its draining is what moves the clock.
  const virtual = yield* Effect.serviceOption(VirtualTime)
  const contextScheduler = yield* Scheduler.Scheduler
  const scheduler =
    contextScheduler instanceof Scheduler.MixedScheduler || virtual._tag === "Some"
      ? new KernelScheduler(limits.schedulerBatchesPerMacrotask)
      : contextScheduler
  const baseContext = Context.add(yield* Effect.context<never>(), Scheduler.Scheduler, scheduler)
  let inflight = 0
  const kernelScheduler = scheduler instanceof KernelScheduler ? scheduler : undefined
  // journaled results are handed back at quiescent points in completion order (see CompletionGate); that needs
  // the kernel's run queue, whose draining tells when every process is blocked
  const gate = journal.mode !== "live" && kernelScheduler !== undefined ? new CompletionGate() : undefined
  gate?.seed(journal.lastSeq())
  let advancer: { readonly poke: () => void } | undefined
  if (virtual._tag === "Some" && kernelScheduler !== undefined) {
    advancer = makeAdvancer(virtual.value, () => kernelScheduler.idle && inflight === 0 && (gate?.size ?? 0) === 0)
    virtual.value.onSleep(advancer.poke)
  }
  /** Every process is blocked: hand back the next journaled result, or else let virtual time move. */
  const quiescent = () => {
    if (gate !== undefined && gate.size > 0 && gate.deliver(inflight === 0)) {
      // the woken process may block again without scheduling anything: look again once it has
      if (gate.size > 0) checkSoon()
      else advancer?.poke()
      return
    }
    advancer?.poke()
  }
  kernelScheduler?.onIdle(quiescent)
  // microtask epochs: a number that changes once the current synchronous run has ended (one microtask per run,
  // however many calls look at it)
  let epoch = 0
  let epochQueued = false
  const currentEpoch = () => {
    if (!epochQueued) {
      epochQueued = true
      queueMicrotask(() => {
        epoch++
        epochQueued = false
      })
    }
    return epoch
  }
  let checkQueued = false
  const checkSoon = () => {
    if (checkQueued) return
    checkQueued = true
    queueMicrotask(() => {
      checkQueued = false
      if (kernelScheduler!.idle) quiescent()
    })
  }
  /** Waits for the gate to reach `seq`, then runs `settle`; a caller ended meanwhile is only charged. */
  const delivered = <A, E>(
    seq: number,
    cost: Accounts.Cost | undefined,
    proc: Proc,
    settle: () => Effect.Effect<A, E>
  ) =>
    Effect.callback<A, E>((resume) => {
      let done = false
      gate!.enqueue(seq, () => {
        done = true
        resume(Effect.suspend(settle))
      })
      checkSoon()
      return Effect.sync(() => {
        if (done) return
        // the result came back but its caller was ended before it was handed over: the work is still paid for
        gate!.enqueue(seq, () => {
          if (cost !== undefined) chargeOnly(proc, cost)
        })
        checkSoon()
      })
    })
  const procs = new Map<number, Proc>()
  const history = new Map<number, Process.ExitReason>()
  let nextPid = 1
  let down = false
  const counters: Counters = {
    spawned: 0,
    fibers: 0,
    exited: 0,
    messagesSent: 0,
    messagesDropped: 0,
    syscalls: 0,
    denied: 0,
    exitsByReason: { Normal: 0, Killed: 0, Quota: 0, Fault: 0, Deadline: 0, Shutdown: 0, Policy: 0 }
  }

  const record = (pid: number, reason: Process.ExitReason) => {
    history.set(pid, reason)
    if (history.size > limits.exitHistoryMax) {
      const oldest = history.keys().next().value as number
      history.delete(oldest)
      // nothing can use a cap to this process any more: reclaim them
      caps.revokeDesignating(oldest)
    }
  }

  const deliver = (to: Proc, body: Process.KernelMessage) => {
    if (to.exitReason === undefined) to.mailbox.push({ from: 0, body, caps: noCaps })
  }

  const terminate = (proc: Proc, reason: Process.ExitReason): void => {
    if (proc.exitReason !== undefined) return
    proc.exitReason = reason
    // recorded first: the notifications below wake other processes synchronously, and what they do comes after
    events.emit({ _tag: "Exit", pid: proc.pid, reason })
    procs.delete(proc.pid)
    record(proc.pid, reason)
    counters.exited++
    counters.exitsByReason[reason._tag]++
    if (proc.timer !== undefined) {
      proc.timer.interruptUnsafe()
      proc.timer = undefined
    }
    proc.suspended = undefined
    caps.revokeOwnedBy(proc.pid)
    proc.mailbox.close()
    names.releaseAll(proc.pid)
    const parent = proc.parent
    if (parent !== undefined) {
      parent.children?.delete(proc)
      parent.account.children--
    }
    if (proc.children !== undefined) {
      const init = procs.get(1)
      for (const child of proc.children) {
        child.parent = init
        child.account.parent = init?.account
        if (init !== undefined) {
          ;(init.children ??= new Set()).add(child)
          init.account.children++
        }
      }
      proc.children = undefined
    }
    const down: Process.Down = { _tag: "Down", pid: proc.pid, reason }
    if (proc.links !== undefined) {
      for (const other of proc.links) {
        other.links?.delete(proc)
        deliver(other, down)
      }
      proc.links = undefined
    }
    if (proc.watchers !== undefined) {
      for (const watcher of proc.watchers) {
        watcher.watching?.delete(proc)
        deliver(watcher, down)
      }
      proc.watchers = undefined
    }
    if (proc.watching !== undefined) {
      for (const target of proc.watching) target.watchers?.delete(proc)
      proc.watching = undefined
    }
    if (proc.exitWaiters !== undefined) {
      const waiters = proc.exitWaiters
      proc.exitWaiters = undefined
      for (const wake of waiters) wake(reason)
    }
    const fiber = proc.fiber
    if (fiber !== undefined && fiber.pollUnsafe() === undefined) fiber.interruptUnsafe()
  }

  const onFiberExit = (proc: Proc, exit: Exit.Exit<void, unknown>) => {
    if (proc.exitReason !== undefined) return
    if (Exit.isSuccess(exit)) return terminate(proc, Process.normal)
    const cause = exit.cause
    const error = Cause.hasInterruptsOnly(cause) ? "interrupted" : Process.describeError(Cause.squash(cause))
    events.emit({ _tag: "Fault", pid: proc.pid, error })
    terminate(proc, Process.fault(error))
  }

  const fire = (proc: Proc) => {
    if (proc.exitReason !== undefined) return
    terminate(proc, proc.account.wallEndsAt <= (proc.deadlineAt ?? Infinity) ? Process.quota("wall") : Process.deadline)
  }

  const armTimer = (proc: Proc) => {
    if (proc.timer !== undefined) {
      proc.timer.interruptUnsafe()
      proc.timer = undefined
    }
    const at = Math.min(proc.account.wallEndsAt, proc.deadlineAt ?? Infinity)
    if (at === Infinity || proc.exitReason !== undefined) return
    proc.timer = Effect.runForkWith(baseContext)(
      Effect.sleep(Math.max(0, at - now())).pipe(Effect.andThen(Effect.sync(() => fire(proc))))
    )
  }

  const start = <A>(proc: Proc, image: Process.Image<A>, args: A) => {
    counters.spawned++
    armTimer(proc)
    const main = Effect.suspend(() => image.main(args))
    const fiber = Effect.runForkWith(Context.add(baseContext, Sys, proc.sys))(main)
    proc.fiber = fiber
    counters.fibers++
    fiber.addObserver((exit) => {
      counters.fibers--
      onFiberExit(proc, exit)
    })
    // it may have been ended while it ran synchronously, before its fiber was known
    if (proc.exitReason !== undefined && fiber.pollUnsafe() === undefined) fiber.interruptUnsafe()
  }

  const closeHandle = (id: number) => {
    const entry = devices.remove(id)
    const close = entry?.handle?.close
    if (close !== undefined) Effect.runForkWith(baseContext)(close)
  }

  /** Charges a call's cost and hands back its value (the same for a live and a replayed call). */
  const chargeOnly = (proc: Proc, cost: Accounts.Cost) => {
    const tokens = cost.tokens ?? 0
    const toolCalls = cost.toolCalls ?? 0
    const usd = cost.usd ?? 0
    if (tokens !== 0 || toolCalls !== 0 || usd !== 0) {
      events.emit({ _tag: "Charge", pid: proc.pid, tokens, toolCalls, usd })
      // the work was done: it is charged even to a process that was ended meanwhile
      const breach = Accounts.charge(proc.account, cost)
      if (breach !== undefined) terminate(proc, Process.quota(breach))
    }
  }

  const settleValue = (proc: Proc, value: unknown, cost: Accounts.Cost): Effect.Effect<unknown> => {
    chargeOnly(proc, cost)
    return proc.exitReason !== undefined ? Effect.interrupt : Effect.succeed(value)
  }

  const settle = (proc: Proc, device: string, result: JournalRecord["result"]): Effect.Effect<unknown, DeviceError> => {
    if (result._tag === "Success") return settleValue(proc, result.value, result.cost)
    const fields = { device, reason: result.reason, message: result.message }
    return Effect.fail(
      new DeviceError(result.retryable === undefined ? fields : { ...fields, retryable: result.retryable })
    )
  }

  /** What a finished live call is, as it is journaled and replayed. */
  const asRecorded = (device: string, exit: Exit.Exit<DeviceResult, unknown>): JournalRecord["result"] => {
    if (Exit.isSuccess(exit)) {
      const cost = exit.value.cost ?? noCost
      const value = exit.value.value
      if (!Accounts.isValidCost(cost)) {
        return { _tag: "Failure", reason: "driver-error", message: `${device} reported an invalid cost` }
      }
      return value === undefined
        ? { _tag: "Success", cost: Accounts.normalize(cost) }
        : { _tag: "Success", value, cost: Accounts.normalize(cost) }
    }
    const found = Cause.findError(exit.cause)
    const error = found._tag === "Success" ? found.success : Cause.squash(exit.cause)
    return error instanceof DeviceError
      ? error.retryable === undefined
        ? { _tag: "Failure", reason: error.reason, message: error.message }
        : { _tag: "Failure", reason: error.reason, message: error.message, retryable: error.retryable }
      : { _tag: "Failure", reason: "driver-error", message: Process.describeError(error) }
  }

  const invoke = (
    entry: HandleEntry,
    handle: Handle,
    call: "read" | "write",
    payload: unknown,
    context: CallContext
  ): Effect.Effect<DeviceResult, DeviceError> => {
    if (call === "read") return handle.read(payload, context)
    if (handle.write !== undefined) return handle.write(payload, context)
    const device = entry.driver.name
    return Effect.fail(new DeviceError({ device, reason: "unsupported", message: `${device} has no write` }))
  }

  const driverCall = (
    proc: Proc,
    entry: HandleEntry,
    call: "read" | "write",
    payload: unknown,
    op: number
  ): Effect.Effect<unknown, DeviceError | JournalError> =>
    Effect.suspend(() => {
      const device = entry.driver.name
      const replayed = journal.replayed(proc.pid, op)
      if (replayed instanceof JournalError) return Effect.fail(replayed)
      if (replayed !== undefined) {
        if (replayed.device !== device || replayed.call !== call) {
          return Effect.fail(
            new JournalError({
              reason: "mismatch",
              message:
                `pid ${proc.pid} op ${op}: journaled ${replayed.call} on ${replayed.device}, ` +
                `now ${call} on ${device}`,
              pid: proc.pid,
              op
            })
          )
        }
        const recorded = replayed.result
        return gate !== undefined && replayed.seq !== undefined
          ? delivered(replayed.seq, recorded._tag === "Success" ? recorded.cost : undefined, proc, () =>
              settle(proc, device, recorded)
            )
          : settle(proc, device, recorded)
      }
      const context: CallContext = { pid: proc.pid, op, priority: proc.priority, deadline: proc.deadlineAt }
      // the driver's own handle opens at the first live call (a replayed run never opens it)
      const live =
        entry.handle !== undefined
          ? invoke(entry, entry.handle, call, payload, context)
          : Effect.flatMap(entry.driver.open({ pid: entry.opener }), (handle) => {
              entry.handle = handle
              return invoke(entry, handle, call, payload, context)
            })
      const policy = entry.driver.scheduled
      const admitted =
        policy === undefined || policy === false
          ? live
          : inference.run(
              device,
              policy === true ? {} : policy,
              { pid: proc.pid, priority: proc.priority, deadline: proc.deadlineAt },
              live,
              (result) => result.cost?.tokens ?? 0
            )
      const tracked = admitted
      if (journal.mode === "live") {
        // nothing to record: settle straight from the driver's result
        return Effect.matchCauseEffect(tracked, {
          onSuccess: (result) => {
            const cost = result.cost ?? noCost
            return Accounts.isValidCost(cost)
              ? settleValue(proc, result.value, cost)
              : settle(proc, device, asRecorded(device, Exit.succeed(result)))
          },
          onFailure: (cause) =>
            Cause.hasInterruptsOnly(cause)
              ? Effect.failCause(cause)
              : settle(proc, device, asRecorded(device, Exit.failCause(cause)))
        })
      }
      // A call that completes within the caller's own synchronous run (no other process can have run meanwhile)
      // and is stored at once is handed back inline, with no `seq`: its replay is inline too. Any other completion
      // goes through the gate.
      const startedAt = gate === undefined ? 0 : currentEpoch()
      const startedBatch = kernelScheduler?.turns ?? 0
      const recordAndSettle = (exit: Exit.Exit<DeviceResult, unknown>) => {
        const result = asRecorded(device, exit)
        const seq =
          gate === undefined || (epoch === startedAt && startedBatch === kernelScheduler!.turns && journal.synchronous)
            ? undefined
            : gate.assign()
        const pending = journal.record(
          seq === undefined
            ? { pid: proc.pid, op, device, call, result }
            : { pid: proc.pid, op, seq, device, call, result }
        )
        // handed back (and charged) once the record is stored, in completion order at a quiescent point
        const handBack =
          seq === undefined
            ? Effect.suspend(() => settle(proc, device, result))
            : delivered(seq, result._tag === "Success" ? result.cost : undefined, proc, () =>
                settle(proc, device, result)
              )
        return pending === undefined ? handBack : Effect.andThen(pending, handBack)
      }
      return Effect.matchCauseEffect(tracked, {
        onSuccess: (result) => recordAndSettle(Exit.succeed(result)),
        // cancelled (the caller was ended or interrupted): nothing was returned, nothing is journaled or charged
        onFailure: (cause) =>
          Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause) : recordAndSettle(Exit.failCause(cause))
      })
    })

  /**
   * A live driver call with its recording, counted as in flight: under virtual time the clock must not move while
   * a process waits on the outside world (a model, a tool, the journal's disk).
   */
  const trackedDriverCall: typeof driverCall = (proc, entry, call, payload, op) =>
    advancer === undefined
      ? driverCall(proc, entry, call, payload, op)
      : Effect.suspend(() => {
          inflight++
          return Effect.ensuring(
            driverCall(proc, entry, call, payload, op),
            Effect.sync(() => {
              if (--inflight === 0) advancer!.poke()
            })
          )
        })

  const kernel: Kernel = {
    limits,
    caps,
    events,
    names,
    procs,
    counters,
    now,
    devices,
    journal,
    closeHandle,
    driverCall: trackedDriverCall,
    terminate,
    exitOf: (pid) => history.get(pid),
    armTimer,
    deliver,
    spawnChild: <A>(
      parent: Proc,
      image: Process.Image<A>,
      options: SpawnOptions<A> | undefined
    ): Effect.Effect<Spawned, CapabilityError | Accounts.QuotaError | SpawnError | ArgumentError> => {
      const fail = <E extends { readonly _tag: string }>(error: E) => {
        counters.denied++
        events.emit({
          _tag: "Denied",
          pid: parent.pid,
          call: "spawn",
          error: error._tag,
          reason: String((error as { reason?: unknown }).reason ?? (error as { message?: unknown }).message)
        })
        return Effect.fail(error)
      }
      const at = now()
      // the caller must hold a live spawn cap: any it holds (started with, received, derived), the last one used first
      let spawnCap = parent.spawnCap
      if (spawnCap === undefined || spawnCap.revoked || spawnCap.owner !== parent.pid || spawnCap.expiresAt <= at) {
        spawnCap = undefined
        let reason: "not-held" | "missing-right" | "expired" = "not-held"
        for (const held of caps.held(parent.pid)) {
          if (held.resource._tag !== "Spawn") continue
          if ((held.rights & SPAWN) === 0) reason = reason === "expired" ? reason : "missing-right"
          else if (held.expiresAt <= at) reason = "expired"
          else {
            spawnCap = held
            break
          }
        }
        if (spawnCap === undefined) return fail(new CapabilityError({ call: "spawn", reason, right: "spawn" }))
        parent.spawnCap = spawnCap
      }
      if (typeof image !== "object" || image === null || image._tag !== "Image" || typeof image.main !== "function") {
        return fail(new ArgumentError({ call: "spawn", message: "not a process image (use Process.make)" }))
      }
      if (parent.account.children >= parent.account.childrenMax) {
        return fail(new SpawnError({ reason: "children", limit: parent.account.childrenMax }))
      }
      if (procs.size >= limits.processesMax) {
        return fail(new SpawnError({ reason: "processes", limit: limits.processesMax }))
      }
      if (parent.depth + 1 > limits.spawnDepthMax) {
        return fail(new SpawnError({ reason: "depth", limit: limits.spawnDepthMax }))
      }
      let moved: ReadonlyArray<CapRecord> = []
      if (options?.caps !== undefined && options.caps.length > 0) {
        const checked = checkMovable(kernel, parent.pid, "spawn", options.caps)
        if (!Array.isArray(checked)) return fail(checked as CapabilityError | ArgumentError)
        moved = checked
      }
      const account = Accounts.carve(parent.account, options?.quota, at, limits.mailboxMessagesMax)
      if (account instanceof Accounts.QuotaError) return fail(account)
      const priority = options?.priority ?? parent.priority
      if (!Number.isInteger(priority)) {
        return fail(new ArgumentError({ call: "spawn", message: "priority must be an integer" }))
      }
      const deadlineMs = toMillis(options?.deadline)
      if (deadlineMs !== undefined && Number.isNaN(deadlineMs)) {
        return fail(new ArgumentError({ call: "spawn", message: "deadline is not a duration ≥ 0" }))
      }
      const pid = nextPid++
      const child = makeProc(
        pid,
        image.name,
        parent,
        account,
        moved.length === 0 ? noCaps : moved.map((cap) => cap.ref),
        at,
        priority,
        deadlineMs === undefined ? undefined : at + deadlineMs
      )
      for (const cap of moved) caps.transfer(cap, pid)
      parent.account.children++
      ;(parent.children ??= new Set()).add(child)
      const cap = caps.mint(parent.pid, { _tag: "Process", pid }, CHILD_RIGHTS)
      if (options?.link === true) {
        ;(parent.links ??= new Set()).add(child)
        child.links = new Set([parent])
      }
      counters.syscalls++
      events.spawn(pid, parent.pid, child.name)
      start(child, image, options?.args as A)
      return Effect.succeed({ pid, cap: cap.ref })
    }
  }

  const makeProc = (
    pid: number,
    name: string,
    parent: Proc | undefined,
    account: Accounts.Account,
    startCaps: ReadonlyArray<CapRef>,
    at: number,
    priority: number,
    deadlineAt: number | undefined
  ) => {
    const proc = new Proc(kernel, pid, String(name), parent, account, startCaps, at, priority, deadlineAt)
    procs.set(pid, proc)
    return proc
  }

  const info = (proc: Proc): ProcessInfo => ({
    pid: proc.pid,
    name: proc.name,
    parent: proc.parent?.pid ?? 0,
    status: proc.suspended === undefined ? "running" : "suspended",
    priority: proc.priority,
    children: proc.children?.size ?? 0,
    mailbox: proc.mailbox.size,
    caps: caps.heldBy(proc.pid),
    startedAt: proc.startedAt,
    budget: Accounts.budget(proc.account)
  })

  const waitExit = (pid: number): Effect.Effect<Process.ExitReason, ExitUnknownError> =>
    Effect.suspend(() => {
      const proc = procs.get(pid)
      if (proc === undefined || proc.exitReason !== undefined) {
        const reason = proc?.exitReason ?? history.get(pid)
        return reason === undefined ? Effect.fail(new ExitUnknownError({ pid })) : Effect.succeed(reason)
      }
      return Effect.callback<Process.ExitReason>((resume) => {
        const waiter = (reason: Process.ExitReason) => resume(Effect.succeed(reason))
        ;(proc.exitWaiters ??= new Set()).add(waiter)
        return Effect.sync(() => {
          proc.exitWaiters?.delete(waiter)
        })
      })
    })

  const shutdown = Effect.suspend(() => {
    down = true
    const fibers: Array<Fiber.Fiber<void, unknown>> = []
    for (const proc of Array.from(procs.values())) {
      if (proc.fiber !== undefined) fibers.push(proc.fiber)
      terminate(proc, Process.shutdown)
    }
    if (fibers.length === 0) return Effect.void
    return Effect.callback<void>((resume) => {
      let pending = fibers.length
      for (const fiber of fibers) {
        fiber.addObserver(() => {
          if (--pending === 0) resume(Effect.void)
        })
      }
    }).pipe(Effect.timeoutOption(limits.shutdownTimeoutMs), Effect.asVoid)
  })

  const table: ProcessTableShape = {
    boot: (image, args, devices, quota) =>
      Effect.suspend((): Effect.Effect<number, Accounts.QuotaError | SpawnError> => {
        const at = now()
        if (procs.size >= limits.processesMax) {
          return Effect.fail(new SpawnError({ reason: "processes", limit: limits.processesMax }))
        }
        const account = Accounts.carve(undefined, quota, at, limits.mailboxMessagesMax)
        if (account instanceof Accounts.QuotaError) return Effect.fail(account)
        const pid = nextPid++
        const resources: Array<Resource> = [{ _tag: "Spawn" }]
        for (const name of devices) resources.push({ _tag: "Device", name })
        const minted = resources.map((resource) =>
          caps.mint(pid, resource, resource._tag === "Spawn" ? SPAWN : rightBit("open"))
        )
        const grant = {
          spawn: minted[0]!.ref,
          devices: Object.fromEntries(devices.map((name, i) => [name, minted[i + 1]!.ref]))
        }
        const proc = makeProc(
          pid,
          image.name,
          undefined,
          account,
          minted.map((cap) => cap.ref),
          at,
          0,
          undefined
        )
        proc.spawnCap = minted[0]
        events.spawn(pid, 0, proc.name)
        start(proc, image, args(grant))
        return Effect.succeed(pid)
      }),
    get: (pid) => procs.get(pid),
    live: () => Array.from(procs.values()),
    info,
    exitOf: (pid) => history.get(pid),
    waitExit,
    terminate,
    shutdown,
    isShutdown: () => down,
    counters,
    now
  }
  return table
})

/**
 * @category layers
 */
export const layer: Layer.Layer<
  ProcessTable,
  never,
  KernelConfig | CapabilityTable | EventLog | NameRegistry | DeviceTable | Journal | InferenceScheduler
> = Layer.effect(ProcessTable)(make)
