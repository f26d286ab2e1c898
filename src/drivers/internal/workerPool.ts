/**
 * Runs jobs on a bounded pool of `node:worker_threads` workers, terminating any worker whose job is abandoned.
 *
 * The pool is shared machinery of the `Worker` and `Wasm` drivers. Each worker runs `workerRunner.mjs` and does one
 * job at a time. The invariants:
 *
 * - **Bounded, FIFO.** A `Semaphore` with one permit per worker: at most `size` jobs run at once, the others wait in
 *   arrival order. A waiting caller that is interrupted leaves the line and never reaches a worker.
 * - **Abandoned means terminated.** A job the worker did not answer — its caller was interrupted, or its time limit
 *   passed — may still be running (a `while (true) {}` never yields, so a message cannot stop it), so its worker is
 *   terminated (`Worker.terminate`, which stops even a busy loop) before the permit is released, and a fresh worker
 *   takes its place. The caller's interruption completes once the thread has stopped.
 * - **Crashes are contained.** A worker that dies (an uncaught error, a resource limit, `process.exit`) fails its job
 *   with `worker-crashed` and is replaced; one that dies while idle is replaced before its next job.
 * - **Scoped.** The workers live in the `Scope` given to `make`: closing it terminates every worker; jobs running then
 *   fail with `unavailable`, as does every later job.
 *
 * @internal
 */
import { Worker as ThreadWorker, type ResourceLimits } from "node:worker_threads"
import { Data, Duration, Effect, Semaphore, type Scope } from "effect"
import { DeviceError } from "../../services/Device.ts"
import { source as inlineRunner } from "./workerRunnerInline.ts"

/** What a worker runs: the runner's code (`eval: true`) in the built package, its file in the sources. */
const runner: string | URL = inlineRunner ?? new URL("./workerRunner.mjs", import.meta.url)

/** How long a starting pool waits for its workers to load their code. */
const startTimeout = Duration.seconds(30)

/**
 * What the runner loads: an ES module of tasks, or compiled zero-import wasm modules (`WebAssembly.Module`s, which
 * `worker_threads` hands over without copying the bytes again).
 */
export type RunnerData =
  | { readonly mode: "module"; readonly url: string }
  | { readonly mode: "wasm"; readonly modules: Readonly<Record<string, unknown>> }

export interface Options {
  /** The device name errors carry. */
  readonly device: string
  /** How many workers, and so how many jobs at once. A positive integer. */
  readonly size: number
  readonly data: RunnerData
  readonly resourceLimits?: ResourceLimits | undefined
  /**
   * The longest a job may run once it has a worker, in wall-clock time; past it the job fails with `timeout` and the
   * worker is terminated. Default: no limit.
   */
  readonly timeout?: Duration.Input | undefined
}

/** One job: a task name and its JSON input. */
export interface Job {
  readonly task: string
  readonly input: unknown
}

export interface Pool {
  /** The function exports the task module reported when it loaded (empty in wasm mode). */
  readonly tasks: ReadonlyArray<string>
  readonly run: (job: Job) => Effect.Effect<unknown, DeviceError>
}

/** The pool could not start: a worker failed to load its code, or did not report in time. */
export class PoolStartError extends Data.TaggedError("PoolStartError")<{ readonly message: string }> {}

type WorkerEvent =
  { readonly _tag: "Message"; readonly message: unknown } | { readonly _tag: "Gone"; readonly reason: string }

interface Slot {
  readonly worker: ThreadWorker | undefined
  /** Why the worker is gone (crashed, exited, could not start); `undefined` while it lives. */
  gone: string | undefined
  /** Who hears the worker's events: the job it runs, or the start-up wait. */
  listener: ((event: WorkerEvent) => void) | undefined
  /** Whether the worker answered its last job; a worker that did not may still be running it. */
  answered: boolean
}

interface Ready {
  readonly type: "ready"
  readonly tasks: ReadonlyArray<string>
}

type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly reason: string; readonly error: string }

const isReady = (message: unknown): message is Ready =>
  typeof message === "object" && message !== null && (message as { type?: unknown }).type === "ready"

/**
 * Starts `size` workers and waits until each has loaded its code. Requires the `Scope` the workers live in.
 */
export const make = (options: Options): Effect.Effect<Pool, PoolStartError, Scope.Scope> =>
  Effect.gen(function* () {
    const { device } = options
    const live = new Set<Slot>()
    const idle: Array<Slot> = []
    const semaphore = yield* Semaphore.make(options.size)
    const timeout = options.timeout === undefined ? undefined : Duration.fromInputUnsafe(options.timeout)
    const timeoutMessage = timeout === undefined ? "" : `the task ran longer than ${Duration.format(timeout)}`
    let closed = false
    let nextId = 0

    const failure = (reason: string, message: string) => new DeviceError({ device, reason, message })
    const closedError = () => failure("unavailable", "the worker pool is closed")

    const spawn = (): Slot => {
      let worker: ThreadWorker
      try {
        worker = new ThreadWorker(runner, {
          eval: typeof runner === "string",
          name: `effect-agent-os/${device}`,
          workerData: options.data,
          resourceLimits: options.resourceLimits
        })
      } catch (error) {
        const gone = `could not start a worker: ${String(error)}`
        return { worker: undefined, gone, listener: undefined, answered: true }
      }
      const slot: Slot = { worker, gone: undefined, listener: undefined, answered: true }
      const gone = (reason: string) => {
        slot.gone ??= reason
        slot.listener?.({ _tag: "Gone", reason: slot.gone })
      }
      worker.on("message", (message: unknown) => slot.listener?.({ _tag: "Message", message }))
      worker.on("error", (error: Error) => gone(`the worker crashed: ${error.message}`))
      worker.on("messageerror", (error: Error) => gone(`a reply could not be read: ${error.message}`))
      worker.on("exit", (code: number) => {
        live.delete(slot)
        gone(`the worker exited with code ${code}`)
      })
      live.add(slot)
      return slot
    }

    // Resolves once the thread has stopped, so no job of it still holds a core.
    const terminate = (slot: Slot) =>
      Effect.promise(
        () =>
          slot.worker?.terminate().then(
            () => undefined,
            () => undefined
          ) ?? Promise.resolve()
      )

    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        return Effect.forEach(Array.from(live), terminate, { concurrency: "unbounded", discard: true })
      })
    )

    const awaitReady = (slot: Slot) =>
      Effect.callback<ReadonlyArray<string>, PoolStartError>((resume) => {
        if (slot.gone !== undefined) return resume(Effect.fail(new PoolStartError({ message: slot.gone })))
        slot.listener = (event) => {
          if (event._tag === "Gone") {
            slot.listener = undefined
            resume(Effect.fail(new PoolStartError({ message: event.reason })))
          } else if (isReady(event.message)) {
            slot.listener = undefined
            resume(Effect.succeed(event.message.tasks))
          }
        }
        return Effect.sync(() => {
          slot.listener = undefined
        })
      })

    for (let i = 0; i < options.size; i++) idle.push(spawn())
    const reports = yield* Effect.forEach(idle, awaitReady, { concurrency: "unbounded" }).pipe(
      Effect.timeoutOrElse({
        duration: startTimeout,
        orElse: () =>
          Effect.fail(
            new PoolStartError({ message: `the workers did not load within ${Duration.format(startTimeout)}` })
          )
      })
    )

    // The time limit is a wall-clock timer, not an Effect sleep: the kernel's clock may be virtual (it stands still
    // while a driver call is in flight) or a TestClock, and a worker burns real time either way.
    const call = (slot: Slot, job: Job) =>
      Effect.callback<unknown, DeviceError>((resume) => {
        if (slot.gone !== undefined) return resume(Effect.fail(failure("worker-crashed", slot.gone)))
        const id = ++nextId
        let timer: ReturnType<typeof setTimeout> | undefined
        const settle = (outcome: Effect.Effect<unknown, DeviceError>) => {
          slot.listener = undefined
          clearTimeout(timer)
          resume(outcome)
        }
        slot.answered = false
        slot.listener = (event) => {
          if (event._tag === "Gone") {
            return settle(Effect.fail(closed ? closedError() : failure("worker-crashed", event.reason)))
          }
          const reply = event.message as Reply
          if (reply.id !== id) return
          slot.answered = true
          settle(reply.ok ? Effect.succeed(reply.value) : Effect.fail(failure(reply.reason, reply.error)))
        }
        try {
          slot.worker!.postMessage({ id, task: job.task, input: job.input })
        } catch (error) {
          slot.answered = true
          return settle(Effect.fail(failure("invalid-request", `the input cannot be sent: ${String(error)}`)))
        }
        if (timeout !== undefined) {
          timer = setTimeout(() => settle(Effect.fail(failure("timeout", timeoutMessage))), Duration.toMillis(timeout))
        }
        return Effect.sync(() => {
          slot.listener = undefined
          clearTimeout(timer)
        })
      })

    // A replacement is started at once, so the next job does not wait for a thread to boot.
    const replace = (slot: Slot) =>
      Effect.map(terminate(slot), () => {
        live.delete(slot)
        return closed ? slot : spawn()
      })

    const take = Effect.suspend(() => {
      if (closed) return Effect.fail(closedError())
      const slot = idle.pop()!
      return slot.gone === undefined ? Effect.succeed(slot) : replace(slot)
    })

    const giveBack = (slot: Slot) =>
      Effect.map(slot.gone === undefined && slot.answered ? Effect.succeed(slot) : replace(slot), (next) => {
        idle.push(next)
      })

    const run = (job: Job) => semaphore.withPermit(Effect.acquireUseRelease(take, (slot) => call(slot, job), giveBack))

    return { tasks: reports[0] ?? [], run }
  })
