/**
 * Defines what a device driver gives the kernel: a name, and handles whose reads and writes report what they cost.
 *
 * A driver is the only way a process reaches the world. The kernel owns the chokepoint: it checks the handle cap,
 * refuses to start a call on a meter that is used up, schedules, journals the result (or error) by `(pid, op)`,
 * charges the cost to the caller and its ancestors, and cancels the call (interrupting the driver's effect, so an
 * HTTP request is aborted) when the caller is ended. Drivers only do the work.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"
import { Schema } from "effect"
import type { Cost, Meter } from "./Accounts.ts"
import type { Policy } from "./InferenceScheduler.ts"

/**
 * What one driver call returned: a JSON-safe value (it is journaled) and what it cost.
 *
 * @category models
 */
export interface DeviceResult<A = unknown> {
  readonly value: A
  readonly cost?: Cost | undefined
}

/**
 * Who is calling, for drivers that care (schedulers, per-process state).
 *
 * @category models
 */
export interface CallContext {
  readonly pid: number
  /** The caller's op number for this call: its n-th driver call, counted from 1. */
  readonly op: number
  readonly priority: number
  /** Absolute kernel-clock millis, when the caller has a deadline. */
  readonly deadline: number | undefined
  /**
   * `"<pid>:<op>"`, set by the kernel on every call: the same for a call and its re-run. Journaling is at least once —
   * a call in flight when the kernel crashed has no record, so `recover` runs it again — and a driver with side
   * effects can deduplicate by this key (the LLM driver sends it as the `Idempotency-Key` header). It is unique within
   * one journal, not across runs: a driver that deduplicates across runs scopes it by its own run id.
   */
  readonly idempotencyKey?: string | undefined
  /**
   * Set when the call came through a cap narrowed to some tools (`Sys.attenuate(cap, { tools })`): the tool the
   * request names (the kernel checked that every narrowing grants it) and the `scope` each narrowing gave it,
   * outermost first (`undefined` where one gave none). A driver that enforces a scope (a file tool's path globs)
   * allows a call only if every scope allows it, and refuses it when none was given.
   */
  readonly tool?: string | undefined
  readonly scopes?: ReadonlyArray<unknown> | undefined
}

/**
 * Why a call that needed an approval does not run: who denied it (`"timeout"` when nobody answered in time) and why.
 *
 * @category models
 */
export interface Denial {
  readonly tool: string
  readonly by: string
  readonly reason?: string | undefined
}

/**
 * An open device, owned by one process. `close` runs when the handle is revoked or its process ends.
 *
 * @category models
 */
export interface Handle {
  readonly read: (request: unknown, context: CallContext) => Effect.Effect<DeviceResult, DeviceError>
  readonly write?: ((data: unknown, context: CallContext) => Effect.Effect<DeviceResult, DeviceError>) | undefined
  readonly close?: Effect.Effect<void> | undefined
}

/**
 * A device driver.
 *
 * - `meters`: the meters a call may charge; a caller with one of them used up cannot start a call (default: all
 *   three, `tokens`, `toolCalls`, `usd`);
 * - `scheduled`: calls pass the kernel's inference scheduler (LLM drivers): `true` for the default policy, or a
 *   policy (`concurrency`, `requestsPerMinute`, `tokensPerMinute`, `agingMs`);
 * - `reserve`: what one call with this request may cost at most (or the driver's estimate of it), reserved against
 *   the caller's budget and every ancestor's before the call starts. A call whose reservation does not fit ends the
 *   caller with `Quota` before it starts; when the call ends the reservation is released and its actual cost charged.
 *   Without `reserve`, nothing is reserved (the kernel still refuses a call while a meter it charges is used up). A
 *   `reserve` that throws or returns an invalid cost fails the call with a `DeviceError` (`driver-error`).
 *
 * @category models
 */
export interface Driver {
  readonly name: string
  readonly open: (owner: { readonly pid: number }) => Effect.Effect<Handle, DeviceError>
  readonly meters?: ReadonlyArray<Meter> | undefined
  readonly scheduled?: boolean | Policy | undefined
  readonly reserve?: ((request: unknown) => Cost) | undefined
  /**
   * What a call whose approval was denied reads back, as a successful read's value (a tools device answers a
   * `ToolError` the agent reads); without it, the read fails with a `DeviceError` `denied`. It costs nothing.
   */
  readonly denied?: ((request: unknown, denial: Denial) => unknown) | undefined
}

/**
 * Makes a driver.
 *
 * @category constructors
 */
export const make = (driver: Driver): Driver => driver

/**
 * A driver call failed. `reason` is the driver's short code (`invalid-request`, `unavailable`, `timeout`,
 * `rate-limited`, `not-found`, …); `retryable` tells the caller whether the same call may succeed later. A process
 * may catch it; it is journaled like a result, so a replay fails the same way.
 *
 * @category errors
 */
export class DeviceError extends Schema.TaggedError<DeviceError>()("DeviceError", {
  device: Schema.String,
  reason: Schema.String,
  message: Schema.String,
  retryable: Schema.optionalKey(Schema.Boolean)
}) {}
