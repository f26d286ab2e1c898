/**
 * Helps test code that runs on the kernel: a kernel layer for tests, a way to run a piece of process code and get its
 * result back, a scripted in-process LLM device, and a scripted loopback OpenAI-compatible server for the real SDK.
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Effect, Exit, Schema } from "effect"
import * as Kernel from "./layers/Kernel.ts"
import * as Process from "./services/Process.ts"
import type { Sys } from "./services/Sys.ts"

export * as OpenAiServer from "./testing/OpenAiServer.ts"
export * as ScriptedLlm from "./testing/ScriptedLlm.ts"

/**
 * The kernel for tests. Built inside `it.effect`, it runs on the `TestClock`: move time with `TestClock.adjust`.
 *
 * @category layers
 */
export const layer = Kernel.layer

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
 * Boots a root process that runs `body` with the boot grant, and returns what the body returns (or fails with what
 * it fails with). If the process ends first, fails with `ProcessEnded` carrying the exit reason.
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
  options?: Kernel.BootOptions & { readonly name?: string }
): Effect.Effect<
  A,
  | E
  | ProcessEnded
  | Kernel.KernelError
  | import("./services/Accounts.ts").QuotaError
  | import("./services/Sys.ts").SpawnError,
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
    const pid = yield* kernel.boot(image, options)
    const reason = yield* kernel.waitExit(pid).pipe(Effect.orDie)
    if (yield* Deferred.isDone(result)) return yield* Deferred.await(result)
    return yield* new ProcessEnded({ pid, reason })
  })
