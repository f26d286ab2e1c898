/**
 * Helps test code that runs on the kernel: a kernel layer for tests, a way to run a piece of process code and get its
 * result back, a scripted in-process LLM device, and a scripted loopback OpenAI-compatible server for the real SDK.
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Duration, Effect, Exit, Schema } from "effect"
import * as Kernel from "./layers/Kernel.ts"
import * as Process from "./services/Process.ts"
import type { Sys } from "./services/Sys.ts"
import * as ClockWatch from "./testing/internal/clockWatch.ts"

export * as OpenAiServer from "./testing/OpenAiServer.ts"
export * as ScriptedLlm from "./testing/ScriptedLlm.ts"

/** The kernel for tests (see `layers/KernelTest.ts`): `Kernel.layer`'s options, on the `TestClock` under `it.effect`. */
export { layer } from "./layers/KernelTest.ts"

/**
 * The process running a `runProcess` body ended before the body returned (killed, out of quota, past its deadline).
 *
 * @category errors
 */
export class ProcessEnded extends Schema.TaggedError<ProcessEnded>()("ProcessEnded", {
  pid: Schema.Number,
  reason: Process.ExitReason
}) {}

/**
 * Every process of a `runProcess` test waited for the `TestClock` (pending sleeps: a `Sys.sleep`, a `wall` quota, a
 * deadline, a retry backoff…) with nothing else under way, for `stallTimeout` of real time: without `TestClock.adjust`
 * the test would hang until its timeout. `message` says how to move time.
 *
 * @category errors
 */
export class TestClockStalled extends Schema.TaggedError<TestClockStalled>()("TestClockStalled", {
  pid: Schema.Number,
  pendingSleeps: Schema.Number,
  message: Schema.String
}) {}

/**
 * Boots a root process that runs `body` with the boot grant, and returns what the body returns (or fails with what
 * it fails with). If the process ends first, fails with `ProcessEnded` carrying the exit reason.
 *
 * On a kernel from this module's `layer` built on the `TestClock`, a run in which every process waits for time
 * that nobody moves fails with `TestClockStalled` after `stallTimeout` of real time (default 1 second; an infinite
 * duration turns the check off), instead of hanging until the test's timeout. It never fires while a driver call is
 * in flight or a socket, worker thread, file request or child process is open that was not open when the run began.
 * To move time during a run, fork it: `const fiber = yield* Effect.forkChild(TestKernel.runProcess(body))`, then
 * `yield* TestClock.adjust("1 minute")`, then `yield* Fiber.join(fiber)`.
 *
 * @example
 * ```ts
 * it.effect("spawn needs a spawn cap", () =>
 *   TestKernel.runProcess(() => Sys.spawn(child)).pipe(Effect.provide(TestKernel.layer())))
 * ```
 *
 * @category running
 */
export const runProcess = <A, E>(
  body: (grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys>,
  options?: Kernel.BootOptions & {
    readonly name?: string | undefined
    /** Real time every process may wait on an un-moved `TestClock` before the run fails. Default 1 second. */
    readonly stallTimeout?: Duration.Input | undefined
  }
): Effect.Effect<
  A,
  | E
  | ProcessEnded
  | TestClockStalled
  | Kernel.KernelError
  | import("./services/Accounts.ts").QuotaError
  | import("./services/Sys.ts").SpawnError
  | import("./services/Sys.ts").ArgumentError,
  Kernel.Kernel
> =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const result = yield* Deferred.make<A, E>()
    const image = Process.make<Kernel.BootGrant>(options?.name ?? "test", (grant) =>
      Effect.exit(body(grant)).pipe(
        // an interrupted body means the process was ended: reported below as ProcessEnded, with the exit reason
        Effect.flatMap((exit) =>
          Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause) ? Effect.void : Deferred.done(result, exit)
        ),
        Effect.asVoid
      )
    )
    const baseline = ClockWatch.resources()
    const pid = yield* kernel.boot(image, options)
    const exited = kernel.waitExit(pid).pipe(Effect.orDie)
    const watch = ClockWatch.watchOf(kernel)
    const stallTimeout = Duration.fromInputUnsafe(options?.stallTimeout ?? defaultStallTimeout)
    const reason =
      watch === undefined || !Duration.isFinite(stallTimeout)
        ? yield* exited
        : yield* Effect.raceFirst(exited, stalled(kernel, watch, pid, baseline, Duration.toMillis(stallTimeout)))
    if (yield* Deferred.isDone(result)) return yield* Deferred.await(result)
    return yield* new ProcessEnded({ pid, reason })
  })

const defaultStallTimeout = Duration.seconds(1)
/** How often `stalled` looks, in real milliseconds. */
const stallCheckMs = 100

/**
 * Fails with `TestClockStalled` once the kernel has stood still, waiting on the TestClock, for `timeoutMs` of real
 * time; never succeeds (it is raced against the run).
 */
const stalled = (
  kernel: Kernel.Kernel["Service"],
  watch: ClockWatch.ClockWatch,
  pid: number,
  baseline: ReadonlyMap<string, number>,
  timeoutMs: number
): Effect.Effect<never, TestClockStalled> =>
  Effect.gen(function* () {
    let lastEvent = -1
    let stillMs = 0
    while (true) {
      yield* watch.live(Effect.sleep(Duration.millis(stallCheckMs)))
      const event = (yield* kernel.trace(1))[0]?.seq ?? 0
      const still =
        watch.pendingSleeps() > 0 &&
        watch.driverCallsInFlight() === 0 &&
        event === lastEvent &&
        !ClockWatch.moreResources(baseline)
      lastEvent = event
      stillMs = still ? stillMs + stallCheckMs : 0
      if (stillMs >= timeoutMs) {
        const pendingSleeps = watch.pendingSleeps()
        return yield* new TestClockStalled({
          pid,
          pendingSleeps,
          message:
            `runProcess (pid ${pid}): every process has waited on the TestClock for ${timeoutMs} ms of real time ` +
            `(${pendingSleeps} pending sleep${pendingSleeps === 1 ? "" : "s"}, no driver call in flight), and nothing ` +
            `moves it. Fork the run and move time with TestClock.adjust (Effect.forkChild(runProcess(...)), then ` +
            `TestClock.adjust("1 minute"), then Fiber.join), or build the kernel with ` +
            `TestKernel.layer({ virtualTime: true }) so that it jumps to its next timer by itself.`
        })
      }
    }
  })
