/**
 * Implements the syscalls of one process: the `Sys` service the kernel puts in each process fiber's context.
 *
 * Private to the package.
 */
import type { Duration } from "effect"
import { Effect, Exit, Option } from "effect"
import * as Accounts from "../Accounts.ts"
import { type CapRef, CapabilityError, type Right, rightsMask } from "../Capability.ts"
import { estimateTokens, Memory, MemoryError, type Segment, textOf } from "../ContextMemory.ts"
import type { SyscallName } from "../EventLog.ts"
import type { NameError } from "../NameRegistry.ts"
import * as Process from "../Process.ts"
import {
  ArgumentError,
  type DeviceCallError,
  ExitUnknownError,
  type LogLevel,
  type SendOptions,
  type Spawned,
  type SpawnError,
  type SpawnOptions,
  Sys,
  type SysShape
} from "../Sys.ts"
import type { Receiver } from "../Mailbox.ts"
import type { CapRecord } from "./capRef.ts"
import { eager, type EagerSys } from "./eagerSys.ts"
import {
  allMeters,
  KILL,
  type KernelState,
  MONITOR,
  noCaps,
  OPEN,
  READ,
  SELF_RIGHTS,
  SEND,
  toMillis,
  WRITE
} from "./kernelState.ts"
import type { Proc } from "./proc.ts"

/** Validates caps to move (held, live, unexpired, no duplicates, within the per-message bound). */
export const checkMovable = (
  kernel: KernelState,
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
export const settle = <A>(proc: Proc, value: A): Effect.Effect<A> =>
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
  private get kernel(): KernelState {
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

  register(name: string): Effect.Effect<void, NameError> {
    return enter(this.proc, () => {
      const error = this.kernel.names.register(name, this.proc.pid)
      if (error !== undefined) return this.deny("register", error)
      this.syscall("register")
      return Effect.void
    })
  }

  unregister(name: string): Effect.Effect<void, NameError> {
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

  remember(
    body: unknown,
    options?: { readonly tokens?: number | undefined; readonly pin?: boolean | undefined }
  ): Effect.Effect<number, ArgumentError> {
    return enter(this.proc, () => {
      const given = options?.tokens
      if (given !== undefined && !(Number.isFinite(given) && given >= 0)) {
        return this.deny("remember", new ArgumentError({ call: "remember", message: "tokens must be a number ≥ 0" }))
      }
      const proc = this.proc
      const kernelMemory = this.kernel.memory
      const memory = (proc.memory ??= new Memory({ recaller: kernelMemory.recaller(), pager: kernelMemory.pager }))
      const id = memory.remember(body, given ?? estimateTokens(textOf(body)), options?.pin === true)
      this.syscall("remember", id)
      return this.fitMemory(Effect.succeed(id))
    })
  }

  workingSet(): Effect.Effect<ReadonlyArray<Segment>> {
    return enter(this.proc, () => {
      this.syscall("workingSet")
      return Effect.succeed(this.proc.memory?.workingSet() ?? [])
    })
  }

  recall(query: string, k = 3): Effect.Effect<ReadonlyArray<Segment>, ArgumentError> {
    return enter(this.proc, () => {
      if (typeof query !== "string" || !Number.isInteger(k) || k < 0) {
        return this.deny("recall", new ArgumentError({ call: "recall", message: "a query string and a count k ≥ 0" }))
      }
      this.syscall("recall")
      const found = this.proc.memory?.recall(query, k) ?? []
      return this.fitMemory(Effect.succeed(found))
    })
  }

  forget(id: number): Effect.Effect<void, MemoryError> {
    return enter(this.proc, () => {
      if (this.proc.memory?.forget(id) !== true) {
        return this.deny("forget", new MemoryError({ call: "forget", id, reason: "unknown-segment" }))
      }
      this.syscall("forget", id)
      return Effect.void
    })
  }

  pin(id: number, on = true): Effect.Effect<void, MemoryError> {
    return enter(this.proc, () => {
      if (this.proc.memory?.pin(id, on) !== true) {
        return this.deny("pin", new MemoryError({ call: "pin", id, reason: "unknown-segment" }))
      }
      this.syscall("pin", id)
      return this.fitMemory(Effect.void)
    })
  }

  /** Pages out past the high watermark; pinned segments alone over the `mem` quota end the process. */
  private fitMemory<A, E>(then: Effect.Effect<A, E>): Effect.Effect<A, E> {
    const proc = this.proc
    const limits = this.kernel.limits
    if (proc.memory === undefined) return then
    const { fits, pending } = proc.memory.fit(
      proc.account.memMax,
      limits.memoryHighWatermark,
      limits.memoryLowWatermark
    )
    if (!fits) {
      this.kernel.terminate(proc, Process.quota("mem"))
      return Effect.interrupt
    }
    // an effectful pager (a model call) runs here, in this process, through its own syscalls
    return pending === undefined ? then : Effect.andThen(Effect.provideService(pending, Sys, this), then)
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

/** A clock for checks that ignore expiry (revoking an expired cap is allowed). */
const never = () => -Infinity
