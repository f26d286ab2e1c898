/**
 * Makes driver calls: replayed from the journal or run live, recorded, charged, and handed back to the caller —
 * through the completion gate in the journaling modes, so that a replay interleaves processes as the recording did.
 *
 * Private to the package.
 */
import type { Context, Option } from "effect"
import { Cause, Effect, Exit } from "effect"
import * as Accounts from "../Accounts.ts"
import { type CallContext, DeviceError, type DeviceResult, type Handle } from "../Device.ts"
import type { DeviceTableShape, HandleEntry } from "../DeviceTable.ts"
import type { EventLogShape } from "../EventLog.ts"
import type { InferenceSchedulerShape } from "../InferenceScheduler.ts"
import { JournalError, type JournalRecord, type JournalShape } from "../Journal.ts"
import * as Process from "../Process.ts"
import { makeAdvancer, type VirtualClock } from "../VirtualTime.ts"
import { CompletionGate } from "./completionGate.ts"
import { noCost } from "./kernelState.ts"
import type { Proc } from "./proc.ts"
import type { KernelScheduler } from "./scheduler.ts"

/** What the driver-call path needs from the kernel. */
export interface DriverCallsDeps {
  readonly journal: JournalShape
  readonly devices: DeviceTableShape
  readonly inference: InferenceSchedulerShape
  readonly events: EventLogShape
  /** The kernel's run queue, when processes run on it (not under a TestClock's scheduler). */
  readonly scheduler: KernelScheduler | undefined
  readonly virtual: Option.Option<VirtualClock>
  /** The context closing handles runs in. */
  readonly baseContext: Context.Context<never>
  readonly terminate: (proc: Proc, reason: Process.ExitReason) => void
}

/** A driver call as the syscalls make it: `op` is the caller's op number for it. */
export type DriverCall = (
  proc: Proc,
  entry: HandleEntry,
  call: "read" | "write",
  payload: unknown,
  op: number
) => Effect.Effect<unknown, DeviceError | JournalError>

export const makeDriverCalls = (
  deps: DriverCallsDeps
): { readonly driverCall: DriverCall; readonly closeHandle: (id: number) => void } => {
  const { journal, devices, inference, events, virtual, baseContext, terminate } = deps
  const kernelScheduler = deps.scheduler
  let inflight = 0
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

  return { driverCall: trackedDriverCall, closeHandle }
}
