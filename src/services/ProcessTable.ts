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
import { type CapRef, CapabilityError, type Resource, rightBit } from "./Capability.ts"
import { CapabilityTable } from "./CapabilityTable.ts"
import { Memory, MemoryOptions } from "./ContextMemory.ts"
import { DeviceTable } from "./DeviceTable.ts"
import { EventLog } from "./EventLog.ts"
import type { CapRecord } from "./internal/capRef.ts"
import { makeDriverCalls } from "./internal/driverCalls.ts"
import { processContext } from "./internal/processContext.ts"
import { CHILD_RIGHTS, type Counters, type KernelState, noCaps, SPAWN, toMillis } from "./internal/kernelState.ts"
import { Proc } from "./internal/proc.ts"
import { checkMovable } from "./internal/processSys.ts"
import { KernelScheduler } from "./internal/scheduler.ts"
import { InferenceScheduler } from "./InferenceScheduler.ts"
import { Journal } from "./Journal.ts"
import { KernelConfig } from "./KernelConfig.ts"
import { NameRegistry } from "./NameRegistry.ts"
import * as Process from "./Process.ts"
import { ArgumentError, ExitUnknownError, type Spawned, SpawnError, type SpawnOptions, Sys } from "./Sys.ts"
import { abi, limitOf, type Snapshot } from "./Snapshot.ts"
import { VirtualTime } from "./VirtualTime.ts"

export type { Counters } from "./internal/kernelState.ts"
export { Proc } from "./internal/proc.ts"

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
    quota: Accounts.Quota | undefined,
    restored?: Restored | undefined
  ) => Effect.Effect<number, Accounts.QuotaError | SpawnError>
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
}

/**
 * The state a restored process starts with (from a `Snapshot`).
 *
 * @category models
 */
export interface Restored {
  readonly priority: number
  readonly deadlineInMs: number | undefined
  readonly memory: Snapshot["memory"]
  readonly mailbox: Snapshot["mailbox"]
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
  const processBase = processContext(baseContext, virtual._tag === "Some" ? virtual.value : undefined)
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
    const fiber = Effect.runForkWith(Context.add(processBase, Sys, proc.sys))(main)
    proc.fiber = fiber
    counters.fibers++
    fiber.addObserver((exit) => {
      counters.fibers--
      onFiberExit(proc, exit)
    })
    // it may have been ended while it ran synchronously, before its fiber was known
    if (proc.exitReason !== undefined && fiber.pollUnsafe() === undefined) fiber.interruptUnsafe()
  }

  const { driverCall, closeHandle } = makeDriverCalls({
    journal,
    devices,
    inference,
    events,
    scheduler: scheduler instanceof KernelScheduler ? scheduler : undefined,
    virtual,
    baseContext,
    terminate: (proc, reason) => terminate(proc, reason)
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
    closeHandle,
    driverCall,
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
    boot: (image, args, devices, quota, restored) =>
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
        if (restored !== undefined) {
          proc.priority = restored.priority
          if (restored.deadlineInMs !== undefined) proc.deadlineAt = at + restored.deadlineInMs
          if (restored.memory.working.length > 0 || restored.memory.swap.length > 0) {
            proc.memory = new Memory({ recaller: memoryOptions.recaller(), pager: memoryOptions.pager })
            proc.memory.import(restored.memory.working, restored.memory.swap)
          }
          for (const m of restored.mailbox) {
            proc.mailbox.push({
              from: m.from,
              body: m.body,
              caps: noCaps,
              corr: m.corr,
              deadline: m.deadlineInMs === undefined ? undefined : at + m.deadlineInMs
            })
          }
        }
        events.spawn(pid, 0, proc.name)
        start(proc, image, args(grant))
        return Effect.succeed(pid)
      }),
    snapshot: (pid) => {
      const proc = procs.get(pid)
      if (proc === undefined || proc.exitReason !== undefined) return undefined
      const at = now()
      const account = proc.account
      return {
        abi,
        name: proc.name,
        memory: proc.memory?.export() ?? { working: [], swap: [] },
        mailbox: proc.mailbox.peekAll().map((m) => ({
          from: m.from,
          body: m.body,
          ...(m.corr === undefined ? {} : { corr: m.corr }),
          ...(m.deadline === undefined ? {} : { deadlineInMs: Math.max(0, m.deadline - at) })
        })),
        budget: {
          tokens: limitOf(Accounts.remaining(account, "tokens")),
          toolCalls: limitOf(Accounts.remaining(account, "toolCalls")),
          usd: limitOf(Accounts.remaining(account, "usd")),
          mem: limitOf(account.memMax),
          mailbox: account.mailboxMax,
          wallMs: limitOf(Math.max(0, account.wallEndsAt - at))
        },
        priority: proc.priority,
        deadlineInMs: proc.deadlineAt === undefined ? null : Math.max(0, proc.deadlineAt - at)
      }
    },
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
