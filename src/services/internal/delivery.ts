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
 * Private to the package.
 */
import type { Option } from "effect"
import { Effect } from "effect"
import type * as Accounts from "../Accounts.ts"
import type { JournalRecord, JournalShape } from "../Journal.ts"
import { makeAdvancer, type VirtualClock } from "../VirtualTime.ts"
import { CompletionGate } from "./completionGate.ts"
import type { Proc } from "./proc.ts"
import type { KernelScheduler } from "./scheduler.ts"
import { chargeProcess } from "./syscalls.ts"

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
  /** Counts a live call as in flight (virtual time does not move meanwhile). */
  readonly track: <A, E>(effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
}

export const makeDelivery = (
  journal: JournalShape,
  kernelScheduler: KernelScheduler | undefined,
  virtual: Option.Option<VirtualClock>
): Delivery => {
  let inflight = 0
  // handing back in completion order needs the kernel's run queue, whose draining tells when every process is blocked
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
  const deliver = <A, E>(
    seq: number,
    cost: Accounts.Cost | undefined,
    proc: Proc,
    settle: () => Effect.Effect<A, E>
  ): Effect.Effect<A, E> =>
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
          if (cost !== undefined) chargeProcess(proc, cost)
        })
        checkSoon()
      })
    })
  return {
    replayed: (proc, record, cost, settle) =>
      gate !== undefined && record.seq !== undefined ? deliver(record.seq, cost, proc, settle) : Effect.suspend(settle),
    started: () => ({ epoch: gate === undefined ? 0 : currentEpoch(), batch: kernelScheduler?.turns ?? 0 }),
    sequence: (started) =>
      gate === undefined || (epoch === started.epoch && started.batch === kernelScheduler!.turns && journal.synchronous)
        ? undefined
        : gate.assign(),
    deliver,
    track: (effect) =>
      advancer === undefined
        ? effect
        : Effect.suspend(() => {
            inflight++
            return Effect.ensuring(
              effect,
              Effect.sync(() => {
                if (--inflight === 0) advancer!.poke()
              })
            )
          })
  }
}
