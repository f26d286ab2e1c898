/**
 * Assembles the test kit's kernel: `Kernel.layer` on the clock of the context it is built in, with a watch on that
 * clock when it is a `TestClock` (so `runProcess` can tell a test that waits for time nobody moves).
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer } from "effect"
import * as ClockWatch from "../testing/internal/clockWatch.ts"
import * as Kernel from "./Kernel.ts"

/**
 * The kernel for tests: `Kernel.layer` with the same options. Built inside `it.effect`, it runs on the `TestClock`:
 * move time with `TestClock.adjust`, or pass `virtualTime: true` to let the kernel jump to its next timer whenever
 * every process waits. On the `TestClock` it also counts the kernel's pending sleeps and driver calls in flight, so
 * that `runProcess` can tell a test that waits for time nobody moves.
 *
 * @category layers
 */
export const layer: typeof Kernel.layer = (options) =>
  Layer.unwrap(
    Effect.gen(function* () {
      const watch = ClockWatch.make(yield* Clock.clockWith(Effect.succeed))
      if (watch === undefined || options?.virtualTime === true) return Kernel.layer(options)
      const drivers = options?.drivers?.map(watch.driver)
      return Kernel.layer({ ...options, drivers } as typeof options).pipe(
        Layer.tap((context) => Effect.sync(() => ClockWatch.register(Context.get(context, Kernel.Kernel), watch))),
        Layer.provide(Layer.succeed(Clock.Clock)(watch.clock))
      )
    })
  )
