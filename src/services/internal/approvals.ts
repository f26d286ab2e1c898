/**
 * Holds the driver calls that wait for a human's answer (a tool granted with `approval`), for `Kernel.approvals` and
 * `Kernel.respond`.
 *
 * A call waits inside the driver path, after its `Started` record and before the driver runs, so the journal records
 * what the answer led to (the result, or the denial) and a replay asks nobody; a call waiting when the kernel stopped
 * has no result, so `recover` runs it again and it waits again under the same id (its idempotency key `pid:op`).
 *
 * Private to the package.
 */
import { Deferred, Effect } from "effect"
import type { EventLogShape } from "../EventLog.ts"
import type { Proc } from "./proc.ts"
import { freeze, SafeMap } from "./primordials.ts"

/** A call waiting for an answer, as `Kernel.approvals` lists it. */
export interface PendingApproval {
  /** `"<pid>:<op>"`: the call's idempotency key, the same after a restart. */
  readonly id: string
  readonly pid: number
  /** The calling process's image name. */
  readonly name: string
  readonly device: string
  readonly tool: string
  /** The request as the kernel copied it (the tool call's arguments). */
  readonly request: unknown
  /** Kernel-clock millis. */
  readonly requestedAt: number
}

/** An answer to a pending approval. */
export interface Answer {
  readonly approve: boolean
  /** Who answered (recorded in the `Approval` event and in a denial); `"timeout"` when the timeout passed first. */
  readonly by: string
  readonly reason?: string | undefined
}

export interface Approvals {
  /** Waits for an answer to this call (a `timeoutMs` of `Infinity`: none). Removed when answered or interrupted. */
  readonly await: (
    proc: Proc,
    op: number,
    device: string,
    tool: string,
    request: unknown,
    timeoutMs: number
  ) => Effect.Effect<Answer>
  readonly list: () => ReadonlyArray<PendingApproval>
  /** `false` when no call waits under `id`. */
  readonly respond: (id: string, answer: Answer) => boolean
}

interface Waiting {
  readonly info: PendingApproval
  readonly proc: Proc
  readonly answer: Deferred.Deferred<Answer>
}

export const makeApprovals = (events: EventLogShape, now: () => number): Approvals => {
  const waiting = new SafeMap<string, Waiting>()

  const answered = (entry: Waiting, answer: Answer) => {
    if (waiting.get(entry.info.id) !== entry) return false
    waiting.delete(entry.info.id)
    entry.proc.approvals--
    const { id, device, tool, pid } = entry.info
    events.emit(
      answer.reason === undefined
        ? { _tag: "Approval", pid, id, device, tool, decision: answer.approve ? "approved" : "denied", by: answer.by }
        : {
            _tag: "Approval",
            pid,
            id,
            device,
            tool,
            decision: answer.approve ? "approved" : "denied",
            by: answer.by,
            reason: answer.reason
          }
    )
    Deferred.doneUnsafe(entry.answer, Effect.succeed(answer))
    return true
  }

  return {
    await: (proc, op, device, tool, request, timeoutMs) =>
      Effect.suspend(() => {
        const id = `${proc.pid}:${op}`
        const info: PendingApproval = freeze({
          id,
          pid: proc.pid,
          name: proc.name,
          device,
          tool,
          request,
          requestedAt: now()
        })
        const entry: Waiting = { info, proc, answer: Deferred.makeUnsafe<Answer>() }
        waiting.set(id, entry)
        proc.approvals++
        events.emit({ _tag: "Approval", pid: proc.pid, id, device, tool, decision: "requested" })
        const wait = Deferred.await(entry.answer)
        const timed =
          timeoutMs === Infinity
            ? wait
            : Effect.raceFirst(
                wait,
                Effect.sleep(timeoutMs).pipe(
                  Effect.andThen(
                    Effect.sync(() => {
                      answered(entry, { approve: false, by: "timeout", reason: `no answer within ${timeoutMs} ms` })
                    })
                  ),
                  Effect.andThen(wait)
                )
              )
        return Effect.ensuring(
          timed,
          Effect.sync(() => {
            // interrupted (the caller ended): it waits no more
            if (waiting.get(id) === entry) {
              waiting.delete(id)
              proc.approvals--
            }
          })
        )
      }),
    list: () => waiting.toValues().map((entry) => entry.info),
    respond: (id, answer) => {
      const entry = waiting.get(id)
      return entry === undefined ? false : answered(entry, answer)
    }
  }
}
