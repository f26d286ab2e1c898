import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, FileSystem, Layer } from "effect"
import { KeyValueStore } from "effect/persistence"
import { type Device, Kv } from "effect-agent-os"

type CallContext = Device.CallContext
type Handle = Device.Handle

const callOf = (pid: number): CallContext => ({ pid, op: 1, priority: 0, deadline: undefined })

const read = (handle: Handle, pid: number, request: unknown) =>
  Effect.map(handle.read(request, callOf(pid)), (result) => result.value)

const write = (handle: Handle, pid: number, request: unknown) => {
  assert.isDefined(handle.write, "a KV handle writes")
  return Effect.map(handle.write!(request, callOf(pid)), (result) => result.value)
}

/** The same behaviour, whatever store backs the device. */
const suite = <E>(
  backend: string,
  provide: <A, E2>(effect: Effect.Effect<A, E2, KeyValueStore.KeyValueStore>) => Effect.Effect<A, E | E2, never>
) =>
  describe(`Kv over ${backend}`, () => {
    it.effect("gets, sets, tests and removes string values, costing nothing", () =>
      provide(
        Effect.gen(function* () {
          const driver = yield* Kv.driver()
          assert.strictEqual(driver.name, "kv")
          assert.deepStrictEqual(driver.meters, [])
          const handle = yield* driver.open({ pid: 1 })

          assert.strictEqual(yield* read(handle, 1, { op: "get", key: "color" }), null)
          assert.strictEqual(yield* read(handle, 1, { op: "has", key: "color" }), false)
          const set = yield* handle.write!({ op: "set", key: "color", value: "blue" }, callOf(1))
          assert.strictEqual(set.value, null)
          assert.isTrue(set.cost === undefined || Object.keys(set.cost).length === 0, "no meter charged")
          assert.strictEqual(yield* read(handle, 1, { op: "get", key: "color" }), "blue")
          assert.strictEqual(yield* read(handle, 1, { op: "has", key: "color" }), true)
          yield* write(handle, 1, { op: "set", key: "color", value: '{"r":0,"g":0,"b":255}' })
          assert.strictEqual(yield* read(handle, 1, { op: "get", key: "color" }), '{"r":0,"g":0,"b":255}')
          yield* write(handle, 1, { op: "set", key: "a/b c", value: "" })
          assert.strictEqual(yield* read(handle, 1, { op: "get", key: "a/b c" }), "", "empty values are values")
          assert.deepStrictEqual(yield* read(handle, 1, { op: "keys" }), ["a/b c", "color"])

          assert.strictEqual(yield* write(handle, 1, { op: "remove", key: "color" }), null)
          assert.strictEqual(yield* read(handle, 1, { op: "get", key: "color" }), null)
          assert.strictEqual(yield* read(handle, 1, { op: "has", key: "color" }), false)
          assert.strictEqual(yield* write(handle, 1, { op: "remove", key: "color" }), null, "removing twice is fine")
          assert.deepStrictEqual(yield* read(handle, 1, { op: "keys" }), ["a/b c"])
        })
      )
    )

    it.effect("shares one key space between processes by default", () =>
      provide(
        Effect.gen(function* () {
          const driver = yield* Kv.driver({ name: "shared" })
          assert.strictEqual(driver.name, "shared")
          const one = yield* driver.open({ pid: 1 })
          const two = yield* driver.open({ pid: 2 })
          yield* write(one, 1, { op: "set", key: "note", value: "from 1" })
          assert.strictEqual(yield* read(two, 2, { op: "get", key: "note" }), "from 1")
        })
      )
    )

    it.effect("isolates processes with a prefix", () =>
      provide(
        Effect.gen(function* () {
          const driver = yield* Kv.driver({ prefix: (pid) => `pid-${pid}/` })
          const one = yield* driver.open({ pid: 1 })
          const two = yield* driver.open({ pid: 2 })
          yield* write(one, 1, { op: "set", key: "note", value: "mine" })
          assert.strictEqual(yield* read(two, 2, { op: "get", key: "note" }), null)
          assert.strictEqual(yield* read(two, 2, { op: "has", key: "note" }), false)
          yield* write(two, 2, { op: "set", key: "note", value: "yours" })
          yield* write(two, 2, { op: "set", key: "other", value: "x" })
          assert.strictEqual(yield* read(one, 1, { op: "get", key: "note" }), "mine")
          assert.deepStrictEqual(yield* read(one, 1, { op: "keys" }), ["note"])
          assert.deepStrictEqual(yield* read(two, 2, { op: "keys" }), ["note", "other"])
          yield* write(two, 2, { op: "remove", key: "note" })
          assert.strictEqual(yield* read(one, 1, { op: "get", key: "note" }), "mine", "2 cannot remove 1's entry")

          const store = yield* KeyValueStore.KeyValueStore
          assert.deepStrictEqual([...(yield* store.keys)].sort(), ["pid-1/note", "pid-2/other"])
        })
      )
    )

    it.effect("fails with invalid-request for a request that does not decode or goes the wrong way", () =>
      provide(
        Effect.gen(function* () {
          const driver = yield* Kv.driver()
          const handle = yield* driver.open({ pid: 1 })
          const reads: ReadonlyArray<unknown> = [
            undefined,
            "get color",
            { op: "get" },
            { op: "get", key: "" },
            { op: "get", key: 7 },
            { op: "drop", key: "color" },
            { op: "set", key: "color", value: "blue" },
            { op: "remove", key: "color" }
          ]
          for (const request of reads) {
            const error = yield* Effect.flip(handle.read(request, callOf(1)))
            assert.strictEqual(error._tag, "DeviceError")
            assert.strictEqual(error.reason, "invalid-request", JSON.stringify(request))
            assert.strictEqual(error.device, "kv")
          }
          const writes: ReadonlyArray<unknown> = [
            { op: "set", key: "color" },
            { op: "set", key: "color", value: 3 },
            { op: "set", key: "", value: "blue" },
            { op: "get", key: "color" },
            { op: "keys" }
          ]
          for (const request of writes) {
            const error = yield* Effect.flip(handle.write!(request, callOf(1)))
            assert.strictEqual(error.reason, "invalid-request", JSON.stringify(request))
          }
          const wrongWay = yield* Effect.flip(handle.read({ op: "set", key: "color", value: "blue" }, callOf(1)))
          assert.include(wrongWay.message, '"set" is a write, sent as a read')
          const store = yield* KeyValueStore.KeyValueStore
          assert.isTrue(yield* store.isEmpty, "nothing was written")
        })
      )
    )
  })

suite("layerMemory", (effect) => Effect.provide(effect, KeyValueStore.layerMemory))

/** A fresh store in a fresh temporary directory per test, removed afterwards. */
const inTemporaryDirectory = <A, E>(use: (directory: string) => Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const directory = yield* fs.makeTempDirectoryScoped({ prefix: "kv-test-" })
    return yield* use(directory)
  }).pipe(Effect.scoped, Effect.provide(NodeServices.layer))

const fileStore = (directory: string) =>
  KeyValueStore.layerFileSystem(directory).pipe(Layer.provide(NodeServices.layer))

suite("layerFileSystem", (effect) => inTemporaryDirectory((directory) => Effect.provide(effect, fileStore(directory))))

describe("Kv over layerFileSystem, across restarts", () => {
  it.effect("a process with the same pid finds its entries in a new store over the same directory", () =>
    inTemporaryDirectory((directory) =>
      Effect.gen(function* () {
        const options = { prefix: (pid: number) => `pid-${pid}/` }
        yield* Effect.gen(function* () {
          const handle = yield* (yield* Kv.driver(options)).open({ pid: 4 })
          yield* write(handle, 4, { op: "set", key: "plan", value: "step 2" })
        }).pipe(Effect.provide(fileStore(directory)))
        const value = yield* Effect.gen(function* () {
          const handle = yield* (yield* Kv.driver(options)).open({ pid: 4 })
          return yield* read(handle, 4, { op: "get", key: "plan" })
        }).pipe(Effect.provide(fileStore(directory)))
        assert.strictEqual(value, "step 2")
      })
    )
  )
})

describe("Kv store failures", () => {
  const broken = KeyValueStore.make({
    get: (key) => Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "get", key, message: "disk on fire" })),
    getUint8Array: (key) =>
      Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "getUint8Array", key, message: "disk on fire" })),
    set: (key) => Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "set", key, message: "disk on fire" })),
    remove: (key) =>
      Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "remove", key, message: "disk on fire" })),
    clear: Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "clear", message: "disk on fire" })),
    size: Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "size", message: "disk on fire" })),
    keys: Effect.fail(new KeyValueStore.KeyValueStoreError({ method: "keys", message: "disk on fire" }))
  })

  it.effect("become DeviceError unavailable, retryable", () =>
    Effect.gen(function* () {
      const driver = yield* Kv.driver().pipe(Effect.provideService(KeyValueStore.KeyValueStore, broken))
      const handle = yield* driver.open({ pid: 1 })
      const get = yield* Effect.flip(handle.read({ op: "get", key: "color" }, callOf(1)))
      assert.deepInclude(get, { _tag: "DeviceError", device: "kv", reason: "unavailable", retryable: true })
      assert.include(get.message, "disk on fire")
      assert.include(get.message, '"color"')
      const keys = yield* Effect.flip(handle.read({ op: "keys" }, callOf(1)))
      assert.strictEqual(keys.reason, "unavailable")
      const set = yield* Effect.flip(handle.write!({ op: "set", key: "color", value: "blue" }, callOf(1)))
      assert.strictEqual(set.reason, "unavailable")
    })
  )
})
