/**
 * Watches a test kernel for the one way a test on the `TestClock` hangs silently: every process waits for time that
 * nobody moves.
 *
 * The test kit's kernel layer builds the kernel on a counting wrapper of the test's `TestClock` (sleeps registered
 * and not yet over) and counts the driver calls in flight through wrapped drivers; `runProcess` looks at real-time
 * intervals. The kernel counts as stalled only with all of: at least one pending sleep on the kernel's clock, no
 * driver call in flight, no kernel event since the last look, and no more live Node resources (sockets, worker
 * threads, file requests, child processes; timers aside) than when the test started — so a test that waits on a real
 * driver call, a worker thread or a socket never counts as stalled, however long it waits.
 */
import { type Clock, Effect } from "effect"
import type { Driver, Handle } from "../../services/Device.ts"
import * as KernelDevices from "../../services/internal/kernelDevice.ts"

/**
 * @category models
 */
export interface ClockWatch {
  /** The clock the kernel is built on: the test's `TestClock`, its sleeps counted. */
  readonly clock: Clock.Clock
  /** A driver (or an effect building one) whose handles count their calls in flight. */
  readonly driver: <D>(input: D) => D
  readonly pendingSleeps: () => number
  readonly driverCallsInFlight: () => number
  /** Runs `effect` on the real clock (the TestClock's live one). */
  readonly live: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

interface TestClockLike extends Clock.Clock {
  readonly adjust: unknown
  readonly withLive: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
}

const isTestClock = (clock: Clock.Clock): clock is TestClockLike =>
  typeof (clock as Partial<TestClockLike>).adjust === "function" &&
  typeof (clock as Partial<TestClockLike>).withLive === "function"

/**
 * A watch over `clock`, or `undefined` when it is not a `TestClock` (on a real clock, sleeps end by themselves).
 *
 * @category constructors
 */
export const make = (clock: Clock.Clock): ClockWatch | undefined => {
  if (!isTestClock(clock)) return undefined
  let sleeps = 0
  let inFlight = 0
  const counted = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.suspend(() => {
      inFlight++
      return Effect.ensuring(
        effect,
        Effect.sync(() => {
          inFlight--
        })
      )
    })
  // The functions are read once, here, as the kernel itself reads them once; an invalid driver or handle is passed
  // on as it is, for the kernel to refuse.
  const handle = (inner: Handle): Handle => {
    const { read, write } = inner
    if (typeof read !== "function") return inner
    return {
      ...inner,
      read: (request, context) => counted(read(request, context)),
      ...(typeof write === "function" ? { write: (data, context) => counted(write(data, context)) } : {})
    }
  }
  const driver = (inner: Driver): Driver => {
    const open = inner?.open
    if (typeof open !== "function") return inner
    const wrapped: Driver = { ...inner, open: (owner) => Effect.map(open(owner), handle) }
    // a device the kernel serves itself (the VFS) stays one, its handle counted the same way
    const kernelDevice = KernelDevices.kernelDeviceOf(inner)
    if (kernelDevice !== undefined) {
      KernelDevices.register(wrapped, {
        local: kernelDevice.local,
        canonical: kernelDevice.canonical,
        open: (kernel, opener) => Effect.map(kernelDevice.open(kernel, opener), handle)
      })
    }
    return wrapped
  }
  return {
    // every method of the TestClock as it is (`adjust` included), only `sleep` counted
    clock: {
      ...clock,
      sleep: (duration) =>
        Effect.suspend(() => {
          sleeps++
          return Effect.ensuring(
            clock.sleep(duration),
            Effect.sync(() => {
              sleeps--
            })
          )
        })
    },
    driver: <D>(input: D): D =>
      (Effect.isEffect(input) ? Effect.map(input as Effect.Effect<Driver>, driver) : driver(input as Driver)) as D,
    pendingSleeps: () => sleeps,
    driverCallsInFlight: () => inFlight,
    live: (effect) => clock.withLive(effect)
  }
}

/** Node resources that are not timers, by type: what could still make something happen without the clock. */
export const resources = (): ReadonlyMap<string, number> => {
  const counts = new Map<string, number>()
  for (const type of process.getActiveResourcesInfo()) {
    if (type === "Timeout" || type === "Immediate") continue
    counts.set(type, (counts.get(type) ?? 0) + 1)
  }
  return counts
}

/** Are there more resources of some type now than in `baseline`? */
export const moreResources = (baseline: ReadonlyMap<string, number>): boolean => {
  for (const [type, count] of resources()) if (count > (baseline.get(type) ?? 0)) return true
  return false
}

/** The watch of each test kernel built on a `TestClock` (keyed by its `Kernel` service), for `runProcess`. */
const watches = new WeakMap<object, ClockWatch>()

/** Records the watch a test kernel was built with. */
export const register = (kernel: object, watch: ClockWatch): void => {
  watches.set(kernel, watch)
}

/** The watch `kernel` was built with, if it runs on a `TestClock` without virtual time. */
export const watchOf = (kernel: object): ClockWatch | undefined => watches.get(kernel)
