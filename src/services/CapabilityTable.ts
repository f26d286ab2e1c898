/**
 * Mints, checks, derives, moves and revokes capabilities: the kernel's table of who may do what to which object.
 *
 * The table is small on purpose (Zircon's handle model): a cap is an object, a rights mask and an owner. Derivation
 * only narrows (a subset of rights, an expiry no later than the source's), and revoking a cap revokes everything
 * derived from it. All operations are synchronous and run inside the kernel's critical sections.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer } from "effect"
import { CapabilityError, type Resource } from "./Capability.ts"
import { type CapRecord, type MessageLayer, mintRecord, recordOf, type ToolLayer } from "./internal/capRef.ts"
import { freeze, push, SafeMap, SafeSet } from "./internal/primordials.ts"
import { KernelConfig } from "./KernelConfig.ts"

/**
 * @category models
 */
export interface CapabilityTableShape {
  /** Creates a cap owned by `owner`; `onRevoke` runs once when this very cap is revoked. */
  readonly mint: (
    owner: number,
    resource: Resource,
    rights: number,
    expiresAt?: number,
    onRevoke?: () => void,
    tools?: ReadonlyArray<ToolLayer>
  ) => CapRecord
  /**
   * Checks that `caller` may use `ref` with every right in `rights` (0: just holding it) at the time `now()` gives
   * (read only for caps with an expiry); returns the record or the error to fail the syscall with.
   */
  readonly check: (
    call: string,
    caller: number,
    ref: unknown,
    rights: number,
    now: () => number
  ) => CapRecord | CapabilityError
  /**
   * Makes a narrower copy owned by the same process; `rights` must be a subset, `expiresAt` no later; `tools`, when
   * given, is one more narrowing on top of the source's.
   */
  readonly derive: (
    source: CapRecord,
    rights: number,
    expiresAt: number,
    tools?: ToolLayer,
    message?: MessageLayer
  ) => CapRecord
  /** Revokes a cap and, transitively, every cap derived from it. */
  readonly revoke: (record: CapRecord) => void
  /** Whether `owner` may hold `count` more caps (`KernelConfig.capsPerProcessMax`). */
  readonly room: (owner: number, count: number) => boolean
  /** Moves a cap to a new owner (message passing, spawn). */
  readonly transfer: (record: CapRecord, owner: number) => void
  /** Revokes the caps behind these refs (the caps of a message nobody will receive). */
  readonly revokeRefs: (refs: ReadonlyArray<unknown>) => void
  /** Revokes every cap `owner` holds (the process exited). */
  readonly revokeOwnedBy: (owner: number) => void
  /** Revokes every cap that designates process `pid` (its exit record was evicted). */
  readonly revokeDesignating: (pid: number) => void
  /** The live caps `owner` holds (a copy). */
  readonly held: (owner: number) => ReadonlyArray<CapRecord>
  /** How many caps `owner` holds. */
  readonly heldBy: (owner: number) => number
  /** Live (unrevoked) caps, kernel-wide. */
  readonly size: () => number
}

/**
 * @category services
 */
export class CapabilityTable extends Context.Service<CapabilityTable, CapabilityTableShape>()(
  "effect-agent-os/CapabilityTable"
) {}

const noRecords: ReadonlyArray<CapRecord> = freeze([])

/**
 * @category constructors
 */
export const makeUnsafe = (
  limits: { readonly capsPerProcessMax: number } = { capsPerProcessMax: Infinity }
): CapabilityTableShape => {
  const capsPerProcessMax = limits.capsPerProcessMax
  const table = {}
  let nextId = 1
  let live = 0
  // the table's own collections call the built-ins captured at load (see `internal/primordials.ts`): a process that
  // patched `Set.prototype.add` must not be handed the records going through them
  const owned = new SafeMap<number, SafeSet<CapRecord>>()
  // caps designating a process, so they can be revoked once nothing can use them any more; most processes are
  // designated by one cap (their parent's), kept without a Set
  const designating = new SafeMap<number, CapRecord | SafeSet<CapRecord>>()

  const own = (record: CapRecord) => {
    let set = owned.get(record.owner)
    if (set === undefined) owned.set(record.owner, (set = new SafeSet()))
    set.add(record)
  }
  const disown = (record: CapRecord) => {
    const set = owned.get(record.owner)
    if (set !== undefined) {
      set.delete(record)
      if (set.size === 0) owned.delete(record.owner)
    }
  }

  // by index and by definition: a patched array iterator or index setter never sees a layer
  const layered = <L>(below: ReadonlyArray<L> | undefined, top: L): ReadonlyArray<L> => {
    const out: Array<L> = []
    if (below !== undefined) for (let i = 0; i < below.length; i++) push(out, below[i]!)
    push(out, top)
    return freeze(out)
  }

  const mint = (
    owner: number,
    resource: Resource,
    rights: number,
    expiresAt = Infinity,
    parent?: CapRecord,
    onRevoke?: () => void,
    tools?: ReadonlyArray<ToolLayer>,
    messages?: ReadonlyArray<MessageLayer>
  ) => {
    const record = mintRecord({
      id: nextId++,
      table,
      owner,
      movedFrom: 0,
      resource,
      rights,
      expiresAt,
      parent,
      tools,
      messages,
      derived: undefined,
      revoked: false,
      onRevoke
    })
    live++
    own(record)
    if (resource._tag === "Process") {
      const entry = designating.get(resource.pid)
      if (entry === undefined) designating.set(resource.pid, record)
      else if (entry instanceof SafeSet) entry.add(record)
      else designating.set(resource.pid, new SafeSet<CapRecord>().add(entry).add(record))
    }
    if (parent !== undefined) (parent.derived ??= new SafeSet()).add(record)
    return record
  }

  const revokeOne = (record: CapRecord) => {
    record.revoked = true
    live--
    disown(record)
    record.onRevoke?.()
    if (record.resource._tag === "Process") {
      const entry = designating.get(record.resource.pid)
      if (entry === record) designating.delete(record.resource.pid)
      else if (entry instanceof SafeSet) {
        entry.delete(record)
        if (entry.size === 0) designating.delete(record.resource.pid)
      }
    }
  }

  const revoke = (root: CapRecord) => {
    if (root.revoked) return
    if (root.parent !== undefined) root.parent.derived?.delete(root)
    // a worklist walked by index (no `Array.prototype` method sees a record)
    const stack: Array<CapRecord> = [root]
    for (let i = 0; i < stack.length; i++) {
      const record = stack[i]!
      if (record.revoked) continue
      revokeOne(record)
      if (record.derived !== undefined) {
        const derived = record.derived.toArray()
        for (let j = 0; j < derived.length; j++) push(stack, derived[j]!)
        record.derived = undefined
      }
    }
  }

  return {
    mint: (owner, resource, rights, expiresAt, onRevoke, tools) =>
      mint(owner, resource, rights, expiresAt, undefined, onRevoke, tools),
    check(call, caller, ref, rights, now) {
      const record = recordOf(ref)
      if (record === undefined || record.table !== table) return new CapabilityError({ call, reason: "invalid" })
      // ownership first: a process learns nothing about a cap it does not hold
      if (record.owner !== caller) {
        return new CapabilityError({ call, reason: record.movedFrom === caller ? "moved" : "not-held", cap: record.id })
      }
      if (record.revoked) return new CapabilityError({ call, reason: "revoked", cap: record.id })
      if (record.expiresAt !== Infinity && record.expiresAt <= now())
        return new CapabilityError({ call, reason: "expired", cap: record.id })
      if ((record.rights & rights) !== rights) {
        return new CapabilityError({ call, reason: "missing-right", cap: record.id })
      }
      return record
    },
    derive: (source, rights, expiresAt, tools, message) =>
      mint(
        source.owner,
        source.resource,
        rights & source.rights,
        Math.min(expiresAt, source.expiresAt),
        source,
        undefined,
        tools === undefined ? source.tools : layered(source.tools, tools),
        message === undefined ? source.messages : layered(source.messages, message)
      ),
    revoke,
    room: (owner, count) => (owned.get(owner)?.size ?? 0) + count <= capsPerProcessMax,
    transfer(record, owner) {
      if (record.owner === owner) return
      disown(record)
      record.movedFrom = record.owner
      record.owner = owner
      own(record)
    },
    revokeRefs(refs) {
      for (let i = 0; i < refs.length; i++) {
        const record = recordOf(refs[i])
        if (record !== undefined && record.table === table) revoke(record)
      }
    },
    revokeOwnedBy(owner) {
      const set = owned.get(owner)
      if (set === undefined) return
      const records = set.toArray()
      for (let i = 0; i < records.length; i++) revoke(records[i]!)
      owned.delete(owner)
    },
    revokeDesignating(pid) {
      const entry = designating.get(pid)
      if (entry === undefined) return
      if (entry instanceof SafeSet) {
        const records = entry.toArray()
        for (let i = 0; i < records.length; i++) revoke(records[i]!)
      } else revoke(entry)
      designating.delete(pid)
    },
    held: (owner) => owned.get(owner)?.toArray() ?? noRecords,
    heldBy: (owner) => owned.get(owner)?.size ?? 0,
    size: () => live
  }
}

/**
 * @category layers
 */
export const layer: Layer.Layer<CapabilityTable, never, KernelConfig> = Layer.effect(CapabilityTable)(
  Effect.gen(function* () {
    return makeUnsafe(yield* KernelConfig)
  })
)
