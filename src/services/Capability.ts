/**
 * Names the unforgeable handles a process holds: refs, rights, resources and the error every check fails with.
 *
 * A `CapRef` is an opaque object. The kernel-side record it points to (owner, resource, rights, caveats) is reachable
 * only through a private class field, so a process can neither read nor construct a valid ref: a ref it did not
 * receive from the kernel is rejected as `invalid`. The ref's `id` is a kernel counter, safe to print and stable
 * across identical runs, but knowing it grants nothing.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { CapRef, recordOf } from "./internal/capRef.ts"

export { CapRef }

/**
 * The seven rights, as in a Zircon rights table:
 *
 * | right     | permits                                                        |
 * |-----------|----------------------------------------------------------------|
 * | `send`    | `Sys.send` to a process                                        |
 * | `monitor` | `Sys.monitor`, `Sys.waitpid` on a process                      |
 * | `open`    | `Sys.open` on a device                                         |
 * | `read`    | reading a handle                                               |
 * | `write`   | writing a handle                                               |
 * | `spawn`   | `Sys.spawn`                                                    |
 * | `kill`    | `Sys.kill`, `Sys.suspend`, `Sys.resume`, `Sys.term`             |
 *
 * @category rights
 * @since 0.1.0
 */
export type Right = "send" | "monitor" | "open" | "read" | "write" | "spawn" | "kill"

/** @category rights */
export const Right = Schema.Literals(["send", "monitor", "open", "read", "write", "spawn", "kill"])

/** @category rights */
export const allRights: ReadonlyArray<Right> = ["send", "monitor", "open", "read", "write", "spawn", "kill"]

// a Map, not an object literal: `"constructor"` or `"__proto__"` must not look like a right
const bits: ReadonlyMap<string, number> = new Map([
  ["send", 1],
  ["monitor", 2],
  ["open", 4],
  ["read", 8],
  ["write", 16],
  ["spawn", 32],
  ["kill", 64]
])

/**
 * Packs rights into the kernel's bit mask. An unknown right name returns `undefined`.
 *
 * @category rights
 */
export const rightsMask = (rights: Iterable<string>): number | undefined => rightsMaskOf(Array.from(rights))

/**
 * Packs a list of right names (read by index, each once) into the kernel's bit mask; `undefined` when an entry is not
 * a right name.
 *
 * @category rights
 */
export const rightsMaskOf = (rights: ReadonlyArray<unknown>): number | undefined => {
  let mask = 0
  for (let i = 0; i < rights.length; i++) {
    const right = rights[i]
    const bit = typeof right === "string" ? bits.get(right) : undefined
    if (bit === undefined) return undefined
    mask |= bit
  }
  return mask
}

/** @category rights */
export const rightBit = (right: Right): number => bits.get(right)!

/**
 * Unpacks a bit mask into right names, in table order.
 *
 * @category rights
 */
export const rightsOf = (mask: number): ReadonlyArray<Right> =>
  allRights.filter((right) => (mask & bits.get(right)!) !== 0)

/**
 * What a capability designates.
 *
 * @category models
 */
export type Resource =
  | { readonly _tag: "Process"; readonly pid: number }
  | { readonly _tag: "Spawn" }
  | { readonly _tag: "Device"; readonly name: string }
  | { readonly _tag: "Handle"; readonly device: string; readonly handle: number }
  | { readonly _tag: "Remote"; readonly node: string; readonly pid: number }

/**
 * What a device cap narrowed to some tools grants for one tool (`Sys.attenuate(cap, { tools: { name: grant } })`):
 *
 * - `scope`: data the driver enforces for this tool (a file tool's path globs, an HTTP tool's host patterns), copied
 *   once into the kernel and frozen; every call of the tool hands the driver the scope of each narrowing the cap went
 *   through (`CallContext.scopes`, outermost first), and a driver allows only what every one of them allows;
 * - `approval`: the call waits for a human's answer (`Kernel.respond`) before it runs: `true`, or `{ timeout }`
 *   after which it is denied. A call of a tool that any narrowing marks for approval waits (the shortest timeout
 *   applies); the answer is journaled with the call's result, so a replay asks nobody.
 *
 * @category models
 */
export interface ToolGrant {
  readonly scope?: unknown
  readonly approval?: boolean | { readonly timeout?: import("effect").Duration.Input | undefined } | undefined
}

/**
 * The tools a narrowed device cap grants, by tool name.
 *
 * @category models
 */
export type ToolGrants = Readonly<Record<string, ToolGrant>>

/**
 * Which check a capability use failed:
 *
 * - `invalid`: not a ref this kernel minted (forged, guessed, or from another kernel);
 * - `not-held`: a valid ref that belongs to another process (never given to the caller);
 * - `moved`: the caller held it and moved it away (on a message or at spawn); keep a copy with `Sys.derive` first;
 * - `missing-right`: held, but without the right the call needs;
 * - `expired`: its `Expires` caveat has passed;
 * - `revoked`: revoked, directly or through the cap it was derived from, or its owner exited;
 * - `wrong-resource`: the right kind of right on the wrong kind of object (send to a device);
 * - `amplification`: derive/attenuate asked for a right the source lacks, or to extend an expiry;
 * - `limit`: the process holding (or about to receive) the cap already holds `KernelConfig.capsPerProcessMax` caps;
 * - `out-of-scope`: a call on a device cap narrowed to some tools (`Sys.attenuate(cap, { tools })`) names a tool the
 *   cap does not grant, or is not a `{ tool, … }` request.
 *
 * @category errors
 */
export type CapabilityFailure =
  | "invalid"
  | "not-held"
  | "moved"
  | "missing-right"
  | "expired"
  | "revoked"
  | "wrong-resource"
  | "amplification"
  | "limit"
  | "out-of-scope"

/**
 * A syscall was refused because of a capability. The process may catch it.
 *
 * @category errors
 */
export class CapabilityError extends Schema.TaggedError<CapabilityError>()("CapabilityError", {
  call: Schema.String,
  reason: Schema.Literals([
    "invalid",
    "not-held",
    "moved",
    "missing-right",
    "expired",
    "revoked",
    "wrong-resource",
    "amplification",
    "limit",
    "out-of-scope",
    "policy"
  ]),
  cap: Schema.optionalKey(Schema.Number),
  right: Schema.optionalKey(Schema.String),
  /** `policy`: the rule that denied it. */
  rule: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    const what = this.cap === undefined ? "capability" : `cap#${this.cap}`
    const right = this.right === undefined ? "" : ` (right ${this.right})`
    const rule = this.rule === undefined ? "" : ` (rule ${this.rule})`
    return `${this.call}: ${what} refused: ${this.reason}${right}${rule}`
  }
}

/**
 * Is this a ref minted by some kernel? (It may still be revoked, expired, or held by someone else.)
 *
 * @category guards
 */
export const isCapRef = (u: unknown): u is CapRef => recordOf(u) !== undefined
