/**
 * Runs the exported functions of zero-import WebAssembly modules as a device, each call in a pool worker thread.
 *
 * A module with no imports can touch nothing but its own memory: no files, no network, no clock. That makes it a
 * sandbox for code an agent did not write (or wrote itself). The modules are given by name when the driver is built,
 * as bytes or as a `file:` URL; building compiles each one and fails with a `WasmError` if one does not compile or
 * declares any import. One read is one call, `{ module, export, args }`:
 *
 * | call                                                  | outcome                                              |
 * | ----------------------------------------------------- | ---------------------------------------------------- |
 * | the function returns                                  | `{ value }`; costs `{ toolCalls: 1 }`                |
 * | the function traps (`unreachable`, division by zero)  | `DeviceError` `task-failed`, with the trap's message |
 * | the result is `NaN`, ±Infinity, or an i64 beyond 2^53 | `DeviceError` `task-failed` (JSON cannot carry it)   |
 * | `timeout` passes while the function runs              | `DeviceError` `timeout`; the worker is terminated    |
 * | unknown `module`, or `export` is not a function       | `DeviceError` `not-found` (no worker is used)        |
 * | not `{ module, export, args? }`, or non-finite `args` | `DeviceError` `invalid-request`                      |
 * | the wrong number of `args`                            | `DeviceError` `invalid-request`                      |
 * | the pool's scope has closed                           | `DeviceError` `unavailable`                          |
 *
 * `value` is the function's result as a number (an i64 result as a safe integer), `null` for a function with no
 * result, and an array of numbers for a multi-value function. `args` (default `[]`) are JS numbers, converted by the
 * WebAssembly JS API (`i32` truncates); a function with an `i64` parameter cannot be called with them and fails with
 * `task-failed`.
 *
 * Each call runs on a fresh instance of its module: its memory and globals start from the module's initial state (its
 * start function runs every time), so a call is a function of its arguments alone — what the journal needs to replay
 * it. Instances are cheap for small modules; a module with a large data segment pays for it on every call.
 *
 * **Pool and interruption**: the same as the `Worker` driver, whose pool this driver shares. At most `poolSize` calls
 * (default 2) run at once and the others wait in arrival order. A call whose caller is interrupted, or that runs past
 * `timeout`, has its worker terminated — an infinite loop in wasm cannot hold a core — and replaced. The workers live
 * in the `Scope` the driver is built in (the kernel layer's, when given to `Kernel.layer({ drivers })`). A module's
 * linear memory lies outside the V8 heap: it is bounded by the module's own declared maximum (at most 4 GiB).
 *
 * @since 0.1.0
 */
import { readFile } from "node:fs/promises"
import { type Duration, Effect, Schema, type Scope } from "effect"
import type { Driver, Handle } from "../services/Device.ts"
import { KernelConfig } from "../services/KernelConfig.ts"
import { DeviceError } from "../services/Device.ts"
import * as WorkerPool from "./internal/workerPool.ts"

/**
 * A call: a module by name, one of its exported functions, and its arguments.
 *
 * @category models
 */
export const Request = Schema.Struct({
  module: Schema.NonEmptyString,
  export: Schema.NonEmptyString,
  args: Schema.optionalKey(Schema.Array(Schema.Finite))
})

/** @category models */
export type Request = typeof Request.Type

/** @category models */
export interface Options {
  /** The driver's name in the device table. Default `"wasm"`. */
  readonly name?: string | undefined
  /** The modules by the name requests use: the bytes of a `.wasm` file, or a `file:` URL to read them from. */
  readonly modules: Readonly<Record<string, Uint8Array | URL>>
  /** How many workers, and so how many calls run at once. A positive integer. Default 2. */
  readonly poolSize?: number | undefined
  /** The longest a call may run once it has a worker (waiting for one is not counted). Default: no limit. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The driver could not be built:
 *
 * - `invalid-options`: no modules, or `poolSize` is not a positive integer;
 * - `unreadable`: a module's URL could not be read (only `file:` URLs are read);
 * - `invalid-module`: a module does not compile;
 * - `has-imports`: a module declares imports (`message` lists them);
 * - `pool-failed`: the worker pool did not start.
 *
 * @category errors
 */
export class WasmError extends Schema.TaggedError<WasmError>()("WasmError", {
  reason: Schema.Literals(["invalid-options", "unreadable", "invalid-module", "has-imports", "pool-failed"]),
  module: Schema.optionalKey(Schema.String),
  message: Schema.String
}) {}

/** The part of the `WebAssembly` global this module uses (the project's `lib` does not declare it). */
interface WebAssemblyApi {
  readonly compile: (bytes: Uint8Array) => Promise<CompiledModule>
  readonly Module: {
    readonly imports: (module: CompiledModule) => ReadonlyArray<ModuleImport>
    readonly exports: (module: CompiledModule) => ReadonlyArray<{ readonly name: string; readonly kind: string }>
  }
}

interface CompiledModule {
  readonly _CompiledModule: unique symbol
}

interface ModuleImport {
  readonly module: string
  readonly name: string
  readonly kind: string
}

const webAssembly = (globalThis as unknown as { readonly WebAssembly: WebAssemblyApi }).WebAssembly

const defaultPoolSize = 2

/**
 * Makes a wasm driver: compiles and checks every module, then starts its pool in the current `Scope`.
 *
 * @example
 * ```ts
 * const math = yield* Wasm.driver({ modules: { math: new URL("./math.wasm", import.meta.url) }, timeout: "1 second" })
 * // in a process: yield* Sys.read(handle, { module: "math", export: "add", args: [2, 3] }) // 5
 * ```
 *
 * @category constructors
 */
export const driver = (options: Options): Effect.Effect<Driver, WasmError, Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name ?? "wasm"
    // the bound lives in KernelConfig when the driver is built by a kernel layer
    const config = yield* Effect.serviceOption(KernelConfig)
    const max = config._tag === "Some" ? config.value.workerPoolMax : Infinity
    const size = options.poolSize ?? Math.min(defaultPoolSize, max)
    if (!Number.isInteger(size) || size < 1) {
      const message = `poolSize must be a positive integer, got ${size}`
      return yield* new WasmError({ reason: "invalid-options", message })
    }
    if (size > max) {
      const message = `poolSize ${size} exceeds KernelConfig.workerPoolMax (${max})`
      return yield* new WasmError({ reason: "invalid-options", message })
    }
    const entries = Object.entries(options.modules)
    if (entries.length === 0) return yield* new WasmError({ reason: "invalid-options", message: "no modules" })

    const compiled = yield* Effect.forEach(entries, ([module, source]) =>
      Effect.map(compile(module, source), (compiled) => [module, compiled] as const)
    )
    const functions = new Map(
      compiled.map(([module, compiled]) => [
        module,
        new Set(
          webAssembly.Module.exports(compiled)
            .filter((entry) => entry.kind === "function")
            .map((entry) => entry.name)
        )
      ])
    )
    const pool = yield* WorkerPool.make({
      device: name,
      size,
      data: { mode: "wasm", modules: Object.fromEntries(compiled) },
      timeout: options.timeout
    }).pipe(Effect.mapError((error) => new WasmError({ reason: "pool-failed", message: error.message })))

    const decode = Schema.decodeUnknownEffect(Request)
    const fail = (reason: string, message: string) => new DeviceError({ device: name, reason, message })

    const run = (request: Request) => {
      const exported = functions.get(request.module)
      if (exported === undefined) {
        const known = [...functions.keys()].join(", ")
        return Effect.fail(fail("not-found", `no module "${request.module}"; the modules are ${known}`))
      }
      if (!exported.has(request.export)) {
        const known = exported.size === 0 ? "none" : [...exported].join(", ")
        const message = `module "${request.module}" exports no function "${request.export}"; its functions: ${known}`
        return Effect.fail(fail("not-found", message))
      }
      const input = { export: request.export, args: request.args ?? [] }
      return pool
        .run({ task: request.module, input })
        .pipe(
          Effect.mapError((error) =>
            error.reason === "task-failed"
              ? fail("task-failed", `${request.module}.${request.export} failed: ${error.message}`)
              : error
          )
        )
    }

    const read = (request: unknown) =>
      decode(request).pipe(
        Effect.mapError((error) =>
          fail("invalid-request", `not a wasm call ({ module, export, args }): ${error.message}`)
        ),
        Effect.flatMap(run),
        Effect.map((value) => ({ value, cost: { toolCalls: 1 } }))
      )

    const handle: Handle = { read }
    return { name, meters: ["toolCalls"], open: () => Effect.succeed(handle) }
  })

const compile = (module: string, source: Uint8Array | URL): Effect.Effect<CompiledModule, WasmError> =>
  Effect.gen(function* () {
    const bytes = source instanceof URL ? yield* read(module, source) : source
    const compiled = yield* Effect.tryPromise({
      try: () => webAssembly.compile(bytes),
      catch: (error) => new WasmError({ reason: "invalid-module", module, message: `"${module}" ${describe(error)}` })
    })
    const imports = webAssembly.Module.imports(compiled)
    if (imports.length > 0) {
      const list = imports.map((entry) => `${entry.module}.${entry.name} (${entry.kind})`).join(", ")
      const message = `"${module}" has imports, and only zero-import modules may run: ${list}`
      return yield* new WasmError({ reason: "has-imports", module, message })
    }
    return compiled
  })

const read = (module: string, url: URL): Effect.Effect<Uint8Array, WasmError> =>
  url.protocol === "file:"
    ? Effect.tryPromise({
        try: () => readFile(url),
        catch: (error) => new WasmError({ reason: "unreadable", module, message: `${url.href}: ${describe(error)}` })
      })
    : Effect.fail(new WasmError({ reason: "unreadable", module, message: `${url.href}: only file: URLs are read` }))

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))
