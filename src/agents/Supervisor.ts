/**
 * Restarts child processes when they end: an Erlang/OTP supervisor that runs as a kernel process, with OTP's
 * semantics (checked case by case against `supervisor.erl` and the "Supervisor Behaviour" design principles).
 *
 * `Supervisor.make(options)` returns a `Process.Image`. Spawn it like any image, with `link: true` when its parent
 * should be tied to it (OTP's `start_link`; a parent supervisor always does); it must hold a cap with the `spawn`
 * right among its start caps (`Sys.caps()`): the kernel uses it for every child the supervisor starts. The supervisor
 * traps exits (`Sys.trapExit(true)`), starts its children in the order of `children` (the start order), each linked
 * to it, and then waits for messages.
 *
 * ## Options and their defaults
 *
 * - `name` (default `"supervisor"`): the image name, shown by `ps` and in the trace.
 * - `strategy` (default `"one_for_one"`): which children restart when one ends and must restart:
 *   - `one_for_one`: only that child;
 *   - `one_for_all`: every child: the others are stopped (reverse start order), then all restart in start order;
 *   - `rest_for_one`: that child and the children started after it (stopped in reverse order, restarted in order);
 *   - `simple_one_for_one`: a dynamic supervisor (OTP's `simple_one_for_one`, Elixir's `DynamicSupervisor`):
 *     `children` holds exactly one template, no child starts at boot, and `startChild(sup, { args })` starts one
 *     from the template (at most `maxChildren`); each restarts on its own, and they are stopped in parallel.
 *   A group restart (`one_for_all`, `rest_for_one`) also restarts `transient` children of the group that had ended
 *   normally, and drops the `temporary` ones it stopped, as OTP does.
 * - `intensity` (default `1`) and `period` (default `"5 seconds"`): a restart counts while it is at most `period`
 *   old (inclusive, as `supervisor.erl`'s `R >= Now - Period`); a restart that makes more than `intensity` counted
 *   ends the supervisor (see "How it ends"). `intensity: 0` allows no restart. The decision is `recordRestart`.
 * - `backoff` (default: none, restarts happen at once): a `Schedule` fed the child's exit reason, whose delays space
 *   the restarts of a flapping child. The k-th restart of a child in a row (each less than `period` after its
 *   previous one) waits the schedule's k-th delay; after a quiet `period` the schedule starts over. While a restart
 *   waits, the supervisor goes on handling messages. A schedule that ends (`Schedule.recurs(n)`) gives up: the
 *   supervisor ends as when its intensity is reached.
 * - `autoShutdown` (default `"never"`, OTP 24): `"any_significant"` ends the supervisor (with `Shutdown`) when any
 *   `significant` child has ended and is not restarted; `"all_significant"` when all of them have.
 * - `maxChildren` (default unbounded): how many children a `startChild` may bring the supervisor to.
 * - `images`: the images `startChild` may start by name (a message carries no code): `{ worker: workerImage }`.
 * - `children`: the child specs, in start order. Each spec:
 *   - `id`: unique among the children;
 *   - `image`, `args` (default `undefined`): what to spawn;
 *   - `type` (default `"worker"`): `"worker"` or `"supervisor"` (a nested supervisor; its default `shutdown` is
 *     `Duration.infinity`, so it has all the time it needs to stop its own children);
 *   - `restart` (default `"permanent"`): `permanent` restarts after every exit, `transient` only after an abnormal
 *     one (`Process.isAbnormal`: not `Normal`, not `Shutdown`, with or without a payload), `temporary` never;
 *   - `shutdown` (default `"5 seconds"` for a worker, `Duration.infinity` for a supervisor): `"kill"` (OTP's
 *     `brutal_kill`) kills the child at once; a duration sends it the exit signal `Shutdown` (a child that does not
 *     trap exits ends at once) and kills it when it has not ended within that time; `Duration.infinity` waits.
 *     Either way the supervisor unlinks it first and waits for it to end before it goes on;
 *   - `significant` (default `false`): see `autoShutdown`; only a `transient` or `temporary` child may be;
 *   - `startTimeout` (default: none): the child reports itself started with `Sys.started()`, and the supervisor
 *     waits for that (at most this long) before it starts the next; a child that ends or times out first has failed
 *     to start (it is killed on a timeout);
 *   - `caps` (default `[]`): the caps the child starts with, each `{ from, rights }`: a fresh derivation of the
 *     supervisor's start cap `Sys.caps()[from]` narrowed to `rights`, derived anew for every start;
 *   - `quota` (default: none, the child shares the supervisor's limits): carved afresh at every start.
 *
 * ## Talking to a supervisor
 *
 * `startChild`, `terminateChild`, `restartChild`, `deleteChild`, `whichChildren` and `countChildren` run inside a
 * process and take a cap to the supervisor (right `send`, and `monitor` to learn at once that it is gone) first: each
 * is a call (a request with a reply cap, answered through a selective receive, `Sys.recvMatch`, so no other message
 * of the caller is taken; with a monitor on the supervisor a dead one is a `noproc` error, not a wait; `timeout` 5
 * seconds by default, as `gen_server:call`). A send cap to a supervisor is the authority to manage its children: hand it only to
 * processes you trust with them.
 *
 * ## How the supervisor ends
 *
 * - `Normal`, on a `Term` message from the kernel (`Sys.term` by a holder of a `kill` cap to it): it stops its
 *   children (reverse start order), then exits.
 * - On an exit signal from a linked process that is not one of its children (its parent, above all) with any reason
 *   but `Normal`: it stops its children, then ends with that reason (a reason only the kernel may give, such as
 *   `Killed`, becomes `Shutdown { reason: "<pid> ended: Killed" }`). A parent supervisor stops a nested one this way.
 * - `Shutdown { reason: "reached_max_restart_intensity" }` when a restart would exceed the intensity (or its backoff
 *   schedule ends), so a `transient` parent does not restart it; `Shutdown { reason: "failed_to_start_child" }` when
 *   a child cannot be started at boot (the ones already started are stopped first); `Shutdown` for `autoShutdown`;
 *   `Fault { error: "invalid supervisor options: …" }` when the options are invalid.
 * - Killed (untrappable), out of quota, past a deadline or at kernel shutdown: its children, linked to it, get its
 *   exit signal and end with it (nested supervisors stop their own children first), so the whole subtree ends.
 *
 * A child that cannot be restarted (its spawn is refused: a quota, the `children` limit) counts as a child that ended
 * at once with `Fault`, so it is retried under the same intensity and backoff. Messages the supervisor does not
 * expect are dropped (caps they carry are revoked).
 *
 * @since 0.1.0
 */
import { Clock, Duration, Effect, Option, Pull, Result, Schedule, Schema } from "effect"
import type { Quota } from "../services/Accounts.ts"
import type { CapRef, Right } from "../services/Capability.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"

/**
 * Which children restart when one must (see the module documentation).
 *
 * @category models
 */
export type Strategy = "one_for_one" | "one_for_all" | "rest_for_one" | "simple_one_for_one"

/**
 * When a child restarts: `permanent` always, `transient` after an abnormal exit, `temporary` never.
 *
 * @category models
 */
export type Restart = "permanent" | "transient" | "temporary"

/**
 * What a child is: a worker, or a nested supervisor.
 *
 * @category models
 */
export type ChildType = "worker" | "supervisor"

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
 * A child spec (defaults in the module documentation).
 *
 * @category models
 */
export interface ChildSpec<A = any> {
  readonly id: string
  readonly image: Process.Image<A>
  readonly args?: A
  readonly type?: ChildType | undefined
  readonly restart?: Restart | undefined
  readonly caps?: ReadonlyArray<CapGrant> | undefined
  readonly quota?: Quota | undefined
  readonly shutdown?: "kill" | Duration.Input | undefined
  readonly significant?: boolean | undefined
  readonly startTimeout?: Duration.Input | undefined
}

/**
 * A child spec sent to a supervisor (`startChild`): like `ChildSpec`, with the image named in the supervisor's
 * `images` (a message carries no code). For a `simple_one_for_one` supervisor, only `{ args }`.
 *
 * @category models
 */
export interface DynamicSpec {
  readonly id?: string | undefined
  readonly image?: string | undefined
  readonly args?: unknown
  readonly type?: ChildType | undefined
  readonly restart?: Restart | undefined
  readonly caps?: ReadonlyArray<CapGrant> | undefined
  readonly quota?: Quota | undefined
  readonly shutdown?: "kill" | Duration.Input | undefined
  readonly significant?: boolean | undefined
  readonly startTimeout?: Duration.Input | undefined
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
  readonly autoShutdown?: "never" | "any_significant" | "all_significant" | undefined
  readonly maxChildren?: number | undefined
  readonly images?: Readonly<Record<string, Process.Image<any>>> | undefined
  readonly children: ReadonlyArray<ChildSpec>
}

/**
 * The defaults, declared once (OTP's: one_for_one, at most 1 restart in 5 seconds, permanent workers with a 5 second
 * shutdown, supervisors with an infinite one).
 *
 * @category defaults
 */
export const defaults = {
  name: "supervisor",
  strategy: "one_for_one",
  intensity: 1,
  period: "5 seconds",
  restart: "permanent",
  type: "worker",
  workerShutdown: "5 seconds",
  supervisorShutdown: Duration.infinity,
  autoShutdown: "never",
  callTimeout: "5 seconds"
} as const

/**
 * Types a child spec's `args` against its image.
 *
 * @category constructors
 */
export const child = <A>(spec: ChildSpec<A>): ChildSpec<A> => spec

/**
 * A call to a supervisor failed: `not_found` (no child with that id), `running` (the child runs: stop it first),
 * `already_present` (the id is taken), `max_children`, `start_failed` (the child could not be started), `invalid`
 * (a malformed spec or request), `unsupported` (not for this strategy), `noproc` (the supervisor is gone), `timeout`,
 * `bad_reply` (the process called answered with something that is not a supervisor's reply: it is not one).
 *
 * @category errors
 */
export class SupervisorError extends Schema.TaggedError<SupervisorError>()("SupervisorError", {
  reason: Schema.Literals([
    "not_found",
    "running",
    "already_present",
    "max_children",
    "start_failed",
    "invalid",
    "unsupported",
    "noproc",
    "timeout",
    "bad_reply"
  ]),
  message: Schema.String
}) {}

/**
 * A row of `whichChildren`: `pid` is a number only while the child runs.
 *
 * @category models
 */
export interface ChildInfo {
  readonly id: string
  readonly pid: number | undefined
  readonly type: ChildType
}

/**
 * What `countChildren` returns: child specs, running children, and how many of the specs are supervisors and
 * workers (OTP's `specs`, `active`, `supervisors`, `workers`).
 *
 * @category models
 */
export interface ChildCounts {
  readonly specs: number
  readonly active: number
  readonly supervisors: number
  readonly workers: number
}

/**
 * Records a restart decided at `now` and says whether it is allowed: `history` holds the times of the restarts still
 * counted; those more than `periodMs` old are dropped (one exactly `periodMs` old still counts, as in
 * `supervisor.erl`), `now` is added, and the restart is allowed while the count is at most `intensity`.
 *
 * @category restart limit
 */
export const recordRestart = (
  history: ReadonlyArray<number>,
  now: number,
  intensity: number,
  periodMs: number
): { readonly allowed: boolean; readonly history: ReadonlyArray<number> } => {
  const kept = history.filter((at) => at >= now - periodMs)
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
  readonly type: ChildType
  running: { readonly pid: number; readonly cap: CapRef } | undefined
  /** Ended for good (a `transient` child after a normal exit, or stopped by `terminateChild`): kept, not running. */
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

type CallOp = "startChild" | "terminateChild" | "restartChild" | "deleteChild" | "whichChildren" | "countChildren"

interface CallRequest {
  readonly _tag: "SupervisorCall"
  readonly op: CallOp
  readonly id?: string | undefined
  readonly spec?: DynamicSpec | undefined
}

const isCall = (body: unknown): body is CallRequest =>
  typeof body === "object" && body !== null && (body as { _tag?: unknown })._tag === "SupervisorCall"

type Reply =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly reason: SupervisorError["reason"]; readonly message: string }

const restarts: ReadonlyArray<string> = ["permanent", "transient", "temporary"]
const types: ReadonlyArray<string> = ["worker", "supervisor"]

/** What is wrong with a spec, or `undefined`. */
const invalidSpec = (spec: ChildSpec): string | undefined => {
  if (typeof spec.id !== "string" || spec.id.length === 0) return "a child id must be a non-empty string"
  if (typeof spec.image !== "object" || spec.image === null || typeof spec.image.main !== "function") {
    return `child ${spec.id} has no image`
  }
  if (spec.restart !== undefined && !restarts.includes(spec.restart)) return `restart of child ${spec.id} is invalid`
  if (spec.type !== undefined && !types.includes(spec.type)) return `type of child ${spec.id} is invalid`
  if (spec.shutdown !== undefined && spec.shutdown !== "kill" && !(millisOf(spec.shutdown) >= 0)) {
    return `shutdown of child ${spec.id} must be "kill" or a duration ≥ 0`
  }
  if (spec.startTimeout !== undefined && !(millisOf(spec.startTimeout) > 0)) {
    return `startTimeout of child ${spec.id} must be a duration > 0`
  }
  if (spec.significant === true && (spec.restart ?? defaults.restart) === "permanent") {
    return `child ${spec.id} is significant and permanent: only transient or temporary children may be significant`
  }
  return undefined
}

const validate = (options: Options): string | undefined => {
  const intensity = options.intensity ?? defaults.intensity
  if (!Number.isInteger(intensity) || intensity < 0) return "intensity must be an integer ≥ 0"
  const period = millisOf(options.period ?? defaults.period)
  if (!(period > 0)) return "period must be a duration > 0"
  const strategy = options.strategy ?? defaults.strategy
  if (!["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"].includes(strategy)) {
    return `unknown strategy ${String(strategy)}`
  }
  if (strategy === "simple_one_for_one" && options.children.length !== 1) {
    return "simple_one_for_one takes exactly one child template"
  }
  const max = options.maxChildren
  if (max !== undefined && !(Number.isInteger(max) && max >= 0) && max !== Infinity) {
    return "maxChildren must be an integer ≥ 0"
  }
  const auto = options.autoShutdown ?? defaults.autoShutdown
  if (!["never", "any_significant", "all_significant"].includes(auto)) return "autoShutdown is invalid"
  const ids = new Set<string>()
  for (const spec of options.children) {
    const invalid = invalidSpec(spec)
    if (invalid !== undefined) return invalid
    if (ids.has(spec.id)) return `duplicate child id ${spec.id}`
    ids.add(spec.id)
  }
  return undefined
}

/** The reason a supervisor ends with after an exit signal `reason`: itself when a process may state it. */
const passOn = (pid: number, reason: Process.ExitReason): Process.StatedReason =>
  reason._tag === "Normal" || reason._tag === "Shutdown" || reason._tag === "Fault"
    ? reason
    : Process.shutdownWith(`${pid} ended: ${reason._tag}`)

/** A dynamic spec made a child spec (its image looked up by name), or what is wrong with it. */
const specOf = (
  options: Options,
  template: ChildSpec | undefined,
  input: DynamicSpec | undefined,
  nextId: () => string
): ChildSpec | string => {
  if (typeof input !== "object" || input === null) return "a child spec must be an object"
  if (template !== undefined) return { ...template, id: nextId(), args: input.args }
  const imageName = input.image
  const image = typeof imageName === "string" && options.images !== undefined ? options.images[imageName] : undefined
  if (image === undefined || !Object.hasOwn(options.images ?? {}, imageName as string)) {
    return `no image named ${String(imageName)} in the supervisor's images`
  }
  const spec: ChildSpec = {
    id: input.id as string,
    image,
    args: input.args,
    type: input.type,
    restart: input.restart,
    caps: input.caps,
    quota: input.quota,
    shutdown: input.shutdown,
    significant: input.significant,
    startTimeout: input.startTimeout
  }
  return invalidSpec(spec) ?? spec
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
 * yield* Sys.spawn(supervisor, { caps: [spawnCap, deviceCap], link: true })
 * ```
 *
 * @category constructors
 */
export const make = (options: Options): Process.Image<void> =>
  Process.make(options.name ?? defaults.name, () =>
    Effect.gen(function* () {
      const invalid = validate(options)
      if (invalid !== undefined) return yield* Sys.exit(Process.fault(`invalid supervisor options: ${invalid}`))
      yield* Sys.trapExit(true)
      const strategy = options.strategy ?? defaults.strategy
      const simple = strategy === "simple_one_for_one"
      const template = simple ? options.children[0] : undefined
      const intensity = options.intensity ?? defaults.intensity
      const periodMs = millisOf(options.period ?? defaults.period)
      const autoShutdown = options.autoShutdown ?? defaults.autoShutdown
      const maxChildren = options.maxChildren ?? Infinity
      const self = yield* Sys.self()
      const startCaps = yield* Sys.caps()
      const childOf = (spec: ChildSpec): Child => ({
        spec,
        restart: spec.restart ?? defaults.restart,
        type: spec.type ?? defaults.type,
        running: undefined,
        pending: false,
        due: 0,
        step: undefined,
        lastRestartAt: -Infinity
      })
      let children: Array<Child> = simple ? [] : options.children.map(childOf)
      let history: ReadonlyArray<number> = []
      /** Counts restart decisions; a delayed restart's timer names its decision. */
      let generation = 0
      let dynamicIds = 0
      /** Messages taken while waiting for a child's `Started`, handled afterwards in order. */
      const deferred: Array<Process.Message> = []
      /** Pids of stopped children whose `Exit` was already queued when they were unlinked: dropped when it comes. */
      const stale = new Set<number>()

      const shutdownOf = (child: Child): "kill" | number => {
        const shutdown =
          child.spec.shutdown ?? (child.type === "supervisor" ? defaults.supervisorShutdown : defaults.workerShutdown)
        return shutdown === "kill" ? "kill" : millisOf(shutdown)
      }

      /**
       * Waits for `Started` from `child` with a selective receive of kernel messages only, so that messages of other
       * processes stay in the mailbox, under its bound (their senders park); a failure says why. A child that ended
       * first is marked not running (its `Exit` was taken here). Of the kernel messages taken meanwhile, those the
       * main loop would only drop are dropped here; the rest (other children's exits, `Term`, abnormal exits of
       * linked processes) are kept for later.
       */
      const awaitStarted = (child: Child, timeoutMs: number): Effect.Effect<string | undefined, never, Sys.Sys> =>
        Effect.gen(function* () {
          const pid = child.running!.pid
          const until = (yield* Clock.currentTimeMillis) + timeoutMs
          while (true) {
            const left = until - (yield* Clock.currentTimeMillis)
            if (left <= 0) return "start timeout"
            const next = yield* Effect.timeoutOption(Effect.orDie(Sys.recvMatch({ from: 0 })), left)
            if (Option.isNone(next)) return "start timeout"
            const message = next.value
            if (Process.isKernelMessage(message)) {
              const body = message.body
              if (body._tag === "Started" && body.pid === pid) return undefined
              if (body._tag === "Exit" && body.pid === pid) {
                child.running = undefined
                return `ended before it started: ${Process.describeError(body.reason)}`
              }
              if (body._tag === "Started") continue
              if (body._tag === "Down") {
                yield* Effect.forEach(message.caps, (cap) => Effect.ignore(Sys.revoke(cap)), { discard: true })
                continue
              }
              if (
                body._tag === "Exit" &&
                body.reason._tag === "Normal" &&
                !stale.has(body.pid) &&
                !children.some((c) => c.running?.pid === body.pid)
              ) {
                continue
              }
            }
            deferred.push(message)
          }
        })

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
          if (child.spec.startTimeout !== undefined) {
            const failed = yield* awaitStarted(child, millisOf(child.spec.startTimeout))
            if (failed !== undefined) {
              yield* stop(child)
              return yield* Effect.fail(failed)
            }
          }
        })

      /**
       * Stops a running child as its `shutdown` says (OTP's order: unlink, then the exit signal `Shutdown` or a kill)
       * and waits until it has ended.
       */
      const stop = (child: Child): Effect.Effect<void, never, Sys.Sys> =>
        Effect.gen(function* () {
          const running = child.running
          if (running === undefined) return
          child.running = undefined
          // no link left: the child's end comes back as its exit (waitpid), not as an Exit message; one already
          // queued (it ended before the unlink) is dropped when it comes
          const wasLinked = yield* Effect.orElseSucceed(Sys.unlink(running.cap), () => false)
          if (!wasLinked) stale.add(running.pid)
          const shutdown = shutdownOf(child)
          if (shutdown !== "kill") {
            yield* Effect.ignore(Sys.exitSignal(running.cap, Process.shutdown))
            if (shutdown === Infinity) {
              yield* Effect.ignore(Sys.waitpid(running.cap))
              return
            }
            const ended = yield* Effect.timeoutOption(Effect.ignore(Sys.waitpid(running.cap)), shutdown)
            if (Option.isSome(ended)) return
          }
          yield* Effect.ignore(Sys.kill(running.cap))
          yield* Effect.ignore(Sys.waitpid(running.cap))
        })

      /** Stops every running child: last started first; a dynamic supervisor's all at once. */
      const stopAll = Effect.suspend(() =>
        simple
          ? Effect.forEach(children, stop, { discard: true, concurrency: "unbounded" })
          : Effect.forEach([...children].reverse(), stop, { discard: true })
      )

      const end = (reason: Process.StatedReason) =>
        Effect.gen(function* () {
          yield* stopAll
          return yield* Sys.exit(reason)
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
          return yield* step(now, reason).pipe(
            Effect.map(([, delay]) => Duration.toMillis(delay)),
            Pull.catchDone(() => Effect.succeed(undefined))
          )
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
          if (!decision.allowed) return yield* end(Process.shutdownWith("reached_max_restart_intensity"))
          const index = children.indexOf(child)
          const group =
            strategy === "one_for_all" ? [...children] : strategy === "rest_for_one" ? children.slice(index) : [child]
          // the group stops in reverse start order; a temporary child stopped this way is dropped, a transient one
          // that had ended normally restarts with the others
          const restarting = new Set<Child>([child])
          for (const sibling of [...group].reverse()) {
            if (sibling === child) continue
            if (sibling.running !== undefined) {
              yield* stop(sibling)
              if (sibling.restart === "temporary") children = children.filter((c) => c !== sibling)
              else restarting.add(sibling)
            } else if (sibling.restart === "transient" || sibling.pending) {
              restarting.add(sibling)
            }
          }
          const due = ++generation
          for (const c of restarting) {
            c.pending = true
            c.due = due
          }
          const delay = yield* backoffDelay(child, now, reason)
          if (delay === undefined) return yield* end(Process.shutdownWith("reached_max_restart_intensity"))
          if (delay <= 0) return yield* startDue(due)
          const me = yield* Sys.selfCap().pipe(Effect.orDie)
          yield* Effect.forkChild(
            Effect.sleep(delay).pipe(Effect.andThen(Sys.send(me, { _tag: "RestartDue", generation: due })))
          )
        })

      /** After a significant child ended for good: does `autoShutdown` end the supervisor? */
      const autoShutdownDue = (): boolean => {
        if (autoShutdown === "any_significant") return true
        if (autoShutdown === "all_significant") {
          return !children.some((c) => c.spec.significant === true && (c.running !== undefined || c.pending))
        }
        return false
      }

      const onChildExit = (child: Child, reason: Process.ExitReason) =>
        Effect.gen(function* () {
          child.running = undefined
          if (shouldRestart(child.restart, reason)) return yield* decideRestart(child, reason)
          // ended for good: a temporary child is dropped (a dynamic one too); a transient one stays, not running
          if (child.restart === "temporary" || simple) children = children.filter((c) => c !== child)
          if (child.spec.significant === true && autoShutdownDue()) return yield* end(Process.shutdown)
        })

      // ---- calls ---------------------------------------------------------------------------------------------

      const find = (id: unknown) => (typeof id === "string" ? children.find((c) => c.spec.id === id) : undefined)
      const fail = (reason: SupervisorError["reason"], message: string): Reply => ({ ok: false, reason, message })
      const ok = (value: unknown): Reply => ({ ok: true, value })

      const handleCall = (request: CallRequest): Effect.Effect<Reply, never, Sys.Sys> =>
        Effect.gen(function* () {
          switch (request.op) {
            case "startChild": {
              if (children.length >= maxChildren) return fail("max_children", `at most ${maxChildren} children`)
              const spec = specOf(options, template, request.spec, () => `${template!.id}#${++dynamicIds}`)
              if (typeof spec === "string") return fail("invalid", spec)
              if (find(spec.id) !== undefined) return fail("already_present", `a child ${spec.id} exists`)
              const child = childOf(spec)
              children.push(child)
              const started = yield* Effect.result(start(child))
              if (started._tag === "Failure") {
                children = children.filter((c) => c !== child)
                return fail("start_failed", `start of child ${spec.id} failed: ${started.failure}`)
              }
              return ok({ id: spec.id, pid: child.running!.pid })
            }
            case "terminateChild": {
              const child = find(request.id)
              if (child === undefined) return fail("not_found", `no child ${String(request.id)}`)
              yield* stop(child)
              child.pending = false
              child.due = 0
              if (simple || child.restart === "temporary") children = children.filter((c) => c !== child)
              return ok(undefined)
            }
            case "restartChild": {
              if (simple) return fail("unsupported", "restartChild is not for simple_one_for_one")
              const child = find(request.id)
              if (child === undefined) return fail("not_found", `no child ${String(request.id)}`)
              if (child.running !== undefined) return fail("running", `child ${child.spec.id} is running`)
              const started = yield* Effect.result(start(child))
              if (started._tag === "Failure") return fail("start_failed", started.failure)
              return ok({ id: child.spec.id, pid: child.running!.pid })
            }
            case "deleteChild": {
              if (simple) return fail("unsupported", "deleteChild is not for simple_one_for_one")
              const child = find(request.id)
              if (child === undefined) return fail("not_found", `no child ${String(request.id)}`)
              if (child.running !== undefined) return fail("running", `child ${child.spec.id} is running`)
              children = children.filter((c) => c !== child)
              return ok(undefined)
            }
            case "whichChildren":
              return ok(children.map((c): ChildInfo => ({ id: c.spec.id, pid: c.running?.pid, type: c.type })))
            case "countChildren": {
              const supervisors = children.filter((c) => c.type === "supervisor").length
              return ok({
                specs: children.length,
                active: children.filter((c) => c.running !== undefined).length,
                supervisors,
                workers: children.length - supervisors
              } satisfies ChildCounts)
            }
            default:
              return fail("invalid", `unknown call ${String((request as { op?: unknown }).op)}`)
          }
        })

      // ---- boot ----------------------------------------------------------------------------------------------

      for (const child of [...children]) {
        const started = yield* Effect.result(start(child))
        if (started._tag === "Failure") {
          yield* Sys.log("error", `start of child ${child.spec.id} failed: ${started.failure}`)
          return yield* end(Process.shutdownWith("failed_to_start_child"))
        }
      }

      while (true) {
        const message = deferred.length > 0 ? deferred.shift()! : yield* Sys.recv()
        if (Process.isKernelMessage(message)) {
          const body = message.body
          if (body._tag === "Term") return yield* end(Process.normal)
          if (body._tag === "Exit") {
            const child = children.find((c) => c.running?.pid === body.pid)
            if (child !== undefined) yield* onChildExit(child, body.reason)
            else if (stale.delete(body.pid)) continue
            else if (body.reason._tag !== "Normal") return yield* end(passOn(body.pid, body.reason))
          } else {
            yield* Effect.forEach(message.caps, (cap) => Effect.ignore(Sys.revoke(cap)), { discard: true })
          }
        } else if (message.from === self && isRestartDue(message.body)) {
          yield* startDue(message.body.generation)
        } else if (isCall(message.body) && message.caps.length === 1) {
          const replyTo = message.caps[0]!
          const reply = yield* handleCall(message.body)
          // never parked by a caller whose mailbox is full: the reply is dropped and the caller times out
          yield* Effect.ignore(Sys.send(replyTo, reply, { corr: message.corr, nosuspend: true }))
          yield* Effect.ignore(Sys.revoke(replyTo))
        } else {
          yield* Effect.forEach(message.caps, (cap) => Effect.ignore(Sys.revoke(cap)), { discard: true })
        }
      }
    })
  )

// ---- the calls, run inside a process -----------------------------------------------------------------------------

/** Options of a call to a supervisor. */
export interface CallOptions {
  /** How long to wait for the reply (default 5 seconds, as `gen_server:call`). */
  readonly timeout?: Duration.Input | undefined
}

let calls = 0

const call = <A>(
  supervisor: CapRef,
  request: Omit<CallRequest, "_tag">,
  value: Schema.Decoder<A>,
  options?: CallOptions
): Effect.Effect<A, SupervisorError, Sys.Sys> =>
  Effect.gen(function* () {
    // a monitor (with the cap's `monitor` right) makes a dead supervisor an answer; without it, the timeout is
    const monitored = yield* Effect.option(Sys.monitor(supervisor))
    const ref = Option.getOrUndefined(monitored)
    const corr = `supervisor-call:${ref ?? (yield* Sys.self())}:${++calls}`
    const replyTo = yield* Effect.orDie(Effect.flatMap(Sys.selfCap(), (me) => Sys.derive(me, ["send"])))
    yield* Sys.send(supervisor, { _tag: "SupervisorCall", ...request }, { caps: [replyTo], corr }).pipe(
      Effect.mapError((error) => new SupervisorError({ reason: "noproc", message: error.message }))
    )
    const timeout = millisOf(options?.timeout ?? defaults.callTimeout)
    // only the supervisor's own reply (the kernel matches the cap's process as the sender) or its Down
    const answer = yield* Effect.timeoutOption(
      Effect.orDie(Sys.recvMatch<unknown>({ corr, ref, sender: supervisor })),
      timeout
    )
    if (ref !== undefined) yield* Sys.demonitor(ref).pipe(Effect.ignore)
    if (Option.isNone(answer)) {
      return yield* new SupervisorError({ reason: "timeout", message: `no reply within ${timeout} ms` })
    }
    const message = answer.value
    if (Process.isKernelMessage(message)) {
      return yield* new SupervisorError({ reason: "noproc", message: "the supervisor is not running" })
    }
    const reply = decodeReply(message.body)
    if (Result.isFailure(reply)) {
      return yield* new SupervisorError({ reason: "bad_reply", message: `not a supervisor's reply: ${reply.failure}` })
    }
    if (!reply.success.ok) {
      return yield* new SupervisorError({ reason: reply.success.reason, message: reply.success.message })
    }
    const decoded = Schema.decodeUnknownResult(value)(reply.success.value)
    if (Result.isFailure(decoded)) {
      return yield* new SupervisorError({
        reason: "bad_reply",
        message: `not a supervisor's reply to ${request.op}: ${decoded.failure.message}`
      })
    }
    return decoded.success
  })

/** A reply as the caller reads it: whatever the callee sent, decoded before anything of it is returned. */
const ReplySchema = Schema.Union([
  Schema.Struct({ ok: Schema.Literal(true), value: Schema.Unknown }),
  Schema.Struct({ ok: Schema.Literal(false), reason: SupervisorError.fields.reason, message: Schema.String })
])

const decodeReply = (body: unknown): Result.Result<Schema.Schema.Type<typeof ReplySchema>, string> =>
  Result.mapError(Schema.decodeUnknownResult(ReplySchema)(body), (error) => error.message)

const Started = Schema.Struct({ id: Schema.String, pid: Schema.Number })
const ChildInfoSchema = Schema.Array(
  Schema.Struct({
    id: Schema.String,
    pid: Schema.UndefinedOr(Schema.Number),
    type: Schema.Literals(["worker", "supervisor"])
  })
)
const ChildCountsSchema = Schema.Struct({
  specs: Schema.Number,
  active: Schema.Number,
  supervisors: Schema.Number,
  workers: Schema.Number
})

/**
 * Starts a child (OTP's `start_child`): for a `simple_one_for_one` supervisor `{ args }` from its template, else a
 * spec whose `image` names one of the supervisor's `images`. Returns the child's id and pid.
 *
 * @category calls
 */
export const startChild = (
  supervisor: CapRef,
  spec: DynamicSpec,
  options?: CallOptions
): Effect.Effect<{ readonly id: string; readonly pid: number }, SupervisorError, Sys.Sys> =>
  call(supervisor, { op: "startChild", spec }, Started, options)

/**
 * Stops a child (as its `shutdown` says); its spec stays (a dynamic or temporary child's goes).
 *
 * @category calls
 */
export const terminateChild = (
  supervisor: CapRef,
  id: string,
  options?: CallOptions
): Effect.Effect<void, SupervisorError, Sys.Sys> => call(supervisor, { op: "terminateChild", id }, Schema.Void, options)

/**
 * Starts a stopped child again from its spec (`running` if it runs).
 *
 * @category calls
 */
export const restartChild = (
  supervisor: CapRef,
  id: string,
  options?: CallOptions
): Effect.Effect<{ readonly id: string; readonly pid: number }, SupervisorError, Sys.Sys> =>
  call(supervisor, { op: "restartChild", id }, Started, options)

/**
 * Removes a stopped child's spec (`running` if it runs).
 *
 * @category calls
 */
export const deleteChild = (
  supervisor: CapRef,
  id: string,
  options?: CallOptions
): Effect.Effect<void, SupervisorError, Sys.Sys> => call(supervisor, { op: "deleteChild", id }, Schema.Void, options)

/**
 * The children, in start order: `{ id, pid, type }`, `pid` a number only while the child runs.
 *
 * @category calls
 */
export const whichChildren = (
  supervisor: CapRef,
  options?: CallOptions
): Effect.Effect<ReadonlyArray<ChildInfo>, SupervisorError, Sys.Sys> =>
  call(supervisor, { op: "whichChildren" }, ChildInfoSchema, options)

/**
 * Counts the children: `{ specs, active, supervisors, workers }`.
 *
 * @category calls
 */
export const countChildren = (
  supervisor: CapRef,
  options?: CallOptions
): Effect.Effect<ChildCounts, SupervisorError, Sys.Sys> =>
  call(supervisor, { op: "countChildren" }, ChildCountsSchema, options)
