/**
 * Holds the syscall path: every syscall of every process, from the argument a process hands in to the event the
 * kernel records.
 *
 * Each syscall runs in this order, and a reader finds its whole path here:
 *
 * 1. **enter** — only from a fiber of the calling process (a `Sys` leaked to another process acts for nobody there),
 *    only while the process lives (a syscall after the kernel ended it interrupts the caller and takes no effect; so
 *    does one made after its wall quota or deadline passed, even if the timer has not fired yet), and only while it
 *    is not suspended (it parks until `resume`);
 * 2. **copy and validate** — every argument read once into a kernel-owned copy (`inputs.ts`), refused with a typed
 *    `ArgumentError` when invalid;
 * 3. **check the capability** (`CapabilityTable.check`);
 * 4. **reserve / charge** — a driver call reserves what it may cost before it starts and settles to its actual cost
 *    when it ends; past a limit the caller ends with `Quota` (not an error it can catch);
 * 5. **journal** — a driver call is replayed from, or recorded to, the journal by `(pid, op)`;
 * 6. **emit the event** (`Syscall`, `Denied`, `Charge`, `Signal`, `Drop`, `Log`).
 *
 * Private to the package.
 */
import type { Fiber } from "effect"
import { Cause, Context, Effect, Exit, Option } from "effect"
import * as Accounts from "../Accounts.ts"
import { type CapRef, CapabilityError, isCapRef } from "../Capability.ts"
import { estimateTokens, Memory, MemoryError, type Segment, textOf, tokenCount } from "../ContextMemory.ts"
import { type CallContext, DeviceError, type DeviceResult, type Handle } from "../Device.ts"
import type { HandleEntry } from "../DeviceTable.ts"
import type { KernelDevice } from "./kernelDevice.ts"
import type { EventInput, SyscallName } from "../EventLog.ts"
import { JournalError, type JournalRecord, requestDigest } from "../Journal.ts"
import type { NameError } from "../NameRegistry.ts"
import * as Policy from "../Policy.ts"
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
import type { Match, Receiver } from "../Mailbox.ts"
import type { Approvals } from "./approvals.ts"
import type { CapRecord, MessageLayer, ToolLayer } from "./capRef.ts"
import { endRun } from "./delivery.ts"
import { eager, type EagerSys } from "./eagerSys.ts"
import * as Inputs from "./inputs.ts"
import { freeze, includes, isFrozen, map, own, push, SafeMap, SafeSet } from "./primordials.ts"
import { allMeters, KILL, type KernelState, MONITOR, OPEN, READ, SELF_RIGHTS, SEND, WRITE } from "./kernelState.ts"
import type { Proc } from "./proc.ts"

/**
 * The context key under which a process fiber carries its process's token. The token is an object reachable only from
 * the process's own context (not from its `Sys`), so a `Sys` that reached another process cannot be used there.
 */
export const processTokenKey = "effect-agent-os/Sys/ProcessToken"

type Entered = Effect.Effect<never> | Effect.Effect<void> | undefined

const foreign = (pid: number) =>
  Effect.die(new Error(`a Sys acts only for its own process (pid ${pid}): this fiber is not one of its fibers`))

/**
 * Step 1 of every syscall: `undefined` when `proc` may make a syscall from `fiber` now, else what the caller gets
 * instead (a defect for a foreign fiber, an interrupt once the process ended, a park while it is suspended).
 */
const admit = (proc: Proc, fiber: Fiber.Fiber<unknown, unknown>): Entered => {
  if (fiber.context.mapUnsafe.get(processTokenKey) !== proc.token) return foreign(proc.pid)
  if (proc.exitReason !== undefined) return Effect.interrupt
  // a timer that has not fired yet does not give a process time it no longer has
  if (proc.endsAt() !== Infinity && proc.kernel.expire(proc)) return Effect.interrupt
  if (proc.suspended !== undefined) return parkWhileSuspended(proc)
  return undefined
}

const parkWhileSuspended = (proc: Proc): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const waiters = proc.suspended
    if (waiters === undefined) return resume(Effect.void)
    const wake = () => resume(Effect.void)
    waiters.add(wake)
    return Effect.sync(() => {
      proc.suspended?.delete(wake)
    })
  })

/** Runs `body` as a syscall of `proc` from `fiber` (step 1), re-entering after a suspension. */
const enterFrom = <A, E>(
  proc: Proc,
  fiber: Fiber.Fiber<unknown, unknown>,
  body: () => Effect.Effect<A, E>
): Effect.Effect<A, E> => {
  const refused = admit(proc, fiber)
  if (refused === undefined) return body()
  if (proc.suspended !== undefined && proc.exitReason === undefined && refused !== Effect.interrupt) {
    return Effect.andThen(refused as Effect.Effect<void>, enter(proc, body))
  }
  return refused as Effect.Effect<never>
}

const enter = <A, E>(proc: Proc, body: () => Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.withFiber((fiber) => enterFrom(proc, fiber, body))

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

/** A clock for checks that ignore expiry (revoking an expired cap is allowed). */
const never = () => -Infinity

/**
 * The `Sys` of one process. Everything it knows is in JS-private fields and methods: a process that reaches its own
 * `Sys` object (or another's) finds no path to kernel state through it. An instance is one pointer.
 *
 * @category models
 */
export class ProcessSys implements SysShape, EagerSys {
  readonly #proc: Proc
  constructor(proc: Proc) {
    this.#proc = proc
  }

  /** The accessors' fast path (see `internal/eagerSys.ts`). */
  get [eager](): EagerSys {
    return this
  }

  // ---- events and refusals (step 6) --------------------------------------------------------------------------

  #deny<E extends { readonly _tag: string; readonly message: string; readonly reason?: string }>(
    call: SyscallName,
    error: E
  ): Effect.Effect<never, E> {
    const kernel = this.#proc.kernel
    kernel.counters.denied++
    kernel.events.emit({
      _tag: "Denied",
      pid: this.#proc.pid,
      call,
      error: error._tag,
      reason: error.reason ?? error.message
    })
    return Effect.fail(error)
  }

  #argument(call: SyscallName, result: ArgumentError): Effect.Effect<never, ArgumentError> {
    return this.#deny(call, result)
  }

  #syscall(call: SyscallName, target?: number): void {
    const kernel = this.#proc.kernel
    kernel.counters.syscalls++
    kernel.events.syscall(this.#proc.pid, call, target ?? -1)
  }

  /** Charges a cost and ends the process past a limit; `true` when it still runs. */
  #charge(cost: Accounts.Cost): boolean {
    return chargeProcess(this.#proc, cost)
  }

  // ---- capability checks (step 3) ----------------------------------------------------------------------------

  #processCap(call: SyscallName, ref: unknown, rights: number): CapRecord | CapabilityError {
    const kernel = this.#proc.kernel
    const record = kernel.caps.check(call, this.#proc.pid, ref, rights, kernel.now)
    if (record instanceof CapabilityError) return record
    if (record.resource._tag !== "Process") {
      return new CapabilityError({ call, reason: "wrong-resource", cap: record.id })
    }
    return record
  }

  /** Whether the caller may hold `count` more caps; the error to fail with otherwise. */
  #room(call: SyscallName, owner: number, count: number): CapabilityError | undefined {
    return this.#proc.kernel.caps.room(owner, count) ? undefined : new CapabilityError({ call, reason: "limit" })
  }

  /** Validates caps to move (held, live, unexpired, no duplicates); `refs` is the kernel's copy of the list. */
  #movable(
    call: SyscallName,
    refs: ReadonlyArray<unknown>
  ): ReadonlyArray<CapRecord> | CapabilityError | ArgumentError {
    const kernel = this.#proc.kernel
    const records: Array<CapRecord> = []
    for (let i = 0; i < refs.length; i++) {
      const record = kernel.caps.check(call, this.#proc.pid, refs[i], 0, kernel.now)
      if (record instanceof CapabilityError) return record
      if (includes(records, record)) return new ArgumentError({ call, message: `${record.ref} given twice` })
      push(records, record)
    }
    return records
  }

  // ---- identity ------------------------------------------------------------------------------------------------

  self(): Effect.Effect<number> {
    return enter(this.#proc, () => {
      this.#syscall("self")
      return Effect.succeed(this.#proc.pid)
    })
  }

  selfCap(): Effect.Effect<CapRef, CapabilityError> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      let record = proc.selfCap
      if (record === undefined || record.revoked || record.owner !== proc.pid) {
        const full = this.#room("selfCap", proc.pid, 1)
        if (full !== undefined) return this.#deny("selfCap", full)
        record = proc.kernel.caps.mint(proc.pid, { _tag: "Process", pid: proc.pid }, SELF_RIGHTS)
        proc.selfCap = record
      }
      this.#syscall("selfCap", record.id)
      return Effect.succeed(record.ref)
    })
  }

  caps(): Effect.Effect<ReadonlyArray<CapRef>> {
    return enter(this.#proc, () => {
      this.#syscall("caps")
      return Effect.succeed(this.#proc.startCaps)
    })
  }

  budget(): Effect.Effect<Accounts.Budget> {
    return enter(this.#proc, () => {
      this.#syscall("budget")
      return Effect.succeed(Accounts.budget(this.#proc.account))
    })
  }

  // ---- messages ------------------------------------------------------------------------------------------------

  recv<T = unknown>(): Effect.Effect<Process.Message<T>> {
    return Effect.withFiber((fiber) => this.recvNow<T>(fiber))
  }

  recvNow<T>(fiber: Fiber.Fiber<unknown, unknown>): Effect.Effect<Process.Message<T>> {
    const proc = this.#proc
    const refused = admit(proc, fiber)
    if (refused !== undefined) return enterFrom(proc, fiber, () => this.recvNow<T>(fiber))
    this.#syscall("recv")
    const ready = proc.mailbox.poll()
    if (ready !== undefined) return Effect.succeed(ready as Process.Message<T>)
    return Effect.callback<Process.Message<T>>((resume) => {
      const receiver = resume as Receiver
      proc.mailbox.parkReceiver(receiver)
      return Effect.sync(() => proc.mailbox.cancelReceiver(receiver))
    })
  }

  recvMatch<T = unknown>(match: {
    readonly corr?: string | number | undefined
    readonly from?: number | undefined
    readonly sender?: CapRef | undefined
    readonly ref?: Process.MonitorRef | undefined
  }): Effect.Effect<Process.Message<T>, ArgumentError | CapabilityError> {
    return enter(this.#proc, (): Effect.Effect<Process.Message<T>, ArgumentError | CapabilityError> => {
      const proc = this.#proc
      const input = Inputs.read("recvMatch", () => Inputs.matchOf("match", match))
      if (input instanceof ArgumentError) return this.#argument("recvMatch", input)
      let copied: Match = input
      if (input.sender !== undefined) {
        // the sender named by a cap the caller holds (any rights): the kernel matches its pid, never revealed
        const record = this.#processCap("recvMatch", input.sender, 0)
        if (record instanceof CapabilityError) return this.#deny("recvMatch", record)
        const { sender: _, ...rest } = input
        copied = { ...rest, from: (record.resource as { readonly pid: number }).pid }
      }
      this.#syscall("recvMatch")
      const ready = proc.mailbox.pollMatch(copied)
      if (ready !== undefined) return Effect.succeed(ready as Process.Message<T>)
      return Effect.callback<Process.Message<T>>((resume) => {
        const receiver = resume as Receiver
        proc.mailbox.parkMatcher(copied, receiver)
        return Effect.sync(() => proc.mailbox.cancelMatcher(receiver))
      })
    })
  }

  send(to: CapRef, body: unknown, options?: SendOptions): Effect.Effect<void, CapabilityError | ArgumentError> {
    return Effect.withFiber((fiber) => this.sendNow(fiber, to, body, options))
  }

  sendNow(
    fiber: Fiber.Fiber<unknown, unknown>,
    to: unknown,
    body: unknown,
    options: SendOptions | undefined
  ): Effect.Effect<void, CapabilityError | ArgumentError> {
    const proc = this.#proc
    const refused = admit(proc, fiber)
    if (refused !== undefined) return enterFrom(proc, fiber, () => this.sendNow(fiber, to, body, options))
    const kernel = proc.kernel
    // 2. copy and validate
    const input = Inputs.read("send", () => Inputs.sendOptionsOf(options, kernel.limits.capsPerMessageMax))
    if (input instanceof ArgumentError) return this.#argument("send", input)
    let copied: unknown = body
    if (typeof body === "object" && body !== null) {
      const copy = Inputs.read("send", () => Inputs.bodyOf("body", body, kernel.limits.messageBytesMax, isCapRef))
      if (copy instanceof ArgumentError) return this.#argument("send", copy)
      copied = copy.value
    } else if (typeof body === "string" && 2 * body.length > kernel.limits.messageBytesMax) {
      return this.#argument(
        "send",
        new ArgumentError({ call: "send", message: `body is larger than ${kernel.limits.messageBytesMax} bytes` })
      )
    } else if (typeof body === "function" || typeof body === "symbol") {
      return this.#argument(
        "send",
        new ArgumentError({ call: "send", message: `body: not plain data (a ${typeof body})` })
      )
    }
    // 3. capabilities
    const record = this.#processCap("send", to, SEND)
    if (record instanceof CapabilityError) return this.#deny("send", record)
    const targetPid = (record.resource as { readonly pid: number }).pid
    // 3a. a typed pipe: the body must decode through every message narrowing of the cap; the receiver gets the
    // decoded value. Invalid: the send fails, or the message is dropped (the caps on it stay the sender's)
    const layers = record.messages
    if (layers !== undefined) {
      for (let i = 0; i < layers.length; i++) {
        const layer = layers[i]!
        const decoded = layer.decode(copied)
        if (decoded.ok) {
          // what the Schema made is copied again, as a body is: a getter, a Proxy or a function it returned must not
          // reach the receiver (nor show the policies one thing and the receiver another)
          const value = decoded.value
          if (typeof value === "object" && value !== null) {
            const again = Inputs.read("send", () =>
              Inputs.bodyOf("body", value, kernel.limits.messageBytesMax, isCapRef)
            )
            if (again instanceof ArgumentError) {
              return this.#argument(
                "send",
                new ArgumentError({
                  call: "send",
                  message: `the pipe's Schema made a body that is not plain data: ${again.message}`
                })
              )
            }
            copied = again.value
          } else if (typeof value === "function" || typeof value === "symbol") {
            return this.#argument(
              "send",
              new ArgumentError({
                call: "send",
                message: `the pipe's Schema made a body that is not plain data (a ${typeof value})`
              })
            )
          } else copied = value
          continue
        }
        if (layer.invalid === "drop") {
          this.#syscall("send", targetPid)
          kernel.counters.messagesDropped++
          kernel.events.emit({ _tag: "Drop", pid: proc.pid, reason: "invalid", target: targetPid })
          return Effect.void
        }
        return this.#argument(
          "send",
          new ArgumentError({ call: "send", message: `body does not match the pipe's Schema: ${decoded.why}` })
        )
      }
    }
    let moved: ReadonlyArray<CapRecord> | undefined
    if (input.caps !== undefined) {
      const checked = this.#movable("send", input.caps)
      if (!Array.isArray(checked)) return this.#deny("send", checked as CapabilityError | ArgumentError)
      moved = checked
    }
    const target = kernel.procs.get(targetPid)
    if (moved !== undefined && target !== undefined && target.exitReason === undefined && targetPid !== proc.pid) {
      const full = this.#room("send", targetPid, moved.length)
      if (full !== undefined) return this.#deny("send", full)
    }
    // 3b. policies with rules on messages sent: judged on the copied body and the receiver's name
    const chain = proc.policies
    if (chain !== undefined && Policy.judgesMessages(chain)) {
      // the type is an own string `_tag`; one the body only inherits, or reads through a getter, cannot be judged
      let tag: unknown = undefined
      let judgeable = true
      if (typeof copied === "object" && copied !== null && !isArray(copied)) {
        const descriptor = getOwnPropertyDescriptor(copied, "_tag")
        if (descriptor !== undefined) {
          if ("value" in descriptor) tag = descriptor.value
          else judgeable = false
        } else if ("_tag" in copied) judgeable = false
      }
      const subject = judgedIn(proc, {
        device: "",
        call: "send",
        tool: undefined,
        input: copied,
        message: freeze({ type: typeof tag === "string" ? tag : undefined, to: target?.name ?? "" })
      })
      const verdict: Policy.Verdict = judgeable
        ? Policy.judge(chain, subject)
        : { decision: "deny", rule: "unjudgeable-type" }
      if (verdict.decision !== "allow") {
        kernel.events.emit({
          _tag: "Policy",
          pid: proc.pid,
          rule: verdict.rule,
          decision: verdict.decision,
          device: "",
          on: "send"
        })
        if (verdict.decision === "kill") {
          kernel.terminate(proc, Process.policy(verdict.rule))
          return Effect.interrupt
        }
        return this.#deny("send", new CapabilityError({ call: "send", reason: "policy", rule: verdict.rule }))
      }
    }
    const deadline = input.deadlineMs === undefined ? undefined : kernel.now() + input.deadlineMs
    // 6. event, then act
    this.#syscall("send", targetPid)
    kernel.counters.messagesSent++
    if (target === undefined || target.exitReason !== undefined) {
      // a dead receiver drops the message; caps sent with it die with it
      if (moved !== undefined) for (let i = 0; i < moved.length; i++) kernel.caps.revoke(moved[i]!)
      kernel.counters.messagesDropped++
      kernel.events.emit({ _tag: "Drop", pid: proc.pid, reason: "dead", target: targetPid })
      return Effect.void
    }
    const refs: ReadonlyArray<CapRef> = moved === undefined ? noRefs : freeze(map(moved, (cap) => cap.ref))
    if (moved !== undefined) for (let i = 0; i < moved.length; i++) kernel.caps.transfer(moved[i]!, targetPid)
    const message: Process.Message = { from: proc.pid, body: copied, caps: refs, corr: input.corr, deadline }
    if (target.mailbox.offer(message)) return Effect.void
    if (input.nosuspend) {
      // `nosuspend` (Erlang's `erlang:send/3` option): a full mailbox drops the message instead of parking the sender
      if (moved !== undefined) for (let i = 0; i < moved.length; i++) kernel.caps.revoke(moved[i]!)
      kernel.counters.messagesDropped++
      kernel.events.emit({ _tag: "Drop", pid: proc.pid, reason: "full", target: targetPid })
      return Effect.void
    }
    return Effect.callback<void>((resume) => {
      const cancel = target.mailbox.parkSender(message, () => resume(settle(proc, undefined)))
      return Effect.sync(() => {
        cancel()
        // the sender gave up (it was killed while parked): its message is never delivered
        if (moved !== undefined) for (let i = 0; i < moved.length; i++) kernel.caps.revoke(moved[i]!)
      })
    })
  }

  // ---- processes -----------------------------------------------------------------------------------------------

  spawn<A>(
    image: Process.Image<A>,
    options?: SpawnOptions<A>
  ): Effect.Effect<Spawned, CapabilityError | Accounts.QuotaError | SpawnError | ArgumentError> {
    return enter(this.#proc, () => this.#proc.kernel.spawnChild(this.#proc, image, options))
  }

  exit(reason?: Process.ExitReason): Effect.Effect<never, ArgumentError> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      const stated =
        reason === undefined
          ? Process.normal
          : Inputs.read("exit", () => Inputs.exitReasonOf("reason", reason, proc.kernel.limits.logMessageLengthMax))
      if (stated instanceof ArgumentError) return this.#argument("exit", stated)
      this.#syscall("exit")
      proc.kernel.terminate(proc, stated)
      return Effect.interrupt
    })
  }

  waitpid(cap: CapRef): Effect.Effect<Process.ExitReason, CapabilityError | ExitUnknownError> {
    return enter(this.#proc, (): Effect.Effect<Process.ExitReason, CapabilityError | ExitUnknownError> => {
      const proc = this.#proc
      const kernel = proc.kernel
      const record = this.#processCap("waitpid", cap, MONITOR)
      if (record instanceof CapabilityError) return this.#deny("waitpid", record)
      const pid = (record.resource as { readonly pid: number }).pid
      this.#syscall("waitpid", pid)
      const target = kernel.procs.get(pid)
      if (target === undefined || target.exitReason !== undefined) {
        const reason = target?.exitReason ?? kernel.exitOf(pid)
        return reason === undefined ? this.#deny("waitpid", new ExitUnknownError({ pid })) : Effect.succeed(reason)
      }
      return Effect.callback<Process.ExitReason>((resume) => {
        const waiter = (reason: Process.ExitReason) => resume(settle(proc, reason))
        ;(target.exitWaiters ??= new SafeSet()).add(waiter)
        return Effect.sync(() => {
          target.exitWaiters?.delete(waiter)
        })
      })
    })
  }

  monitor(cap: CapRef): Effect.Effect<Process.MonitorRef, CapabilityError> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      const kernel = proc.kernel
      const record = this.#processCap("monitor", cap, MONITOR)
      if (record instanceof CapabilityError) return this.#deny("monitor", record)
      const pid = (record.resource as { readonly pid: number }).pid
      this.#syscall("monitor", pid)
      const ref = kernel.nextMonitorRef()
      const target = kernel.procs.get(pid)
      if (target === undefined || target.exitReason !== undefined) {
        kernel.deliver(proc, { _tag: "Down", pid, reason: kernel.exitOf(pid) ?? Process.fault("noproc"), ref })
        return Effect.succeed(ref)
      }
      ;(target.monitoredBy ??= new SafeMap()).set(ref, { ref, watcher: proc })
      ;(proc.monitors ??= new SafeMap()).set(ref, { ref, target })
      return Effect.succeed(ref)
    })
  }

  demonitor(ref: Process.MonitorRef): Effect.Effect<boolean, ArgumentError> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      if (typeof ref !== "number" || !Number.isSafeInteger(ref) || ref < 1) {
        return this.#argument(
          "demonitor",
          new ArgumentError({ call: "demonitor", message: "ref must be a monitor ref" })
        )
      }
      this.#syscall("demonitor")
      const made = proc.monitors?.get(ref)
      if (made === undefined) return Effect.succeed(false)
      proc.monitors!.delete(ref)
      made.target.monitoredBy?.delete(ref)
      return Effect.succeed(true)
    })
  }

  link(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return enter(this.#proc, (): Effect.Effect<void, CapabilityError> => {
      const proc = this.#proc
      const kernel = proc.kernel
      // linking lets the caller's end end the target: the `kill` right, and `monitor` for the signal coming back
      const record = this.#processCap("link", cap, MONITOR | KILL)
      if (record instanceof CapabilityError) return this.#deny("link", record)
      const pid = (record.resource as { readonly pid: number }).pid
      this.#syscall("link", pid)
      if (pid === proc.pid) return Effect.void
      const target = kernel.procs.get(pid)
      if (target === undefined || target.exitReason !== undefined) {
        kernel.signal(pid, proc, kernel.exitOf(pid) ?? Process.fault("noproc"))
        return proc.exitReason !== undefined ? Effect.interrupt : Effect.void
      }
      ;(proc.links ??= new SafeSet()).add(target)
      ;(target.links ??= new SafeSet()).add(proc)
      return Effect.void
    })
  }

  unlink(cap: CapRef): Effect.Effect<boolean, CapabilityError> {
    return enter(this.#proc, (): Effect.Effect<boolean, CapabilityError> => {
      const proc = this.#proc
      const record = this.#processCap("unlink", cap, MONITOR)
      if (record instanceof CapabilityError) return this.#deny("unlink", record)
      const pid = (record.resource as { readonly pid: number }).pid
      this.#syscall("unlink", pid)
      const target = proc.kernel.procs.get(pid)
      if (target === undefined || proc.links?.has(target) !== true) return Effect.succeed(false)
      proc.links.delete(target)
      target.links?.delete(proc)
      return Effect.succeed(true)
    })
  }

  trapExit(on: boolean): Effect.Effect<boolean, ArgumentError> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      if (typeof on !== "boolean") {
        return this.#argument("trapExit", new ArgumentError({ call: "trapExit", message: "on must be a boolean" }))
      }
      this.#syscall("trapExit")
      const before = proc.trapExit
      proc.trapExit = on
      return Effect.succeed(before)
    })
  }

  exitSignal(cap: CapRef, reason: Process.ExitReason): Effect.Effect<void, CapabilityError | ArgumentError> {
    return enter(this.#proc, (): Effect.Effect<void, CapabilityError | ArgumentError> => {
      const proc = this.#proc
      const stated = Inputs.read("exitSignal", () =>
        Inputs.exitReasonOf("reason", reason, proc.kernel.limits.logMessageLengthMax)
      )
      if (stated instanceof ArgumentError) return this.#argument("exitSignal", stated)
      // bounded: a flood of signals to a trapping process that does not read says nothing more than one
      return this.#signal("exitSignal", cap, (target) => proc.kernel.signal(proc.pid, target, stated, true))
    })
  }

  started(): Effect.Effect<void> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      this.#syscall("started")
      if (proc.started) return Effect.void
      proc.started = true
      const parent = proc.parent
      if (parent !== undefined) proc.kernel.deliver(parent, { _tag: "Started", pid: proc.pid })
      return Effect.void
    })
  }

  // ---- signals (right `kill`) ----------------------------------------------------------------------------------

  #signal(
    signal: "kill" | "suspend" | "resume" | "term" | "exitSignal",
    cap: CapRef,
    act: (target: Proc) => void
  ): Effect.Effect<void, CapabilityError> {
    const proc = this.#proc
    const kernel = proc.kernel
    const record = this.#processCap(signal, cap, KILL)
    if (record instanceof CapabilityError) return this.#deny(signal, record)
    const pid = (record.resource as { readonly pid: number }).pid
    kernel.counters.syscalls++
    kernel.events.emit({
      _tag: "Signal",
      pid: proc.pid,
      signal: signal === "exitSignal" ? "exit" : signal,
      target: pid
    })
    const target = kernel.procs.get(pid)
    if (target !== undefined && target.exitReason === undefined) act(target)
    // a process that killed itself does not go on
    return proc.exitReason !== undefined ? Effect.interrupt : Effect.void
  }

  kill(cap: CapRef, reason?: Process.ExitReason): Effect.Effect<void, CapabilityError | ArgumentError> {
    return enter(this.#proc, (): Effect.Effect<void, CapabilityError | ArgumentError> => {
      const proc = this.#proc
      const stated =
        reason === undefined
          ? Process.killed(proc.pid)
          : Inputs.read("kill", () => Inputs.exitReasonOf("reason", reason, proc.kernel.limits.logMessageLengthMax))
      if (stated instanceof ArgumentError) return this.#argument("kill", stated)
      return this.#signal("kill", cap, (target) => proc.kernel.terminate(target, stated))
    })
  }

  suspend(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return enter(this.#proc, () =>
      this.#signal("suspend", cap, (target) => {
        target.suspended ??= new SafeSet()
      })
    )
  }

  resume(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return enter(this.#proc, () =>
      this.#signal("resume", cap, (target) => {
        const waiters = target.suspended
        target.suspended = undefined
        if (waiters !== undefined) {
          const wakes = waiters.toArray()
          for (let i = 0; i < wakes.length; i++) wakes[i]!()
        }
      })
    )
  }

  term(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return enter(this.#proc, () =>
      this.#signal("term", cap, (target) => this.#proc.kernel.deliver(target, { _tag: "Term", from: this.#proc.pid }))
    )
  }

  // ---- capabilities --------------------------------------------------------------------------------------------

  derive(
    cap: CapRef,
    rights: ReadonlyArray<import("../Capability.ts").Right>
  ): Effect.Effect<CapRef, CapabilityError | ArgumentError> {
    return enter(this.#proc, (): Effect.Effect<CapRef, CapabilityError | ArgumentError> => {
      const mask = Inputs.read("derive", () => Inputs.rightsOf("rights", rights))
      if (mask instanceof ArgumentError) return this.#argument("derive", mask)
      return this.#narrow("derive", cap, mask, undefined)
    })
  }

  attenuate(
    cap: CapRef,
    options: {
      readonly rights?: ReadonlyArray<import("../Capability.ts").Right> | undefined
      readonly expiresIn?: import("effect").Duration.Input | undefined
      readonly tools?: import("../Capability.ts").ToolGrants | undefined
      readonly message?: unknown
      readonly invalid?: "fail" | "drop" | undefined
    }
  ): Effect.Effect<CapRef, CapabilityError | ArgumentError> {
    return enter(this.#proc, (): Effect.Effect<CapRef, CapabilityError | ArgumentError> => {
      const input = Inputs.read("attenuate", () => {
        if (typeof options !== "object" || options === null) return new Inputs.Unreadable("options must be an object")
        const rightsInput = options.rights
        const expiresInput = options.expiresIn
        const toolsInput = options.tools
        const mask = rightsInput === undefined ? undefined : Inputs.rightsOf("rights", rightsInput)
        if (mask instanceof Inputs.Unreadable) return mask
        const expiresInMs = Inputs.millisOf("expiresIn", expiresInput)
        if (expiresInMs instanceof Inputs.Unreadable) return expiresInMs
        const tools = toolsInput === undefined ? undefined : Inputs.toolGrantsOf(toolsInput, isCapRef)
        if (tools instanceof Inputs.Unreadable) return tools
        const messageInput = options.message
        const invalidInput = options.invalid
        const message =
          messageInput === undefined
            ? invalidInput === undefined
              ? undefined
              : new Inputs.Unreadable("invalid needs a message Schema")
            : Inputs.messageLayerOf(messageInput, invalidInput)
        if (message instanceof Inputs.Unreadable) return message
        return { mask, expiresInMs, tools, message }
      })
      if (input instanceof ArgumentError) return this.#argument("attenuate", input)
      return this.#narrow("attenuate", cap, input.mask, input.expiresInMs, input.tools, input.message)
    })
  }

  #narrow(
    call: "derive" | "attenuate",
    cap: CapRef,
    mask: number | undefined,
    expiresInMs: number | undefined,
    tools?: ToolLayer,
    message?: MessageLayer
  ): Effect.Effect<CapRef, CapabilityError> {
    const proc = this.#proc
    const kernel = proc.kernel
    const record = kernel.caps.check(call, proc.pid, cap, 0, kernel.now)
    if (record instanceof CapabilityError) return this.#deny(call, record)
    if (mask !== undefined && (mask & record.rights) !== mask) {
      return this.#deny(call, new CapabilityError({ call, reason: "amplification", cap: record.id }))
    }
    const full = this.#room(call, proc.pid, 1)
    if (full !== undefined) return this.#deny(call, full)
    const expiresAt =
      expiresInMs === undefined ? record.expiresAt : Math.min(record.expiresAt, kernel.now() + expiresInMs)
    // a tools narrowing applies to what reaches a driver: a device cap or a handle
    if (tools !== undefined && record.resource._tag !== "Device" && record.resource._tag !== "Handle") {
      return this.#deny(call, new CapabilityError({ call, reason: "wrong-resource", cap: record.id }))
    }
    // a message narrowing (a typed pipe) applies to what is sent to a process
    if (message !== undefined && record.resource._tag !== "Process") {
      return this.#deny(call, new CapabilityError({ call, reason: "wrong-resource", cap: record.id }))
    }
    const derived = kernel.caps.derive(record, mask ?? record.rights, expiresAt, tools, message)
    this.#syscall(call, derived.id)
    return Effect.succeed(derived.ref)
  }

  revoke(cap: CapRef): Effect.Effect<void, CapabilityError> {
    return enter(this.#proc, () => {
      const kernel = this.#proc.kernel
      const record = kernel.caps.check("revoke", this.#proc.pid, cap, 0, never)
      if (record instanceof CapabilityError) return this.#deny("revoke", record)
      this.#syscall("revoke", record.id)
      kernel.caps.revoke(record)
      return Effect.void
    })
  }

  // ---- names ---------------------------------------------------------------------------------------------------

  register(name: string): Effect.Effect<void, NameError | ArgumentError> {
    return enter(this.#proc, (): Effect.Effect<void, NameError | ArgumentError> => {
      const copied = Inputs.read("register", () => Inputs.nameOf(name))
      if (copied instanceof ArgumentError) return this.#argument("register", copied)
      const error = this.#proc.kernel.names.register(copied, this.#proc.pid)
      if (error !== undefined) return this.#deny("register", error)
      this.#syscall("register")
      return Effect.void
    })
  }

  unregister(name: string): Effect.Effect<void, NameError | ArgumentError> {
    return enter(this.#proc, (): Effect.Effect<void, NameError | ArgumentError> => {
      const copied = Inputs.read("unregister", () => Inputs.nameOf(name))
      if (copied instanceof ArgumentError) return this.#argument("unregister", copied)
      const error = this.#proc.kernel.names.unregister(copied, this.#proc.pid)
      if (error !== undefined) return this.#deny("unregister", error)
      this.#syscall("unregister")
      return Effect.void
    })
  }

  lookup(name: string): Effect.Effect<Option.Option<CapRef>, CapabilityError | ArgumentError> {
    return enter(this.#proc, (): Effect.Effect<Option.Option<CapRef>, CapabilityError | ArgumentError> => {
      const copied = Inputs.read("lookup", () => Inputs.nameOf(name))
      if (copied instanceof ArgumentError) return this.#argument("lookup", copied)
      const kernel = this.#proc.kernel
      const pid = kernel.names.whereis(copied)
      if (pid === undefined) {
        this.#syscall("lookup")
        return Effect.succeed(Option.none())
      }
      const full = this.#room("lookup", this.#proc.pid, 1)
      if (full !== undefined) return this.#deny("lookup", full)
      this.#syscall("lookup", pid)
      const record = kernel.caps.mint(this.#proc.pid, { _tag: "Process", pid }, SEND)
      return Effect.succeed(Option.some(record.ref))
    })
  }

  // ---- accounting and scheduling -------------------------------------------------------------------------------

  charge(cost: Accounts.Cost): Effect.Effect<void, ArgumentError> {
    return enter(this.#proc, () => {
      const copied = Inputs.read("charge", () => Inputs.costOf("cost", cost))
      if (copied instanceof ArgumentError) return this.#argument("charge", copied)
      this.#proc.kernel.counters.syscalls++
      return this.#charge(copied) ? Effect.void : Effect.interrupt
    })
  }

  sched(options: {
    readonly priority?: number | undefined
    readonly deadline?: import("effect").Duration.Input | undefined
  }): Effect.Effect<void, ArgumentError> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      const kernel = proc.kernel
      const input = Inputs.read("sched", () =>
        Inputs.schedOptionsOf(options, kernel.limits.priorityMin, proc.priorityCeiling)
      )
      if (input instanceof ArgumentError) return this.#argument("sched", input)
      let deadlineAt: number | undefined
      if (input.deadlineMs !== undefined) {
        deadlineAt = kernel.now() + input.deadlineMs
        // a deadline only ever moves earlier: a process cannot give itself more time than it was given
        if (proc.deadlineAt !== undefined && deadlineAt > proc.deadlineAt) {
          return this.#argument(
            "sched",
            new ArgumentError({ call: "sched", message: "a deadline can only be moved earlier" })
          )
        }
      }
      this.#syscall("sched")
      if (input.priority !== undefined) proc.priority = input.priority
      if (deadlineAt !== undefined) {
        proc.deadlineAt = deadlineAt
        kernel.armTimer(proc)
      }
      return Effect.void
    })
  }

  yield(): Effect.Effect<void> {
    return Effect.withFiber((fiber) => this.yieldNow(fiber))
  }

  yieldNow(fiber: Fiber.Fiber<unknown, unknown>): Effect.Effect<void> {
    const proc = this.#proc
    const refused = admit(proc, fiber)
    if (refused !== undefined) return enterFrom(proc, fiber, () => this.yieldNow(fiber))
    this.#syscall("yield")
    return Effect.yieldNow
  }

  log(level: LogLevel, message: string, fields?: Record<string, unknown>): Effect.Effect<void> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      const limits = proc.kernel.limits
      const max = limits.logMessageLengthMax
      const copied = Inputs.read("log", () => {
        const text = typeof message === "string" ? message : String(message)
        return text.length > max ? text.slice(0, max) : text
      })
      const text = copied instanceof ArgumentError ? "(unreadable log message)" : copied
      const severity = level === "debug" ? "Debug" : level === "warn" ? "Warn" : level === "error" ? "Error" : "Info"
      const copiedFields = Inputs.logFieldsOf(fields, limits.logFieldsBytesMax, isCapRef)
      proc.kernel.counters.syscalls++
      proc.kernel.events.emit(
        copiedFields === undefined
          ? { _tag: "Log", pid: proc.pid, level: severity.toLowerCase(), message: text }
          : { _tag: "Log", pid: proc.pid, level: severity.toLowerCase(), message: text, fields: copiedFields }
      )
      return Effect.logWithLevel(severity)(text).pipe(
        Effect.annotateLogs({ ...copiedFields, pid: proc.pid, process: proc.name })
      )
    })
  }

  // ---- context memory ------------------------------------------------------------------------------------------

  remember(
    body: unknown,
    options?: { readonly tokens?: number | undefined; readonly pin?: boolean | undefined }
  ): Effect.Effect<number, ArgumentError> {
    return enter(this.#proc, () => {
      const input = Inputs.read("remember", () => Inputs.rememberOptionsOf(options))
      if (input instanceof ArgumentError) return this.#argument("remember", input)
      const proc = this.#proc
      const id = rememberIn(proc, "remember", body, input.tokens, input.pin)
      if (id instanceof ArgumentError) return this.#argument("remember", id)
      if (id === undefined) return overMemory(proc)
      this.#syscall("remember", id)
      return this.#fitMemory(Effect.succeed(id))
    })
  }

  workingSet(): Effect.Effect<ReadonlyArray<Segment>> {
    return enter(this.#proc, () => {
      this.#syscall("workingSet")
      return Effect.succeed(this.#proc.memory?.workingSet() ?? [])
    })
  }

  recall(query: string, k = 3): Effect.Effect<ReadonlyArray<Segment>, ArgumentError> {
    return enter(this.#proc, () => {
      if (typeof query !== "string" || !Number.isInteger(k) || k < 0) {
        return this.#argument(
          "recall",
          new ArgumentError({ call: "recall", message: "a query string and a count k ≥ 0" })
        )
      }
      this.#syscall("recall")
      const found = this.#proc.memory?.recall(query, k) ?? []
      return this.#fitMemory(Effect.succeed(found))
    })
  }

  forget(id: number): Effect.Effect<void, MemoryError> {
    return enter(this.#proc, () => {
      if (this.#proc.memory?.forget(id) !== true) {
        return this.#deny("forget", new MemoryError({ call: "forget", id: Number(id), reason: "unknown-segment" }))
      }
      this.#syscall("forget", id)
      return Effect.void
    })
  }

  pin(id: number, on = true): Effect.Effect<void, MemoryError> {
    return enter(this.#proc, () => {
      if (this.#proc.memory?.pin(id, on === true) !== true) {
        return this.#deny("pin", new MemoryError({ call: "pin", id: Number(id), reason: "unknown-segment" }))
      }
      this.#syscall("pin", id)
      return this.#fitMemory(Effect.void)
    })
  }

  /** Pages out past the high watermark; pinned segments alone over the `mem` quota end the process. */
  #fitMemory<A, E>(then: Effect.Effect<A, E>): Effect.Effect<A, E> {
    return fitMemory(this.#proc, then)
  }

  // ---- devices -------------------------------------------------------------------------------------------------

  open(device: CapRef): Effect.Effect<CapRef, CapabilityError> {
    return enter(this.#proc, () => {
      const proc = this.#proc
      const kernel = proc.kernel
      const record = kernel.caps.check("open", proc.pid, device, OPEN, kernel.now)
      if (record instanceof CapabilityError) return this.#deny("open", record)
      const driver = record.resource._tag === "Device" ? kernel.devices.driver(record.resource.name) : undefined
      if (driver === undefined) {
        return this.#deny("open", new CapabilityError({ call: "open", reason: "wrong-resource", cap: record.id }))
      }
      const full = this.#room("open", proc.pid, 1)
      if (full !== undefined) return this.#deny("open", full)
      const entry = kernel.devices.create(driver, proc.pid)
      // a handle opened through a cap narrowed to some tools is narrowed the same way
      const handle = kernel.caps.mint(
        proc.pid,
        { _tag: "Handle", device: driver.name, handle: entry.id },
        READ | WRITE,
        Infinity,
        () => kernel.driverPath.closeHandle(entry.id),
        record.tools
      )
      this.#syscall("open", handle.id)
      return Effect.succeed(handle.ref)
    })
  }

  read<A = unknown>(handle: CapRef, request: unknown): Effect.Effect<A, DeviceCallError> {
    return Effect.withFiber((fiber) => this.readNow<A>(fiber, handle, request))
  }

  readNow<A>(
    fiber: Fiber.Fiber<unknown, unknown>,
    handle: CapRef,
    request: unknown
  ): Effect.Effect<A, DeviceCallError> {
    const proc = this.#proc
    const refused = admit(proc, fiber)
    if (refused !== undefined) return enterFrom(proc, fiber, () => this.readNow<A>(fiber, handle, request))
    return this.#call("read", handle, [request], false) as Effect.Effect<A, DeviceCallError>
  }

  readAll<A = unknown>(
    handle: CapRef,
    requests: ReadonlyArray<unknown>
  ): Effect.Effect<ReadonlyArray<A>, DeviceCallError> {
    return enter(this.#proc, () => {
      const copied = Inputs.read("read", () =>
        Inputs.refsOf("requests", requests, this.#proc.kernel.limits.readAllRequestsMax)
      )
      if (copied instanceof ArgumentError) return this.#argument("read", copied)
      return this.#call("read", handle, copied, true) as Effect.Effect<ReadonlyArray<A>, DeviceCallError>
    })
  }

  write<A = unknown>(handle: CapRef, data: unknown): Effect.Effect<A, DeviceCallError> {
    return enter(this.#proc, () => this.#call("write", handle, [data], false) as Effect.Effect<A, DeviceCallError>)
  }

  /**
   * Driver calls, steps 2–6: copy the requests, check the handle cap, reserve every call's cost in request order
   * (all or none: one that does not fit ends the caller with `Quota` and none starts), number the ops, then run them
   * through the driver path (journal, settle, charge).
   */
  #call(
    call: "read" | "write",
    ref: CapRef,
    payloads: ReadonlyArray<unknown>,
    many: boolean
  ): Effect.Effect<unknown, DeviceCallError> {
    const proc = this.#proc
    const kernel = proc.kernel
    // 3. the handle cap
    const record = kernel.caps.check(call, proc.pid, ref, call === "read" ? READ : WRITE, kernel.now)
    if (record instanceof CapabilityError) return this.#deny(call, record)
    const entry = record.resource._tag === "Handle" ? kernel.devices.get(record.resource.handle) : undefined
    if (entry === undefined) {
      return this.#deny(call, new CapabilityError({ call, reason: "wrong-resource", cap: record.id }))
    }
    // 2. the requests themselves are the driver's to decode (a tools device decodes them with their Schemas): they
    // are handed to it as given, once each — except through a handle narrowed to some tools, where each is copied
    // first, so the tool the kernel checks is the tool the driver runs
    let requests = payloads
    let grants: Array<Grant> | undefined
    const kernelDevice = entry.kernelDevice
    if (kernelDevice !== undefined) {
      // a device the kernel serves itself has no tools, so a narrowing to some grants none of its calls; its
      // requests are copied once, as plain data, before anything reads them
      if (record.tools !== undefined) {
        return this.#deny(call, new CapabilityError({ call, reason: "out-of-scope", cap: record.id }))
      }
      const copied = this.#kernelRequests(call, payloads)
      if (copied instanceof ArgumentError) return this.#argument(call, copied)
      for (let i = 0; i < copied.length; i++) copied[i] = kernelDevice.canonical(copied[i])
      requests = copied
    }
    if (record.tools !== undefined) {
      const scoped = this.#scoped(call, record, payloads)
      if (scoped instanceof ArgumentError) return this.#argument(call, scoped)
      if (scoped instanceof CapabilityError) return this.#deny(call, scoped)
      requests = scoped.requests
      grants = scoped.grants
    }
    // 2b. policies: every request judged (copied first, unless the narrowing did), before anything is reserved,
    // journaled or run; a `kill` ends the caller now, the other verdicts go with the call
    let verdicts: Array<Judged> | undefined
    const chain = proc.policies
    if (chain !== undefined) {
      if (record.tools === undefined) {
        const limit = kernel.limits.messageBytesMax
        const copied: Array<unknown> = []
        for (let i = 0; i < requests.length; i++) {
          const request = Inputs.read(call, () => Inputs.toolRequestOf(requests[i], limit, isCapRef))
          if (request instanceof ArgumentError) return this.#argument(call, request)
          push(copied, request.request)
        }
        requests = copied
      }
      verdicts = []
      const judgedRequests: Array<unknown> = []
      // the batch's earlier calls count as spent for the later ones' `spend` rules (what they will reserve)
      const batch = { tokens: 0, toolCalls: 0, usd: 0 }
      const reserveOf = entry.driver.reserve
      for (let i = 0; i < requests.length; i++) {
        // what a policy judges and what the driver reads must be one thing: own data of plain objects and arrays
        // only (a class instance could answer the driver through its prototype — a getter, a toJSON — otherwise)
        if (!Inputs.isPlainData(requests[i], isCapRef)) {
          return this.#argument(
            call,
            new ArgumentError({
              call,
              message: "a request judged by policies must be plain data (no class instances, accessors or symbols)"
            })
          )
        }
        const judged = judgedOf(entry.driver.name, call, requests[i], grants?.[i]?.tool)
        push(judgedRequests, judged.request)
        const subject = judgedIn(proc, judged.subject, batch)
        if (reserveOf !== undefined && requests.length > 1) {
          const cost = Inputs.read(call, () => Inputs.costOf("reservation", reserveOf(judged.request)))
          if (!(cost instanceof ArgumentError)) {
            batch.tokens += cost.tokens ?? 0
            batch.toolCalls += cost.toolCalls ?? 0
            batch.usd += cost.usd ?? 0
          }
        }
        const verdict = Policy.judge(chain, subject)
        if (verdict.decision !== "allow") {
          kernel.events.emit(policyEvent(proc.pid, verdict, subject, "call"))
          if (verdict.decision === "kill") {
            kernel.terminate(proc, Process.policy(verdict.rule))
            return Effect.interrupt
          }
        }
        push(verdicts, freeze({ verdict, subject, chain }))
      }
      requests = judgedRequests
    }
    // 4. reserve: a meter this driver charges is used up somewhere up the chain, or a call's reservation does not
    // fit: no call starts
    const dry = Accounts.exhausted(proc.account, entry.driver.meters ?? allMeters)
    if (dry !== undefined) {
      kernel.terminate(proc, Process.quota(dry))
      return Effect.interrupt
    }
    // (a driver that declares no reservation reserves nothing: no per-call work here)
    let reservations: Array<Accounts.Cost> | undefined
    const reserve = entry.driver.reserve
    if (reserve !== undefined) {
      // filled by definition: a hole written to would reach an index setter image code put on Array.prototype
      const made: Array<Accounts.Cost> = []
      for (let i = 0; i < requests.length; i++) {
        const declared = Inputs.read(call, () => Inputs.costOf("reservation", reserve(requests[i])))
        if (declared instanceof ArgumentError) {
          for (let j = 0; j < i; j++) Accounts.release(proc.account, made[j]!)
          return Effect.fail(
            new DeviceError({ device: entry.driver.name, reason: "driver-error", message: declared.message })
          )
        }
        const short = Accounts.reserve(proc.account, declared)
        if (short !== undefined) {
          for (let j = 0; j < i; j++) Accounts.release(proc.account, made[j]!)
          kernel.terminate(proc, Process.quota(short))
          return Effect.interrupt
        }
        push(made, declared)
      }
      reservations = made
    }
    if (kernelDevice !== undefined)
      return this.#kernelCall(kernelDevice, entry, call, requests, reservations, verdicts, many)
    const first = proc.ops + 1
    proc.ops += requests.length
    // 6. the syscall event (the charges follow as each call settles)
    this.#syscall(call, entry.id)
    const path = kernel.driverPath
    if (!many) {
      // this syscall's effect runs at once, from the caller's fiber: no second lazy layer
      return path.runNow(proc, entry, call, requests[0], first, reservations?.[0] ?? noCost, grants?.[0], verdicts?.[0])
    }
    return collected(
      Effect.forEach(
        requests,
        (request, i) =>
          Effect.exit(
            path.run(proc, entry, call, request, first + i, reservations?.[i] ?? noCost, grants?.[i], verdicts?.[i])
          ),
        { concurrency: "unbounded" }
      )
    )
  }

  /** Copies each request on a kernel device: plain data only, within the message size bound. */
  #kernelRequests(call: "read" | "write", payloads: ReadonlyArray<unknown>): Array<unknown> | ArgumentError {
    const limit = this.#proc.kernel.limits.messageBytesMax
    const copied: Array<unknown> = []
    for (let i = 0; i < payloads.length; i++) {
      const request = Inputs.read(call, () => Inputs.bodyOf("request", payloads[i], limit, isCapRef))
      if (request instanceof ArgumentError) return request
      if (!Inputs.isPlainData(request.value, isCapRef)) {
        return new ArgumentError({
          call,
          message: "a request on a kernel device must be plain data (no class instances, accessors or symbols)"
        })
      }
      push(copied, request.value)
    }
    return copied
  }

  /**
   * Calls on a device the kernel serves itself: each request that reads or changes only kernel state runs here, in
   * the caller's syscall, and is not journaled (a replay runs it again); each other one is a driver call like any,
   * numbered and journaled. Ops are numbered in request order before any call runs.
   */
  #kernelCall(
    device: KernelDevice,
    entry: HandleEntry,
    call: "read" | "write",
    requests: ReadonlyArray<unknown>,
    reservations: ReadonlyArray<Accounts.Cost> | undefined,
    verdicts: ReadonlyArray<Judged> | undefined,
    many: boolean
  ): Effect.Effect<unknown, DeviceCallError> {
    const proc = this.#proc
    // 6. the syscall event (the charges follow as each call settles)
    this.#syscall(call, entry.id)
    const path = proc.kernel.driverPath
    const calls: Array<Effect.Effect<unknown, DeviceError | JournalError>> = []
    for (let i = 0; i < requests.length; i++) {
      const reservation = reservations?.[i] ?? noCost
      const local = device.local(proc, call, requests[i])
      const run =
        local !== undefined
          ? path.runLocal(proc, entry, requests[i], reservation, verdicts?.[i], local)
          : path.run(proc, entry, call, requests[i], ++proc.ops, reservation, undefined, verdicts?.[i])
      // the work was done even when the call failed (a bad path, a scan that found nothing): it is charged too,
      // so failing calls cannot run unmetered
      push(
        calls,
        reservation === noCost
          ? run
          : Effect.tapError(run, (error) =>
              error instanceof DeviceError ? Effect.sync(() => chargeProcess(proc, reservation)) : Effect.void
            )
      )
    }
    if (!many) return calls[0]!
    return collected(Effect.forEach(calls, Effect.exit, { concurrency: "unbounded" }))
  }

  /** Copies each request and checks that every narrowing of the handle grants the tool it names. */
  #scoped(
    call: "read" | "write",
    record: CapRecord,
    payloads: ReadonlyArray<unknown>
  ): { readonly requests: Array<unknown>; readonly grants: Array<Grant> } | ArgumentError | CapabilityError {
    const layers = record.tools!
    const limit = this.#proc.kernel.limits.messageBytesMax
    const requests: Array<unknown> = []
    const grants: Array<Grant> = []
    for (let i = 0; i < payloads.length; i++) {
      const copied = Inputs.read(call, () => Inputs.toolRequestOf(payloads[i], limit, isCapRef))
      if (copied instanceof ArgumentError) return copied
      const tool = copied.tool
      if (tool === undefined) return new CapabilityError({ call, reason: "out-of-scope", cap: record.id })
      const scopes: Array<unknown> = []
      let approvalMs: number | undefined
      for (let j = 0; j < layers.length; j++) {
        const granted = layers[j]!.get(tool)
        if (granted === undefined) return new CapabilityError({ call, reason: "out-of-scope", cap: record.id })
        push(scopes, granted.scope)
        if (granted.approvalMs !== undefined) approvalMs = Math.min(approvalMs ?? Infinity, granted.approvalMs)
      }
      push(requests, copied.request)
      push(grants, freeze({ tool, scopes: freeze(scopes), approvalMs }))
    }
    return { requests, grants }
  }
}

// captured at load: what a policy judges must not depend on built-ins image code patched since
const isArray = Array.isArray
const getOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor
const jsonParse = JSON.parse

/**
 * What a policy judges of a (copied) request — the tool it names and that tool's input — and the request the driver
 * then gets: a model's arguments given as JSON text are parsed once, here, and handed on as `input`, so the driver
 * runs exactly what was judged (text that does not parse goes on as it was, for the driver to refuse).
 */
const judgedOf = (
  device: string,
  call: "read" | "write",
  request: unknown,
  granted: string | undefined
): { readonly subject: Policy.Subject; readonly request: unknown } => {
  const object = typeof request === "object" && request !== null && !isArray(request) ? request : undefined
  const named = object === undefined ? undefined : own(object as { tool?: unknown }, "tool")
  const tool = granted ?? (typeof named === "string" ? named : undefined)
  if (tool === undefined || object === undefined) return { subject: { device, call, tool, input: request }, request }
  const input = own(object as { input?: unknown }, "input")
  if (input !== undefined) return { subject: { device, call, tool, input }, request }
  const text = own(object as { arguments?: unknown }, "arguments")
  if (typeof text === "string") {
    let parsed: unknown
    try {
      parsed = jsonParse(text)
    } catch {
      return { subject: { device, call, tool, input: text }, request }
    }
    return { subject: { device, call, tool, input: parsed }, request: freeze({ tool, input: parsed }) }
  }
  return { subject: { device, call, tool, input: text }, request }
}

/** A subject with what the caller's state adds: its spend, its rate memory, the kernel clock's time. */
const judgedIn = (
  proc: Proc,
  subject: Policy.Subject,
  batch?: { readonly tokens: number; readonly toolCalls: number; readonly usd: number }
): Policy.Subject => {
  let rates = proc.policyRates
  if (rates === undefined) {
    rates = Policy.makeRates()
    proc.policyRates = rates
  }
  return freeze({
    device: subject.device,
    call: subject.call,
    tool: subject.tool,
    input: subject.input,
    message: subject.message,
    spent: Accounts.spentOf(proc.account, batch),
    rates,
    now: proc.kernel.now()
  })
}

/** How the policies see a result: its JSON text (a bigint as its digits). */
const jsonStringify = JSON.stringify
const renderResult = (value: unknown): string =>
  jsonStringify(value, (_key, v: unknown) => (typeof v === "bigint" ? v.toString() : v)) ?? "null"

/** The policies' screen of a driver result (see `screenOf`). */
type Screen = (value: unknown) => Effect.Effect<unknown, DeviceError>

const policyEvent = (
  pid: number,
  verdict: Exclude<Policy.Verdict, { decision: "allow" }>,
  subject: Policy.Subject,
  on: "call" | "result"
): EventInput =>
  subject.tool === undefined
    ? { _tag: "Policy", pid, rule: verdict.rule, decision: verdict.decision, device: subject.device, on }
    : {
        _tag: "Policy",
        pid,
        rule: verdict.rule,
        decision: verdict.decision,
        device: subject.device,
        tool: subject.tool,
        on
      }

/** A call a policy chain judged: its verdict (not `kill`: that ended the caller), what was judged, the chain. */
export interface Judged {
  readonly verdict: Policy.Verdict
  readonly subject: Policy.Subject
  readonly chain: ReadonlyArray<Policy.PolicySet>
}

/** What the narrowings of a handle grant one call: its tool, each narrowing's scope, its approval timeout. */
export interface Grant {
  readonly tool: string
  readonly scopes: ReadonlyArray<unknown>
  readonly approvalMs: number | undefined
}

/** The process's context memory, made at its first use with the kernel's memory options. */
export const memoryOf = (proc: Proc): Memory => (proc.memory ??= newMemory(proc.kernel))

/** A context memory with the kernel's recaller and pager, taking bodies in and handing them out as the kernel does. */
export const newMemory = (kernel: KernelState): Memory => {
  const bytesMax = kernel.limits.segmentBytesMax
  return new Memory({
    recaller: kernel.memory.recaller(),
    pager: kernel.memory.pager,
    bodies: {
      keep: (body, tokens) => {
        const kept = memoryBodyOf("restore", body, bytesMax)
        return "value" in kept ? { body: kept.value, tokens: Math.max(tokenCount(tokens), kept.tokens) } : undefined
      },
      handOut
    }
  })
}

/**
 * A body for context memory: a copy, read once (the caller cannot grow it after it is counted), and its tokens — the
 * estimate of its text, and never less than its size in bytes (strings at two bytes a code unit) over 8, so a body
 * whose text says little (a `Map`, a `bigint` beside a long string, a short `content` beside a long field) is counted
 * for what it holds. A copy past `bytesMax` is `tooLarge` (the copy stops there).
 */
export const memoryBodyOf = (
  call: string,
  body: unknown,
  bytesMax: number
): { readonly value: unknown; readonly tokens: number } | ArgumentError | { readonly tooLarge: true } => {
  const copy = Inputs.read(call, () => {
    // plain data is frozen as it is copied, and handed out as it is; anything else is copied each time it is
    const copied = Inputs.bodyOf("body", body, bytesMax, isCapRef, 64, true)
    return copied instanceof Inputs.TooLarge ? tooLarge : copied
  })
  if (copy instanceof ArgumentError || !("value" in copy)) return copy
  const tokens = Math.max(estimateTokens(textOf(copy.value)), Math.ceil(copy.bytes / 8))
  return { value: copy.value, tokens: tokenCount(tokens) }
}

const tooLarge = freeze({ tooLarge: true as const })

/**
 * A kept body as the process (or a pager, or a snapshot) gets it: a frozen body is plain data frozen whole (`bodyOf`
 * with `frozen` freezes an object only once all it holds is), given as it is; anything else a fresh copy. A body the
 * copy cannot take (none the kernel keeps) is given as its text.
 */
const handOut = (body: unknown): unknown => {
  if (typeof body !== "object" || body === null || isFrozen(body)) return body
  let copied: ReturnType<typeof Inputs.bodyOf>
  try {
    copied = Inputs.bodyOf("body", body, Infinity, isCapRef)
  } catch {
    copied = new Inputs.Unreadable("body")
  }
  return copied instanceof Inputs.Unreadable ? textOf(body) : copied.value
}

/**
 * Remembers a copy of `body` in `proc`'s memory (`Sys.remember` and the VFS's `/mem/working` writes): its id, the
 * `ArgumentError` the body is, or `undefined` when it is larger than the whole `mem` quota (eight bytes a token) or
 * `segmentBytesMax` — it could never be in the working set, so the copy stops there and the caller ends the process
 * (`overMemory`) as if it had pinned it. A caller may say a segment is larger than its count, never smaller.
 */
export const rememberIn = (
  proc: Proc,
  call: string,
  body: unknown,
  tokens: number | undefined,
  pin: boolean
): number | ArgumentError | undefined => {
  const bytesMax = Math.min(proc.kernel.limits.segmentBytesMax, proc.account.memMax * 8)
  const copy = memoryBodyOf(call, body, bytesMax)
  if (copy instanceof ArgumentError) return copy
  if (!("value" in copy)) return undefined
  return memoryOf(proc).remember(copy.value, Math.max(tokenCount(tokens ?? 0), copy.tokens), pin)
}

/** Ends `proc` for its context memory: a body larger than its whole `mem` quota, or pinned memory over it. */
export const overMemory = (proc: Proc): Effect.Effect<never> => {
  proc.kernel.terminate(proc, Process.quota("mem"))
  return Effect.interrupt
}

/**
 * Pages `proc`'s memory out past the high watermark, then runs `then`; pinned segments alone over the `mem` quota end
 * the process. An effectful pager (a model call) runs first, in this process, through its own syscalls.
 */
export const fitMemory = <A, E>(proc: Proc, then: Effect.Effect<A, E>): Effect.Effect<A, E> => {
  const limits = proc.kernel.limits
  if (proc.memory === undefined) return then
  const { fits, pending } = proc.memory.fit(
    proc.account.memMax,
    limits.memoryHighWatermark,
    limits.memoryLowWatermark,
    limits.swapTokensMax
  )
  if (!fits) return overMemory(proc)
  return pending === undefined ? then : Effect.andThen(Effect.provideService(pending, Sys, proc.sys), then)
}

/** A batch's exits as its values in request order, or its first failure. */
const collected = <E>(
  exits: Effect.Effect<ReadonlyArray<Exit.Exit<unknown, E>>>
): Effect.Effect<ReadonlyArray<unknown>, E> =>
  Effect.flatMap(exits, (exits) => {
    const values: Array<unknown> = []
    // by index and by definition: a patched array iterator or push never sees the results
    for (let i = 0; i < exits.length; i++) {
      const exit = exits[i]!
      if (Exit.isFailure(exit)) return Effect.failCause(exit.cause)
      push(values, exit.value)
    }
    return Effect.succeed(values)
  })

const noRefs: ReadonlyArray<CapRef> = freeze([])
const noCost: Accounts.Cost = freeze({})

/**
 * Charges a (validated) cost to `proc` and its ancestors, records the `Charge` event, and ends the process past a
 * limit; `true` when it still runs. The work was done, so it is charged even to a process ended meanwhile.
 */
export const chargeProcess = (proc: Proc, cost: Accounts.Cost): boolean =>
  chargeProcessMeters(proc, own(cost, "tokens") ?? 0, own(cost, "toolCalls") ?? 0, own(cost, "usd") ?? 0)

/** `chargeProcess` with the three meters given as (validated) numbers. */
const chargeProcessMeters = (proc: Proc, tokens: number, toolCalls: number, usd: number): boolean => {
  if (tokens !== 0 || toolCalls !== 0 || usd !== 0) {
    proc.kernel.events.charge(proc.pid, tokens, toolCalls, usd)
    const breach = Accounts.chargeMeters(proc.account, tokens, toolCalls, usd)
    if (breach !== undefined) proc.kernel.terminate(proc, Process.quota(breach))
  }
  return proc.exitReason === undefined
}

// ---- the driver path: journal (step 5) and settle (step 4) ------------------------------------------------------

/** Runs one driver call of `proc` whose reservation is already made. */
export interface DriverPath {
  readonly run: (
    proc: Proc,
    entry: HandleEntry,
    call: "read" | "write",
    request: unknown,
    op: number,
    reserved: Accounts.Cost,
    grant?: Grant,
    judged?: Judged
  ) => Effect.Effect<unknown, DeviceError | JournalError>
  /**
   * A kernel device's call on kernel state (its `local` effect): judged, reserved, settled and charged like a driver
   * call, never journaled.
   */
  readonly runLocal: (
    proc: Proc,
    entry: HandleEntry,
    request: unknown,
    reserved: Accounts.Cost,
    judged: Judged | undefined,
    local: Effect.Effect<DeviceResult, DeviceError>
  ) => Effect.Effect<unknown, DeviceError>
  /**
   * `run`, its first step taken now: only for a syscall that runs the effect it returns at once, from the caller's
   * fiber (the effect of `run` is that step made lazy).
   */
  readonly runNow: DriverPath["run"]
  readonly closeHandle: (id: number) => void
}

/** What the driver path needs of the kernel: the journal and how journaled results are handed back. */
export interface DriverPathDeps {
  readonly journal: import("../Journal.ts").JournalShape
  readonly devices: import("../DeviceTable.ts").DeviceTableShape
  readonly inference: import("../InferenceScheduler.ts").InferenceSchedulerShape
  readonly delivery: import("./delivery.ts").Delivery
  readonly approvals: Approvals
  /** The context closing handles runs in. */
  readonly baseContext: Context.Context<never>
  readonly priorityMin: number
  readonly priorityMax: number
}

export const makeDriverPath = (deps: DriverPathDeps): DriverPath => {
  const { journal, devices, inference, delivery, baseContext, approvals } = deps

  const closeHandle = (id: number) => {
    const entry = devices.remove(id)
    const close = entry?.handle?.close
    if (close !== undefined) Effect.runForkWith(baseContext)(close)
  }

  /**
   * Releases the reservation and charges the actual cost, then hands the value back (or nothing, if ended) — through
   * the policies' screen of results when there is one.
   */
  const settleValue = (
    proc: Proc,
    value: unknown,
    cost: Accounts.Cost,
    reserved: Release,
    screen?: Screen
  ): Effect.Effect<unknown, DeviceError> => {
    reserved.release()
    chargeProcess(proc, cost)
    if (proc.exitReason !== undefined) return Effect.interrupt
    return screen === undefined ? Effect.succeed(value) : screen(value)
  }

  /** `settleValue` with the cost's three meters given as (validated) numbers. */
  const settleMeters = (
    proc: Proc,
    value: unknown,
    tokens: number,
    toolCalls: number,
    usd: number,
    reserved: Release,
    screen: Screen | undefined
  ): Effect.Effect<unknown, DeviceError> => {
    reserved.release()
    chargeProcessMeters(proc, tokens, toolCalls, usd)
    if (proc.exitReason !== undefined) return Effect.interrupt
    return screen === undefined ? Effect.succeed(value) : screen(value)
  }

  /** A result judged by the policy chain's result rules: passed, withheld (a denial), or the caller ended. */
  const screenOf =
    (proc: Proc, entry: HandleEntry, request: unknown, judged: Judged): Screen =>
    (value) => {
      let verdict: Policy.Verdict
      try {
        verdict = Policy.judgeResult(judged.chain, judged.subject, renderResult(value))
      } catch {
        verdict = { decision: "deny", rule: "result-unrenderable" }
      }
      if (verdict.decision === "allow") return Effect.succeed(value)
      proc.kernel.events.emit(policyEvent(proc.pid, verdict, judged.subject, "result"))
      if (verdict.decision === "kill") {
        proc.kernel.terminate(proc, Process.policy(verdict.rule))
        return Effect.interrupt
      }
      return Effect.map(
        denial(entry, request, judged.subject.tool ?? entry.driver.name, {
          approve: false,
          by: `policy:${verdict.rule}`,
          reason: `the result was withheld by policy rule ${verdict.rule}`
        }),
        (denied) => denied.value
      )
    }

  const settle = (
    proc: Proc,
    device: string,
    result: JournalRecord["result"],
    reserved: Release,
    screen?: Screen
  ): Effect.Effect<unknown, DeviceError> => {
    if (result._tag === "Success") return settleValue(proc, result.value, result.cost, reserved, screen)
    reserved.release()
    // the journal never serves a `Started` record as a result, and a live call never makes one
    if (result._tag === "Started") return Effect.die(new Error(`${device}: a Started record is not a result`))
    const fields = { device, reason: result.reason, message: result.message }
    return Effect.fail(
      new DeviceError(result.retryable === undefined ? fields : { ...fields, retryable: result.retryable })
    )
  }

  const invalidCost = (device: string): JournalRecord["result"] => ({
    _tag: "Failure",
    reason: "driver-error",
    message: `${device} reported an invalid cost`
  })

  /** What a finished live call is, as it is journaled and replayed. */
  const asRecorded = (device: string, exit: Exit.Exit<DeviceResult, unknown>): JournalRecord["result"] => {
    if (Exit.isSuccess(exit)) {
      const cost = Inputs.read("read", () => Inputs.costOf("cost", exit.value.cost ?? noCost))
      if (cost instanceof ArgumentError) return invalidCost(device)
      const value = exit.value.value
      const stored = Accounts.normalize(cost)
      return value === undefined ? { _tag: "Success", cost: stored } : { _tag: "Success", value, cost: stored }
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
    // a driver that throws instead of failing is a `driver-error` like any defect of its effect: the throw must not
    // escape the call's setup, where the reservation's release is not attached yet
    try {
      if (call === "read") return handle.read(payload, context)
      if (handle.write !== undefined) return handle.write(payload, context)
    } catch (error) {
      return Effect.die(error)
    }
    const device = entry.driver.name
    return Effect.fail(new DeviceError({ device, reason: "unsupported", message: `${device} has no write` }))
  }

  const denial = (
    entry: HandleEntry,
    request: unknown,
    tool: string,
    answer: import("./approvals.ts").Answer
  ): Effect.Effect<DeviceResult, DeviceError> => {
    const device = entry.driver.name
    const why = `${tool}: denied by ${answer.by}${answer.reason === undefined ? "" : `: ${answer.reason}`}`
    const shape = entry.driver.denied
    if (shape === undefined) return Effect.fail(new DeviceError({ device, reason: "denied", message: why }))
    return Effect.try({
      try: () => ({ value: shape(request, { tool, by: answer.by, reason: answer.reason }), cost: noCost }),
      catch: (error) => new DeviceError({ device, reason: "driver-error", message: Process.describeError(error) })
    })
  }

  const nothingReserved = Release.none
  const runNow: DriverPath["runNow"] = (proc, entry, call, request, op, reservation, grant, judged) => {
    // nothing reserved (a driver without `reserve`): nothing to release, and no finalizer on the hot path
    if (reservation === noCost) return runReserved(proc, entry, call, request, op, nothingReserved, grant, judged)
    const reserved = new Release(proc.account, reservation)
    return Effect.ensuring(
      runReserved(proc, entry, call, request, op, reserved, grant, judged),
      Effect.sync(() => reserved.release())
    )
  }
  const run: DriverPath["run"] = (proc, entry, call, request, op, reservation, grant, judged) =>
    Effect.suspend(() => runNow(proc, entry, call, request, op, reservation, grant, judged))

  const runReserved = (
    proc: Proc,
    entry: HandleEntry,
    call: "read" | "write",
    request: unknown,
    op: number,
    reserved: Release,
    grant: Grant | undefined,
    judged: Judged | undefined
  ): Effect.Effect<unknown, DeviceError | JournalError> => {
    const device = entry.driver.name
    // a chain with rules on results screens what the driver answered (live or replayed) before the process gets it
    const screen =
      judged !== undefined && Policy.judgesResults(judged.chain) ? screenOf(proc, entry, request, judged) : undefined
    // the request's digest, recorded with its result and checked against it on replay (none in live mode: nothing
    // is journaled)
    const digest = journal.mode === "live" ? undefined : requestDigest(device, call, request)
    // 5. replayed from the journal
    const replayed = journal.replayed(proc.pid, op)
    if (replayed instanceof JournalError) {
      // a call that was in flight when the recording stopped: this process's journal ends here, the others' go on
      return replayed.reason === "missing" && journal.inFlight(proc.pid, op)
        ? Effect.fail(
            new JournalError({
              reason: "missing",
              message: `no journal entry for pid ${proc.pid} op ${op}: the call was in flight when the recording stopped`,
              pid: proc.pid,
              op
            })
          )
        : diverged(proc, replayed)
    }
    if (replayed !== undefined) {
      if (replayed.device !== device || replayed.call !== call) {
        return diverged(
          proc,
          new JournalError({
            reason: "mismatch",
            message: `pid ${proc.pid} op ${op}: journaled ${replayed.call} on ${replayed.device}, now ${call} on ${device}`,
            pid: proc.pid,
            op
          })
        )
      }
      if (replayed.digest !== digest) {
        return diverged(
          proc,
          replayed.digest === undefined
            ? new JournalError({
                reason: "corrupt",
                message: `pid ${proc.pid} op ${op}: the journaled ${call} on ${device} carries no request digest (a journal from before digests): record it again`,
                pid: proc.pid,
                op
              })
            : new JournalError({
                reason: "mismatch",
                message: `pid ${proc.pid} op ${op}: the ${call} on ${device} sends another request than the one journaled`,
                pid: proc.pid,
                op
              })
        )
      }
      const recorded = replayed.result
      // a journaled cost is validated like a live one: a record must not refund a budget
      if (
        recorded._tag === "Success" &&
        Inputs.read("read", () => Inputs.costOf("cost", recorded.cost)) instanceof ArgumentError
      ) {
        return diverged(
          proc,
          new JournalError({
            reason: "corrupt",
            message: `pid ${proc.pid} op ${op}: invalid journaled cost`,
            pid: proc.pid,
            op
          })
        )
      }
      return delivery.replayed(proc, replayed, recorded._tag === "Success" ? recorded.cost : undefined, () =>
        settle(proc, device, recorded, reserved, screen)
      )
    }
    // live
    const idempotencyKey = (proc.keyPrefix ??= `${proc.pid}:`) + op
    const context: CallContext =
      grant === undefined
        ? { pid: proc.pid, op, priority: proc.priority, deadline: proc.deadlineAt, idempotencyKey }
        : {
            pid: proc.pid,
            op,
            priority: proc.priority,
            deadline: proc.deadlineAt,
            idempotencyKey,
            tool: grant.tool,
            scopes: grant.scopes
          }
    // the driver's own handle opens at the first live call (a replayed run never opens it)
    const opened =
      entry.handle !== undefined
        ? invoke(entry, entry.handle, call, request, context)
        : Effect.flatMap(
            entry.kernelDevice === undefined
              ? entry.driver.open({ pid: entry.opener })
              : entry.kernelDevice.open(proc.kernel, entry.opener),
            (handle) => {
              entry.handle = handle
              return invoke(entry, handle, call, request, context)
            }
          )
    // a tool granted with `approval` waits for the answer first (after its `Started` record: a call waiting when the
    // kernel stops runs again on `recover`, and waits again under the same id); a denial is the call's result
    // a policy's `deny` is the call's result (journaled like a denied approval); its `approve` waits like a grant's
    const verdict = judged?.verdict
    const tool = grant?.tool ?? judged?.subject.tool ?? device
    const approvalMs = verdict?.decision === "approve" ? (grant?.approvalMs ?? Infinity) : grant?.approvalMs
    const invoked =
      verdict?.decision === "deny"
        ? denial(entry, request, tool, {
            approve: false,
            by: `policy:${verdict.rule}`,
            reason: `denied by policy rule ${verdict.rule}`
          })
        : approvalMs === undefined
          ? opened
          : Effect.flatMap(
              approvals.await(proc, op, device, tool, request, approvalMs),
              (answer): Effect.Effect<DeviceResult, DeviceError> =>
                answer.approve ? opened : denial(entry, request, tool, answer)
            )
    // over a persistent store, the call is journaled as started before it runs: a crash before its result leaves a
    // `Started` record, and `recover` says which calls it runs again (a `Recover` event)
    const intent = journal.intents
      ? journal.record({ pid: proc.pid, op, device, call, digest: digest!, result: { _tag: "Started" } })
      : undefined
    const driver: Effect.Effect<DeviceResult, DeviceError | JournalError> =
      intent === undefined ? invoked : Effect.andThen(Effect.uninterruptible(intent), invoked)
    const policy = entry.driver.scheduled
    const priority = Math.min(deps.priorityMax, Math.max(deps.priorityMin, proc.priority))
    const admit = (live: Effect.Effect<DeviceResult, DeviceError | JournalError>) =>
      policy === undefined || policy === false
        ? live
        : inference.run(
            device,
            policy === true ? {} : policy,
            { pid: proc.pid, priority, deadline: proc.deadlineAt },
            live,
            (result) => (result.cost === undefined ? 0 : (own(result.cost, "tokens") ?? 0))
          )
    if (journal.mode === "live") {
      // nothing to record: settle straight from the driver's result
      return delivery.track(driver, (live) =>
        Effect.matchCauseEffect(admit(live), {
          onSuccess: (result) => {
            if (result.cost === undefined) return settleMeters(proc, result.value, 0, 0, 0, reserved, screen)
            const cost = Inputs.driverCostOf(result.cost)
            // the kernel's own copy: its three meters are own properties
            return cost === undefined
              ? settle(proc, device, invalidCost(device), reserved)
              : settleMeters(proc, result.value, cost.tokens ?? 0, cost.toolCalls ?? 0, cost.usd ?? 0, reserved, screen)
          },
          onFailure: (cause) =>
            Cause.hasInterruptsOnly(cause)
              ? Effect.failCause(cause)
              : settle(proc, device, asRecorded(device, Exit.failCause(cause)), reserved)
        })
      )
    }
    // 5. recorded, then handed back through the delivery order
    const started = delivery.started()
    const recordAndSettle = (exit: Exit.Exit<DeviceResult, unknown>) => {
      const result = asRecorded(device, exit)
      const seq = delivery.sequence(started)
      const pending = journal.record(
        seq === undefined
          ? { pid: proc.pid, op, device, call, digest: digest!, result }
          : { pid: proc.pid, op, seq, device, call, digest: digest!, result }
      )
      const handBack =
        seq === undefined
          ? Effect.suspend(() => settle(proc, device, result, reserved, screen))
          : delivery.deliver(seq, result._tag === "Success" ? result.cost : undefined, proc, () =>
              settle(proc, device, result, reserved, screen)
            )
      if (pending === undefined) return handBack
      // the record is written whole or not at all, even if the caller is ended meanwhile: a `seq` taken is a `seq`
      // written (or passed over by the gate when the write fails), so the journal has no hole a replay would wait on
      return Effect.andThen(
        Effect.uninterruptible(
          seq === undefined ? pending : Effect.tapError(pending, () => Effect.sync(() => delivery.skip(seq)))
        ),
        handBack
      )
    }
    return delivery.track(driver, (live) =>
      Effect.matchCauseEffect(admit(live), {
        onSuccess: (result) => recordAndSettle(Exit.succeed(result)),
        // cancelled (the caller was ended or interrupted): nothing was returned, nothing is journaled or charged; the
        // `Started` record could not be written: the call did not run, and the caller gets the JournalError
        onFailure: (cause) =>
          Cause.hasInterruptsOnly(cause) ||
          Cause.findError(cause).pipe((found) => found._tag === "Success" && found.success instanceof JournalError)
            ? Effect.failCause(cause)
            : recordAndSettle(Exit.failCause(cause))
      })
    )
  }

  const runLocal: DriverPath["runLocal"] = (proc, entry, request, reservation, judged, local) =>
    Effect.suspend(() => {
      const device = entry.driver.name
      const reserved = reservation === noCost ? nothingReserved : new Release(proc.account, reservation)
      const verdict = judged?.verdict
      // a policy's `deny` is the call's result; an `approve` cannot be waited for, since a call on kernel state is
      // not journaled and a replay would wait again: it is refused, so a rule never passes a call it meant to hold
      const result: Effect.Effect<DeviceResult, DeviceError> =
        verdict?.decision === "deny"
          ? denial(entry, request, device, {
              approve: false,
              by: `policy:${verdict.rule}`,
              reason: `denied by policy rule ${verdict.rule}`
            })
          : verdict?.decision === "approve"
            ? Effect.fail(
                new DeviceError({
                  device,
                  reason: "denied",
                  message: `${device}: policy rule ${verdict.rule} asks for an approval, which a call on kernel state cannot wait for (it is not journaled)`
                })
              )
            : local
      const screen =
        judged !== undefined && Policy.judgesResults(judged.chain) ? screenOf(proc, entry, request, judged) : undefined
      return Effect.ensuring(
        Effect.matchCauseEffect(result, {
          onSuccess: (result) => {
            const cost = result.cost === undefined ? noCost : Inputs.driverCostOf(result.cost)
            return cost === undefined
              ? settle(proc, device, invalidCost(device), reserved)
              : settleValue(proc, result.value, cost, reserved, screen)
          },
          onFailure: (cause) =>
            Cause.hasInterruptsOnly(cause)
              ? Effect.failCause(cause)
              : settle(proc, device, asRecorded(device, Exit.failCause(cause)), reserved)
        }),
        Effect.sync(() => reserved.release())
      )
    })

  /**
   * A replay that no longer matches its journal (a record missing, for another call or request, or with an invalid
   * cost) fails the call with `error`, and in `replay` and `recover` ends every process with it: whatever the
   * program does after diverging is not the recorded run, and a process waiting on the one that failed would wait
   * forever.
   */
  const diverged = (proc: Proc, error: JournalError): Effect.Effect<never, JournalError> => {
    endRun(proc, error)
    return Effect.fail(error)
  }

  return { run, runNow, runLocal, closeHandle }
}

/** A reservation, released once (when the call settles, or when it is cancelled). */
class Release {
  static readonly none: Release = new Release(undefined, noCost)
  readonly #account: Accounts.Account | undefined
  #cost: Accounts.Cost | undefined
  constructor(account: Accounts.Account | undefined, cost: Accounts.Cost) {
    this.#account = account
    this.#cost = cost
  }
  release(): void {
    const cost = this.#cost
    if (cost === undefined || this.#account === undefined) return
    this.#cost = undefined
    Accounts.release(this.#account, cost)
  }
}
