/**
 * Binds each capability ref to its kernel-side record through a private class field, so only the kernel can read it.
 *
 * Private to the package: the `exports` map closes `internal/*`.
 */
import type { Resource } from "../Capability.ts"
import type { SafeMap, SafeSet } from "./primordials.ts"

/** What one narrowing grants for one tool, as the kernel keeps it. */
export interface ToolLayerEntry {
  /** The driver's data for the tool (deep-frozen copy), `undefined` when the grant gave none. */
  readonly scope: unknown
  /** `undefined`: no approval needed; otherwise the approval timeout in millis (`Infinity`: none). */
  readonly approvalMs: number | undefined
}

/** One `tools` narrowing: the tools it grants, by name. */
export type ToolLayer = SafeMap<string, ToolLayerEntry>

/**
 * One `message` narrowing of a process cap (a typed pipe): what a body sent through it must decode as, and what
 * becomes of one that does not (`fail`: the send fails with an `ArgumentError`; `drop`: a `Drop` event `invalid`).
 */
export interface MessageLayer {
  /** The body decoded (the receiver gets `value`), or why it does not decode. Never throws. */
  readonly decode: (
    body: unknown
  ) => { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly why: string }
  readonly invalid: "fail" | "drop"
}

/** The kernel-side record behind a ref. Only the kernel sees it. */
export interface CapRecord {
  readonly id: number
  readonly ref: CapRef
  readonly table: object
  owner: number
  /** The owner before the last transfer (0: never moved), so a use by it fails `moved` rather than `not-held`. */
  movedFrom: number
  readonly resource: Resource
  readonly rights: number
  /** Absolute kernel-clock millis; `Infinity` when the cap has no `Expires` caveat. */
  readonly expiresAt: number
  readonly parent: CapRecord | undefined
  /** The `tools` narrowings this cap went through, outermost first; `undefined` when it grants every request. */
  readonly tools: ReadonlyArray<ToolLayer> | undefined
  /** The `message` narrowings of a process cap, outermost first; `undefined` when any body passes. */
  readonly messages: ReadonlyArray<MessageLayer> | undefined
  derived: SafeSet<CapRecord> | undefined
  revoked: boolean
  /** Runs once when this record is revoked (a handle cap closes its handle). */
  readonly onRevoke: (() => void) | undefined
}

let readRecord: (ref: unknown) => CapRecord | undefined
let makeRef: (record: Omit<CapRecord, "ref">) => CapRecord

/**
 * An unforgeable capability handle. Pass it to syscalls, put it on messages (ownership moves to the receiver), derive
 * weaker copies of it. Printing it shows `cap#<id>`.
 *
 * @category models
 */
export class CapRef {
  readonly id: number
  readonly #record: CapRecord
  private constructor(id: number, record: CapRecord) {
    this.id = id
    this.#record = record
    Object.freeze(this)
  }
  toString(): string {
    return `cap#${this.id}`
  }
  toJSON(): string {
    return `cap#${this.id}`
  }
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `cap#${this.id}`
  }
  static {
    readRecord = (ref) => (ref !== null && typeof ref === "object" && #record in ref ? ref.#record : undefined)
    makeRef = (fields) => {
      // `ref` is declared first so the record keeps one shape (no out-of-object property storage)
      // fields listed one by one: a spread copies through a slow generic path (about 5 % of a spawn)
      const record: CapRecord = {
        ref: undefined as unknown as CapRef,
        id: fields.id,
        table: fields.table,
        owner: fields.owner,
        movedFrom: fields.movedFrom,
        resource: fields.resource,
        rights: fields.rights,
        expiresAt: fields.expiresAt,
        parent: fields.parent,
        tools: fields.tools,
        messages: fields.messages,
        derived: fields.derived,
        revoked: fields.revoked,
        onRevoke: fields.onRevoke
      }
      ;(record as { ref: CapRef }).ref = new CapRef(fields.id, record)
      return record
    }
  }
}

/** Reads the record behind a ref; `undefined` for anything the kernel did not mint. */
export const recordOf = (ref: unknown): CapRecord | undefined => readRecord(ref)

/** Creates a record and its ref together. */
export const mintRecord = (fields: Omit<CapRecord, "ref">): CapRecord => makeRef(fields)
