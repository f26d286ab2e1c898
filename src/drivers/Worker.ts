/**
 * Runs CPU-bound tasks as a device on a bounded pool of `node:worker_threads` workers: another heap, another core.
 *
 * The tasks are the exported functions of one plain ES module (`module`), each taking a JSON input and returning a
 * JSON result or a Promise of one. Every worker imports the module once; the module keeps no state a caller can rely
 * on (which worker runs a call is not defined). One read is one call, `{ task, input }`:
 *
 * | call                                           | outcome                                                   |
 * | ---------------------------------------------- | --------------------------------------------------------- |
 * | the task returns                               | `{ value }`, its result as JSON; costs `{ toolCalls: 1 }` |
 * | the task throws or rejects                     | `DeviceError` `task-failed`, with the error's message     |
 * | the result is not JSON (a cycle, a `BigInt`)   | `DeviceError` `task-failed`                               |
 * | the worker dies (a resource limit, an exit)    | `DeviceError` `worker-crashed`; the worker is replaced    |
 * | `timeout` passes while the task runs           | `DeviceError` `timeout`; the worker is terminated         |
 * | `task` is not a function the module exports    | `DeviceError` `not-found` (no worker is used)             |
 * | not `{ task, input? }`, or `input` is not JSON | `DeviceError` `invalid-request`                           |
 * | the pool's scope has closed                    | `DeviceError` `unavailable`                               |
 *
 * Results travel as JSON (they are journaled): `undefined` reads as `null`, a `Date` as its ISO string, as
 * `JSON.stringify` has them. A missing `input` is `null`.
 *
 * **Pool.** `poolSize` workers (default 2) start when the driver is built, and the build fails with a `WorkerError`
 * if the module does not load. At most `poolSize` calls run at once, across every process that has the device open;
 * the others wait in arrival order. A waiting call whose caller is interrupted leaves the line.
 *
 * **Interruption.** When a running call's caller is interrupted (the kernel interrupts the calls of a process it
 * ends), the worker running it is terminated — this stops even a `while (true) {}` — and a fresh worker takes its
 * place; the interruption completes once the thread has stopped. `timeout` does the same for a call that runs too
 * long; it counts wall-clock time, whatever clock the caller runs on (the kernel's virtual time stands still while a
 * driver call is in flight). A worker that crashes, or exceeds its `resourceLimits`, is replaced the same way.
 *
 * **Lifetime.** The workers live in the `Scope` the driver is built in. Given to `Kernel.layer({ drivers })`, that is
 * the kernel layer's scope: the workers stop when the kernel does. Calls running when the scope closes, and later
 * calls, fail with `unavailable`.
 *
 * Why not `effect/workers`: its pool stops a job by sending the worker a message, which a task stuck in a loop never
 * reads; this device must be able to take the core back.
 *
 * @since 0.1.0
 */
import { pathToFileURL } from "node:url"
import type { ResourceLimits } from "node:worker_threads"
import { type Duration, Effect, Schema, type Scope } from "effect"
import type { Driver, Handle } from "../services/Device.ts"
import { KernelConfig } from "../services/KernelConfig.ts"
import { DeviceError } from "../services/Device.ts"
import * as WorkerPool from "./internal/workerPool.ts"

/**
 * A call: the name of an exported function and its JSON input (default `null`).
 *
 * @category models
 */
export const Request = Schema.Struct({
  task: Schema.NonEmptyString,
  input: Schema.optionalKey(Schema.Json)
})

/** @category models */
export type Request = typeof Request.Type

/** @category models */
export interface Options {
  /** The driver's name in the device table. Default `"worker"`. */
  readonly name?: string | undefined
  /**
   * The task module: a URL (`new URL("./tasks.mjs", import.meta.url)`), a URL string, or a file path (resolved
   * against the working directory). A module Node can import in a worker without a loader: plain `.mjs`/`.js`.
   */
  readonly module: URL | string
  /** How many workers, and so how many calls run at once. A positive integer. Default 2. */
  readonly poolSize?: number | undefined
  /**
   * Each worker's V8 limits (`maxOldGenerationSizeMb`, `maxYoungGenerationSizeMb`, `codeRangeSizeMb`,
   * `stackSizeMb`). A worker that exceeds them dies and its call fails with `worker-crashed`. Default: Node's.
   */
  readonly resourceLimits?: ResourceLimits | undefined
  /** The longest a call may run once it has a worker (waiting for one is not counted). Default: no limit. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The driver could not be built: an invalid option (`invalid-options`), or the task module did not load in a worker
 * (`module-failed`: not found, a syntax error, an error thrown while it loads).
 *
 * @category errors
 */
export class WorkerError extends Schema.TaggedError<WorkerError>()("WorkerError", {
  reason: Schema.Literals(["invalid-options", "module-failed"]),
  message: Schema.String
}) {}

const defaultPoolSize = 2

/**
 * Makes a worker driver and starts its pool in the current `Scope`.
 *
 * @example
 * ```ts
 * // tasks.mjs: export const fib = (n) => (n < 2 ? n : fib(n - 1) + fib(n - 2))
 * const layer = Kernel.layer({ drivers: [Worker.driver({ module: new URL("./tasks.mjs", import.meta.url) })] })
 * // in a process: yield* Sys.read(handle, { task: "fib", input: 30 }) // 832040
 * ```
 *
 * @category constructors
 */
export const driver = (options: Options): Effect.Effect<Driver, WorkerError, Scope.Scope> =>
  Effect.gen(function* () {
    const name = options.name ?? "worker"
    // the bound lives in KernelConfig when the driver is built by a kernel layer
    const config = yield* Effect.serviceOption(KernelConfig)
    const max = config._tag === "Some" ? config.value.workerPoolMax : Infinity
    const size = options.poolSize ?? Math.min(defaultPoolSize, max)
    if (!Number.isInteger(size) || size < 1) {
      const message = `poolSize must be a positive integer, got ${size}`
      return yield* new WorkerError({ reason: "invalid-options", message })
    }
    if (size > max) {
      const message = `poolSize ${size} exceeds KernelConfig.workerPoolMax (${max})`
      return yield* new WorkerError({ reason: "invalid-options", message })
    }
    const url = moduleUrl(options.module)
    const pool = yield* WorkerPool.make({
      device: name,
      size,
      data: { mode: "module", url },
      resourceLimits: options.resourceLimits,
      timeout: options.timeout
    }).pipe(
      Effect.mapError(
        (error) =>
          new WorkerError({ reason: "module-failed", message: `the task module ${url} did not load: ${error.message}` })
      )
    )
    const tasks = new Set(pool.tasks)
    const decode = Schema.decodeUnknownEffect(Request)
    const fail = (reason: string, message: string) => new DeviceError({ device: name, reason, message })

    const read = (request: unknown) =>
      decode(request).pipe(
        Effect.mapError((error) => fail("invalid-request", `not a task call ({ task, input }): ${error.message}`)),
        Effect.flatMap(({ task, input }) =>
          tasks.has(task)
            ? pool
                .run({ task, input: input ?? null })
                .pipe(
                  Effect.mapError((error) =>
                    error.reason === "task-failed"
                      ? fail("task-failed", `task "${task}" failed: ${error.message}`)
                      : error
                  )
                )
            : Effect.fail(fail("not-found", `no task "${task}"; the module exports ${[...tasks].join(", ")}`))
        ),
        Effect.map((value) => ({ value, cost: { toolCalls: 1 } }))
      )

    const handle: Handle = { read }
    return { name, meters: ["toolCalls"], open: () => Effect.succeed(handle) }
  })

const moduleUrl = (module: URL | string): string =>
  module instanceof URL ? module.href : URL.canParse(module) ? module : pathToFileURL(module).href
