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
 * | `open`    | `Sys.open` on a device (next issue)                            |
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

const bits: Record<Right, number> = { send: 1, monitor: 2, open: 4, read: 8, write: 16, spawn: 32, kill: 64 }

/**
 * Packs rights into the kernel's bit mask. An unknown right name is a programming error and returns `undefined`.
 *
 * @category rights
 */
export const rightsMask = (rights: Iterable<string>): number | undefined => {
  let mask = 0
  for (const right of rights) {
    const bit = bits[right as Right]
    if (bit === undefined) return undefined
    mask |= bit
  }
  return mask
}

/** @category rights */
export const rightBit = (right: Right): number => bits[right]

/**
 * Unpacks a bit mask into right names, in table order.
 *
 * @category rights
 */
export const rightsOf = (mask: number): ReadonlyArray<Right> => allRights.filter((right) => (mask & bits[right]) !== 0)

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
 * Which check a capability use failed:
 *
 * - `invalid`: not a ref this kernel minted (forged, guessed, or from another kernel);
 * - `not-held`: a valid ref that belongs to another process (it was moved away, or never given);
 * - `missing-right`: held, but without the right the call needs;
 * - `expired`: its `Expires` caveat has passed;
 * - `revoked`: revoked, directly or through the cap it was derived from, or its owner exited;
 * - `wrong-resource`: the right kind of right on the wrong kind of object (send to a device);
 * - `amplification`: derive/attenuate asked for a right the source lacks, or to extend an expiry.
 *
 * @category errors
 */
export type CapabilityFailure =
  "invalid" | "not-held" | "missing-right" | "expired" | "revoked" | "wrong-resource" | "amplification"

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
    "missing-right",
    "expired",
    "revoked",
    "wrong-resource",
    "amplification"
  ]),
  cap: Schema.optionalKey(Schema.Number),
  right: Schema.optionalKey(Schema.String)
}) {
  override get message(): string {
    const what = this.cap === undefined ? "capability" : `cap#${this.cap}`
    const right = this.right === undefined ? "" : ` (right ${this.right})`
    return `${this.call}: ${what} refused: ${this.reason}${right}`
  }
}

/**
 * Is this a ref minted by some kernel? (It may still be revoked, expired, or held by someone else.)
 *
 * @category guards
 */
export const isCapRef = (u: unknown): u is CapRef => recordOf(u) !== undefined
