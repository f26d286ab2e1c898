/**
 * Decides when a journaled driver result is handed back to its process, so that a replay interleaves processes as the
 * recording did, and tells virtual time when the kernel waits on the outside world.
 *
 * In the journaling modes, a result that completes outside the caller's own synchronous run is numbered (`seq`, in
 * completion order, recorded with it) and handed back only at a quiescent point (the kernel's run queue empty), in
 * `seq` order (`CompletionGate`); a result that completes within the caller's own run is handed back inline and
 * recorded without a `seq`, and so replayed inline. Under virtual time the clock must not move while a live call is
 * in flight or a journaled result waits to be handed back.
 *
 * A replay never waits for what cannot come. The journal refuses at load any set of records whose `seq`s repeat or
 * leave a hole, so every number the gate waits for belongs to a loaded record. Under virtual time, a faithful replay
 * has asked for the next result by the time the kernel is quiescent (the recording's clock did not move either while
 * that call was under way); when it has not, the program no longer matches its journal and the run ends with a
 * `JournalError { reason: "mismatch" }` in every process (`endRun`) instead of waiting forever. On the real clock a
 * process may still be sleeping towards that call: while a process sleep is pending (`ReplaySleeps`, counted by the
 * processes' clock) the gate waits for it, and only once none is pending, or the gate has waited `replayForceMs` of
 * real time for one result, is the lowest waiting result handed back instead, so the run goes on.
 *
 * Private to the package.
 */
import type { Option } from "effect"
import { Clock, Effect } from "effect"
import type * as Accounts from "../Accounts.ts"
import { JournalError, type JournalRecord, type JournalShape } from "../Journal.ts"
import * as Process from "../Process.ts"
import { makeAdvancer, type VirtualClock } from "../VirtualTime.ts"
import { CompletionGate } from "./completionGate.ts"
import type { Proc } from "./proc.ts"
import type { KernelScheduler } from "./scheduler.ts"
import { chargeProcess } from "./syscalls.ts"

/** The process sleeps pending in a replay on the real clock (see `countingClock`). */
export interface ReplaySleeps {
  pending: number
}

/**
 * The real clock of processes in a replay without virtual time: it counts pending sleeps (a `Effect.sleep`, a
 * timeout), so that the gate waits for a process sleeping towards its next call instead of handing results back out
 * of order.
 */
export const countingClock = (clock: Clock.Clock, sleeps: ReplaySleeps): Clock.Clock => ({
  currentTimeMillisUnsafe: () => clock.currentTimeMillisUnsafe(),
  currentTimeMillis: clock.currentTimeMillis,
  currentTimeNanosUnsafe: () => clock.currentTimeNanosUnsafe(),
  currentTimeNanos: clock.currentTimeNanos,
  monotonicTimeNanosUnsafe: () => clock.monotonicTimeNanosUnsafe(),
  monotonicTimeNanos: clock.monotonicTimeNanos,
  sleep: (duration) =>
    Effect.suspend(() => {
      sleeps.pending++
      return Effect.ensuring(
        clock.sleep(duration),
        Effect.sync(() => {
          sleeps.pending--
        })
      )
    })
})

/**
 * Real milliseconds a replay on the real clock waits, while process sleeps are pending, for the result next in order
 * before it hands back the lowest waiting one (a process whose heartbeat never ends must not stall a diverged run).
 */
const replayForceMs = 2_000

/** Where a live call started: its microtask epoch and scheduler batch. */
export interface Started {
  readonly epoch: number
  readonly batch: number
}

export interface Delivery {
  /** Hands back a replayed result: through the gate when it was recorded with a `seq`, else at once. */
  readonly replayed: <A, E>(
    proc: Proc,
    record: JournalRecord,
    cost: Accounts.Cost | undefined,
    settle: () => Effect.Effect<A, E>
  ) => Effect.Effect<A, E>
  /** Marks the start of a live call. */
  readonly started: () => Started
  /** The `seq` to record a result with, or `undefined` when it is handed back inline. */
  readonly sequence: (started: Started) => number | undefined
  /** Waits for the gate to reach `seq`, then runs `settle`; a caller ended meanwhile is only charged. */
  readonly deliver: <A, E>(
    seq: number,
    cost: Accounts.Cost | undefined,
    proc: Proc,
    settle: () => Effect.Effect<A, E>
  ) => Effect.Effect<A, E>
  /**
   * Runs a live call: `around(driver)` where `driver` is the driver's own effect. From the moment the driver starts
   * until `around` ends (its result recorded and handed back) the call is in flight and virtual time does not move;
   * a call still waiting for an inference slot is not in flight, so a rate limit's wake-up can come.
   */
  readonly track: <A, E, B, F>(
    driver: Effect.Effect<A, E>,
    around: (driver: Effect.Effect<A, E>) => Effect.Effect<B, F>
  ) => Effect.Effect<B, F>
  /** A recorded `seq` whose record could not be written: the gate passes over it instead of waiting for it. */
  readonly skip: (seq: number) => void
}

/**
 * Ends a replay that no longer matches its journal: every live process ends with `Fault` naming `error`, so nothing
 * waits for a result, a message or a process that the diverged program will never produce.
 */
export const endRun = (proc: Proc, error: JournalError): void => {
  const reason = Process.fault(Process.describeError(error))
  // the youngest first and the roots last: a host waiting on a root (`waitExit`) may run as soon as the root ends, and
  // finds every other process already ended
  const live = proc.kernel.procs.toValues()
  for (let i = live.length - 1; i >= 0; i--) {
    if (live[i]!.exitReason === undefined) proc.kernel.terminate(live[i]!, reason)
  }
}

/**
 * The clock a driver's own effect runs on under virtual time: the real one. The virtual clock moves only when the
 * kernel is quiescent, and it is not while a driver call is in flight, so a driver that sleeps on it (a retry
 * backoff, a `Retry-After`, a timeout) would wait forever. A driver's waits are the outside world's time, like its
 * network latency: what they change is when the result arrives, and that order is recorded (`seq`) and replayed from
 * the journal, where no driver runs. So replays stay deterministic, and the process's own sleeps stay virtual.
 */
const realClock: Clock.Clock = Clock.Clock.defaultValue()

/** Real milliseconds a virtual-time replay may stand still with unconsumed records before it ends (see `onStill`). */
const replayStillMs = 250

export const makeDelivery = (
  journal: JournalShape,
  kernelScheduler: KernelScheduler | undefined,
  virtual: Option.Option<VirtualClock>,
  sleeps?: ReplaySleeps
): Delivery => {
  let inflight = 0
  const diverges = journal.mode === "replay" && virtual._tag === "Some"
  // the caller of each result waiting in the gate, to end the run when the replay diverges
  const callers = diverges ? new Map<number, Proc>() : undefined
  // handing back in completion order needs the kernel's run queue, whose draining tells when every process is blocked
  const gate = journal.mode !== "live" && kernelScheduler !== undefined ? new CompletionGate() : undefined
  gate?.seed(journal.lastSeq())
  let advancer: { readonly poke: () => void } | undefined
  // a process seen by the replay, to reach the kernel's processes when the run must end
  let anyCaller: Proc | undefined
  const idle = () => kernelScheduler!.idle && inflight === 0 && (gate?.size ?? 0) === 0
  let stillTimer: ReturnType<typeof setTimeout> | undefined
  /**
   * A virtual-time replay stands still (every process blocked, no timer pending) with journaled results nobody asked
   * for: the program stopped short of its recording (a process ended early, a message it waited for never came).
   * Nothing in the kernel can move it again, so once it has stood still for `replayStillMs` of real time (an outside
   * event — a host `send`, a worker thread — gets that long to arrive) the run ends with a `mismatch` naming the
   * first such record. A replay that consumed its whole journal is left alone: the recording waited there too.
   */
  const onStill = () => {
    if (stillTimer !== undefined || journal.unconsumed() === undefined || anyCaller === undefined) return
    const turns = kernelScheduler!.turns
    stillTimer = setTimeout(() => {
      stillTimer = undefined
      const record = journal.unconsumed()
      if (!idle() || kernelScheduler!.turns !== turns || virtual._tag === "None" || virtual.value.pending() > 0) return
      if (record === undefined || anyCaller === undefined) return
      endRun(
        anyCaller,
        new JournalError({
          reason: "mismatch",
          message:
            `the replay stands still with journaled results nobody asked for, the first pid ${record.pid} op ` +
            `${record.op}: the program no longer matches its journal`,
          pid: record.pid,
          op: record.op
        })
      )
    }, replayStillMs)
    stillTimer.unref?.()
  }
  if (virtual._tag === "Some" && kernelScheduler !== undefined) {
    advancer = makeAdvancer(virtual.value, idle, journal.mode === "replay" ? onStill : undefined)
    virtual.value.onSleep(advancer.poke)
  }
  /** Every process is blocked: hand back the next journaled result, or else let virtual time move. */
  const quiescent = () => {
    if (callers !== undefined && gate !== undefined && gate.size > 0 && !gate.ready && inflight === 0) {
      const seq = gate.next
      const record = journal.bySeq(seq)
      const error = new JournalError({
        reason: "mismatch",
        message:
          `the replay waits for the result with seq ${seq}` +
          (record === undefined ? "" : ` (pid ${record.pid} op ${record.op})`) +
          ", which its process has not asked for: the program no longer matches its journal",
        ...(record === undefined ? {} : { pid: record.pid, op: record.op })
      })
      const caller = callers.values().next().value
      if (caller !== undefined) endRun(caller, error)
      return
    }
    if (gate !== undefined && gate.size > 0 && gate.deliver(inflight === 0 && mayForce())) {
      // the woken process may block again without scheduling anything: look again once it has
      if (gate.size > 0) checkSoon()
      else advancer?.poke()
      return
    }
    advancer?.poke()
  }
  kernelScheduler?.onIdle(quiescent)
  // the result a real-clock replay has waited for since a timer was armed, and whether that wait is over
  let forceTimer: { readonly seq: number; expired: boolean; timer: ReturnType<typeof setTimeout> } | undefined
  /** Whether the gate may hand back a result out of order now (see the module's documentation). */
  function mayForce(): boolean {
    if (sleeps === undefined || sleeps.pending === 0 || gate!.ready) return true
    const seq = gate!.next
    if (forceTimer !== undefined && forceTimer.seq === seq) return forceTimer.expired
    if (forceTimer !== undefined) clearTimeout(forceTimer.timer)
    const armed = {
      seq,
      expired: false,
      timer: setTimeout(() => {
        armed.expired = true
        checkSoon()
      }, replayForceMs)
    }
    armed.timer.unref?.()
    forceTimer = armed
    return false
  }
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
  const deliver = <A, E>(
    seq: number,
    cost: Accounts.Cost | undefined,
    proc: Proc,
    settle: () => Effect.Effect<A, E>
  ): Effect.Effect<A, E> =>
    Effect.callback<A, E>((resume) => {
      let done = false
      callers?.set(seq, proc)
      gate!.enqueue(seq, () => {
        done = true
        callers?.delete(seq)
        resume(Effect.suspend(settle))
      })
      checkSoon()
      return Effect.sync(() => {
        if (done) return
        // the result came back but its caller was ended before it was handed over: the work is still paid for
        callers?.delete(seq)
        gate!.enqueue(seq, () => {
          if (cost !== undefined) chargeProcess(proc, cost)
        })
        checkSoon()
      })
    })
  return {
    replayed: (proc, record, cost, settle) => {
      anyCaller = proc
      return gate !== undefined && record.seq !== undefined
        ? deliver(record.seq, cost, proc, settle)
        : Effect.suspend(settle)
    },
    started: () => ({ epoch: gate === undefined ? 0 : currentEpoch(), batch: kernelScheduler?.turns ?? 0 }),
    sequence: (started) =>
      gate === undefined || (epoch === started.epoch && started.batch === kernelScheduler!.turns && journal.synchronous)
        ? undefined
        : gate.assign(),
    deliver,
    track: (driver, around) => {
      if (advancer === undefined) return around(driver)
      return Effect.suspend(() => {
        let counted = false
        const started = Effect.suspend(() => {
          counted = true
          inflight++
          return Effect.provideService(driver, Clock.Clock, realClock)
        })
        return Effect.ensuring(
          around(started),
          Effect.sync(() => {
            if (counted && --inflight === 0) advancer!.poke()
          })
        )
      })
    },
    skip: (seq) => {
      if (gate === undefined) return
      gate.enqueue(seq, () => {})
      checkSoon()
    }
  }
}
