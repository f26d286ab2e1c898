/**
 * The agent VFS: a device through which a process reads and changes what the kernel keeps of it, as files.
 *
 * `Vfs.driver(options)` is a driver for `Kernel.layer({ drivers })`; a process opens it (`Sys.open`) like any
 * device and reads and writes paths on its handle. Whoever calls sees its own state: the VFS of a process is that
 * process's context memory, checkpoints and policies, even through a handle another process opened and passed on.
 *
 * | mount           | what it is                                                                              |
 * | --------------- | --------------------------------------------------------------------------------------- |
 * | `/mem/working`  | context memory (`Sys.remember`): write = remember, read = a segment, search = recall    |
 * | `/mem/episodic` | long-term episodes: any JSON value, appended in order, searched by relevance            |
 * | `/mem/semantic` | long-term lessons (strings), deduplicated, searched by relevance (`LongTermMemory`)     |
 * | `/state`        | checkpoints: write = checkpoint, list = the checkpoints, restore by path                |
 * | `/policy`       | the policy sets the caller's calls pass, parent's first: read-only                      |
 *
 * Requests (reads look, writes change, so a handle cap attenuated to `read` is a read-only VFS):
 *
 * | call  | request                                   | value read                                                |
 * | ----- | ----------------------------------------- | --------------------------------------------------------- |
 * | read  | `{ op: "list", path }`                    | the directory's entries `{ name, path, type, … }`         |
 * | read  | `{ op: "read", path }`                    | the file                                                  |
 * | read  | `{ op: "search", path, query, k? }`       | the directory's `k` (default 3) best files for `query`    |
 * | write | `{ op: "write", path, data, pin?, tokens? }` | `{ path }` of what was made (`null` for a known lesson) |
 * | write | `{ op: "remove", path }`                  | `null`                                                    |
 * | write | `{ op: "restore", path: "/state/<n>" }`   | `{ path, working, swap }`: the segments restored          |
 *
 * - Paths are absolute; `.` and `..` are resolved, and a `..` past `/` is refused (`denied`), never clamped.
 * - `/mem/working/<id>` is a segment `{ id, body, tokens, pinned, swapped }`. Writing `data` there is
 *   `Sys.remember(data, { pin, tokens })` (the same paging, and the same `Quota` past the `mem` quota); `search` is
 *   `Sys.recall` (it pages the segments found back in); `remove` is `Sys.forget`.
 * - `/state/<n>`: writing `/state` checkpoints the caller: its snapshot (`kernel.snapshot`'s format, which
 *   `kernel.restore` takes) is kept by the kernel as `/state/<n>`, numbered from 1 (`data`, if a string, is its
 *   label). Reading it gives the snapshot; `restore` puts the checkpoint's context memory back in place of the
 *   current one. Budget, mailbox, priority and deadline are never restored: what was spent stays spent, and a
 *   message received is not received again. At most `checkpointsMax` checkpoints are kept (a write past it fails
 *   `limit`; remove one first), each at most `checkpointBytesMax` of JSON.
 * - `/policy/<n>` is one policy set's rules, as given to `Policy.make`. Every write under `/policy` fails
 *   `read-only`.
 * - `/mem/episodic/<seq>` is `{ seq, at, data }` (`at`: the kernel clock when written); `/mem/semantic/<key>` is
 *   `{ text, seq }`. Both live in the `KeyValueStore` the driver was built with, under `<prefix><namespace>/episodic/`
 *   and `…/semantic/`, in `LongTermMemory`'s format for lessons (so `LongTermMemory.open(kv, { namespace:
 *   "<prefix><namespace>/semantic" })` over a KV device on the same store reads them). The namespace is the caller's
 *   lineage: its name and its ancestors', root first, each URI-encoded, joined by `/` (`namespace` changes it). So a
 *   process keeps its lessons across runs under the same name, and a process can reach only its own subtree's: a
 *   child's namespace is always below its parent's.
 *
 * Every operation is capability-checked, judged by policies and metered like any driver call: it costs `cost`
 * (default one `toolCalls`), reserved before it starts and charged whether it succeeds or fails (a failing call
 * did its work too). Policies judge the request with its path made canonical (`/mem/../state` is judged as
 * `/state`), so a rule on a path cannot be slipped past by spelling it otherwise. What a read gives back is a copy:
 * changing it changes nothing the kernel keeps; a restored segment counts at least its body's token estimate. Calls on context memory, checkpoints and policies read and
 * change kernel state only: they run inside the caller's syscall and are not journaled, since a replay runs them
 * again and rebuilds the same state (a policy rule that asks an `approve` for one is refused, as it cannot be
 * journaled). Calls on `/mem/episodic` and `/mem/semantic` reach the store: they are journaled and replayed like
 * any driver call. A request must be plain data; `data` must be a JSON value (no `undefined`, no non-finite
 * numbers, no class instances). Errors are `DeviceError`s: `invalid-request`, `not-found`, `denied`, `read-only`,
 * `is-a-directory`, `not-a-directory`, `limit`, `unencodable`, `unavailable` (the store failed).
 *
 * @since 0.1.0
 */
import { Effect, Schema, Semaphore } from "effect"
import { KeyValueStore } from "effect/persistence"
import type { Cost } from "./Accounts.ts"
import { isCapRef } from "./Capability.ts"
import { textOf } from "./ContextMemory.ts"
import type { DeviceResult, Driver, Handle } from "./Device.ts"
import { DeviceError } from "./Device.ts"
import * as Lessons from "./internal/lessons.ts"
import * as Inputs from "./internal/inputs.ts"
import { register } from "./internal/kernelDevice.ts"
import type { KernelState } from "./internal/kernelState.ts"
import type { Proc } from "./internal/proc.ts"
import { snapshotOf, unencodableIn } from "./internal/snapshotOf.ts"
import { fitMemory, newMemory, overMemory, rememberIn } from "./internal/syscalls.ts"
import type { Snapshot } from "./Snapshot.ts"
import { freeze, includes, own, push, put } from "./internal/primordials.ts"

// captured at load: image code may replace `JSON` (a checkpoint written or read through its functions would be theirs)
const jsonStringify = JSON.stringify
const jsonParse = JSON.parse

const Path = Schema.String.check(Schema.isMaxLength(1024))
const K = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 100 }))

/**
 * The requests a VFS handle understands, reads and writes together.
 *
 * @category models
 */
export const Request = Schema.Union([
  Schema.Struct({ op: Schema.Literal("list"), path: Path }),
  Schema.Struct({ op: Schema.Literal("read"), path: Path }),
  Schema.Struct({ op: Schema.Literal("search"), path: Path, query: Schema.String, k: Schema.optionalKey(K) }),
  Schema.Struct({
    op: Schema.Literal("write"),
    path: Path,
    data: Schema.optionalKey(Schema.Unknown),
    pin: Schema.optionalKey(Schema.Boolean),
    tokens: Schema.optionalKey(Schema.Number)
  }),
  Schema.Struct({ op: Schema.Literal("remove"), path: Path }),
  Schema.Struct({ op: Schema.Literal("restore"), path: Path })
])
/** @category models */
export type Request = typeof Request.Type

/**
 * One entry of a directory listing.
 *
 * @category models
 */
export interface Entry {
  readonly name: string
  readonly path: string
  readonly type: "dir" | "file"
  readonly [detail: string]: unknown
}

/**
 * A checkpoint the kernel keeps for a process (`/state/<n>`): its snapshot as JSON text.
 *
 * @category models
 */
export interface Checkpoint {
  readonly n: number
  readonly label: string | undefined
  readonly at: number
  readonly text: string
}

/** @category models */
export interface Options {
  /** The driver's name in the device table. Default `"vfs"`. */
  readonly name?: string | undefined
  /** What each operation costs. Default `{ toolCalls: 1 }`. */
  readonly cost?: Cost | undefined
  /** Checkpoints a process may keep at once. Default 16. */
  readonly checkpointsMax?: number | undefined
  /** The largest checkpoint, in bytes of JSON (two a character). Default 8 MiB. */
  readonly checkpointBytesMax?: number | undefined
  /** Episodes, and lessons, one namespace may hold. Default 10 000. */
  readonly entriesMax?: number | undefined
  /** Lessons longer than this are cut. Default 500 (`LongTermMemory`'s). */
  readonly lessonCharsMax?: number | undefined
  /** The key prefix of every long-term entry in the store. Default `"vfs/"`. */
  readonly prefix?: string | undefined
  /** The namespace of a process, from its lineage (names, root first). Default: each URI-encoded, joined by `/`. */
  readonly namespace?: ((names: ReadonlyArray<string>) => string) | undefined
}

/** The defaults of `Options`. */
export const defaults = {
  name: "vfs",
  checkpointsMax: 16,
  checkpointBytesMax: 8 * 1024 * 1024,
  entriesMax: 10_000,
  lessonCharsMax: 500,
  prefix: "vfs/"
} as const

const ops = ["list", "read", "search", "write", "remove", "restore"] as const
const isInteger = Number.isInteger

/**
 * `Request`'s check, written out over the input's own properties (the kernel's copy of a request is plain data): the
 * Schema's decoder would build its output by assignment, which a setter image code put on `Object.prototype` would
 * see (and a getter there would answer for a field left out). The request is rebuilt by definition from what was
 * checked. A string is why it is not a request.
 */
const requestOf = (input: unknown): Request | string => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return "expected an object"
  const record = input as Record<string, unknown>
  const op = own(record, "op")
  if (typeof op !== "string" || !includes(ops, op)) return `op must be one of ${ops.join(", ")}`
  const path = own(record, "path")
  if (typeof path !== "string" || path.length > 1024) return "path must be a string of at most 1024 characters"
  const out: Record<string, unknown> = {}
  put(out, "op", op)
  put(out, "path", path)
  if (op === "search") {
    const query = own(record, "query")
    if (typeof query !== "string") return "query must be a string"
    put(out, "query", query)
    const k = own(record, "k")
    if (k !== undefined) {
      if (typeof k !== "number" || !isInteger(k) || k < 0 || k > 100) return "k must be an integer in [0, 100]"
      put(out, "k", k)
    }
  } else if (op === "write") {
    const data = own(record, "data")
    if (data !== undefined) put(out, "data", data)
    const pin = own(record, "pin")
    if (pin !== undefined) {
      if (typeof pin !== "boolean") return "pin must be a boolean"
      put(out, "pin", pin)
    }
    const tokens = own(record, "tokens")
    if (tokens !== undefined) {
      if (typeof tokens !== "number") return "tokens must be a number"
      put(out, "tokens", tokens)
    }
  }
  return out as unknown as Request
}
const Episode = Schema.Struct({ seq: Schema.Number, at: Schema.Number, data: Schema.Unknown })
const decodeEpisode = Schema.decodeUnknownOption(Schema.fromJsonString(Episode))

const isWrite = (op: Request["op"]): boolean => op === "write" || op === "remove" || op === "restore"

/** `path` as its segments from `/`, or why it is not a VFS path. */
export const resolve = (
  path: string
): ReadonlyArray<string> | { readonly reason: string; readonly message: string } => {
  if (!path.startsWith("/")) return { reason: "invalid-request", message: `${JSON.stringify(path)} is not absolute` }
  if (path.includes("\0")) return { reason: "invalid-request", message: "a path cannot hold a NUL byte" }
  const out: Array<string> = []
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue
    if (part === "..") {
      if (out.length === 0) return { reason: "denied", message: `${JSON.stringify(path)} leaves the VFS root` }
      out.pop()
      continue
    }
    out.push(part)
  }
  return out
}

const objectPrototype = Object.prototype
const getPrototypeOf = Object.getPrototypeOf
const ownKeys = Reflect.ownKeys
const getOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor

/** Whether `value` is a JSON value JSON text carries unchanged (the kernel's copy of a request, so no traps). */
const isJson = (value: unknown, depth = 0): boolean => {
  if (value === null || typeof value === "string" || typeof value === "boolean") return true
  if (typeof value === "number") return Number.isFinite(value)
  if (typeof value !== "object" || depth > 64) return false
  const array = Array.isArray(value)
  const proto = getPrototypeOf(value)
  if (array ? proto !== Array.prototype : proto !== objectPrototype && proto !== null) return false
  for (const key of ownKeys(value)) {
    if (typeof key === "symbol") return false
    if (array && key === "length") continue
    const descriptor = getOwnPropertyDescriptor(value, key)
    if (descriptor === undefined || !("value" in descriptor) || !isJson(descriptor.value, depth + 1)) return false
  }
  return true
}

const dir = (path: string, name: string): Entry => ({ name, path: `${path}/${name}`.replace("//", "/"), type: "dir" })

/**
 * Makes the VFS driver over the `KeyValueStore` in context, which holds `/mem/episodic` and `/mem/semantic`
 * (`KeyValueStore.layerMemory`, `layerFileSystem(directory)`, …).
 *
 * @example
 * ```ts
 * const vfs = yield* Sys.open(grant.devices.vfs!)
 * yield* Sys.write(vfs, { op: "write", path: "/mem/working", data: "the user wants a summary" })
 * const { path } = yield* Sys.write<{ path: string }>(vfs, { op: "write", path: "/state", data: "before the tool" })
 * yield* Sys.write(vfs, { op: "restore", path })
 * ```
 *
 * @category constructors
 */
export const driver = (options?: Options): Effect.Effect<Driver, never, KeyValueStore.KeyValueStore> =>
  Effect.gen(function* () {
    const store = yield* KeyValueStore.KeyValueStore
    const name = options?.name ?? defaults.name
    const cost: Cost = options?.cost ?? { toolCalls: 1 }
    const checkpointsMax = options?.checkpointsMax ?? defaults.checkpointsMax
    const checkpointBytesMax = options?.checkpointBytesMax ?? defaults.checkpointBytesMax
    const entriesMax = options?.entriesMax ?? defaults.entriesMax
    const lessonCharsMax = Math.max(1, options?.lessonCharsMax ?? defaults.lessonCharsMax)
    const prefix = options?.prefix ?? defaults.prefix
    const namespace = options?.namespace ?? ((names) => names.map(encodeURIComponent).join("/"))
    // long-term writes pick the next seq and key from what is stored: one at a time
    const writes = yield* Semaphore.make(1)

    const fail = (reason: string, message: string, retryable?: boolean) =>
      Effect.fail(
        new DeviceError(
          retryable === undefined ? { device: name, reason, message } : { device: name, reason, message, retryable }
        )
      )
    const ok = (value: unknown): Effect.Effect<DeviceResult> => Effect.succeed({ value, cost })
    const notFound = (path: string) => fail("not-found", `${path}: no such file or directory`)
    /** An op a file does not take: `list` is for directories, the others name what they do not apply to. */
    const notForFile = (path: string, request: Request, what: string) =>
      request.op === "list"
        ? fail("not-a-directory", `${path} is not a directory`)
        : fail("invalid-request", `${path}: ${request.op} does not apply to ${what}`)

    /** The request decoded and checked against the call, with its path resolved; or the error it is. */
    const parse = (
      call: "read" | "write",
      input: unknown
    ): { readonly request: Request; readonly at: ReadonlyArray<string> } | Effect.Effect<never, DeviceError> => {
      const request = requestOf(input)
      if (typeof request === "string") {
        return fail("invalid-request", `not a VFS request (list, read, search, write, remove, restore): ${request}`)
      }
      if (isWrite(request.op) !== (call === "write")) {
        const [is, sent] = isWrite(request.op) ? ["write", "read"] : ["read", "write"]
        return fail("invalid-request", `"${request.op}" is a ${is}, sent as a ${sent}`)
      }
      if (request.op === "write" && request.data !== undefined && !isJson(request.data)) {
        return fail(
          "invalid-request",
          "data must be a JSON value (no undefined, non-finite numbers or class instances)"
        )
      }
      const at = resolve(request.path)
      if (!Array.isArray(at)) {
        const refused = at as { readonly reason: string; readonly message: string }
        return fail(refused.reason, refused.message)
      }
      return { request, at: at as ReadonlyArray<string> }
    }

    // ---- kernel state: /, /mem, /mem/working, /state, /policy ------------------------------------------------

    const local = (proc: Proc, call: "read" | "write", input: unknown) => {
      const parsed = parse(call, input)
      if (Effect.isEffect(parsed)) return parsed
      const { request, at } = parsed
      if (at[0] === "mem" && (at[1] === "episodic" || at[1] === "semantic")) return undefined
      return Effect.suspend(() => kernelState(proc, request, at))
    }

    // what policies judge is the path the VFS acts on: `/mem/../state` is judged as `/state`
    const canonical = (input: unknown): unknown => {
      if (typeof input !== "object" || input === null || Array.isArray(input)) return input
      const path = own(input as { readonly path?: unknown }, "path")
      if (typeof path !== "string" || path.length > 1024) return input
      const at = resolve(path)
      return Array.isArray(at) ? { ...input, path: `/${at.join("/")}` } : input
    }

    /** A copy of a value the kernel keeps, for the caller: what it does with it changes nothing kept. */
    const copy = (value: unknown): { readonly value: unknown } | Effect.Effect<never, DeviceError> => {
      const copied = Inputs.bodyOf("body", value, Infinity, isCapRef)
      return copied instanceof Inputs.Unreadable ? fail("unencodable", copied.message) : copied
    }

    const directory = (path: string, entries: ReadonlyArray<Entry>, request: Request) =>
      request.op === "list"
        ? ok(entries)
        : isWrite(request.op)
          ? fail("denied", `${path}: a directory cannot be changed`)
          : fail("is-a-directory", `${path} is a directory`)

    const kernelState = (
      proc: Proc,
      request: Request,
      at: ReadonlyArray<string>
    ): Effect.Effect<DeviceResult, DeviceError> => {
      const path = `/${at.join("/")}`
      if (at.length === 0) return directory("/", [dir("", "mem"), dir("", "state"), dir("", "policy")], request)
      if (at[0] === "mem" && at.length === 1) {
        return directory(path, [dir(path, "working"), dir(path, "episodic"), dir(path, "semantic")], request)
      }
      if (at[0] === "mem" && at[1] === "working") return working(proc, request, path, at.slice(2))
      if (at[0] === "state") return state(proc, request, path, at.slice(1))
      if (at[0] === "policy") return policy(proc, request, path, at.slice(1))
      return notFound(path)
    }

    const idOf = (rest: ReadonlyArray<string>): number | undefined =>
      rest.length === 1 && /^[1-9][0-9]{0,15}$/.test(rest[0]!) ? Number(rest[0]) : undefined

    const working = (proc: Proc, request: Request, path: string, rest: ReadonlyArray<string>) => {
      const memory = proc.memory
      if (rest.length === 0) {
        switch (request.op) {
          case "list": {
            const entries = (memory?.list() ?? []).map((s): Entry => ({
              name: String(s.id),
              path: `${path}/${s.id}`,
              type: "file",
              tokens: s.tokens,
              pinned: s.pinned,
              swapped: s.swapped
            }))
            return ok(entries)
          }
          case "search": {
            if (memory === undefined) return ok([])
            const found = memory.recall(request.query, request.k ?? 3)
            const copied = copy(
              found.map((s) => ({
                id: s.id,
                path: `${path}/${s.id}`,
                body: s.body,
                tokens: s.tokens,
                pinned: s.pinned
              }))
            )
            return fitMemory(proc, Effect.isEffect(copied) ? copied : ok(copied.value))
          }
          case "write": {
            if (request.data === undefined) return fail("invalid-request", `${path}: a write needs data`)
            const tokens = request.tokens
            if (tokens !== undefined && !(Number.isFinite(tokens) && tokens >= 0)) {
              return fail("invalid-request", "tokens must be a finite number ≥ 0")
            }
            // as `Sys.remember` does
            const id = rememberIn(proc, "write", request.data, tokens, request.pin === true)
            if (id === undefined) return overMemory(proc)
            if (typeof id !== "number") return fail("invalid-request", id.message)
            return fitMemory(proc, ok({ path: `${path}/${id}` }))
          }
          default:
            return directory(path, [], request)
        }
      }
      const id = idOf(rest)
      const segment = id === undefined ? undefined : memory?.get(id)
      if (segment === undefined) return notFound(path)
      switch (request.op) {
        case "read": {
          const copied = copy(segment.body)
          if (Effect.isEffect(copied)) return copied
          const body = copied.value
          return ok({
            id: segment.id,
            body,
            tokens: segment.tokens,
            pinned: segment.pinned,
            swapped: segment.swapped
          })
        }
        case "remove":
          memory!.forget(segment.id)
          return ok(null)
        default:
          return notForFile(path, request, "a segment")
      }
    }

    const state = (proc: Proc, request: Request, path: string, rest: ReadonlyArray<string>) => {
      const checkpoints = proc.checkpoints
      if (rest.length === 0) {
        switch (request.op) {
          case "list":
            return ok(
              (checkpoints ?? []).map((c): Entry => ({
                name: String(c.n),
                path: `/state/${c.n}`,
                type: "file",
                at: c.at,
                ...(c.label === undefined ? {} : { label: c.label })
              }))
            )
          case "write": {
            if ((checkpoints?.length ?? 0) >= checkpointsMax) {
              return fail("limit", `/state holds ${checkpointsMax} checkpoints already: remove one first`)
            }
            const at = proc.now()
            const snapshot = snapshotOf(proc, at)
            const unencodable = unencodableIn(proc.pid, snapshot)
            if (unencodable !== undefined) return fail("unencodable", unencodable.message)
            const text = jsonStringify(snapshot)
            if (text.length * 2 > checkpointBytesMax) {
              return fail("limit", `the checkpoint is larger than ${checkpointBytesMax} bytes`)
            }
            const n = ++proc.checkpointsMade
            const label = typeof request.data === "string" ? request.data.slice(0, 256) : undefined
            push((proc.checkpoints ??= []), freeze({ n, label, at, text }))
            return ok({ path: `/state/${n}` })
          }
          default:
            return directory(path, [], request)
        }
      }
      const n = idOf(rest)
      const index = n === undefined || checkpoints === undefined ? -1 : checkpoints.findIndex((c) => c.n === n)
      if (index < 0) return notFound(path)
      const checkpoint = checkpoints![index]!
      switch (request.op) {
        case "read":
          return ok(jsonParse(checkpoint.text))
        case "remove":
          checkpoints!.splice(index, 1)
          return ok(null)
        case "restore": {
          const snapshot = jsonParse(checkpoint.text) as Snapshot
          // the checkpoint's segments take the current ones' place (copied and counted like bodies remembered); its
          // ids go on after the highest
          const memory = newMemory(proc.kernel)
          if (!memory.import(snapshot.memory.working, snapshot.memory.swap)) {
            return fail("invalid-request", `${path}: a segment of the checkpoint cannot be restored`)
          }
          proc.memory = memory
          return fitMemory(
            proc,
            ok({ path, working: snapshot.memory.working.length, swap: snapshot.memory.swap.length })
          )
        }
        default:
          return notForFile(path, request, "a checkpoint")
      }
    }

    const policy = (proc: Proc, request: Request, path: string, rest: ReadonlyArray<string>) => {
      if (isWrite(request.op)) return fail("read-only", `${path}: policies cannot be changed from inside`)
      const sets = proc.policies ?? []
      if (rest.length === 0) {
        if (request.op !== "list") return directory(path, [], request)
        return ok(
          sets.map((set, i): Entry => ({
            name: String(i + 1),
            path: `/policy/${i + 1}`,
            type: "file",
            rules: set.rules.length
          }))
        )
      }
      const n = idOf(rest)
      const set = n === undefined ? undefined : sets[n - 1]
      if (set === undefined) return notFound(path)
      if (request.op === "list") return fail("not-a-directory", `${path} is not a directory`)
      if (request.op === "search") return fail("invalid-request", `${path}: search applies to a directory`)
      return ok(JSON.parse(JSON.stringify(set.rules)))
    }

    // ---- the store: /mem/episodic, /mem/semantic (journaled) --------------------------------------------------

    const unavailable = (error: KeyValueStore.KeyValueStoreError) =>
      new DeviceError({
        device: name,
        reason: "unavailable",
        message: `${error.method}${error.key === undefined ? "" : ` "${error.key}"`}: ${error.message}`,
        retryable: true
      })

    const namesOf = (proc: Proc): Array<string> => {
      const names: Array<string> = []
      for (let at: Proc["lineage"] | undefined = proc.lineage; at !== undefined; at = at.up) names.unshift(at.name)
      return names
    }

    /** The stored entries under `base` (`<prefix><namespace>/<mount>/`) whose key rest matches `pattern`. */
    const stored = (base: string, pattern: RegExp) =>
      Effect.gen(function* () {
        const keys = (yield* store.keys).filter((key) => key.startsWith(base) && pattern.test(key.slice(base.length)))
        const values = yield* Effect.forEach(keys, (key) => store.get(key))
        return keys.map((key, i) => ({ key, rest: key.slice(base.length), value: values[i] }))
      })

    const episodes = (base: string) =>
      Effect.map(stored(base, /^[0-9]{1,16}$/), (found) =>
        found
          .flatMap(({ rest, value }) => {
            const episode = value === undefined ? undefined : decodeEpisode(value)
            return episode === undefined || episode._tag === "None" || String(episode.value.seq) !== rest
              ? []
              : [episode.value]
          })
          .sort((a, b) => a.seq - b.seq)
      )

    const lessons = (base: string) =>
      Effect.map(stored(base, /^[0-9a-f]{8}(~[0-9]{1,6})?$/), (found) =>
        found
          .flatMap(({ key, rest, value }) => {
            const entry = value === undefined ? undefined : Lessons.decodeEntry(value)
            return entry === undefined || entry._tag === "None" ? [] : [{ ...entry.value, key, name: rest }]
          })
          .sort(Lessons.byAdded)
      )

    const episodic = (
      kernel: KernelState,
      base: string,
      request: Request,
      path: string,
      rest: ReadonlyArray<string>
    ): Effect.Effect<DeviceResult, DeviceError | KeyValueStore.KeyValueStoreError> =>
      Effect.gen(function* () {
        const entryOf = (e: typeof Episode.Type) => ({ ...e, path: `/mem/episodic/${e.seq}` })
        if (rest.length === 0) {
          switch (request.op) {
            case "list":
              return yield* ok(
                (yield* episodes(base)).map((e): Entry => ({
                  name: String(e.seq),
                  path: `/mem/episodic/${e.seq}`,
                  type: "file",
                  at: e.at
                }))
              )
            case "search": {
              const all = yield* episodes(base)
              const best = Lessons.rank(
                all.map((e) => textOf(e.data)),
                request.query,
                request.k ?? 3
              )
              return yield* ok(best.map((i) => entryOf(all[i]!)))
            }
            case "write": {
              if (request.data === undefined) return yield* fail("invalid-request", `${path}: a write needs data`)
              const data = request.data
              return yield* writes.withPermits(1)(
                Effect.gen(function* () {
                  const all = yield* episodes(base)
                  if (all.length >= entriesMax) return yield* fail("limit", `${path} holds ${entriesMax} episodes`)
                  const seq = (all.at(-1)?.seq ?? 0) + 1
                  yield* store.set(`${base}${seq}`, JSON.stringify({ seq, at: kernel.now(), data }))
                  return yield* ok({ path: `/mem/episodic/${seq}` })
                })
              )
            }
            default:
              return yield* directory(path, [], request)
          }
        }
        const seq = idOf(rest)
        const episode = seq === undefined ? undefined : (yield* episodes(base)).find((e) => e.seq === seq)
        if (episode === undefined) return yield* notFound(path)
        switch (request.op) {
          case "read":
            return yield* ok(episode)
          case "remove":
            yield* store.remove(`${base}${episode.seq}`)
            return yield* ok(null)
          default:
            return yield* notForFile(path, request, "an episode")
        }
      })

    const semantic = (
      base: string,
      request: Request,
      path: string,
      rest: ReadonlyArray<string>
    ): Effect.Effect<DeviceResult, DeviceError | KeyValueStore.KeyValueStoreError> =>
      Effect.gen(function* () {
        if (rest.length === 0) {
          switch (request.op) {
            case "list":
              return yield* ok(
                (yield* lessons(base)).map((l): Entry => ({
                  name: l.name,
                  path: `/mem/semantic/${l.name}`,
                  type: "file",
                  text: l.text
                }))
              )
            case "search": {
              const all = yield* lessons(base)
              const best = Lessons.rank(
                all.map((l) => l.text),
                request.query,
                request.k ?? 3
              )
              return yield* ok(best.map((i) => ({ path: `/mem/semantic/${all[i]!.name}`, text: all[i]!.text })))
            }
            case "write": {
              if (typeof request.data !== "string")
                return yield* fail("invalid-request", `${path}: a lesson is a string`)
              const text = request.data.trim().slice(0, lessonCharsMax).trim()
              const normalized = Lessons.normalize(text)
              if (normalized === "") return yield* ok({ path: null })
              return yield* writes.withPermits(1)(
                Effect.gen(function* () {
                  const all = yield* lessons(base)
                  if (all.some((l) => l.normalized === normalized)) return yield* ok({ path: null })
                  if (all.length >= entriesMax) return yield* fail("limit", `${path} holds ${entriesMax} lessons`)
                  const taken = new Set(all.map((l) => l.key))
                  // other keys of the store may take the name too (an entry that does not decode)
                  for (const key of yield* store.keys) if (key.startsWith(base)) taken.add(key)
                  const key = Lessons.keyFor(base, normalized, taken)
                  const seq = all.reduce((max, l) => Math.max(max, l.seq), 0) + 1
                  yield* store.set(key, JSON.stringify({ text, normalized, seq } satisfies Lessons.Entry))
                  return yield* ok({ path: `/mem/semantic/${key.slice(base.length)}` })
                })
              )
            }
            default:
              return yield* directory(path, [], request)
          }
        }
        const lesson = rest.length === 1 ? (yield* lessons(base)).find((l) => l.name === rest[0]) : undefined
        if (lesson === undefined) return yield* notFound(path)
        switch (request.op) {
          case "read":
            return yield* ok({ text: lesson.text, seq: lesson.seq })
          case "remove":
            yield* store.remove(lesson.key)
            return yield* ok(null)
          default:
            return yield* notForFile(path, request, "a lesson")
        }
      })

    const open = (kernel: KernelState): Effect.Effect<Handle, DeviceError> =>
      Effect.sync((): Handle => {
        const call =
          (call: "read" | "write") =>
          (input: unknown, context: { readonly pid: number }): Effect.Effect<DeviceResult, DeviceError> => {
            const parsed = parse(call, input)
            if (Effect.isEffect(parsed)) return parsed
            const { request, at } = parsed
            const proc = kernel.procs.get(context.pid)
            if (proc === undefined) return fail("unavailable", `pid ${context.pid} is not running`)
            let space: string
            try {
              space = namespace(namesOf(proc))
            } catch (error) {
              return fail("invalid-request", `no long-term namespace for this process: ${String(error)}`)
            }
            if (typeof space !== "string") return fail("invalid-request", "no long-term namespace for this process")
            const base = `${prefix}${space}/${at[1]}/`
            const path = `/${at.join("/")}`
            const run =
              at[1] === "episodic"
                ? episodic(kernel, base, request, path, at.slice(2))
                : semantic(base, request, path, at.slice(2))
            return Effect.catchTag(run, "KeyValueStoreError", (error) => Effect.fail(unavailable(error)))
          }
        return { read: call("read"), write: call("write") }
      })

    const made: Driver = {
      name,
      meters:
        Object.keys(cost).length === 0
          ? []
          : (["tokens", "toolCalls", "usd"] as const).filter((m) => (cost[m] ?? 0) > 0),
      reserve: () => cost,
      // opened through the kernel (`open` above), which gives it what it keeps of each caller
      open: () => fail("unsupported", `${name} is served by the kernel`)
    }
    register(made, { local, canonical, open })
    return made
  })
