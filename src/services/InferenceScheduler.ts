/**
 * Admits calls to scheduled drivers (LLMs) in order of effective priority, within concurrency and rate limits.
 *
 * Each scheduled driver has its own queue. A call waits until the driver has a free slot (`concurrency`), and, when
 * set, until a request (`requestsPerMinute`) and token budget (`tokensPerMinute`, counted from the costs of calls
 * that finished in the last 60 s) are available. Among waiting calls the next one is the highest *effective
 * priority* — the caller's priority plus one for every whole `agingMs` it has waited,
 * `priority + floor(waitedMs / agingMs)` — then the earliest deadline, then the earliest arrival. A ticket's priority
 * is clamped into the kernel's range `[priorityMin, priorityMax]` (`KernelConfig`; a `NaN` counts as `priorityMin`)
 * and a `NaN` deadline counts as none, so a caller of `run` cannot step outside the rule. Time is the kernel clock, so
 * a `TestClock` drives it exactly.
 *
 * **The aging bound.** Write `Δ = priorityMax − priorityMin` and `A = agingMs`. Take a call `x` that starts waiting at
 * `t0`, and a call `y` that starts waiting after it (later in arrival order) at `t0 + D`. At any pick at time `t`
 * while both wait, whatever their priorities within the range:
 *
 * - `y` is chosen over `x` only if its effective priority is at least `x`'s, and
 *   `e(y) − e(x) = p(y) − p(x) − (floor((t − t0) / A) − floor((t − t0 − D) / A)) ≤ Δ − floor(D / A)`, because
 *   `floor(u) − floor(u − v) ≥ floor(v)` for `v ≥ 0`;
 * - so `y` wins on effective priority alone only if `floor(D / A) ≤ Δ − 1`, that is `D < Δ × A`;
 * - on equal effective priority (`floor(D / A) ≤ Δ`, that is `D < (Δ + 1) × A`) the earlier deadline wins, and only
 *   then the earlier arrival, which is `x`.
 *
 * Hence: **a call `x` that starts waiting at `t0` is passed over by a call that starts waiting after it only if that
 * call started before `t0 + (Δ + 1) × agingMs`; and, when that call's deadline is not earlier than `x`'s (say, neither
 * has one), only if it started before `t0 + Δ × agingMs`.** Both bounds are reached: a `priorityMax` call arriving at
 * `t0 + Δ × A − 1` ms beats a `priorityMin` call at any pick whose wait `t − t0` is one millisecond short of a whole
 * `A`, and one arriving at `t0 + (Δ + 1) × A − 1` ms ties it at such picks and wins with an earlier deadline. With the
 * defaults (`[0, 10]`, 1000 ms) that is 10 s, or 11 s with deadlines. So a waiting call is never starved: it waits at
 * most until the calls ahead of it and those that arrived before that point have been admitted, however long the
 * flood of higher-priority calls after it.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer, Schema } from "effect"
import { KernelConfig, defaults as limitDefaults } from "./KernelConfig.ts"

/**
 * Limits of one scheduled driver. Absent fields: `concurrency` 4, no rate limits, `agingMs` 1000.
 *
 * @category models
 */
export interface Policy {
  readonly concurrency?: number | undefined
  readonly requestsPerMinute?: number | undefined
  readonly tokensPerMinute?: number | undefined
  readonly agingMs?: number | undefined
}

/**
 * Decodes a `Policy`: every given field a positive integer (absent or `undefined`: the default). The device table
 * decodes each scheduled driver's policy with it, so a driver with `concurrency: 0` (every call would wait forever)
 * is refused when the kernel is built.
 *
 * @category schemas
 */
export const PolicySchema = Schema.Struct({
  concurrency: Schema.optional(Schema.Int.check(Schema.isGreaterThan(0))),
  requestsPerMinute: Schema.optional(Schema.Int.check(Schema.isGreaterThan(0))),
  tokensPerMinute: Schema.optional(Schema.Int.check(Schema.isGreaterThan(0))),
  agingMs: Schema.optional(Schema.Int.check(Schema.isGreaterThan(0)))
})

/** @category defaults */
export const defaults = { concurrency: 4, agingMs: 1000 } as const

/**
 * Who is asking to run. `priority` is clamped into the scheduler's priority range.
 *
 * @category models
 */
export interface Ticket {
  readonly pid: number
  readonly priority: number
  /** Absolute kernel-clock millis, `undefined` for none. */
  readonly deadline: number | undefined
}

/**
 * The priorities a ticket can have, both ends included (the kernel's `priorityMin` and `priorityMax`).
 *
 * @category models
 */
export interface PriorityRange {
  readonly min: number
  readonly max: number
}

interface Waiter {
  /** The ticket's priority, clamped into the range. */
  readonly priority: number
  /** The ticket's deadline; none is `Infinity`. */
  readonly deadline: number
  readonly arrival: number
  readonly since: number
  readonly admit: () => void
}

const isPolicy = Schema.is(PolicySchema)

const WINDOW_MS = 60_000

/**
 * @category models
 */
export interface InferenceSchedulerShape {
  /**
   * Runs `call` when the driver admits it; `tokensOf` reads the tokens the call used (for the tokens-per-minute
   * window). Interrupting the caller while it waits removes it from the queue.
   */
  readonly run: <A, E, R>(
    driver: string,
    policy: Policy,
    ticket: Ticket,
    call: Effect.Effect<A, E, R>,
    tokensOf: (a: A) => number
  ) => Effect.Effect<A, E, R>
  /** Calls running and waiting for a driver. */
  readonly load: (driver: string) => { readonly running: number; readonly waiting: number }
}

/**
 * @category services
 */
export class InferenceScheduler extends Context.Service<InferenceScheduler, InferenceSchedulerShape>()(
  "effect-agent-os/InferenceScheduler"
) {}

interface Lane {
  running: number
  readonly waiting: Array<Waiter>
  /** Start times of requests in the last window. */
  readonly starts: Array<number>
  /** [finish time, tokens] of calls in the last window. */
  readonly usage: Array<readonly [number, number]>
  timer: boolean
}

/**
 * Makes a scheduler on a clock; `wake(at)` must call `pump` again at kernel time `at` (the kernel forks a sleeper).
 * `priorities` is the range tickets are clamped into (default: `KernelConfig.defaults`' `[priorityMin, priorityMax]`).
 * A policy that `PolicySchema` refuses (the device table never passes one) makes `run` die.
 *
 * @category constructors
 */
export const makeUnsafe = (
  now: () => number,
  wakeAt: (at: number, pump: () => void) => void,
  priorities: PriorityRange = { min: limitDefaults.priorityMin, max: limitDefaults.priorityMax }
): InferenceSchedulerShape => {
  if (!(priorities.min <= priorities.max)) {
    throw new RangeError(`InferenceScheduler: priority range [${priorities.min}, ${priorities.max}] is empty`)
  }
  const clamp = (priority: number) =>
    Number.isNaN(priority) ? priorities.min : Math.min(priorities.max, Math.max(priorities.min, priority))
  const lanes = new Map<string, Lane>()
  let arrivals = 0
  const laneOf = (driver: string): Lane => {
    let lane = lanes.get(driver)
    if (lane === undefined) {
      lane = { running: 0, waiting: [], starts: [], usage: [], timer: false }
      lanes.set(driver, lane)
    }
    return lane
  }

  const effective = (waiter: Waiter, at: number, agingMs: number) =>
    waiter.priority + Math.floor((at - waiter.since) / agingMs)

  /** The next waiter: highest effective priority, then earliest deadline, then earliest arrival. */
  const pick = (lane: Lane, at: number, agingMs: number): number => {
    let best = 0
    for (let i = 1; i < lane.waiting.length; i++) {
      const a = lane.waiting[i]!
      const b = lane.waiting[best]!
      const pa = effective(a, at, agingMs)
      const pb = effective(b, at, agingMs)
      if (pa !== pb) {
        if (pa > pb) best = i
        continue
      }
      if (a.deadline !== b.deadline) {
        if (a.deadline < b.deadline) best = i
        continue
      }
      if (a.arrival < b.arrival) best = i
    }
    return best
  }

  const pump = (driver: string, policy: Policy) => {
    const lane = laneOf(driver)
    const concurrency = policy.concurrency ?? defaults.concurrency
    const agingMs = policy.agingMs ?? defaults.agingMs
    while (lane.waiting.length > 0 && lane.running < concurrency) {
      const at = now()
      while (lane.starts.length > 0 && lane.starts[0]! <= at - WINDOW_MS) lane.starts.shift()
      while (lane.usage.length > 0 && lane.usage[0]![0] <= at - WINDOW_MS) lane.usage.shift()
      // the earliest time a rate limit lets the next request start
      let next = at
      if (policy.requestsPerMinute !== undefined && lane.starts.length >= policy.requestsPerMinute) {
        next = Math.max(next, lane.starts[lane.starts.length - policy.requestsPerMinute]! + WINDOW_MS)
      }
      if (policy.tokensPerMinute !== undefined) {
        let used = 0
        for (const [, tokens] of lane.usage) used += tokens
        let i = 0
        while (used >= policy.tokensPerMinute && i < lane.usage.length) {
          used -= lane.usage[i]![1]
          next = Math.max(next, lane.usage[i]![0] + WINDOW_MS)
          i++
        }
      }
      if (next > at) {
        if (!lane.timer) {
          lane.timer = true
          wakeAt(next, () => {
            lane.timer = false
            pump(driver, policy)
          })
        }
        return
      }
      const [waiter] = lane.waiting.splice(pick(lane, at, agingMs), 1)
      lane.running++
      lane.starts.push(at)
      waiter!.admit()
    }
  }

  return {
    run: (driver, policy, ticket, call, tokensOf) =>
      Effect.suspend(() => {
        if (!isPolicy(policy)) return Effect.die(new RangeError(`InferenceScheduler: invalid policy for ${driver}`))
        const lane = laneOf(driver)
        let admitted = false
        // read once, here: the order must not change under the waiter (a ticket is the caller's object)
        const priority = clamp(Number(ticket.priority))
        const deadline =
          typeof ticket.deadline === "number" && !Number.isNaN(ticket.deadline) ? ticket.deadline : Infinity
        const wait = Effect.callback<void>((resume) => {
          const waiter: Waiter = {
            priority,
            deadline,
            arrival: arrivals++,
            since: now(),
            admit: () => {
              admitted = true
              resume(Effect.void)
            }
          }
          lane.waiting.push(waiter)
          pump(driver, policy)
          return Effect.sync(() => {
            const at = lane.waiting.indexOf(waiter)
            if (at >= 0) lane.waiting.splice(at, 1)
          })
        })
        const release = (tokens: number) =>
          Effect.sync(() => {
            lane.running--
            if (tokens > 0) lane.usage.push([now(), tokens])
            pump(driver, policy)
          })
        return Effect.onExit(Effect.andThen(wait, call), (exit) =>
          admitted ? release(exit._tag === "Success" ? tokensOf(exit.value) : 0) : Effect.void
        )
      }),
    load: (driver) => {
      const lane = lanes.get(driver)
      return { running: lane?.running ?? 0, waiting: lane?.waiting.length ?? 0 }
    }
  }
}

/**
 * A scheduler on the `Clock` of the context the layer is built in, over the kernel's priority range
 * (`KernelConfig`'s `priorityMin`, `priorityMax`); rate-limit wake-ups run as detached sleepers.
 *
 * @category layers
 */
export const layer: Layer.Layer<InferenceScheduler, never, KernelConfig> = Layer.effect(InferenceScheduler)(
  Effect.gen(function* () {
    const clock = yield* Clock.clockWith(Effect.succeed)
    const limits = yield* KernelConfig
    const context = yield* Effect.context<never>()
    const now = () => clock.currentTimeMillisUnsafe()
    return makeUnsafe(
      now,
      (at, pump) => {
        Effect.runForkWith(context)(Effect.sleep(Math.max(0, at - now())).pipe(Effect.andThen(Effect.sync(pump))))
      },
      { min: limits.priorityMin, max: limits.priorityMax }
    )
  })
)
