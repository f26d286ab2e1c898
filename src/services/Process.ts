/**
 * Defines process images, exit reasons and the messages processes exchange.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"
import { Schema } from "effect"
import { QuotaResource } from "./Accounts.ts"
import type { CapRef } from "./Capability.ts"
import type { Sys } from "./Sys.ts"

/**
 * A program the kernel can run as a process: a name (for `ps` and the trace) and a main function from the spawn
 * arguments to an effect whose only requirement is `Sys`. The type checker thereby proves the image asks for no host
 * service: everything it touches goes through a syscall.
 *
 * @category models
 */
export interface Image<in A = void> {
  readonly _tag: "Image"
  readonly name: string
  readonly main: (args: A) => Effect.Effect<void, unknown, Sys>
}

/**
 * Makes an image.
 *
 * @example
 * ```ts
 * const echo = Process.make("echo", () =>
 *   Effect.forever(Effect.gen(function* () {
 *     const m = yield* Sys.recv<string>()
 *     if (m.caps[0]) yield* Sys.send(m.caps[0], m.body)
 *   })))
 * ```
 *
 * @category constructors
 */
export const make = <A = void>(name: string, main: (args: A) => Effect.Effect<void, unknown, Sys>): Image<A> => ({
  _tag: "Image",
  name,
  main
})

/**
 * A resource a quota bounds (defined in `Accounts`, re-exported here for exit reasons).
 *
 * @category models
 */
export { QuotaResource } from "./Accounts.ts"

/**
 * Why a process ended.
 *
 * - `Normal`: its main effect succeeded, or it called `Sys.exit()`;
 * - `Killed { by }`: `Sys.kill` by process `by` (0 is the kernel);
 * - `Quota { resource }`: a metered charge or its `wall` lifetime went past its quota;
 * - `Fault { error }`: its main effect failed or died; `error` is the message;
 * - `Deadline`: its scheduling deadline passed;
 * - `Shutdown { reason? }`: an orderly stop — the kernel shut down, a supervisor stopped it, or it stopped itself;
 *   `reason` is an optional payload (OTP's `{shutdown, Term}`), e.g. a supervisor's `"reached_max_restart_intensity"`;
 * - `Policy { rule }`: a kernel policy ended it.
 *
 * @category models
 */
export const ExitReason = Schema.Union([
  Schema.TaggedStruct("Normal", {}),
  Schema.TaggedStruct("Killed", { by: Schema.Number }),
  Schema.TaggedStruct("Quota", { resource: QuotaResource }),
  Schema.TaggedStruct("Fault", { error: Schema.String }),
  Schema.TaggedStruct("Deadline", {}),
  Schema.TaggedStruct("Shutdown", { reason: Schema.optionalKey(Schema.String) }),
  Schema.TaggedStruct("Policy", { rule: Schema.String })
])
export type ExitReason = typeof ExitReason.Type

// exit reasons are frozen: one reason object reaches every monitor, link and waiter, and none may change it for the
// others

/**
 * The exit reasons a process may state itself (`Sys.exit`, `Sys.kill`); the others are the kernel's to set.
 *
 * @category models
 */
export type StatedReason = Extract<ExitReason, { readonly _tag: "Normal" | "Shutdown" | "Fault" }>

/** @category constructors */
export const normal: Extract<ExitReason, { readonly _tag: "Normal" }> = Object.freeze({ _tag: "Normal" })
/** @category constructors */
export const killed = (by: number): ExitReason => Object.freeze({ _tag: "Killed", by })
/** @category constructors */
export const quota = (resource: QuotaResource): ExitReason => Object.freeze({ _tag: "Quota", resource })
/** @category constructors */
export const fault = (error: string): Extract<ExitReason, { readonly _tag: "Fault" }> =>
  Object.freeze({ _tag: "Fault", error })
/** @category constructors */
export const deadline: ExitReason = Object.freeze({ _tag: "Deadline" })
/** @category constructors */
export const shutdown: Extract<ExitReason, { readonly _tag: "Shutdown" }> = Object.freeze({ _tag: "Shutdown" })
/** `Shutdown` with a payload (OTP's `{shutdown, Term}`): an orderly stop that says why. @category constructors */
export const shutdownWith = (reason: string): Extract<ExitReason, { readonly _tag: "Shutdown" }> =>
  Object.freeze({ _tag: "Shutdown", reason })
/** @category constructors */
export const policy = (rule: string): ExitReason => Object.freeze({ _tag: "Policy", rule })

/**
 * True for every reason but `Normal` and `Shutdown` (with or without a payload): OTP's "abnormal exit", the one a
 * `transient` child is restarted after and a supervisor counts. (An exit *signal* is another matter: every reason
 * but `Normal` ends a linked process that does not trap exits, `Shutdown` included, as in OTP.)
 *
 * @category guards
 */
export const isAbnormal = (reason: ExitReason): boolean => reason._tag !== "Normal" && reason._tag !== "Shutdown"

/**
 * A monitor, as `Sys.monitor` returns it: a kernel-wide counter, so traces stay deterministic. It names one monitor
 * of the process that made it; `Sys.demonitor` of a ref the caller did not make does nothing.
 *
 * @category models
 */
export type MonitorRef = number

/**
 * Sent by the kernel to a monitor when the process it watches ends (or at once, when it had already ended): one
 * `Down` per `Sys.monitor` call, carrying that call's `ref`.
 *
 * @category messages
 */
export interface Down {
  readonly _tag: "Down"
  readonly pid: number
  readonly reason: ExitReason
  readonly ref: MonitorRef
}

/**
 * An exit signal turned into a message: a process that traps exits (`Sys.trapExit(true)`) receives one when a linked
 * process ends (`pid` is the one that ended, `reason` why) or when a holder of a `kill` cap sends it an exit signal
 * (`Sys.exitSignal`; `pid` is the sender).
 *
 * @category messages
 */
export interface Exit {
  readonly _tag: "Exit"
  readonly pid: number
  readonly reason: ExitReason
}

/**
 * Sent to a process's parent when the process calls `Sys.started()` (once): its start handshake (OTP's
 * `init_ack`), which a supervisor waits for before it starts the next child.
 *
 * @category messages
 */
export interface Started {
  readonly _tag: "Started"
  readonly pid: number
}

/**
 * Sent by `Sys.term`: a polite request to stop, which the receiver handles itself.
 *
 * @category messages
 */
export interface Term {
  readonly _tag: "Term"
  readonly from: number
}

/**
 * Sent to init when it adopts an orphan (a process whose parent ended): the message carries one cap to the orphan with
 * `monitor` and `kill`, so init can wait for it or end it. The orphan stays bound by its dead ancestors' budgets.
 *
 * @category messages
 */
export interface Adopted {
  readonly _tag: "Adopted"
  readonly pid: number
}

/** @category messages */
export type KernelMessage = Down | Exit | Term | Adopted | Started

/**
 * A received message. `from` is the sender's pid (0 for the kernel); `caps` moved to the receiver with it; `corr` is
 * the sender's correlation value, for replies; `deadline` is the absolute kernel-clock millis after which it would
 * have been dropped.
 *
 * @category messages
 */
export interface Message<T = unknown> {
  readonly from: number
  readonly body: T
  readonly caps: ReadonlyArray<CapRef>
  readonly corr?: string | number | undefined
  readonly deadline?: number | undefined
}

/**
 * Did the kernel send this message (a `Down`, an `Exit`, a `Term`, an `Adopted` or a `Started`)? Checks the sender (`from` 0, set by the kernel and not by
 * the sender), so a process cannot forge one by sending a body shaped like it.
 *
 * @category guards
 */
export const isKernelMessage = (message: Message): message is Message<KernelMessage> => {
  if (message.from !== 0 || typeof message.body !== "object" || message.body === null) return false
  const tag = (message.body as { readonly _tag?: unknown })._tag
  return tag === "Down" || tag === "Exit" || tag === "Term" || tag === "Adopted" || tag === "Started"
}

/**
 * Renders a failure or defect as the `error` of a `Fault`: an `Error`'s message (prefixed by its `_tag` when it has
 * one), a string as is, anything else as JSON when possible.
 *
 * @category utils
 */
export const describeError = (error: unknown): string => {
  if (typeof error === "string") return error
  // total: a process may fail with anything (a message getter that throws, an object with no prototype, a proxy, a
  // `toJSON` that throws), and the kernel renders it on the way to ending that process
  try {
    if (error instanceof Error) {
      const message = error.message
      const tag = (error as { _tag?: unknown })._tag
      const text = typeof message === "string" ? message : ""
      return typeof tag === "string" && tag !== text ? `${tag}: ${text}` : text || String(error.name)
    }
    const json = jsonStringify(error)
    return json === undefined ? String(error) : json
  } catch {
    try {
      return String(error)
    } catch {
      return `a ${typeof error} that cannot be shown`
    }
  }
}

const jsonStringify = JSON.stringify
