/**
 * Builds the context a process fiber starts with: Effect's own runtime references (clock, scheduler, random, logger,
 * tracer, log and trace levels) and nothing else.
 *
 * The kernel is built inside the host's context, which holds every kernel service, every host service a driver was
 * built from, the layer memo map and a scope. `Effect.serviceOption` and `Effect.context()` have `R = never`, so the
 * type of an image (`R = Sys`) does not keep a process from reaching them: only the runtime context can. This is an
 * allow list, so a service added to the host later is excluded by default.
 *
 * Private to the package.
 */
import { Clock, Context } from "effect"

/** Keys copied from the kernel's build context into every process's context. */
const allowed: ReadonlySet<string> = new Set([
  "effect/Clock",
  "effect/Random",
  "effect/Scheduler",
  "effect/Scheduler/MaxOpsBeforeYield",
  "effect/Scheduler/PreventSchedulerYield",
  "effect/Tracer",
  "effect/Tracer/CurrentTraceLevel",
  "effect/Tracer/DisablePropagation",
  "effect/Tracer/MinimumTraceLevel",
  "effect/Logger/CurrentLoggers",
  "effect/Logger/LogToStderr",
  "effect/References/CurrentLogAnnotations",
  "effect/References/CurrentLogLevel",
  "effect/References/CurrentLogSpans",
  "effect/References/MinimumLogLevel",
  "effect/References/TracerEnabled",
  "effect/References/TracerSpanAnnotations",
  "effect/References/TracerSpanLinks",
  "effect/References/TracerTimingEnabled",
  "effect/References/UnhandledLogLevel"
])

/**
 * A clock that only tells time and sleeps: a process on virtual time must not reach the virtual clock's `advance`
 * (it would fire every other process's timers early).
 */
const readOnlyClock = (clock: Clock.Clock): Clock.Clock =>
  Object.freeze({
    currentTimeMillisUnsafe: () => clock.currentTimeMillisUnsafe(),
    currentTimeMillis: clock.currentTimeMillis,
    currentTimeNanosUnsafe: () => clock.currentTimeNanosUnsafe(),
    currentTimeNanos: clock.currentTimeNanos,
    monotonicTimeNanosUnsafe: () => clock.monotonicTimeNanosUnsafe(),
    monotonicTimeNanos: clock.monotonicTimeNanos,
    sleep: (duration) => clock.sleep(duration)
  } satisfies Clock.Clock)

/**
 * The allow-listed part of `context`; with `clock` (the virtual clock, or a replay's counting clock), the clock is
 * replaced by a read-only view of it.
 */
export const processContext = (
  context: Context.Context<never>,
  clock: Clock.Clock | undefined
): Context.Context<never> => {
  const kept = new Map<string, unknown>()
  for (const [key, value] of context.mapUnsafe) if (allowed.has(key)) kept.set(key, value)
  if (clock !== undefined) kept.set(Clock.Clock.key, readOnlyClock(clock))
  return Context.makeUnsafe(kept)
}
