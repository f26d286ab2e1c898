/**
 * Runs an example program on a kernel journaled to a file, or replays it from that file and checks the trace.
 *
 * Shared by the demos: `--replay` on the command line replays; otherwise the journal is started afresh, the program
 * records, and its event trace is saved beside the journal so that a replay can compare.
 *
 * What it prints: each `Sys.log` line once, as it happens (`pid 3 researcher: …`; the kernel also keeps it as a
 * `Log` event), then, after a recording run, a compact trace — spawns, driver calls, charges, signals and exits — and
 * with `--trace` every event.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Console, Effect, FileSystem, Logger, References } from "effect"
import { type Device, type EventLog, JournalFileStore, Kernel } from "effect-agent-os"

/** One line of a trace, for printing. */
export const showEvent = (e: EventLog.KernelEvent): string => {
  const { _tag, seq, at, pid, ...rest } = e
  const details = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
  return `#${String(seq).padStart(3)} t=${at} pid ${pid} ${_tag.padEnd(7)} ${details.join(" ")}`
}

/**
 * The log line of a process, printed once as it happens: `  pid 3 researcher: message` (the level when it is not
 * info, other annotations as `key=value`). Replaces Effect's default logger, whose line would repeat the message
 * with a timestamp and the annotations as an object.
 */
const progressLogger = Logger.make(({ message, logLevel, fiber }) => {
  const { pid, process: name, ...fields } = fiber.getRef(References.CurrentLogAnnotations)
  const text = (Array.isArray(message) ? message : [message]).map((part) => String(part)).join(" ")
  const who = pid === undefined ? "host" : `pid ${String(pid)} ${String(name)}`
  const level = logLevel === "Info" ? "" : `${logLevel.toLowerCase()}: `
  const extra = Object.entries(fields).map(([key, value]) => ` ${key}=${JSON.stringify(value)}`)
  console.log(`  ${who}: ${level}${text}${extra.join("")}`)
})

/** The events of a compact trace: what the processes did to each other and to the world. */
const compact = (event: EventLog.KernelEvent): boolean =>
  event._tag === "Syscall" ? ["open", "read", "readAll", "write"].includes(event.call) : event._tag !== "Log"

/** Prints the trace: compact (no plain syscalls, no logs, which were printed as they happened), or all of it. */
const printTrace = (trace: ReadonlyArray<EventLog.KernelEvent>, all: boolean) =>
  Effect.gen(function* () {
    const shown = all ? trace : trace.filter(compact)
    yield* Console.log(
      all
        ? `\ntrace: ${trace.length} events (virtual time):`
        : `\ntrace: ${shown.length} of ${trace.length} events (virtual time; add --trace for all of them):`
    )
    for (const event of shown) yield* Console.log(showEvent(event))
  })

/** Is a live model configured (OPENAI_API_KEY or OPENAI_BASE_URL)? */
export const live = process.env.OPENAI_API_KEY !== undefined || process.env.OPENAI_BASE_URL !== undefined

/** Was the program asked to replay its journal? */
export const replaying = process.argv.includes("--replay")

export interface JournaledRun {
  readonly journalPath: string
  readonly tracePath: string
  /** How to replay, for the closing line. */
  readonly replayCommand: string
  /** The drivers of a live (recording) run, and the stand-ins that only give the device names on replay. */
  readonly drivers: ReadonlyArray<Device.Driver | Effect.Effect<Device.Driver, unknown>>
  readonly replayDrivers: ReadonlyArray<Device.Driver | Effect.Effect<Device.Driver, unknown>>
  /** The program: it prints what it wants and returns the kernel's trace. */
  readonly program: Effect.Effect<ReadonlyArray<EventLog.KernelEvent>, unknown, Kernel.Kernel>
}

/** Runs (or replays) the program as the process's main effect. */
export const runJournaled = (run: JournaledRun): void => {
  const main = Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    yield* fs.makeDirectory(run.journalPath.split("/").slice(0, -1).join("/") || ".", { recursive: true })
    if (replaying) {
      yield* Console.log(`replaying ${run.journalPath}: no model and no tool will be called`)
    } else {
      yield* fs.remove(run.journalPath, { force: true })
      yield* Console.log(
        live
          ? `model: live, ${process.env.OPENAI_BASE_URL ?? "https://api.openai.com/v1"} (OPENAI_* set), ` +
              (process.env.OPENAI_MODEL ?? "gpt-4o-mini")
          : "model: offline, scripted (set OPENAI_API_KEY or OPENAI_BASE_URL for a live model)"
      )
    }
    const trace = yield* run.program.pipe(
      Effect.provide(
        Kernel.layer({
          drivers: replaying ? run.replayDrivers : run.drivers,
          journal: replaying ? "replay" : "record",
          virtualTime: true
        })
      ),
      Effect.provide(JournalFileStore.layer({ path: run.journalPath }))
    )
    const all = process.argv.includes("--trace")
    if (!replaying || all) yield* printTrace(trace, all)
    const text = JSON.stringify(trace)
    if (replaying) {
      const recorded = yield* fs.readFileString(run.tracePath)
      const same = recorded === text
      yield* Console.log(
        `\nreplayed from ${run.journalPath}: trace ${same ? "identical to" : "DIFFERENT from"} the recorded run`
      )
      if (!same) process.exitCode = 1
    } else {
      yield* fs.writeFileString(run.tracePath, text)
      yield* Console.log(`\njournal: ${run.journalPath} — replay it with: ${run.replayCommand}`)
    }
  })
  main.pipe(Effect.provide([NodeServices.layer, Logger.layer([progressLogger])]), NodeRuntime.runMain)
}
