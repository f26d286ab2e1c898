/**
 * Runs child processes as one structured unit inside a process: all of them end before `Nursery.run` returns.
 *
 * `Nursery.run(children)` spawns every child in order, with the caller's spawn cap (any it holds, as `Sys.spawn`
 * does), then waits for all of them:
 *
 * - when every child ends `Normal`, it succeeds with their exit reasons, in the order of `children`;
 * - on the first abnormal exit (`Process.isAbnormal`), it kills the children still running (last spawned first),
 *   waits for them to end, and fails with `NurseryError { pid, index, reason }` naming the child that failed;
 * - when a spawn is refused, it kills and waits for the children already spawned and fails with the spawn's error;
 * - when the effect is interrupted (an `Effect.timeout` around it, the caller's own fiber interrupted), it kills and
 *   waits for every child still running before the interruption completes.
 *
 * It waits with `Sys.waitpid` (the spawn cap's `monitor` right), not with the caller's mailbox, so the caller's
 * messages are left alone. When the calling process itself ends, the kernel does not end the children: like every
 * orphan they are re-parented to init; spawn with `quota.wall` or a deadline to bound them.
 *
 * @since 0.1.0
 */
import { Effect, Exit, Schema } from "effect"
import type { Quota, QuotaError } from "../services/Accounts.ts"
import type { CapabilityError, CapRef } from "../services/Capability.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"

/**
 * One child of a nursery: the image, its argument, the caps moved to it (as `Sys.spawn`'s `caps`) and its quota
 * (carved from the caller's).
 *
 * @category models
 */
export interface Child<A = any> {
  readonly image: Process.Image<A>
  readonly args?: A
  readonly caps?: ReadonlyArray<CapRef> | undefined
  readonly quota?: Quota | undefined
}

/**
 * A child of the nursery ended abnormally: its pid, its index in `children`, and why it ended.
 *
 * @category errors
 */
export class NurseryError extends Schema.TaggedError<NurseryError>()("NurseryError", {
  pid: Schema.Number,
  index: Schema.Number,
  reason: Process.ExitReason
}) {
  override get message(): string {
    return `nursery child ${this.index} (pid ${this.pid}) ended abnormally: ${Process.describeError(this.reason)}`
  }
}

/**
 * Types a child's `args` against its image.
 *
 * @category constructors
 */
export const child = <A>(spec: Child<A>): Child<A> => spec

/** Kills the given children, last first, and waits until each has ended. Errors mean it has ended already. */
const killAll = (spawned: ReadonlyArray<Sys.Spawned>): Effect.Effect<void, never, Sys.Sys> =>
  Effect.forEach(
    [...spawned].reverse(),
    ({ cap }) => Effect.ignore(Sys.kill(cap)).pipe(Effect.andThen(Effect.ignore(Sys.waitpid(cap)))),
    { discard: true }
  )

/**
 * Spawns `children`, waits for all of them, and succeeds with their exit reasons (in order) when all end `Normal`;
 * see the module documentation for the failure and interruption cases.
 *
 * @example
 * ```ts
 * const reasons = yield* Nursery.run([{ image: fetcher, args: "a" }, { image: fetcher, args: "b" }])
 * ```
 *
 * @category running
 */
export const run = (
  children: ReadonlyArray<Child>
): Effect.Effect<
  ReadonlyArray<Process.ExitReason>,
  NurseryError | CapabilityError | QuotaError | Sys.SpawnError | Sys.ArgumentError,
  Sys.Sys
> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const spawned: Array<Sys.Spawned> = []
      for (const spec of children) {
        const result = yield* Effect.exit(
          Sys.spawn(spec.image, { args: spec.args, caps: spec.caps, quota: spec.quota })
        )
        if (Exit.isFailure(result)) {
          yield* killAll(spawned)
          return yield* Effect.failCause(result.cause)
        }
        spawned.push(result.value)
      }
      const waitAll = Effect.forEach(
        spawned,
        ({ cap, pid }, index) =>
          Sys.waitpid(cap).pipe(
            Effect.orDie,
            Effect.flatMap((reason) =>
              Process.isAbnormal(reason)
                ? Effect.fail(new NurseryError({ pid, index, reason }))
                : Effect.succeed(reason)
            )
          ),
        { concurrency: "unbounded" }
      )
      return yield* restore(waitAll).pipe(
        Effect.onExit((exit) => (Exit.isSuccess(exit) ? Effect.void : killAll(spawned)))
      )
    })
  )
