/**
 * Serves Effect's `KeyValueStore` as a device: string values by key, reads and writes decoded with a Schema.
 *
 * Reads look, writes change, so a handle cap attenuated to the `read` right gives a read-only view:
 *
 * | call  | request                       | value read                              |
 * | ----- | ----------------------------- | --------------------------------------- |
 * | read  | `{ op: "get", key }`          | the string, or `null` when absent       |
 * | read  | `{ op: "has", key }`          | `true` / `false`                        |
 * | read  | `{ op: "keys" }`              | every key this handle sees, sorted      |
 * | write | `{ op: "set", key, value }`   | `null`                                  |
 * | write | `{ op: "remove", key }`       | `null` (removing an absent key is fine) |
 *
 * Keys are non-empty strings. Values are strings, stored as given: the store stays readable by anything else that
 * uses it, and a process that wants structure stores JSON text (`JSON.stringify` in, `Schema.fromJsonString` out).
 * `keys` is sorted because stores list keys in no set order and a read is journaled: a replay must see the same list.
 *
 * A request that does not decode, or a `set`/`remove` sent as a read (or a look sent as a write), fails with
 * `DeviceError` `invalid-request`; a store failure (I/O, a key the backend refuses) with `DeviceError` `unavailable`.
 * Calls cost nothing (`meters: []`): a caller with a used-up meter can still use its store.
 *
 * Namespacing: by default every process sees one shared key space. With `prefix`, each handle is a
 * `KeyValueStore.prefix` view: its keys are stored under `prefix(pid)`, and `keys` lists only those, without the
 * prefix. Pids are kernel counters, so with a persistent store (`KeyValueStore.layerFileSystem`) the process that gets
 * the same pid in a replayed or recovered run sees the same entries.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import { KeyValueStore } from "effect/persistence"
import type { Driver, Handle } from "../services/Device.ts"
import { DeviceError } from "../services/Device.ts"

const Key = Schema.NonEmptyString

/**
 * The requests a KV handle understands, reads and writes together.
 *
 * @category models
 */
export const Request = Schema.Union([
  Schema.Struct({ op: Schema.Literal("get"), key: Key }),
  Schema.Struct({ op: Schema.Literal("has"), key: Key }),
  Schema.Struct({ op: Schema.Literal("keys") }),
  Schema.Struct({ op: Schema.Literal("set"), key: Key, value: Schema.String }),
  Schema.Struct({ op: Schema.Literal("remove"), key: Key })
])

/** @category models */
export type Request = typeof Request.Type

/** @category models */
export interface Options {
  /** The driver's name in the device table. Default `"kv"`. */
  readonly name?: string | undefined
  /**
   * The key prefix of a process's entries, e.g. `(pid) => \`pid/${pid}/\``. Default: none, one key space shared by
   * every process that opens the device.
   */
  readonly prefix?: ((pid: number) => string) | undefined
}

/**
 * Makes a KV driver over the `KeyValueStore` in context (`KeyValueStore.layerMemory`, `layerFileSystem(directory)`,
 * `layerSql()`, …).
 *
 * @category constructors
 */
export const driver = (options?: Options): Effect.Effect<Driver, never, KeyValueStore.KeyValueStore> =>
  Effect.gen(function* () {
    const store = yield* KeyValueStore.KeyValueStore
    const name = options?.name ?? "kv"
    const prefix = options?.prefix
    const decode = Schema.decodeUnknownEffect(Request)
    const invalid = (message: string) => new DeviceError({ device: name, reason: "invalid-request", message })
    const unavailable = (error: KeyValueStore.KeyValueStoreError) =>
      new DeviceError({
        device: name,
        reason: "unavailable",
        message: `${error.method}${error.key === undefined ? "" : ` "${error.key}"`}: ${error.message}`,
        retryable: true
      })

    const call = (view: KeyValueStore.KeyValueStore, write: boolean) => (request: unknown) =>
      decode(request).pipe(
        Effect.mapError((error) => invalid(`not a KV request (get, has, keys, set, remove): ${error.message}`)),
        Effect.flatMap((request) => {
          const isWrite = request.op === "set" || request.op === "remove"
          if (isWrite !== write) {
            const [is, sent] = isWrite ? ["write", "read"] : ["read", "write"]
            return Effect.fail(invalid(`"${request.op}" is a ${is}, sent as a ${sent}`))
          }
          return Effect.mapError(run(view, request), unavailable)
        }),
        Effect.map((value) => ({ value }))
      )

    const open = (owner: { readonly pid: number }) =>
      Effect.sync((): Handle => {
        const view = prefix === undefined ? store : KeyValueStore.prefix(store, prefix(owner.pid))
        return { read: call(view, false), write: call(view, true) }
      })

    return { name, meters: [], open }
  })

const run = (
  store: KeyValueStore.KeyValueStore,
  request: Request
): Effect.Effect<string | boolean | ReadonlyArray<string> | null, KeyValueStore.KeyValueStoreError> => {
  switch (request.op) {
    case "get":
      return Effect.map(store.get(request.key), (value) => value ?? null)
    case "has":
      return store.has(request.key)
    case "keys":
      return Effect.map(store.keys, (keys) => [...keys].sort())
    case "set":
      return Effect.as(store.set(request.key, request.value), null)
    case "remove":
      return Effect.as(store.remove(request.key), null)
  }
}
