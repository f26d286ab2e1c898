import { assert, describe, it } from "@effect/vitest"
import { Capability } from "effect-agent-os"
// the table is kernel-internal: unit-tested by its source path, not exported from the package
import * as CapabilityTable from "../../src/services/CapabilityTable.ts"

const SEND = Capability.rightBit("send")
const MONITOR = Capability.rightBit("monitor")
const KILL = Capability.rightBit("kill")
const SPAWN = Capability.rightBit("spawn")

const proc = (pid: number): Capability.Resource => ({ _tag: "Process", pid })
const spawnRes: Capability.Resource = { _tag: "Spawn" }

/** A clock that must not be read (checks of caps without an expiry). */
const noClock = (): number => {
  throw new Error("now() read for a cap without an expiry")
}
const at = (t: number) => () => t

type Table = CapabilityTable.CapabilityTableShape
type CapRec = ReturnType<Table["mint"]>

const failure = (result: CapRec | Capability.CapabilityError): Capability.CapabilityError => {
  assert.instanceOf(result, Capability.CapabilityError)
  return result as Capability.CapabilityError
}
const success = (result: CapRec | Capability.CapabilityError): CapRec => {
  if (result instanceof Capability.CapabilityError) assert.fail(`unexpected ${result.message}`)
  return result as CapRec
}

/** Is `record` still usable by its owner (with no particular right)? */
const live = (table: Table, record: CapRec): boolean =>
  !(table.check("t", record.owner, record.ref, 0, at(0)) instanceof Capability.CapabilityError)

describe("CapabilityTable: mint and check", () => {
  it("a minted cap passes the check for its owner and returns its record", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND | MONITOR)
    assert.strictEqual(record.owner, 1)
    assert.deepStrictEqual(record.resource, proc(2))
    assert.strictEqual(record.rights, SEND | MONITOR)
    assert.strictEqual(record.expiresAt, Infinity)
    assert.isTrue(Capability.isCapRef(record.ref))
    assert.strictEqual(record.ref.id, record.id)
    assert.strictEqual(success(table.check("send", 1, record.ref, SEND, noClock)), record)
    assert.strictEqual(success(table.check("send", 1, record.ref, SEND | MONITOR, noClock)), record)
    assert.strictEqual(success(table.check("send", 1, record.ref, 0, noClock)), record)
  })

  it("ids are distinct and increasing; size and heldBy count live caps", () => {
    const table = CapabilityTable.makeUnsafe()
    assert.strictEqual(table.size(), 0)
    const a = table.mint(1, spawnRes, SPAWN)
    const b = table.mint(1, proc(3), SEND)
    const c = table.mint(2, proc(3), SEND)
    assert.isTrue(a.id < b.id && b.id < c.id)
    assert.strictEqual(table.size(), 3)
    assert.strictEqual(table.heldBy(1), 2)
    assert.strictEqual(table.heldBy(2), 1)
    assert.strictEqual(table.heldBy(3), 0)
  })

  it("invalid: a non-ref object, null, a number, a record itself", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND)
    for (const forged of [{}, { id: record.id }, null, undefined, record.id, "cap#1", record]) {
      const error = failure(table.check("send", 1, forged, SEND, noClock))
      assert.strictEqual(error.reason, "invalid")
      assert.strictEqual(error.call, "send")
      assert.isUndefined(error.cap)
    }
  })

  it("invalid: a ref minted by another table instance, even with the same id and owner", () => {
    const mine = CapabilityTable.makeUnsafe()
    const other = CapabilityTable.makeUnsafe()
    const own = mine.mint(1, proc(2), SEND)
    const foreign = other.mint(1, proc(2), SEND)
    assert.strictEqual(own.id, foreign.id)
    assert.isTrue(Capability.isCapRef(foreign.ref))
    const error = failure(mine.check("send", 1, foreign.ref, SEND, noClock))
    assert.strictEqual(error.reason, "invalid")
    assert.isUndefined(error.cap)
    success(other.check("send", 1, foreign.ref, SEND, noClock))
  })

  it("not-held: a valid ref checked by another process", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND)
    const error = failure(table.check("send", 2, record.ref, SEND, noClock))
    assert.strictEqual(error.reason, "not-held")
    assert.strictEqual(error.cap, record.id)
  })

  it("not-held is reported before revoked, expired and missing-right", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND, 10)
    table.revoke(record)
    assert.strictEqual(failure(table.check("kill", 7, record.ref, KILL, at(100))).reason, "not-held")
  })

  it("revoked: a revoked cap checked by its owner", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND)
    table.revoke(record)
    const error = failure(table.check("send", 1, record.ref, SEND, noClock))
    assert.strictEqual(error.reason, "revoked")
    assert.strictEqual(error.cap, record.id)
  })

  it("expired: usable before expiresAt, expired exactly at it and after", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND, 100)
    assert.strictEqual(record.expiresAt, 100)
    success(table.check("send", 1, record.ref, SEND, at(99)))
    const error = failure(table.check("send", 1, record.ref, SEND, at(100)))
    assert.strictEqual(error.reason, "expired")
    assert.strictEqual(error.cap, record.id)
    assert.strictEqual(failure(table.check("send", 1, record.ref, SEND, at(101))).reason, "expired")
  })

  it("expiry is checked with now() at check time", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND, 50)
    let clock = 0
    let reads = 0
    const now = () => {
      reads++
      return clock
    }
    success(table.check("send", 1, record.ref, SEND, now))
    clock = 50
    assert.strictEqual(failure(table.check("send", 1, record.ref, SEND, now)).reason, "expired")
    assert.strictEqual(reads, 2)
  })

  it("missing-right: held but without every asked right", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(2), SEND | MONITOR)
    const error = failure(table.check("kill", 1, record.ref, KILL, noClock))
    assert.strictEqual(error.reason, "missing-right")
    assert.strictEqual(error.cap, record.id)
    assert.strictEqual(failure(table.check("kill", 1, record.ref, SEND | KILL, noClock)).reason, "missing-right")
  })
})

describe("CapabilityTable: derive", () => {
  it("rights are intersected with the source's; owner and resource are kept", () => {
    const table = CapabilityTable.makeUnsafe()
    const source = table.mint(1, proc(2), SEND | MONITOR)
    const derived = table.derive(source, MONITOR | KILL, Infinity)
    assert.notStrictEqual(derived.id, source.id)
    assert.strictEqual(derived.rights, MONITOR)
    assert.strictEqual(derived.owner, 1)
    assert.deepStrictEqual(derived.resource, proc(2))
    assert.strictEqual(derived.parent, source)
    success(table.check("monitor", 1, derived.ref, MONITOR, noClock))
    assert.strictEqual(failure(table.check("kill", 1, derived.ref, KILL, noClock)).reason, "missing-right")
    assert.strictEqual(failure(table.check("send", 1, derived.ref, SEND, noClock)).reason, "missing-right")
    assert.strictEqual(table.size(), 2)
    assert.strictEqual(table.heldBy(1), 2)
  })

  it("expiry is the minimum of the source's and the asked one", () => {
    const table = CapabilityTable.makeUnsafe()
    const source = table.mint(1, proc(2), SEND, 100)
    assert.strictEqual(table.derive(source, SEND, 200).expiresAt, 100)
    assert.strictEqual(table.derive(source, SEND, Infinity).expiresAt, 100)
    const sooner = table.derive(source, SEND, 50)
    assert.strictEqual(sooner.expiresAt, 50)
    success(table.check("send", 1, sooner.ref, SEND, at(49)))
    assert.strictEqual(failure(table.check("send", 1, sooner.ref, SEND, at(50))).reason, "expired")
    success(table.check("send", 1, source.ref, SEND, at(50)))
    const unbounded = table.mint(1, proc(2), SEND)
    assert.strictEqual(table.derive(unbounded, SEND, 30).expiresAt, 30)
    assert.strictEqual(table.derive(unbounded, SEND, Infinity).expiresAt, Infinity)
  })
})

describe("CapabilityTable: revoke", () => {
  it("is transitive along a chain, and leaves the ancestors alone", () => {
    const table = CapabilityTable.makeUnsafe()
    const a = table.mint(1, proc(2), SEND | MONITOR)
    const b = table.derive(a, SEND | MONITOR, Infinity)
    const c = table.derive(b, SEND, Infinity)
    const d = table.derive(c, SEND, Infinity)
    assert.strictEqual(table.size(), 4)
    table.revoke(b)
    assert.strictEqual(table.size(), 1)
    assert.strictEqual(table.heldBy(1), 1)
    assert.isTrue(live(table, a))
    for (const record of [b, c, d]) {
      assert.strictEqual(failure(table.check("send", 1, record.ref, 0, noClock)).reason, "revoked")
    }
  })

  it("is transitive over a tree, including derived caps moved to other owners", () => {
    const table = CapabilityTable.makeUnsafe()
    const root = table.mint(1, proc(9), SEND | MONITOR | KILL)
    const x = table.derive(root, SEND | MONITOR, Infinity)
    const y = table.derive(root, KILL, Infinity)
    const z = table.derive(x, SEND, Infinity)
    const w = table.derive(x, MONITOR, Infinity)
    const v = table.derive(y, KILL, Infinity)
    table.transfer(w, 2)
    const unrelated = table.mint(1, proc(9), SEND)
    assert.strictEqual(table.size(), 7)
    table.revoke(x)
    assert.strictEqual(table.size(), 4)
    assert.deepStrictEqual(
      [root, y, v, unrelated].map((r) => live(table, r)),
      [true, true, true, true]
    )
    assert.deepStrictEqual(
      [x, z, w].map((r) => live(table, r)),
      [false, false, false]
    )
    assert.strictEqual(table.heldBy(2), 0)
    table.revoke(root)
    assert.strictEqual(table.size(), 1)
    assert.strictEqual(table.heldBy(1), 1)
    assert.isTrue(live(table, unrelated))
    assert.isFalse(live(table, v))
  })

  it("revoking twice, or a descendant before its ancestor, counts each cap once", () => {
    const table = CapabilityTable.makeUnsafe()
    const a = table.mint(1, proc(2), SEND)
    const b = table.derive(a, SEND, Infinity)
    const c = table.derive(b, SEND, Infinity)
    const other = table.mint(1, proc(3), SEND)
    table.revoke(c)
    assert.strictEqual(table.size(), 3)
    table.revoke(c)
    assert.strictEqual(table.size(), 3)
    table.revoke(a)
    assert.strictEqual(table.size(), 1)
    table.revoke(b)
    table.revoke(a)
    assert.strictEqual(table.size(), 1)
    assert.strictEqual(table.heldBy(1), 1)
    assert.isTrue(live(table, other))
  })
})

describe("CapabilityTable: ownership", () => {
  it("transfer moves a cap to its new owner", () => {
    const table = CapabilityTable.makeUnsafe()
    const record = table.mint(1, proc(5), SEND)
    table.mint(1, spawnRes, SPAWN)
    table.transfer(record, 2)
    assert.strictEqual(record.owner, 2)
    assert.strictEqual(table.heldBy(1), 1)
    assert.strictEqual(table.heldBy(2), 1)
    assert.strictEqual(table.size(), 2)
    assert.strictEqual(failure(table.check("send", 1, record.ref, SEND, noClock)).reason, "moved")
    success(table.check("send", 2, record.ref, SEND, noClock))
    table.transfer(record, 2)
    assert.strictEqual(table.heldBy(2), 1)
    table.transfer(record, 3)
    assert.strictEqual(table.heldBy(2), 0)
    assert.strictEqual(table.heldBy(3), 1)
    success(table.check("send", 3, record.ref, SEND, noClock))
  })

  it("revokeOwnedBy revokes what the owner holds and what was derived from it, nothing else", () => {
    const table = CapabilityTable.makeUnsafe()
    const a = table.mint(1, proc(5), SEND)
    const b = table.mint(1, spawnRes, SPAWN)
    const fromA = table.derive(a, SEND, Infinity)
    table.transfer(fromA, 2)
    const kept = table.mint(2, proc(6), SEND)
    const moved = table.mint(1, proc(7), SEND)
    table.transfer(moved, 3)
    assert.strictEqual(table.size(), 5)
    table.revokeOwnedBy(1)
    assert.strictEqual(table.heldBy(1), 0)
    assert.strictEqual(table.heldBy(2), 1)
    assert.strictEqual(table.heldBy(3), 1)
    assert.strictEqual(table.size(), 2)
    assert.deepStrictEqual(
      [a, b, fromA].map((r) => live(table, r)),
      [false, false, false]
    )
    assert.isTrue(live(table, kept))
    assert.isTrue(live(table, moved))
    table.revokeOwnedBy(1)
    table.revokeOwnedBy(42)
    assert.strictEqual(table.size(), 2)
  })

  it("revokeDesignating revokes only the caps whose resource is that Process pid", () => {
    const table = CapabilityTable.makeUnsafe()
    const first = table.mint(1, proc(5), SEND)
    const second = table.mint(2, proc(5), MONITOR)
    const derived = table.derive(first, SEND, Infinity)
    const otherPid = table.mint(1, proc(6), SEND)
    const remote = table.mint(1, { _tag: "Remote", node: "n", pid: 5 }, SEND)
    const handle = table.mint(1, { _tag: "Handle", device: "d", handle: 5 }, SEND)
    const spawn = table.mint(5, spawnRes, SPAWN)
    assert.strictEqual(table.size(), 7)
    table.revokeDesignating(5)
    assert.strictEqual(table.size(), 4)
    assert.deepStrictEqual(
      [first, second, derived].map((r) => live(table, r)),
      [false, false, false]
    )
    assert.deepStrictEqual(
      [otherPid, remote, handle, spawn].map((r) => live(table, r)),
      [true, true, true, true]
    )
    assert.strictEqual(table.heldBy(2), 0)
    assert.strictEqual(table.heldBy(5), 1)
  })

  it("revokeDesignating with a single cap, after partial revokes, and for a new cap minted later", () => {
    const table = CapabilityTable.makeUnsafe()
    const only = table.mint(1, proc(8), SEND)
    table.revokeDesignating(8)
    assert.isFalse(live(table, only))
    assert.strictEqual(table.size(), 0)
    const a = table.mint(1, proc(8), SEND)
    const b = table.mint(1, proc(8), SEND)
    table.revoke(a)
    const c = table.mint(2, proc(8), SEND)
    assert.strictEqual(table.size(), 2)
    table.revokeDesignating(8)
    assert.strictEqual(table.size(), 0)
    assert.isFalse(live(table, b))
    assert.isFalse(live(table, c))
    table.revokeDesignating(8)
    assert.strictEqual(table.size(), 0)
  })
})
