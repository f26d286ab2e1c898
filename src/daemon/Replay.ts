/**
 * Replays an `agentd` journal offline — the daemon's own program over the journal, in `replay` mode: no model, no
 * tool, no operator is asked anything — and compares the events it produces with the audit trail the daemon wrote
 * while it recorded (`agentctl replay JOURNAL`).
 *
 * The recorded run is the audit trail's last kernel run (a restarted daemon starts a new one: its `seq` starts again
 * at 1, and it replays the journal from the start, so its events are the whole journal's). Events are compared
 * without their time (`at`), and without `Recover` events (only a recovering daemon emits them). The replay stops
 * where the journal does: the operator's next command and every call that had no result are missing, so the replay
 * is a prefix of the recording; it is identical when every event it produced is the recorded one at the same place.
 * A journal that does not fit the program (another request, a changed or reordered record) ends with a typed
 * `JournalError` in the process affected, and the report says so.
 *
 * @since 0.1.0
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import * as Fs from "node:fs/promises"
import { dirname, join } from "node:path"
import * as Tools from "../drivers/Tools.ts"
import * as Device from "../services/Device.ts"
import type { KernelEvent } from "../services/EventLog.ts"
import * as JournalFileStore from "../services/JournalFileStore.ts"
import * as Agentd from "./Agentd.ts"
import * as AuditLog from "./AuditLog.ts"
import * as BuiltinTools from "./BuiltinTools.ts"
import * as StateFiles from "./StateFiles.ts"

/**
 * The replay could not run: the journal is unreadable or refused (`JournalError`'s words in `message`), or the
 * audit trail could not be read.
 *
 * @category errors
 */
export class ReplayError extends Schema.TaggedError<ReplayError>()("ReplayError", {
  reason: Schema.Literals(["journal", "audit"]),
  message: Schema.String
}) {}

/**
 * @category models
 */
export interface Options {
  /** The journal file (`<state>/journal.jsonl`). */
  readonly journal: string
  /** The audit directory to compare with (default: the journal's directory). */
  readonly audit?: string | undefined
  /**
   * The integrity key the journal was written with. Default, as the daemon reads it: `AGENTOS_JOURNAL_KEY` when it
   * is set, else the `journal.key` file beside the journal when there is one (checked like the daemon checks it).
   */
  readonly integrityKey?: string | undefined
  /** Real milliseconds without a new event after which the replay is done (default 500). */
  readonly settleMs?: number | undefined
}

/**
 * What a replay found.
 *
 * @category models
 */
export interface Report {
  readonly journal: string
  /** Events the replay produced (compared ones: without `at` and `Recover`). */
  readonly events: number
  /** Events of the recorded run in the audit trail, or `null` when there is no audit trail to compare with. */
  readonly recorded: number | null
  /** Whether the audit trail lost events (drop markers): a comparison is then not possible. */
  readonly auditGaps: number
  /** `JournalError`s the replay ended processes with, other than `missing` (the journal's end). */
  readonly divergences: ReadonlyArray<{ readonly pid: number; readonly error: string }>
  /**
   * Events the replay produced past the recorded run's end: results the journal holds that the recorded processes
   * had not been handed back yet when the daemon stopped (the journal is verified, so they are its own).
   */
  readonly beyond: number
  /**
   * Driver results the two runs do not share, which mean a cut file: `journal`, results the recorded run was charged
   * for after the replay's last event (the journal lacks them: every charged result was journaled first); `audit`,
   * results charged, or processes spawned, in the events past the recording's end (a daemon stopped with results
   * still to hand back replays a few events more, never a new result: past them, the audit trail was cut).
   */
  readonly unmatched: { readonly journal: number; readonly audit: number }
  /** The journal's records were verified under an integrity key (MACs). */
  readonly authenticated: boolean
  /** The first event that differs, when one does. */
  readonly difference: { readonly index: number; readonly recorded: unknown; readonly replayed: unknown } | null
  /**
   * Verified (`authenticated`) and compared (an audit trail with no gaps was there), no divergence, and every replayed
   * event the recorded one at the same place. A replay of a journal it cannot verify, or with nothing to compare
   * with, is never called identical: whoever could write the journal could have written a consistent one.
   */
  readonly identical: boolean
}

/** A driver the replay must never reach. */
const untouched = (name: string) =>
  Device.make({
    name,
    open: () => Effect.die(new Error(`replay touched the ${name} driver`))
  })

/** JSON with sorted keys: the audit trail and a live event may list the same fields in another order. */
const sorted = (json: unknown): unknown => {
  if (Array.isArray(json)) return json.map(sorted)
  if (typeof json !== "object" || json === null) return json
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(json).sort()) out[key] = sorted((json as Record<string, unknown>)[key])
  return out
}

/** An event as compared: without its time, as it reads back from JSON. */
const comparable = (event: KernelEvent): string => {
  const { at: _at, ...rest } = event
  return JSON.stringify(sorted(JSON.parse(JSON.stringify(AuditLog.jsonSafe(rest as KernelEvent)))))
}

/** The key to verify the journal with (see `Options.integrityKey`). */
const keyFor = (options: Options): Effect.Effect<string | undefined, ReplayError> =>
  Effect.try({
    try: () => {
      if (options.integrityKey !== undefined) {
        if (options.integrityKey.length === 0) throw new Error("the integrity key given is empty")
        return options.integrityKey
      }
      const fromEnv = process.env[JournalFileStore.integrityKeyVariable]
      if (fromEnv !== undefined) {
        if (fromEnv.length === 0) {
          throw new Error(`${JournalFileStore.integrityKeyVariable} is set but empty: give the key, or unset it`)
        }
        return fromEnv
      }
      return StateFiles.readSecret(join(dirname(options.journal), StateFiles.names.journalKey))
    },
    catch: (error) =>
      new ReplayError({ reason: "journal", message: error instanceof Error ? error.message : String(error) })
  })

const missingFault = (text: string) => text.includes("JournalError") && text.includes("no journal entry")

/**
 * Replays the journal and compares it with the audit trail.
 *
 * @category replay
 */
export const replay = (options: Options): Effect.Effect<Report, ReplayError> =>
  Effect.gen(function* () {
    yield* Effect.tryPromise({
      try: () => Fs.access(options.journal),
      catch: (error) =>
        new ReplayError({ reason: "journal", message: `cannot read ${options.journal}: ${String(error)}` })
    })
    const integrityKey = yield* keyFor(options)
    const events: Array<KernelEvent> = []
    let last = 0
    yield* Effect.gen(function* () {
      const daemon = yield* Agentd.make({
        llm: untouched("llm"),
        tools: untouched("tools"),
        definitions: Tools.definitions(BuiltinTools.toolkit),
        mode: "replay",
        onEvent: (event) => {
          events.push(event)
          last = events.length
        }
      })
      // done once nothing has happened for `settleMs` (every process blocked: the journal has run out)
      const settleMs = options.settleMs ?? 500
      let seen = -1
      while (seen !== last) {
        seen = last
        yield* Effect.sleep(settleMs)
      }
      void daemon
    }).pipe(
      Effect.scoped,
      Effect.provide(
        JournalFileStore.layer({
          path: options.journal,
          program: "agentd",
          ...(integrityKey === undefined ? {} : { integrityKey })
        }).pipe(Layer.provideMerge(NodeServices.layer))
      ),
      Effect.mapError(
        (error) =>
          new ReplayError({
            reason: "journal",
            message: error instanceof Error ? error.message : String(error)
          })
      )
    )

    const divergences: Array<{ pid: number; error: string }> = []
    const replayed: Array<string> = []
    for (const event of events) {
      if (event._tag === "Recover") continue
      // the journal's end: a call with no result (in flight when the daemon stopped) ends its process here
      const text = event._tag === "Exit" ? JSON.stringify(event.reason) : event._tag === "Fault" ? event.error : ""
      if (text.includes("JournalError")) {
        if (!missingFault(text)) divergences.push({ pid: event.pid, error: text })
        continue
      }
      replayed.push(comparable(event))
    }

    const auditDir = options.audit ?? dirname(options.journal)
    const audit = yield* AuditLog.readDir(auditDir).pipe(
      Effect.mapError((error) => new ReplayError({ reason: "audit", message: error.message }))
    )
    let runStart = -1
    for (let i = audit.events.length - 1; i >= 0; i--) {
      if (audit.events[i]!.seq === 1) {
        runStart = i
        break
      }
    }
    const recordedEvents =
      runStart === -1
        ? []
        : audit.events
            .slice(runStart)
            .filter((e) => e._tag !== "Recover")
            .map(comparable)
    const compared = runStart !== -1 && audit.gaps === 0
    let difference: Report["difference"] = null
    const beyond = compared ? Math.max(0, replayed.length - recordedEvents.length) : 0
    const tagOf = (json: string) => (JSON.parse(json) as { readonly _tag?: unknown })._tag
    const unmatched = {
      journal: compared ? recordedEvents.slice(replayed.length).filter((e) => tagOf(e) === "Charge").length : 0,
      audit: compared
        ? replayed.slice(recordedEvents.length).filter((e) => {
            const tag = tagOf(e)
            return tag === "Charge" || tag === "Spawn"
          }).length
        : 0
    }
    const authenticated = integrityKey !== undefined
    if (compared) {
      for (let i = 0; i < replayed.length - beyond; i++) {
        if (replayed[i] !== recordedEvents[i]) {
          difference = {
            index: i,
            recorded: recordedEvents[i] === undefined ? null : JSON.parse(recordedEvents[i]!),
            replayed: JSON.parse(replayed[i]!)
          }
          break
        }
      }
    }
    return {
      journal: options.journal,
      events: replayed.length,
      recorded: runStart === -1 ? null : recordedEvents.length,
      auditGaps: audit.gaps,
      divergences,
      beyond,
      authenticated,
      difference,
      unmatched,
      identical:
        compared &&
        authenticated &&
        divergences.length === 0 &&
        difference === null &&
        unmatched.journal === 0 &&
        unmatched.audit === 0
    } satisfies Report
  })

/**
 * The report in words, as `agentctl replay` prints it.
 *
 * @category replay
 */
export const describe = (report: Report): string => {
  const lines = [
    `replayed ${report.journal}: ${report.events} events, no model or tool called, ` +
      (report.authenticated ? "every record verified under its integrity key" : "no integrity key (not verified)")
  ]
  if (report.recorded === null) lines.push("no audit trail to compare with: not compared")
  else if (report.auditGaps > 0) lines.push(`the audit trail lost events (${report.auditGaps} gaps): not compared`)
  else if (report.difference === null && report.divergences.length > 0) {
    lines.push(
      `diverged: its ${report.events} events before the journal stopped fitting the program match the recorded ` +
        `run's first ${report.events} of ${report.recorded}`
    )
  } else if (report.difference === null && report.unmatched.journal > 0) {
    lines.push(
      `its ${report.events} events match the recorded run's first ${report.events} of ${report.recorded}, but the ` +
        `recording was charged for ${report.unmatched.journal} driver results past them that the journal does not ` +
        `have: the journal was cut`
    )
  } else if (report.difference === null && report.unmatched.audit > 0) {
    lines.push(
      `its first ${report.recorded} events match the recorded run's ${report.recorded}, then ${report.beyond} more ` +
        `with ${report.unmatched.audit} results or spawns the recording does not have: the audit trail was cut`
    )
  } else if (report.difference === null && !report.authenticated) {
    lines.push(
      `its events match the recorded run's, but without an integrity key the journal is not verified: ` +
        `whoever could write it could have written a consistent one (not vouched for)`
    )
  } else if (report.difference === null && report.beyond > 0) {
    lines.push(
      `identical to the recorded run's ${report.recorded} events, then ${report.beyond} more from results the ` +
        `journal holds that the recorded run had not handed back when the daemon stopped`
    )
  } else if (report.difference === null) {
    lines.push(`identical to the recorded run's first ${report.events} of ${report.recorded} events`)
  } else {
    lines.push(
      `differs from the recording at event ${report.difference.index + 1}:`,
      `  recorded: ${JSON.stringify(report.difference.recorded)}`,
      `  replayed: ${JSON.stringify(report.difference.replayed)}`
    )
  }
  for (const d of report.divergences) lines.push(`pid ${d.pid} diverged: ${d.error}`)
  return lines.join("\n")
}
