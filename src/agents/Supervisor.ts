/**
 * Restarts child processes when they end: an Erlang/OTP supervisor that runs as a kernel process.
 *
 * `Supervisor.make(options)` returns a `Process.Image`. Spawn it like any image; it must hold a cap with the `spawn`
 * right among its start caps (`Sys.caps()`): the kernel uses it for every child the supervisor starts. The
 * supervisor starts its children in the order of `children` (the start order), links each one (`link: true`, so the
 * supervisor receives `Down` when a child ends, and the child receives `Down` when the supervisor ends), and then
 * waits for messages.
 *
 * ## Options and their defaults
 *
 * - `name` (default `"supervisor"`): the image name, shown by `ps` and in the trace.
 * - `strategy` (default `"one_for_one"`): which children restart when one ends and must restart:
 *   - `one_for_one`: only that child;
 *   - `one_for_all`: every child: the others are shut down (reverse start order), then all restart in start order;
 *   - `rest_for_one`: that child and the children started after it (shut down in reverse order, restarted in order).
 *   Siblings that had already ended for good (a `transient` child after a normal exit) stay ended; `temporary`
 *   siblings shut down this way are not restarted (they are dropped, as OTP does).
 * - `intensity` (default `1`) and `period` (default `"5 seconds"`): more than `intensity` restarts within the last
 *   `period` end the supervisor (see "How it ends"). A restart counts when it is decided (when the supervisor sees the
 *   exit), and stays counted for exactly `period`: a restart `period` ago or longer no longer counts. `intensity: 0`
 *   allows no restart at all. The decision is the pure function `recordRestart`.
 * - `backoff` (default: none, restarts happen at once): a `Schedule` fed the child's exit reason, whose delays space
 *   the restarts of a flapping child. The k-th restart of a child in a row (each less than `period` after its previous
 *   one) waits the schedule's k-th delay; after a quiet `period` the schedule starts over. While a restart waits, the
 *   supervisor goes on handling messages. A schedule that ends (`Schedule.recurs(n)`) gives up: the supervisor ends
 *   as when its intensity is reached.
 * - `children`: the child specs, in start order. Each spec:
 *   - `id`: unique among the children, used in errors;
 *   - `image`, `args` (default `undefined`): what to spawn;
 *   - `restart` (default `"permanent"`): `permanent` restarts after every exit, `transient` only after an abnormal one
 *     (`Process.isAbnormal`: anything but `Normal`), `temporary` never (the child is dropped when it ends);
 *   - `caps` (default `[]`): the caps the child starts with, each `{ from, rights }`: a fresh derivation of the
 *     supervisor's start cap `Sys.caps()[from]` narrowed to `rights`. They are derived anew for every start, and a
 *     child's caps are revoked by the kernel when it ends, so a restarted child never inherits its predecessor's caps;
 *   - `quota` (default: none, the child shares the supervisor's limits): carved from the supervisor's account at every
 *     start, so a restarted child starts with an unspent quota (the cumulative meters its predecessors spent stay
 *     charged to the supervisor and its ancestors);
 *   - `shutdown` (default `"kill"`): how the supervisor stops the child: `"kill"` kills it at once (`Sys.kill`, exit
 *     reason `Killed { by: supervisor }`); a duration sends it `Term` (`Sys.term`) and kills it only if it has not
 *     ended within that time. Either way the supervisor waits for the child to end before it goes on.
 *
 * ## How the supervisor ends
 *
 * - `Normal`, on a `Term` message from the kernel (`Sys.term` by a holder of a `kill` cap to it): it shuts its children
 *   down in reverse start order, then exits.
 * - `Fault { error }` with `"intensity reached: more than N restarts in P ms"`, when a restart would exceed the
 *   intensity; `"backoff schedule of child X ended"` when its backoff gives up; `"start of child X failed: …"` when a
 *   child cannot be started at boot; `"invalid supervisor options: …"` when the options are invalid. In each case it
 *   first shuts down the children that are running, in reverse start order, then exits: its own parent (or
 *   supervisor) sees the `Fault` in its `Down`, which is how a failure escalates up a supervision tree.
 * - It does not end when it has no child left to watch (all ended for good): like OTP's default, it stays up.
 * - Like any process, killed, out of quota, past a deadline or at kernel shutdown. The kernel does not end linked
 *   children then: they receive the supervisor's `Down` and decide themselves.
 *
 * A child that cannot be restarted (its spawn is refused: a quota, the `children` limit) counts as a child that ended
 * at once with `Fault`, so it is retried under the same intensity and backoff. Messages the supervisor does not expect
 * are dropped (caps they carry are revoked), and `Down`s of processes that are not current children are ignored.
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Option, Pull, Schedule } from "effect"
import type { Quota } from "../services/Accounts.ts"
import type { CapRef, Right } from "../services/Capability.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"

/**
 * Which children restart when one must (see the module documentation).
 *
 * @category models
 */
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one"

/**
 * When a child restarts: `permanent` always, `transient` after an abnormal exit, `temporary` never.
 *
 * @category models
 */
export type Restart = "permanent" | "transient" | "temporary"

/**
 * One cap a child starts with: a derivation of the supervisor's start cap `Sys.caps()[from]` with `rights`.
 *
 * @category models
 */
export interface CapGrant {
  readonly from: number
  readonly rights: ReadonlyArray<Right>
}

/**
 * A child spec. Defaults: `restart` `"permanent"`, `caps` `[]`, `quota` none, `shutdown` `"kill"`.
 *
 * @category models
 */
export interface ChildSpec<A = any> {
  readonly id: string
  readonly image: Process.Image<A>
  readonly args?: A
  readonly restart?: Restart | undefined
  readonly caps?: ReadonlyArray<CapGrant> | undefined
  readonly quota?: Quota | undefined
  readonly shutdown?: "kill" | Duration.Input | undefined
}

/**
 * Options of `Supervisor.make` (defaults in the module documentation).
 *
 * @category models
 */
export interface Options {
  readonly name?: string | undefined
  readonly strategy?: Strategy | undefined
  readonly intensity?: number | undefined
  readonly period?: Duration.Input | undefined
  readonly backoff?: Schedule.Schedule<unknown, Process.ExitReason> | undefined
  readonly children: ReadonlyArray<ChildSpec>
}

/**
 * The defaults, declared once (OTP's: one_for_one, at most 1 restart in 5 seconds, permanent children).
 *
 * @category defaults
 */
export const defaults = {
  name: "supervisor",
  strategy: "one_for_one",
  intensity: 1,
  period: "5 seconds",
  restart: "permanent",
  shutdown: "kill"
} as const

/**
 * Types a child spec's `args` against its image.
 *
 * @category constructors
 */
export const child = <A>(spec: ChildSpec<A>): ChildSpec<A> => spec

/**
 * Records a restart decided at `now` and says whether it is allowed: `history` holds the times of the restarts still
 * counted; those `periodMs` old or older are dropped, `now` is added, and the restart is allowed while the count is at
 * most `intensity`.
 *
 * @category restart limit
 */
export const recordRestart = (
  history: ReadonlyArray<number>,
  now: number,
  intensity: number,
  periodMs: number
): { readonly allowed: boolean; readonly history: ReadonlyArray<number> } => {
  const kept = history.filter((at) => now - at < periodMs)
  kept.push(now)
  return { allowed: kept.length <= intensity, history: kept }
}

/**
 * Does a child with this restart type restart after ending with `reason`?
 *
 * @category restart limit
 */
export const shouldRestart = (restart: Restart, reason: Process.ExitReason): boolean =>
  restart === "permanent" || (restart === "transient" && Process.isAbnormal(reason))

const millisOf = (input: Duration.Input): number => {
  if (typeof input === "number" && Number.isNaN(input)) return NaN
  const duration = Duration.fromInput(input)
  return Option.isSome(duration) ? Duration.toMillis(duration.value) : NaN
}

type Step = (now: number, input: Process.ExitReason) => Pull.Pull<[unknown, Duration.Duration], never, unknown>

interface Child {
  readonly spec: ChildSpec
  readonly restart: Restart
  running: { readonly pid: number; readonly cap: CapRef } | undefined
  pending: boolean
  /** The restart decision a pending child waits for (its timer's generation). */
  due: number
  step: Step | undefined
  lastRestartAt: number
}

interface RestartDue {
  readonly _tag: "RestartDue"
  readonly generation: number
}

const isRestartDue = (body: unknown): body is RestartDue =>
  typeof body === "object" && body !== null && (body as { _tag?: unknown })._tag === "RestartDue"

const validate = (options: Options): string | undefined => {
  const intensity = options.intensity ?? defaults.intensity
  if (!Number.isInteger(intensity) || intensity < 0) return "intensity must be an integer ≥ 0"
  const period = millisOf(options.period ?? defaults.period)
  if (!(period > 0)) return "period must be a duration > 0"
  const ids = new Set<string>()
  for (const spec of options.children) {
    if (ids.has(spec.id)) return `duplicate child id ${spec.id}`
    ids.add(spec.id)
    if (spec.shutdown !== undefined && spec.shutdown !== "kill" && !(millisOf(spec.shutdown) >= 0)) {
      return `shutdown of child ${spec.id} must be "kill" or a duration ≥ 0`
    }
  }
  return undefined
}

/**
 * Makes a supervisor image (see the module documentation for the options, their defaults and how it ends).
 *
 * @example
 * ```ts
 * const supervisor = Supervisor.make({
 *   strategy: "one_for_one",
 *   intensity: 3,
 *   period: "10 seconds",
 *   backoff: Schedule.exponential("100 millis"),
 *   children: [{ id: "worker", image: worker, restart: "permanent", caps: [{ from: 1, rights: ["read"] }] }]
 * })
 * yield* Sys.spawn(supervisor, { caps: [spawnCap, deviceCap] })
 * ```
 *
 * @category constructors
 */
export const make = (options: Options): Process.Image<void> =>
  Process.make(options.name ?? defaults.name, () =>
    Effect.gen(function* () {
      const invalid = validate(options)
      if (invalid !== undefined) return yield* Sys.exit(Process.fault(`invalid supervisor options: ${invalid}`))
      const strategy = options.strategy ?? defaults.strategy
      const intensity = options.intensity ?? defaults.intensity
      const periodMs = millisOf(options.period ?? defaults.period)
      const self = yield* Sys.self()
      const startCaps = yield* Sys.caps()
      let children: Array<Child> = options.children.map((spec) => ({
        spec,
        restart: spec.restart ?? defaults.restart,
        running: undefined,
        pending: false,
        due: 0,
        step: undefined,
        lastRestartAt: -Infinity
      }))
      let history: ReadonlyArray<number> = []
      /** Counts restart decisions; a delayed restart's timer names its decision. */
      let generation = 0

      /** Spawns one child with freshly derived caps; on a refusal, revokes the caps that did not move. */
      const start = (child: Child): Effect.Effect<void, string, Sys.Sys> =>
        Effect.gen(function* () {
          const caps: Array<CapRef> = []
          const grants = child.spec.caps ?? []
          const spawned = yield* Effect.gen(function* () {
            for (const grant of grants) {
              const source = startCaps[grant.from]
              if (source === undefined) return yield* Effect.fail(`no start cap at index ${grant.from}`)
              caps.push(yield* Sys.derive(source, grant.rights))
            }
            return yield* Sys.spawn(child.spec.image, {
              args: child.spec.args,
              caps,
              quota: child.spec.quota,
              link: true
            })
          }).pipe(
            Effect.mapError((error) => (typeof error === "string" ? error : Process.describeError(error))),
            Effect.tapError(() => Effect.forEach(caps, (cap) => Effect.ignore(Sys.revoke(cap)), { discard: true }))
          )
          child.running = { pid: spawned.pid, cap: spawned.cap }
          child.pending = false
        })

      /** Stops a running child as its `shutdown` says and waits until it has ended. */
      const stop = (child: Child): Effect.Effect<void, never, Sys.Sys> =>
        Effect.gen(function* () {
          const running = child.running
          if (running === undefined) return
          child.running = undefined
          const shutdown = child.spec.shutdown ?? defaults.shutdown
          if (shutdown !== "kill") {
            yield* Effect.ignore(Sys.term(running.cap))
            const ended = yield* Effect.timeoutOption(Effect.ignore(Sys.waitpid(running.cap)), millisOf(shutdown))
            if (Option.isSome(ended)) return
          }
          yield* Effect.ignore(Sys.kill(running.cap))
          yield* Effect.ignore(Sys.waitpid(running.cap))
        })

      /** Stops every running child, last started first. */
      const shutdownAll = Effect.suspend(() => Effect.forEach([...children].reverse(), stop, { discard: true }))

      const escalate = (error: string) =>
        Effect.gen(function* () {
          yield* shutdownAll
          return yield* Sys.exit(Process.fault(error))
        })

      /** The delay before restarting `child`, from its backoff; `undefined` when the schedule has ended. */
      const backoffDelay = (child: Child, now: number, reason: Process.ExitReason) =>
        Effect.gen(function* () {
          if (options.backoff === undefined) return 0
          let step = child.step
          if (step === undefined || now - child.lastRestartAt >= periodMs) {
            step = yield* Schedule.toStep(options.backoff)
            child.step = step
          }
          child.lastRestartAt = now
          const next = yield* step(now, reason).pipe(
            Effect.map(([, delay]) => Duration.toMillis(delay)),
            Pull.catchDone(() => Effect.succeed(undefined))
          )
          return next
        })

      /** Starts the children waiting for decision `due`, in start order; a refused start counts as a `Fault` exit. */
      const startDue = (due: number): Effect.Effect<void, never, Sys.Sys> =>
        Effect.gen(function* () {
          for (const child of [...children]) {
            if (!child.pending || child.due !== due || !children.includes(child)) continue
            const started = yield* Effect.result(start(child))
            if (started._tag === "Failure") {
              child.pending = false
              yield* decideRestart(child, Process.fault(`restart of child ${child.spec.id} failed: ${started.failure}`))
            }
          }
        })

      /** `child` ended with `reason` and must restart: checks the intensity, applies the strategy and the backoff. */
      const decideRestart = (child: Child, reason: Process.ExitReason): Effect.Effect<void, never, Sys.Sys> =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const decision = recordRestart(history, now, intensity, periodMs)
          history = decision.history
          if (!decision.allowed) {
            return yield* escalate(`intensity reached: more than ${intensity} restarts in ${periodMs} ms`)
          }
          const index = children.indexOf(child)
          const group =
            strategy === "one_for_one" ? [child] : strategy === "one_for_all" ? [...children] : children.slice(index)
          const stopped = new Set<Child>([child])
          for (const sibling of [...group].reverse()) {
            if (sibling.running !== undefined) {
              yield* stop(sibling)
              stopped.add(sibling)
            }
          }
          children = children.filter((c) => !(stopped.has(c) && c.restart === "temporary"))
          const due = ++generation
          for (const c of stopped) {
            c.pending = true
            c.due = due
          }
          const delay = yield* backoffDelay(child, now, reason)
          if (delay === undefined) return yield* escalate(`backoff schedule of child ${child.spec.id} ended`)
          if (delay <= 0) return yield* startDue(due)
          const me = yield* Sys.selfCap().pipe(Effect.orDie)
          yield* Effect.forkChild(
            Effect.sleep(delay).pipe(Effect.andThen(Sys.send(me, { _tag: "RestartDue", generation: due })))
          )
        })

      const onDown = (pid: number, reason: Process.ExitReason) =>
        Effect.gen(function* () {
          const child = children.find((c) => c.running?.pid === pid)
          if (child === undefined) return
          child.running = undefined
          if (shouldRestart(child.restart, reason)) return yield* decideRestart(child, reason)
          if (child.restart === "temporary") children = children.filter((c) => c !== child)
        })

      for (const child of children) {
        const started = yield* Effect.result(start(child))
        if (started._tag === "Failure")
          return yield* escalate(`start of child ${child.spec.id} failed: ${started.failure}`)
      }

      while (true) {
        const message = yield* Sys.recv()
        if (Process.isKernelMessage(message)) {
          if (message.body._tag === "Term") return yield* shutdownAll
          if (message.body._tag === "Down") yield* onDown(message.body.pid, message.body.reason)
          else yield* Effect.forEach(message.caps, (cap) => Effect.ignore(Sys.revoke(cap)), { discard: true })
        } else if (message.from === self && isRestartDue(message.body)) {
          yield* startDue(message.body.generation)
        } else {
          yield* Effect.forEach(message.caps, (cap) => Effect.ignore(Sys.revoke(cap)), { discard: true })
        }
      }
    })
  )
