import { assert, describe, it } from "@effect/vitest"
// the registry is kernel-internal: unit-tested by its source path, not exported from the package
import * as NameRegistry from "../../src/services/NameRegistry.ts"

const make = (namesMax = 10, nameLengthMax = 8) => NameRegistry.makeUnsafe({ namesMax, nameLengthMax })

const refusal = (result: NameRegistry.NameError | undefined): NameRegistry.NameError => {
  assert.instanceOf(result, NameRegistry.NameError)
  return result as NameRegistry.NameError
}

describe("NameRegistry", () => {
  it("register makes a name resolvable; size counts names", () => {
    const names = make()
    assert.strictEqual(names.size(), 0)
    assert.isUndefined(names.whereis("db"))
    assert.isUndefined(names.register("db", 3))
    assert.isUndefined(names.register("cache", 3))
    assert.isUndefined(names.register("log", 4))
    assert.strictEqual(names.whereis("db"), 3)
    assert.strictEqual(names.whereis("cache"), 3)
    assert.strictEqual(names.whereis("log"), 4)
    assert.isUndefined(names.whereis("DB"))
    assert.strictEqual(names.size(), 3)
  })

  it("registering a name one already holds again is a no-op", () => {
    const names = make()
    assert.isUndefined(names.register("db", 3))
    assert.isUndefined(names.register("db", 3))
    assert.strictEqual(names.size(), 1)
    assert.isUndefined(names.unregister("db", 3))
    assert.isUndefined(names.whereis("db"))
  })

  it("taken: another process holds the name", () => {
    const names = make()
    names.register("db", 3)
    const error = refusal(names.register("db", 4))
    assert.strictEqual(error.reason, "taken")
    assert.strictEqual(error.name, "db")
    assert.strictEqual(names.whereis("db"), 3)
    assert.strictEqual(names.size(), 1)
  })

  it("unregister frees the name for others", () => {
    const names = make()
    names.register("db", 3)
    assert.isUndefined(names.unregister("db", 3))
    assert.isUndefined(names.whereis("db"))
    assert.strictEqual(names.size(), 0)
    assert.isUndefined(names.register("db", 4))
    assert.strictEqual(names.whereis("db"), 4)
  })

  it("not-holder: unregistering a name held by another process, or by nobody", () => {
    const names = make()
    names.register("db", 3)
    const error = refusal(names.unregister("db", 4))
    assert.strictEqual(error.reason, "not-holder")
    assert.strictEqual(error.name, "db")
    assert.strictEqual(names.whereis("db"), 3)
    assert.strictEqual(refusal(names.unregister("nobody", 3)).reason, "not-holder")
    names.unregister("db", 3)
    assert.strictEqual(refusal(names.unregister("db", 3)).reason, "not-holder")
  })

  it("invalid: empty or longer than nameLengthMax; exactly nameLengthMax is fine", () => {
    const names = make(10, 4)
    const empty = refusal(names.register("", 1))
    assert.deepStrictEqual([empty.reason, empty.name], ["invalid", ""])
    const long = refusal(names.register("abcde", 1))
    assert.deepStrictEqual([long.reason, long.name], ["invalid", "abcde"])
    assert.strictEqual(refusal(names.register(42 as unknown as string, 1)).reason, "invalid")
    assert.strictEqual(names.size(), 0)
    assert.isUndefined(names.register("abcd", 1))
    assert.strictEqual(names.whereis("abcd"), 1)
  })

  it("full: namesMax names registered; a freed slot can be reused", () => {
    const names = make(2)
    assert.isUndefined(names.register("a", 1))
    assert.isUndefined(names.register("b", 2))
    const error = refusal(names.register("c", 1))
    assert.deepStrictEqual([error.reason, error.name], ["full", "c"])
    assert.isUndefined(names.whereis("c"))
    assert.strictEqual(names.size(), 2)
    assert.isUndefined(names.register("a", 1))
    assert.strictEqual(refusal(names.register("a", 3)).reason, "taken")
    names.unregister("b", 2)
    assert.isUndefined(names.register("c", 1))
    assert.strictEqual(names.size(), 2)
  })

  it("releaseAll clears every name a pid holds and only those", () => {
    const names = make()
    names.register("a", 1)
    names.register("b", 1)
    names.register("c", 2)
    names.register("d", 1)
    names.unregister("d", 1)
    names.releaseAll(1)
    assert.isUndefined(names.whereis("a"))
    assert.isUndefined(names.whereis("b"))
    assert.strictEqual(names.whereis("c"), 2)
    assert.strictEqual(names.size(), 1)
    assert.isUndefined(names.register("a", 3))
    names.releaseAll(1)
    names.releaseAll(99)
    assert.strictEqual(names.whereis("a"), 3)
    assert.strictEqual(names.size(), 2)
    assert.strictEqual(refusal(names.unregister("a", 1)).reason, "not-holder")
  })

  it("a pid whose names were all unregistered, then registers again, is released correctly", () => {
    const names = make()
    names.register("a", 1)
    names.unregister("a", 1)
    names.register("b", 1)
    names.releaseAll(1)
    assert.isUndefined(names.whereis("b"))
    assert.strictEqual(names.size(), 0)
  })
})
