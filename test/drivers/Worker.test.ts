import { assert, describe, it } from "@effect/vitest"
import { threadId } from "node:worker_threads"
import { Duration, Effect, Exit, Fiber, Scope } from "effect"
import { Device, Kernel, Process, Sys, Worker } from "effect-agent-os"

const { DeviceError } = Device
type DeviceError = Device.DeviceError
type Handle = Device.Handle

const tasks = new URL("./fixtures/tasks.mjs", import.meta.url)
const call = { pid: 1, op: 1, priority: 0, deadline: undefined }
/** These tests run real threads: one that hangs fails after 10 s rather than vitest's 60 s. */
const timeoutMs = 10_000

const open = (options?: Omit<Worker.Options, "module">) =>
  Effect.gen(function* () {
    const driver = yield* Worker.driver({ module: tasks, ...options })
    return yield* driver.open({ pid: 1 })
  })

const read = (handle: Handle) => (request: unknown) => Effect.map(handle.read(request, call), (result) => result.value)

const failsWith = (effect: Effect.Effect<unknown, DeviceError>, reason: string) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(effect)
    assert.instanceOf(error, DeviceError)
    assert.strictEqual(error.reason, reason, error.message)
    return error
  })

interface Ran {
  readonly start: number
  readonly end: number
  readonly threadId: number
}

/** The most runs that were in progress at one instant. */
const maxOverlap = (runs: ReadonlyArray<Ran>): number =>
  Math.max(...runs.map(({ start }) => runs.filter((run) => run.start <= start && start < run.end).length))

/** Process CPU time (all threads) spent over `millis` of wall time. */
const cpuOver = (millis: number) =>
  Effect.gen(function* () {
    const before = process.cpuUsage()
    yield* Effect.sleep(Duration.millis(millis))
    const used = process.cpuUsage(before)
    return (used.user + used.system) / 1000
  })

describe("Worker.driver", () => {
  it.live(
    "runs a task in another thread, costing one tool call",
    () =>
      Effect.gen(function* () {
        const driver = yield* Worker.driver({ module: tasks })
        assert.strictEqual(driver.name, "worker")
        assert.deepStrictEqual(driver.meters, ["toolCalls"])
        const handle = yield* driver.open({ pid: 1 })
        const result = yield* handle.read({ task: "thread", input: null }, call)
        assert.isNumber(result.value)
        assert.notStrictEqual(result.value, threadId, "the task ran off the main thread")
        assert.deepStrictEqual(result.cost, { toolCalls: 1 })
        const run = read(handle)
        assert.strictEqual(yield* run({ task: "add", input: { a: 2, b: 40 } }), 42)
        assert.deepStrictEqual(yield* run({ task: "later", input: [1, "two"] }), { later: [1, "two"] })
        assert.strictEqual(yield* run({ task: "echo" }), null, "a missing input is null")
        assert.strictEqual(yield* run({ task: "nothing", input: 1 }), null, "undefined reads as null")
        const renamed = yield* Worker.driver({ name: "cpu", module: tasks.href, poolSize: 1 })
        assert.strictEqual(renamed.name, "cpu")
      }),
    timeoutMs
  )

  it.live(
    "runs at most poolSize tasks at once; the others wait their turn",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 2 }))
        const [elapsed, runs] = yield* Effect.timed(
          Effect.all(
            Array.from({ length: 4 }, () => run({ task: "block", input: { ms: 200 } })),
            {
              concurrency: "unbounded"
            }
          )
        )
        const ran = runs as ReadonlyArray<Ran>
        assert.strictEqual(maxOverlap(ran), 2)
        assert.strictEqual(new Set(ran.map((run) => run.threadId)).size, 2)
        assert.isAtLeast(Duration.toMillis(elapsed), 390, "two rounds of 200 ms")
        const firstEnd = Math.min(...ran.map((run) => run.end))
        assert.strictEqual(ran.filter((run) => run.start >= firstEnd).length, 2, "two waited for a free worker")
      }),
    timeoutMs
  )

  it.live(
    "starts waiting calls in the order they arrived",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1 }))
        const fibers: Array<Fiber.Fiber<unknown, DeviceError>> = []
        for (let i = 0; i < 5; i++) {
          fibers.push(yield* Effect.forkChild(run({ task: "block", input: { ms: 40 } })))
          yield* Effect.sleep(Duration.millis(5))
        }
        const starts = (yield* Fiber.joinAll(fibers)).map((ran) => (ran as Ran).start)
        assert.deepStrictEqual(
          starts,
          [...starts].sort((a, b) => a - b)
        )
        assert.strictEqual(new Set(starts).size, 5)
      }),
    timeoutMs
  )

  it.live(
    "terminates the worker of an interrupted call and replaces it",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1 }))
        const before = yield* run({ task: "thread" })
        const spinning = yield* Effect.forkChild(run({ task: "spin" }))
        yield* Effect.sleep(Duration.millis(200))
        const [interrupting] = yield* Effect.timed(Fiber.interrupt(spinning))
        assert.isBelow(Duration.toMillis(interrupting), 1000)
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(spinning)))
        assert.isBelow(yield* cpuOver(300), 150, "no thread is still spinning")
        const after = yield* run({ task: "thread" })
        assert.notStrictEqual(after, before, "a fresh worker took the place of the terminated one")
      }),
    timeoutMs
  )

  it.live(
    "a waiting call whose caller is interrupted leaves the line",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1 }))
        const spinning = yield* Effect.forkChild(run({ task: "spin" }))
        yield* Effect.sleep(Duration.millis(100))
        const waiting = yield* Effect.forkChild(run({ task: "thread" }))
        yield* Effect.sleep(Duration.millis(50))
        assert.isUndefined(waiting.pollUnsafe(), "it waits for the busy worker")
        const [interrupting] = yield* Effect.timed(Fiber.interrupt(waiting))
        assert.isBelow(Duration.toMillis(interrupting), 200, "leaving the line does not wait for the worker")
        assert.isUndefined(spinning.pollUnsafe(), "the running call is untouched")
        yield* Fiber.interrupt(spinning)
        assert.isNumber(yield* run({ task: "thread" }))
      }),
    timeoutMs
  )

  it.live(
    "fails with timeout when a task runs past the time limit, and terminates its worker",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1, timeout: "300 millis" }))
        const before = yield* run({ task: "thread" })
        const [elapsed, error] = yield* Effect.timed(failsWith(run({ task: "spin" }), "timeout"))
        assert.include(error.message, "300ms")
        assert.isBelow(Duration.toMillis(elapsed), 2000)
        assert.notStrictEqual(yield* run({ task: "thread" }), before)
        assert.deepStrictEqual(yield* run({ task: "block", input: { ms: 100 } }).pipe(Effect.map(() => "ok")), "ok")
      }),
    timeoutMs
  )

  it.effect(
    "keeps its time limit in wall-clock time, whatever clock the caller runs on",
    () =>
      Effect.gen(function* () {
        // it.effect runs on a TestClock that never moves here: an Effect sleep would never end
        const run = read(yield* open({ poolSize: 1, timeout: "200 millis" }))
        yield* failsWith(run({ task: "spin" }), "timeout")
        assert.strictEqual(yield* run({ task: "add", input: { a: 1, b: 2 } }), 3)
      }),
    timeoutMs
  )

  it.live(
    "fails with task-failed when a task throws, rejects or returns non-JSON, and keeps the worker",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1 }))
        const before = yield* run({ task: "thread" })
        const thrown = yield* failsWith(run({ task: "boom", input: "kaboom" }), "task-failed")
        assert.strictEqual(thrown.device, "worker")
        assert.strictEqual(thrown.message, 'task "boom" failed: Error: kaboom')
        const rejected = yield* failsWith(run({ task: "reject", input: "no" }), "task-failed")
        assert.include(rejected.message, "TypeError: no")
        const cyclic = yield* failsWith(run({ task: "cyclic" }), "task-failed")
        assert.include(cyclic.message, "not JSON")
        assert.strictEqual(yield* run({ task: "thread" }), before, "a failed task does not cost the worker")
      }),
    timeoutMs
  )

  it.live(
    "fails with not-found for a name that is not an exported function, without using a worker",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1 }))
        // the only worker is busy: an answer now shows no worker was needed
        const spinning = yield* Effect.forkChild(run({ task: "spin" }))
        const unknown = yield* failsWith(run({ task: "multiply", input: 1 }), "not-found")
        assert.include(unknown.message, 'no task "multiply"')
        assert.include(unknown.message, "the module exports add, block, boom")
        yield* failsWith(run({ task: "version" }), "not-found")
        yield* failsWith(run({ task: "toString" }), "not-found")
        assert.isUndefined(spinning.pollUnsafe())
        yield* Fiber.interrupt(spinning)
      }),
    timeoutMs
  )

  it.live(
    "fails with invalid-request when the request is not a task call or its input is not JSON",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open())
        const requests = [
          undefined,
          "thread",
          { input: 1 },
          { task: 7 },
          { task: "" },
          { task: "echo", input: () => 1 },
          { task: "echo", input: Number.NaN },
          { task: "echo", input: { when: new Date(0) } }
        ]
        for (const request of requests) {
          const error = yield* failsWith(run(request), "invalid-request")
          assert.include(error.message, "not a task call")
        }
      }),
    timeoutMs
  )

  it.live(
    "fails with worker-crashed when a worker exceeds its resource limits or exits; the pool recovers",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1, resourceLimits: { maxOldGenerationSizeMb: 16 } }))
        const first = yield* run({ task: "thread" })
        const oom = yield* failsWith(run({ task: "hog" }), "worker-crashed")
        assert.include(oom.message, "memory limit")
        const second = yield* run({ task: "thread" })
        assert.notStrictEqual(second, first)
        const exited = yield* failsWith(run({ task: "exit" }), "worker-crashed")
        assert.include(exited.message, "exited with code 3")
        const third = yield* run({ task: "thread" })
        assert.notStrictEqual(third, second)
        assert.strictEqual(yield* run({ task: "add", input: { a: 1, b: 1 } }), 2)
      }),
    timeoutMs
  )

  it.live(
    "replaces a worker that died while idle before giving it the next call",
    () =>
      Effect.gen(function* () {
        const run = read(yield* open({ poolSize: 1 }))
        const first = yield* run({ task: "thread" })
        assert.strictEqual(yield* run({ task: "timeBomb" }), "armed")
        yield* Effect.sleep(Duration.millis(200))
        const second = yield* run({ task: "thread" })
        assert.notStrictEqual(second, first)
      }),
    timeoutMs
  )

  it.live(
    "fails to build with WorkerError when the module does not load or an option is invalid",
    () =>
      Effect.gen(function* () {
        const broken = yield* Effect.flip(Worker.driver({ module: new URL("./fixtures/broken.mjs", import.meta.url) }))
        assert.strictEqual(broken._tag, "WorkerError")
        assert.strictEqual(broken.reason, "module-failed")
        assert.include(broken.message, "this module refuses to load")
        const missing = yield* Effect.flip(Worker.driver({ module: "/no/such/tasks.mjs" }))
        assert.strictEqual(missing.reason, "module-failed")
        assert.include(missing.message, "file:///no/such/tasks.mjs")
        for (const poolSize of [0, -1, 1.5]) {
          const invalid = yield* Effect.flip(Worker.driver({ module: tasks, poolSize }))
          assert.strictEqual(invalid.reason, "invalid-options")
        }
      }),
    timeoutMs
  )

  it.live(
    "stops its workers when its scope closes: running and later calls fail with unavailable",
    () =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const run = read(yield* open({ poolSize: 1 }).pipe(Scope.provide(scope)))
        const spinning = yield* Effect.forkChild(run({ task: "spin" }))
        yield* Effect.sleep(Duration.millis(100))
        yield* Scope.close(scope, Exit.void)
        const error = yield* failsWith(Fiber.join(spinning), "unavailable")
        assert.include(error.message, "closed")
        assert.isBelow(yield* cpuOver(300), 150, "the spinning thread was terminated")
        yield* failsWith(run({ task: "thread" }), "unavailable")
      }),
    timeoutMs
  )
})

describe("Worker through the kernel", () => {
  it.live(
    "a killed process's running task is stopped, and the pool serves the next call",
    () =>
      Effect.gen(function* () {
        const spinner = Process.make("spinner", () =>
          Effect.gen(function* () {
            const [device] = yield* Sys.caps()
            yield* Sys.read(yield* Sys.open(device!), { task: "spin" })
          })
        )
        const results: Array<unknown> = []
        const body = Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          const pid = yield* kernel.boot(
            Process.make<Kernel.BootGrant>("init", (grant) =>
              Effect.gen(function* () {
                const device = grant.devices.worker!
                const child = yield* Sys.spawn(spinner, { caps: [yield* Sys.derive(device, ["open"])] })
                yield* Effect.sleep(Duration.millis(200))
                yield* Sys.kill(child.cap)
                results.push(yield* Sys.waitpid(child.cap))
                results.push(yield* Sys.read(yield* Sys.open(device), { task: "add", input: { a: 20, b: 22 } }))
              })
            ),
            { grant: ["worker"] }
          )
          results.push(yield* kernel.waitExit(pid))
        })
        yield* body.pipe(Effect.provide(Kernel.layer({ drivers: [Worker.driver({ module: tasks, poolSize: 1 })] })))
        assert.strictEqual((results[0] as Process.ExitReason)._tag, "Killed")
        assert.strictEqual(results[1], 42)
        assert.deepStrictEqual(results[2], Process.normal)
      }),
    timeoutMs
  )
})

describe("Worker pool bound from KernelConfig", () => {
  it.live("a kernel refuses a worker device larger than workerPoolMax", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Kernel.Kernel.use(() => Effect.void).pipe(
          Effect.provide(
            Kernel.layer({ limits: { workerPoolMax: 3 }, drivers: [Worker.driver({ module: tasks, poolSize: 4 })] })
          )
        )
      )
      assert.deepInclude(error, { _tag: "WorkerError", reason: "invalid-options" })
      assert.include(error.message, "workerPoolMax")
      // within the bound it builds
      yield* Kernel.Kernel.use(() => Effect.void).pipe(
        Effect.provide(
          Kernel.layer({ limits: { workerPoolMax: 3 }, drivers: [Worker.driver({ module: tasks, poolSize: 3 })] })
        )
      )
    })
  )
})
