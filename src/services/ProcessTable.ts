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
import { Cause, Clock, Context, Effect, Exit, Layer, Scheduler } from "effect"
import * as Accounts from "./Accounts.ts"
import type { CapRef } from "./Capability.ts"
import { CapabilityTable } from "./CapabilityTable.ts"
import { MemoryOptions } from "./ContextMemory.ts"
import { DeviceTable } from "./DeviceTable.ts"
import { EventLog } from "./EventLog.ts"
import { countingClock, makeDelivery, type ReplaySleeps } from "./internal/delivery.ts"
import { type Counters, type KernelState, KILL, MONITOR, noCaps } from "./internal/kernelState.ts"
import type { Proc } from "./internal/proc.ts"
import { SafeMap, SafeSet } from "./internal/primordials.ts"
import { processContext } from "./internal/processContext.ts"
import { KernelScheduler } from "./internal/scheduler.ts"
import { makeSpawner, type Spawner } from "./internal/spawn.ts"
import { makeDriverPath } from "./internal/syscalls.ts"
import { InferenceScheduler } from "./InferenceScheduler.ts"
import { Journal } from "./Journal.ts"
import { KernelConfig } from "./KernelConfig.ts"
import { NameRegistry } from "./NameRegistry.ts"
import * as Process from "./Process.ts"
import { ExitUnknownError } from "./Sys.ts"
import type { Snapshot } from "./Snapshot.ts"
import { snapshotOf } from "./internal/snapshotOf.ts"
import { VirtualTime } from "./VirtualTime.ts"

import { type Approvals, makeApprovals } from "./internal/approvals.ts"

export type { Counters } from "./internal/kernelState.ts"
export type { Proc } from "./internal/proc.ts"
export type { Restored } from "./internal/spawn.ts"

/**
 * A row of `ps`.
 *
 * @category models
 */
export interface ProcessInfo {
  readonly pid: number
  readonly name: string
  readonly parent: number
  /** `waiting-approval`: a driver call of it waits for an answer to its approval (`Kernel.approvals`). */
  readonly status: "running" | "suspended" | "waiting-approval"
  readonly priority: number
  readonly children: number
  readonly mailbox: number
  readonly caps: number
  readonly startedAt: number
  readonly budget: Accounts.Budget
}

/**
 * The process table's interface, used by `Kernel`.
 *
 * @category models
 */
export interface ProcessTableShape {
  /** Starts a root process (init is the first), with a spawn cap and the given device caps as its start caps. */
  readonly boot: Spawner["boot"]
  /** A JSON-safe image of a live process's state (see `Snapshot`), or `undefined` if it is not running. */
  readonly snapshot: (pid: number) => Snapshot | undefined
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
  /** Driver calls waiting for an approval. */
  readonly approvals: Approvals
}

/**
 * @category services
 */
export class ProcessTable extends Context.Service<ProcessTable, ProcessTableShape>()("effect-agent-os/ProcessTable") {}

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
  // what a process fiber starts with: Effect's runtime references and nothing else of the build context (no kernel
  // or host service, no memo map, no scope); `Sys` is added per process
  // a replay on the real clock counts the processes' pending sleeps (see `internal/delivery.ts`)
  const replaySleeps: ReplaySleeps | undefined =
    journal.mode === "replay" && virtual._tag === "None" ? { pending: 0 } : undefined
  const processBase = processContext(
    baseContext,
    virtual._tag === "Some"
      ? virtual.value
      : replaySleeps !== undefined
        ? countingClock(clock, replaySleeps)
        : undefined
  )
  // process records live in collections that call the built-ins captured at load (`internal/primordials.ts`)
  const procs = new SafeMap<number, Proc>()
  const history = new Map<number, Process.ExitReason>()
  let nextPid = 1
  let monitorRefs = 0
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

  // the recorded pids in the order they ended, a ring: finding the oldest through `history.keys()` walked every
  // entry deleted from the front of the map since its last rehash (most of an exit's time past the bound)
  // (typed, so no write reaches a setter image code put on a prototype; grown by doubling up to the bound)
  let order = new Float64Array(Math.min(limits.exitHistoryMax + 1, 1024))
  let orderHead = 0
  let orderCount = 0
  const record = (pid: number, reason: Process.ExitReason) => {
    history.set(pid, reason)
    if (orderCount === order.length) {
      const grown = new Float64Array(Math.min(order.length * 2, limits.exitHistoryMax + 1))
      for (let i = 0; i < orderCount; i++) grown[i] = order[(orderHead + i) % order.length]!
      order = grown
      orderHead = 0
    }
    order[(orderHead + orderCount) % order.length] = pid
    orderCount++
    if (history.size > limits.exitHistoryMax) {
      const oldest = order[orderHead]!
      orderHead = (orderHead + 1) % order.length
      orderCount--
      history.delete(oldest)
      // nothing can use a cap to this process any more: reclaim them
      caps.revokeDesignating(oldest)
    }
  }

  const deliver = (
    to: Proc,
    body: Process.KernelMessage,
    carried: ReadonlyArray<CapRef> = noCaps,
    bounded = body._tag === "Term"
  ) => {
    if (to.exitReason !== undefined) return
    const message = { from: 0, body, caps: carried }
    // a `Term` (or an exit signal another process sent) is a request a flood of which says nothing more than one:
    // kernel messages that may be dropped have a bound of their own (the mailbox's), so signals cannot pile up in a
    // mailbox that is not read; a `Down`, an `Adopted` or a link's `Exit` comes once per event and is never dropped
    if (!bounded) return to.mailbox.push(message)
    if (!to.mailbox.pushBounded(message)) {
      counters.messagesDropped++
      events.emit({ _tag: "Drop", pid: 0, reason: "overflow", target: to.pid })
    }
  }

  /** Init adopts an orphan: a cap to it (monitor + kill) on an `Adopted` message, while init may hold one more. */
  const adopt = (init: Proc, orphan: Proc) => {
    ;(init.children ??= new SafeSet()).add(orphan)
    if (!caps.room(init.pid, 1)) return deliver(init, { _tag: "Adopted", pid: orphan.pid })
    const cap = caps.mint(init.pid, { _tag: "Process", pid: orphan.pid }, MONITOR | KILL)
    deliver(init, { _tag: "Adopted", pid: orphan.pid }, Object.freeze([cap.ref]))
  }

  /**
   * An exit signal from `from` (a pid) to `to` (OTP's semantics): a process that traps exits gets it as an `Exit`
   * message; one that does not ignores `Normal` and ends with any other reason, the same reason. Ending it is queued
   * (`end`), not recursive, so a long chain of links unwinds in a loop.
   */
  const signal = (from: number, to: Proc, reason: Process.ExitReason, bounded = false): void => {
    if (to.exitReason !== undefined) return
    if (to.trapExit) return deliver(to, { _tag: "Exit", pid: from, reason }, noCaps, bounded)
    if (reason._tag === "Normal") return
    end(to, reason)
  }

  /**
   * Processes to end while an ending is under way (an exit signal it sent), first in first out. A linked list of
   * object literals: its fields are defined, never assigned through a setter image code put on a prototype.
   */
  type Ending = { readonly proc: Proc; readonly reason: Process.ExitReason; next: Ending | undefined }
  let endingHead: Ending | undefined
  let endingTail: Ending | undefined
  let unwinding = false
  /** Ends `proc` now, and after it every process its ending ends in turn, in a loop (never recursively). */
  const end = (proc: Proc, reason: Process.ExitReason) => {
    if (unwinding) {
      const node: Ending = { proc, reason, next: undefined }
      if (endingTail === undefined) endingHead = node
      else endingTail.next = node
      endingTail = node
      return
    }
    unwinding = true
    try {
      endNow(proc, reason)
      while (endingHead !== undefined) {
        const node: Ending = endingHead
        endingHead = node.next
        if (endingHead === undefined) endingTail = undefined
        endNow(node.proc, node.reason)
      }
    } finally {
      endingHead = undefined
      endingTail = undefined
      unwinding = false
    }
  }

  const terminate = (proc: Proc, reason: Process.ExitReason): void => {
    if (proc.exitReason !== undefined) return
    end(proc, reason)
  }

  const endNow = (proc: Proc, reason: Process.ExitReason): void => {
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
    // messages nobody will receive: the caps they carry are revoked with them
    const undelivered = proc.mailbox.close()
    for (let i = 0; i < undelivered.length; i++) {
      if (undelivered[i]!.caps.length > 0) caps.revokeRefs(undelivered[i]!.caps)
    }
    names.releaseAll(proc.pid)
    const parent = proc.parent
    if (parent !== undefined) {
      if (parent.children?.delete(proc) === true && parent.exitReason === undefined) parent.account.children--
    }
    if (proc.children !== undefined) {
      // orphans move to init in the process tree, but their accounts stay where they were: an orphan is still bound
      // by the remaining limits of every ancestor it had, dead ones included, until it exits
      const init = procs.get(1)
      const orphans = proc.children.toArray()
      for (let i = 0; i < orphans.length; i++) {
        const child = orphans[i]!
        child.parent = init
        if (init !== undefined && init !== proc) adopt(init, child)
      }
      proc.children = undefined
    }
    // monitors first (each `Down` with its ref), then exit signals to the linked processes, which may end them
    if (proc.monitoredBy !== undefined) {
      const monitors = proc.monitoredBy.toValues()
      proc.monitoredBy = undefined
      for (let i = 0; i < monitors.length; i++) {
        const { ref, watcher } = monitors[i]!
        watcher.monitors?.delete(ref)
        deliver(watcher, { _tag: "Down", pid: proc.pid, reason, ref })
      }
    }
    if (proc.monitors !== undefined) {
      const watched = proc.monitors.toValues()
      proc.monitors = undefined
      for (let i = 0; i < watched.length; i++) watched[i]!.target.monitoredBy?.delete(watched[i]!.ref)
    }
    if (proc.links !== undefined) {
      const linked = proc.links.toArray()
      proc.links = undefined
      for (let i = 0; i < linked.length; i++) {
        const other = linked[i]!
        other.links?.delete(proc)
        signal(proc.pid, other, reason)
      }
    }
    if (proc.exitWaiters !== undefined) {
      const waiters = proc.exitWaiters
      proc.exitWaiters = undefined
      const wakes = waiters.toArray()
      for (let i = 0; i < wakes.length; i++) wakes[i]!(reason)
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

  const expire = (proc: Proc): boolean => {
    if (proc.exitReason !== undefined) return true
    if (proc.endsAt() > now()) return false
    fire(proc)
    return true
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

  const delivery = makeDelivery(
    journal,
    scheduler instanceof KernelScheduler ? scheduler : undefined,
    virtual,
    replaySleeps
  )
  const approvals = makeApprovals(events, now)
  const driverPath = makeDriverPath({
    approvals,
    journal,
    devices,
    inference,
    delivery,
    baseContext,
    priorityMin: limits.priorityMin,
    priorityMax: limits.priorityMax
  })

  const memoryOptions = yield* MemoryOptions
  const kernel: KernelState = {
    memory: memoryOptions,
    limits,
    caps,
    events,
    names,
    procs,
    counters,
    now,
    devices,
    journal,
    driverPath,
    terminate,
    signal,
    nextMonitorRef: () => ++monitorRefs,
    exitOf: (pid) => history.get(pid),
    armTimer,
    expire,
    deliver,
    spawnChild: (parent, image, options) => spawner.spawnChild(parent, image, options)
  }
  const spawner = makeSpawner({ kernel, processBase, nextPid: () => nextPid++, onFiberExit })

  const info = (proc: Proc): ProcessInfo => ({
    pid: proc.pid,
    name: proc.name,
    parent: proc.parent?.pid ?? 0,
    status: proc.suspended !== undefined ? "suspended" : proc.approvals > 0 ? "waiting-approval" : "running",
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
        ;(proc.exitWaiters ??= new SafeSet()).add(waiter)
        return Effect.sync(() => {
          proc.exitWaiters?.delete(waiter)
        })
      })
    })

  const shutdown = Effect.suspend(() => {
    down = true
    const fibers: Array<Fiber.Fiber<void, unknown>> = []
    for (const proc of procs.toValues()) {
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
    approvals,
    boot: spawner.boot,
    snapshot: (pid) => {
      const proc = procs.get(pid)
      return proc === undefined || proc.exitReason !== undefined ? undefined : snapshotOf(proc, now())
    },
    get: (pid) => procs.get(pid),
    live: () => procs.toValues(),
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
