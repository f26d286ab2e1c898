/**
 * Runs the kernel on virtual time: a clock that stands still while processes work and jumps to the next timer when
 * every process is blocked.
 *
 * With `Kernel.layer({ virtualTime: true })` every kernel service and process reads this clock. Whenever the kernel's
 * run queue is empty and no live driver call is in flight, the kernel moves the clock to the earliest pending sleep
 * (after one event-loop turn, so I/O that already arrived is handled first) and wakes every sleep due at that
 * instant, in the order they were registered. A run whose agents sleep for hours completes in milliseconds, and
 * because time moves only at quiescent points, the same program gives the same trace every time.
 *
 * (Effect's `TestClock` moves time only when told by how much; it cannot say when its next timer is due, which is
 * what running to quiescence needs.)
 *
 * @since 0.1.0
 */
import type { Duration } from "effect"
import { Clock, Context, Duration as D, Effect, Layer } from "effect"

/**
 * @category models
 */
export interface VirtualClock extends Clock.Clock {
  /** Kernel-clock millis of the earliest pending sleep, if any. */
  readonly nextWakeUp: () => number | undefined
  /** Moves time to the earliest pending sleep and wakes every sleep due then; `false` when none is pending. */
  readonly advance: () => boolean
  /** Pending sleeps. */
  readonly pending: () => number
  /** Runs `f` whenever a sleep is registered (the kernel pokes its advancer). */
  readonly onSleep: (f: () => void) => void
}

/**
 * The virtual clock of a kernel running on virtual time.
 *
 * @category services
 */
export class VirtualTime extends Context.Service<VirtualTime, VirtualClock>()("effect-agent-os/VirtualTime") {}

interface Sleeper {
  readonly at: number
  readonly seq: number
  readonly wake: () => void
}

/**
 * Makes a virtual clock starting at `start` millis.
 *
 * @category constructors
 */
export const makeUnsafe = (start = 0): VirtualClock => {
  let now = start
  let onSleep: (() => void) | undefined
  let seq = 0
  // sorted by (at, seq) descending, so the earliest is last
  const sleepers: Array<Sleeper> = []
  const insert = (sleeper: Sleeper) => {
    let low = 0
    let high = sleepers.length
    while (low < high) {
      const mid = (low + high) >>> 1
      const other = sleepers[mid]!
      if (other.at > sleeper.at || (other.at === sleeper.at && other.seq > sleeper.seq)) low = mid + 1
      else high = mid
    }
    sleepers.splice(low, 0, sleeper)
  }
  const millis = () => now
  const nanos = () => BigInt(Math.round(now * 1_000_000))
  return {
    currentTimeMillisUnsafe: millis,
    currentTimeMillis: Effect.sync(millis),
    currentTimeNanosUnsafe: nanos,
    currentTimeNanos: Effect.sync(nanos),
    monotonicTimeNanosUnsafe: nanos,
    monotonicTimeNanos: Effect.sync(nanos),
    sleep: (duration: Duration.Duration) =>
      Effect.suspend(() => {
        const ms = D.toMillis(duration)
        if (!(ms > 0)) return Effect.yieldNow
        return Effect.callback<void>((resume) => {
          const sleeper: Sleeper = { at: now + ms, seq: seq++, wake: () => resume(Effect.void) }
          insert(sleeper)
          onSleep?.()
          return Effect.sync(() => {
            const index = sleepers.indexOf(sleeper)
            if (index >= 0) sleepers.splice(index, 1)
          })
        })
      }),
    nextWakeUp: () => (sleepers.length === 0 ? undefined : sleepers[sleepers.length - 1]!.at),
    advance: () => {
      const first = sleepers[sleepers.length - 1]
      if (first === undefined) return false
      if (first.at > now) now = first.at
      const due: Array<Sleeper> = []
      while (sleepers.length > 0 && sleepers[sleepers.length - 1]!.at <= now) due.push(sleepers.pop()!)
      for (const sleeper of due) sleeper.wake()
      return true
    },
    pending: () => sleepers.length,
    onSleep: (f) => {
      onSleep = f
    }
  }
}

/**
 * Moves a virtual clock whenever the kernel is quiescent: `poke` after anything that may leave it so (its run queue
 * drained, a driver call finished, a sleep registered); the move happens one event-loop turn later, only if
 * `quiescent()` still holds then. When it holds and no sleep is pending, nothing in the kernel will ever move again
 * by itself: `onStill` is told (a replay uses it to end a run that waits for what its journal says will not come).
 *
 * @category constructors
 */
export const makeAdvancer = (
  clock: VirtualClock,
  quiescent: () => boolean,
  onStill?: () => void
): { readonly poke: () => void } => {
  let queued = false
  const poke = () => {
    if (queued) return
    queued = true
    setImmediate(() => {
      queued = false
      if (!quiescent()) return
      if (clock.advance()) poke()
      else onStill?.()
    })
  }
  return { poke }
}

/**
 * Provides a fresh virtual clock as both `VirtualTime` and the `Clock` of everything built on this layer.
 *
 * @category layers
 */
export const layer: Layer.Layer<VirtualTime> = Layer.effectContext(
  Effect.sync(() => {
    const clock = makeUnsafe()
    return Context.make(VirtualTime, clock).pipe(Context.add(Clock.Clock, clock))
  })
)
