/**
 * The daemon's core: one kernel, its agents, and the handlers of the `agentd` API (`AgentdApi.Api`).
 *
 * Everything an operator does enters the kernel as data a process reads through a device, so it is journaled like
 * any driver result. The daemon's root process (init) reads operator commands from the `agentd` device one at a
 * time — spawn, run, stop, kill, suspend, resume, invoke — and answers each by writing to it. In `recover` mode (the
 * daemon's only mode) a restarted daemon replays the journal: the same commands reach init at the same points, so
 * the same agents start with the same pids and read the same model and tool results, and where the journal ends
 * they go on live. A call that was waiting for an approval when the daemon died has no result in the journal: it
 * runs again and waits again under the same approval id.
 *
 * An agent is two processes: a shell (the pid the API names, its manifest's name, its budget) and, under it, a
 * `ConversationAgent` linked to it. The shell holds the agent's caps — the LLM device and the tools device narrowed
 * by `Sys.attenuate(…, { tools: BuiltinTools.grantsOf(manifest) })` — so a tool its manifest does not list is refused
 * by the kernel, and `tool.invoke` on behalf of the agent runs in the shell with the agent's own caps, budget and
 * approvals. Init monitors every shell and restarts it as its manifest's `restart` says (at most 3 restarts in 60 s,
 * then it is left ended).
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Effect, Exit, Layer, Queue, Random, type Scope, Stream } from "effect"
import * as ConversationAgent from "../agents/ConversationAgent.ts"
import type * as Tools from "../drivers/Tools.ts"
import type { Budget, Quota } from "../services/Accounts.ts"
import type { CapRef } from "../services/Capability.ts"
import type { PolicySet } from "../services/Policy.ts"
import * as Device from "../services/Device.ts"
import type { KernelEvent } from "../services/EventLog.ts"
import * as Kernel from "../layers/Kernel.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"
import { AgentdError, Api, type AgentInfo, type BudgetInfo, type ProcessRow } from "./Api.ts"
import * as AuditLog from "./AuditLog.ts"
import { grantsOf } from "./BuiltinTools.ts"
import * as SpawnAgent from "./SpawnAgent.ts"
import * as Manifest from "./Manifest.ts"
import type { Rpc, RpcGroup } from "effect/rpc"

/**
 * Options of `make`.
 *
 * @category models
 */
export interface Options {
  /** The LLM driver (its name must be `llm`). */
  readonly llm: Device.Driver | Effect.Effect<Device.Driver, unknown, Scope.Scope>
  /** The tools driver (its name must be `tools`), and the definitions of its tools for the models. */
  readonly tools: Device.Driver | Effect.Effect<Device.Driver, unknown, Scope.Scope>
  readonly definitions: ReadonlyArray<Tools.Definition>
  /** Who answers approvals, as the `Approval` event and a denial name them (default `"operator"`). */
  readonly operator?: string | undefined
  /** The model when a manifest names none (default: the LLM driver's). */
  readonly model?: string | undefined
  /**
   * `recover` (the daemon): replay the journal, then go on live. `replay` (`agentctl replay`): only replay it; no
   * driver is touched, and a call past its end fails with `JournalError missing`.
   */
  readonly mode?: "recover" | "replay" | undefined
  /** Called with every kernel event from before init boots (synchronously, like `Kernel.subscribe`'s listeners). */
  readonly onEvent?: ((event: KernelEvent) => void) | undefined
  /** Policies every agent's calls must pass (before its manifest's own `policies:`); see `Policy`. */
  readonly policies?: PolicySet | undefined
  /** Keep every kernel event on disk (`AuditLog`), from before init boots; absent, no audit trail. */
  readonly audit?: AuditLog.Options | undefined
}

/**
 * A running daemon core: its kernel and the API's handlers.
 *
 * @category models
 */
export interface Daemon {
  readonly kernel: Kernel.KernelShape
  readonly initPid: number
  readonly handlers: Layer.Layer<Rpc.ToHandler<RpcGroup.Rpcs<typeof Api>>>
  /** The audit trail, when `audit` was given. */
  readonly audit: AuditLog.AuditLog | undefined
}

// ---- commands: host → init, through the `agentd` device ---------------------------------------------------------

type Command =
  | { readonly _tag: "Spawn"; readonly id: string; readonly manifest: string }
  | { readonly _tag: "Run"; readonly id: string; readonly pid: number; readonly message: string }
  | {
      readonly _tag: "Signal"
      readonly id: string
      readonly pid: number
      readonly signal: "stop" | "kill" | "suspend" | "resume"
    }
  | {
      readonly _tag: "Invoke"
      readonly id: string
      readonly pid: number
      readonly tool: string
      readonly arguments: unknown
    }

type Reply =
  | { readonly _tag: "Spawned"; readonly id: string; readonly pid: number; readonly name: string }
  | {
      readonly _tag: "Answer"
      readonly id: string
      readonly pid: number
      readonly answer: string
      readonly steps: number
    }
  | { readonly _tag: "Invoked"; readonly id: string; readonly result: unknown }
  | { readonly _tag: "Done"; readonly id: string; readonly pid: number }
  | {
      readonly _tag: "Refused"
      readonly id: string
      readonly error:
        | {
            readonly _tag: "ManifestError"
            readonly message: string
            readonly problems: ReadonlyArray<Manifest.Problem>
          }
        | { readonly _tag: "AgentdError"; readonly reason: AgentdError["reason"]; readonly message: string }
    }

const refused = (id: string, reason: AgentdError["reason"], message: string): Reply => ({
  _tag: "Refused",
  id,
  error: { _tag: "AgentdError", reason, message }
})

// ---- the agent: a shell over a ConversationAgent --------------------------------------------------------------

interface ShellArgs {
  readonly init: number
  readonly system: string | undefined
  readonly model: string | undefined
  readonly definitions: ReadonlyArray<Tools.Definition>
  /** The manifest grants `spawn_agent`: the conversation gets a spawn cap and runs `SpawnAgent.follow`. */
  readonly spawns: boolean
}

/** Messages between init and a shell. */
type ToShell =
  | { readonly _tag: "User"; readonly text: string }
  | { readonly _tag: "Invoke"; readonly tool: string; readonly arguments: unknown }
type FromShell =
  | { readonly _tag: "Child"; readonly pid: number }
  | { readonly _tag: "Result"; readonly answer: string; readonly steps: number }
  | { readonly _tag: "Error"; readonly message: string }
  | { readonly _tag: "Invoked"; readonly result: unknown }

const isTagged = (u: unknown): u is { readonly _tag: string } =>
  typeof u === "object" && u !== null && typeof (u as { _tag?: unknown })._tag === "string"

const shell = (name: string) =>
  Process.make<ShellArgs>(name, (args) =>
    Effect.gen(function* () {
      const [llm, tools, initCap, spawnCap] = yield* Sys.caps()
      if (llm === undefined || tools === undefined || initCap === undefined || spawnCap === undefined) {
        return yield* Sys.exit(Process.fault("agent: start caps are [llm, tools, init, spawn]"))
      }
      const toolsHandle = yield* Sys.open(yield* Sys.derive(tools, ["open"]))
      const follow = { definitions: args.definitions, model: args.model }
      const conversation = ConversationAgent.make({
        name: `${name}/conversation`,
        tools: args.definitions,
        ...(args.system === undefined ? {} : { system: args.system }),
        ...(args.model === undefined ? {} : { model: args.model }),
        ...(args.spawns ? { after: { spawn_agent: SpawnAgent.follow(follow) } } : {})
      })
      const childCaps = [yield* Sys.derive(llm, ["open"]), yield* Sys.derive(tools, ["open"])]
      if (args.spawns) childCaps.push(yield* Sys.derive(spawnCap, ["spawn"]))
      const { pid: childPid, cap: child } = yield* Sys.spawn(conversation, { caps: childCaps, link: true })
      // init holds a cap to the conversation too, so a suspend or kill reaches the whole agent
      yield* Sys.send(initCap, { _tag: "Child", pid: childPid } satisfies FromShell, {
        caps: [yield* Sys.derive(child, ["kill", "monitor"])]
      })
      const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
      while (true) {
        const message = yield* Sys.recv()
        if (Process.isKernelMessage(message)) {
          if (message.body._tag === "Term") {
            // unlinked first: the conversation's end must not end the shell with its reason
            yield* Sys.unlink(child).pipe(Effect.ignore)
            yield* Sys.kill(child).pipe(Effect.ignore)
            return
          }
          continue
        }
        const body = message.body
        if (!isTagged(body)) continue
        if (message.from === args.init && body._tag === "User" && message.corr !== undefined) {
          const user = body as Extract<ToShell, { _tag: "User" }>
          yield* Sys.send(
            child,
            { _tag: "User", text: String(user.text) },
            { caps: [yield* Sys.derive(replyTo, ["send"])], corr: message.corr }
          )
        } else if (message.from === args.init && body._tag === "Invoke" && message.corr !== undefined) {
          const invoke = body as Extract<ToShell, { _tag: "Invoke" }>
          const corr = message.corr
          yield* Effect.forkChild(
            Effect.gen(function* () {
              const result = yield* Effect.exit(
                Effect.flatMap(Sys.read(toolsHandle, { tool: invoke.tool, input: invoke.arguments ?? {} }), (value) =>
                  // an operator's spawn_agent on behalf of the agent: the helper is the agent's child, as the
                  // agent's own would be
                  invoke.tool === "spawn_agent" && args.spawns
                    ? SpawnAgent.follow({ ...follow, caps: { llm, tools, spawn: spawnCap } })(value)
                    : Effect.succeed(value)
                )
              )
              const reply: FromShell = Exit.isSuccess(result)
                ? { _tag: "Invoked", result: result.value }
                : { _tag: "Error", message: Process.describeError(Cause.squash(result.cause)) }
              yield* Sys.send(initCap, reply, { corr })
            })
          )
        } else if (message.from === childPid && (body._tag === "Result" || body._tag === "Error")) {
          const { reply: _echo, ...answer } = body as ConversationAgent.Reply
          yield* Sys.send(initCap, answer, message.corr === undefined ? undefined : { corr: message.corr })
        }
      }
    })
  )

// ---- init: the operator's commands ---------------------------------------------------------------------------

interface Agent {
  readonly pid: number
  readonly name: string
  readonly manifest: Manifest.Manifest
  readonly text: string
  readonly cap: CapRef
  child: CapRef | undefined
  /** The command id of the run it answers, if any. */
  running: string | undefined
  /** Invokes under way: command id. */
  readonly invokes: Set<string>
  readonly restarts: Array<number>
  /** Stopped or killed by the operator: not restarted. */
  stopped: boolean
}

const restartsMax = 3
const restartPeriodMs = 60_000

const quotaOf = (manifest: Manifest.Manifest): Quota => {
  const children = manifest.budget.children
  // the agent's conversation process is one child of its own
  return { ...SpawnAgent.quotaOf(manifest), ...(children === undefined ? {} : { children: children + 1 }) }
}

const initImage = (options: {
  readonly definitions: ReadonlyArray<Tools.Definition>
  readonly model: string | undefined
  readonly policies: PolicySet | undefined
}) =>
  Process.make<Kernel.BootGrant>("agentd", (grant) =>
    Effect.gen(function* () {
      /** An agent's policy chain: the daemon's, then its manifest's. */
      const policiesOf = (manifest: Manifest.Manifest): ReadonlyArray<PolicySet> => [
        ...(options.policies === undefined ? [] : [options.policies]),
        ...(manifest.policies === undefined ? [] : [manifest.policies])
      ]
      const control = yield* Sys.open(grant.devices.agentd!)
      const self = yield* Sys.self()
      const agents = new Map<number, Agent>()
      const byChild = new Map<number, Agent>()
      /** Agents that have ended: a command naming one is `not-running`, not `unknown-agent` / `not-allowed`. */
      const ended = new Set<number>()
      const gone = (id: string, pid: number, otherwise: Reply) =>
        ended.has(pid) ? refused(id, "not-running", `agent ${pid} has ended`) : otherwise
      const reply = (r: Reply) => Sys.write(control, r)

      const start = (text: string, manifest: Manifest.Manifest, restarts: Array<number>) =>
        Effect.gen(function* () {
          const granted = new Set(manifest.tools)
          const definitions = options.definitions.filter((d) => granted.has(d.name))
          const tools = yield* Sys.attenuate(grant.devices.tools!, { tools: grantsOf(manifest) })
          const llm = yield* Sys.derive(grant.devices.llm!, ["open"])
          const initCap = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const { pid, cap } = yield* Sys.spawn(shell(manifest.name), {
            args: {
              init: self,
              system: manifest.systemPrompt,
              model: manifest.model ?? options.model,
              definitions,
              spawns: granted.has("spawn_agent")
            },
            // a spawn cap: the shell starts its conversation (a child carved from the agent's budget)
            caps: [llm, tools, initCap, yield* Sys.derive(grant.spawn, ["spawn"])],
            quota: quotaOf(manifest),
            ...(policiesOf(manifest).length === 0 ? {} : { policies: policiesOf(manifest) })
          })
          yield* Sys.monitor(cap)
          const agent: Agent = {
            pid,
            name: manifest.name,
            manifest,
            text,
            cap,
            child: undefined,
            running: undefined,
            invokes: new Set(),
            restarts,
            stopped: false
          }
          agents.set(pid, agent)
          return agent
        })

      const onCommand = (command: Command): Effect.Effect<void, unknown, Sys.Sys> =>
        Effect.gen(function* () {
          switch (command._tag) {
            case "Spawn": {
              const decoded = yield* Effect.exit(Manifest.decode(command.manifest))
              if (Exit.isFailure(decoded)) {
                const error = Cause.squash(decoded.cause)
                return yield* reply(
                  error instanceof Manifest.ManifestError
                    ? {
                        _tag: "Refused",
                        id: command.id,
                        error: { _tag: "ManifestError", message: error.message, problems: error.problems }
                      }
                    : refused(command.id, "run-failed", Process.describeError(error))
                )
              }
              const started = yield* Effect.exit(start(command.manifest, decoded.value, []))
              if (Exit.isFailure(started)) {
                return yield* reply(
                  refused(command.id, "run-failed", Process.describeError(Cause.squash(started.cause)))
                )
              }
              return yield* reply({ _tag: "Spawned", id: command.id, pid: started.value.pid, name: started.value.name })
            }
            case "Run": {
              const agent = agents.get(command.pid)
              if (agent === undefined) {
                return yield* reply(
                  gone(command.id, command.pid, refused(command.id, "unknown-agent", `no agent ${command.pid}`))
                )
              }
              if (agent.running !== undefined) {
                return yield* reply(refused(command.id, "busy", `agent ${command.pid} is answering another message`))
              }
              agent.running = command.id
              const sent = yield* Effect.exit(
                Sys.send(agent.cap, { _tag: "User", text: command.message } satisfies ToShell, { corr: command.id })
              )
              if (Exit.isFailure(sent)) {
                agent.running = undefined
                return yield* reply(refused(command.id, "not-running", `agent ${command.pid} has ended`))
              }
              return
            }
            case "Invoke": {
              const agent = agents.get(command.pid)
              if (agent === undefined) {
                return yield* reply(
                  gone(command.id, command.pid, refused(command.id, "unknown-agent", `no agent ${command.pid}`))
                )
              }
              agent.invokes.add(command.id)
              const sent = yield* Effect.exit(
                Sys.send(
                  agent.cap,
                  { _tag: "Invoke", tool: command.tool, arguments: command.arguments } satisfies ToShell,
                  { corr: command.id }
                )
              )
              if (Exit.isFailure(sent)) {
                agent.invokes.delete(command.id)
                return yield* reply(refused(command.id, "not-running", `agent ${command.pid} has ended`))
              }
              return
            }
            case "Signal": {
              const agent = agents.get(command.pid)
              if (agent === undefined) {
                return yield* reply(
                  gone(
                    command.id,
                    command.pid,
                    refused(command.id, "not-allowed", `pid ${command.pid} is not an agent this daemon started`)
                  )
                )
              }
              // kill and stop end the shell (its conversation is linked to it); suspend and resume reach both
              const caps =
                agent.child === undefined || command.signal === "kill" || command.signal === "stop"
                  ? [agent.cap]
                  : [agent.child, agent.cap]
              if (command.signal === "kill" || command.signal === "stop") agent.stopped = true
              const done = yield* Effect.exit(
                Effect.forEach(caps, (cap) =>
                  command.signal === "stop"
                    ? Sys.term(cap)
                    : command.signal === "kill"
                      ? Sys.kill(cap)
                      : command.signal === "suspend"
                        ? Sys.suspend(cap)
                        : Sys.resume(cap)
                )
              )
              if (Exit.isFailure(done)) {
                return yield* reply(refused(command.id, "not-running", `agent ${command.pid} has ended`))
              }
              return yield* reply({ _tag: "Done", id: command.id, pid: command.pid })
            }
          }
        })

      const onDown = (pid: number, reason: Process.ExitReason) =>
        Effect.gen(function* () {
          const agent = agents.get(pid)
          if (agent === undefined) return
          agents.delete(pid)
          ended.add(pid)
          if (agent.child !== undefined) byChild.delete(pid)
          const why = `agent ${pid} (${agent.name}) ended: ${reason._tag}${reason._tag === "Fault" ? `: ${reason.error}` : ""}`
          if (agent.running !== undefined) yield* reply(refused(agent.running, "run-failed", why))
          for (const id of agent.invokes) yield* reply(refused(id, "run-failed", why))
          // an agent ended by the journal (a replay past its end, or a journal that no longer fits) would only end
          // the same way again
          const byJournal = reason._tag === "Fault" && reason.error.startsWith("JournalError")
          const restart =
            !byJournal &&
            (agent.manifest.restart === "permanent" ||
              (agent.manifest.restart === "transient" && Process.isAbnormal(reason)))
          if (!restart || agent.stopped) return
          const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
          const recent = agent.restarts.filter((at) => at >= now - restartPeriodMs)
          if (recent.length >= restartsMax) {
            yield* Sys.log("warn", `${agent.name}: ${restartsMax} restarts within ${restartPeriodMs} ms, left ended`)
            return
          }
          yield* Effect.exit(start(agent.text, agent.manifest, [...recent, now]))
        })

      const commands = Effect.forever(
        Effect.gen(function* () {
          // past the end of a journal that is only replayed (`agentctl replay`) no operator speaks again: init waits,
          // and the agents go on replaying what they still have
          const command = yield* Sys.read<Command>(control, { _tag: "Next" }).pipe(
            Effect.catch((error) =>
              (error as { readonly _tag?: unknown; readonly reason?: unknown })._tag === "JournalError" &&
              (error as { readonly reason?: unknown }).reason === "missing"
                ? Effect.never
                : Effect.fail(error)
            )
          )
          yield* Effect.exit(onCommand(command))
        })
      )
      const messages = Effect.forever(
        Effect.gen(function* () {
          const message = yield* Sys.recv()
          if (Process.isKernelMessage(message)) {
            if (message.body._tag === "Down") yield* onDown(message.body.pid, message.body.reason)
            return
          }
          const agent = agents.get(message.from)
          const body = message.body as FromShell
          if (agent === undefined || !isTagged(body)) return
          const corr = typeof message.corr === "string" ? message.corr : undefined
          if (body._tag === "Child") {
            agent.child = message.caps[0]
            byChild.set(agent.pid, agent)
          } else if (body._tag === "Result" && corr !== undefined && agent.running === corr) {
            agent.running = undefined
            yield* reply({
              _tag: "Answer",
              id: corr,
              pid: agent.pid,
              answer: String(body.answer),
              steps: Number(body.steps)
            })
          } else if (body._tag === "Invoked" && corr !== undefined && agent.invokes.has(corr)) {
            agent.invokes.delete(corr)
            yield* reply({ _tag: "Invoked", id: corr, result: body.result })
          } else if (body._tag === "Error" && corr !== undefined) {
            if (agent.running === corr) agent.running = undefined
            agent.invokes.delete(corr)
            yield* reply(refused(corr, "run-failed", String(body.message)))
          }
        })
      )
      yield* Effect.all([commands, messages], { concurrency: 2, discard: true })
    })
  )

// ---- the host side -----------------------------------------------------------------------------------------

const finite = (n: number): number | null => (Number.isFinite(n) ? n : null)

/** A kernel budget as the API shows it (no limit: `null`). */
export const budgetInfo = (b: Budget): BudgetInfo => ({
  limits: {
    tokens: finite(b.limits.tokens),
    toolCalls: finite(b.limits.toolCalls),
    usd: finite(b.limits.usd),
    children: finite(b.limits.children)
  },
  used: { ...b.used },
  wallEndsAt: finite(b.wallEndsAt)
})

/**
 * Builds the daemon's kernel (journaled to the `JournalStoreService` in context, in `recover` mode) and boots init.
 *
 * @category constructors
 */
export const make = (
  options: Options
): Effect.Effect<Daemon, unknown, Scope.Scope | import("../services/Journal.ts").JournalStoreService> =>
  Effect.gen(function* () {
    const operator = options.operator ?? "operator"
    const commands = yield* Queue.unbounded<Command>()
    const pending = new Map<string, Deferred.Deferred<Reply>>()
    // per daemon run: replies to commands replayed from an earlier run never match a command of this one
    const nonce = (yield* Random.nextIntBetween(0, 2 ** 31)).toString(36)
    let ids = 0
    const control = Device.make({
      name: "agentd",
      meters: [],
      open: () =>
        Effect.succeed({
          read: () => Effect.map(Queue.take(commands), (value) => ({ value })),
          write: (data) =>
            Effect.sync(() => {
              const r = data as Reply
              const waiting = typeof r?.id === "string" ? pending.get(r.id) : undefined
              if (waiting !== undefined) {
                pending.delete(r.id)
                Deferred.doneUnsafe(waiting, Effect.succeed(r))
              }
              return { value: null }
            })
        })
    })
    const context = yield* Layer.build(
      Kernel.layer({
        drivers: [options.llm, options.tools, control] as never,
        journal: options.mode ?? "recover",
        // a replay goes as far as each process's journal goes: init's read of the next command is always in flight
        // when the daemon stopped, and the agents' records after it must still replay (`Replay` decides the end)
        journalEnd: "call"
      })
    )
    const kernel = Kernel.Kernel.of(context.mapUnsafe.get(Kernel.Kernel.key) as Kernel.KernelShape)

    // the agents this daemon started (init's children), from the kernel's own events: replayed ones included
    const agents = new Map<number, { name: string; exit?: Process.ExitReason }>()
    let initPid = 0
    const onEvent = options.onEvent
    yield* kernel.subscribe((event: KernelEvent) => {
      onEvent?.(event)
      if (event._tag === "Spawn") {
        // init is the first root; the agents are its children (spawned while it replays, even before boot returns)
        if (event.parent === 0 && initPid === 0) initPid = event.pid
        else if (event.parent === initPid && initPid !== 0) agents.set(event.pid, { name: event.name })
      } else if (event._tag === "Exit") {
        const agent = agents.get(event.pid)
        if (agent !== undefined) agent.exit = event.reason
      }
    })
    // subscribed before init boots: a recovery's replayed events and the first Spawn are on disk too
    const audit =
      options.audit === undefined
        ? undefined
        : yield* AuditLog.make(options.audit).pipe(Effect.provideService(Kernel.Kernel, kernel))
    yield* kernel.boot(
      initImage({ definitions: options.definitions, model: options.model, policies: options.policies }),
      {
        grant: ["llm", "tools", "agentd"]
      }
    )

    /** Sends a command to init and waits for its reply. */
    const ask = (command: (id: string) => Command) =>
      Effect.gen(function* () {
        const id = `${nonce}:${++ids}`
        const deferred = Deferred.makeUnsafe<Reply>()
        pending.set(id, deferred)
        yield* Queue.offer(commands, command(id))
        const answer = yield* Deferred.await(deferred).pipe(Effect.ensuring(Effect.sync(() => pending.delete(id))))
        if (answer._tag === "Refused") {
          const error = answer.error
          return yield* Effect.fail(
            error._tag === "ManifestError"
              ? new Manifest.ManifestError({ message: error.message, problems: error.problems })
              : new AgentdError({ reason: error.reason, message: error.message })
          )
        }
        return answer
      })

    /** A command that never has a manifest to refuse. */
    const tell = (command: (id: string) => Command) =>
      Effect.catchTag(ask(command), "ManifestError", (e) =>
        Effect.fail(new AgentdError({ reason: "run-failed", message: e.message }))
      )
    const rows = () => Effect.map(kernel.ps(), (ps) => new Map(ps.map((p) => [p.pid, p])))
    /** The agent a pid belongs to (itself, or an ancestor that is an agent). */
    const agentOf = (pid: number, ps: Map<number, Kernel.ProcessInfo>): number | undefined => {
      for (let at: number | undefined = pid, hops = 0; at !== undefined && at !== 0 && hops < 1000; hops++) {
        if (agents.has(at)) return at
        at = ps.get(at)?.parent
      }
      return undefined
    }
    const infoOf = (pid: number, ps: Map<number, Kernel.ProcessInfo>): AgentInfo | undefined => {
      const agent = agents.get(pid)
      if (agent === undefined) return undefined
      const row = ps.get(pid)
      if (row === undefined || agent.exit !== undefined) {
        return { pid, name: agent.name, status: "exited", budget: null, ...(agent.exit ? { exit: agent.exit } : {}) }
      }
      const waiting = [...ps.values()].some((p) => p.status === "waiting-approval" && agentOf(p.pid, ps) === pid)
      return {
        pid,
        name: agent.name,
        status: row.status === "suspended" ? "suspended" : waiting ? "waiting-approval" : row.status,
        budget: budgetInfo(row.budget)
      }
    }
    const spendOf = (pid: number) =>
      Effect.map(rows(), (ps) => {
        const used = ps.get(pid)?.budget.used
        return { tokens: used?.tokens ?? 0, toolCalls: used?.toolCalls ?? 0, usd: used?.usd ?? 0 }
      })
    const run = (pid: number, message: string) =>
      Effect.gen(function* () {
        const before = yield* spendOf(pid)
        const answer = yield* ask((id) => ({ _tag: "Run", id, pid, message }))
        const after = yield* spendOf(pid)
        const a = answer as Extract<Reply, { _tag: "Answer" }>
        return {
          answer: a.answer,
          steps: a.steps,
          spend: {
            tokens: after.tokens - before.tokens,
            toolCalls: after.toolCalls - before.toolCalls,
            usd: Math.max(0, after.usd - before.usd)
          }
        }
      })
    const spawn = (manifest: string) =>
      Effect.map(
        ask((id) => ({ _tag: "Spawn", id, manifest })),
        (r) => ({
          pid: (r as Extract<Reply, { _tag: "Spawned" }>).pid,
          name: (r as Extract<Reply, { _tag: "Spawned" }>).name
        })
      )
    const signal = (pid: number, which: "stop" | "kill" | "suspend" | "resume") =>
      Effect.as(
        tell((id) => ({ _tag: "Signal", id, pid, signal: which })),
        { pid }
      )
    const ensureAgent = (pid: number) =>
      Effect.suspend(() =>
        agents.has(pid)
          ? Effect.void
          : Effect.fail(new AgentdError({ reason: "unknown-agent", message: `no agent ${pid}` }))
      )

    const handlers = Api.toLayer({
      "agent.spawn": ({ manifest }) => spawn(manifest),
      "agent.run": ({ pid, message }) => Effect.andThen(ensureAgent(pid), run(pid, message)),
      "agent.spawn_and_run": ({ manifest, message }) =>
        Effect.gen(function* () {
          const { pid } = yield* spawn(manifest)
          return { pid, ...(yield* run(pid, message)) }
        }),
      "agent.stop": ({ pid }) => Effect.andThen(ensureAgent(pid), signal(pid, "stop")),
      "agent.list": () =>
        Effect.map(rows(), (ps) => [...agents.keys()].map((pid) => infoOf(pid, ps)!).filter((a) => a !== undefined)),
      "agent.status": ({ pid }) =>
        Effect.flatMap(rows(), (ps) => {
          const info = infoOf(pid, ps)
          return info === undefined
            ? Effect.fail(new AgentdError({ reason: "unknown-agent", message: `no agent ${pid}` }))
            : Effect.succeed(info)
        }),
      "tool.list": () =>
        Effect.succeed(
          options.definitions.map((d) => ({ name: d.name, description: d.description ?? "", parameters: d.parameters }))
        ),
      "tool.invoke": ({ pid, tool, arguments: args }) =>
        Effect.gen(function* () {
          yield* ensureAgent(pid)
          const r = yield* tell((id) => ({ _tag: "Invoke", id, pid, tool, arguments: args ?? {} }))
          return { result: (r as Extract<Reply, { _tag: "Invoked" }>).result }
        }),
      "approval.list": () =>
        Effect.gen(function* () {
          const ps = yield* rows()
          const pendingApprovals = yield* kernel.approvals()
          return pendingApprovals.map((a) => {
            const owner = agentOf(a.pid, ps)
            const request = a.request as { readonly input?: unknown; readonly arguments?: unknown }
            let args: unknown = request.input ?? request.arguments ?? null
            if (typeof args === "string") {
              try {
                args = JSON.parse(args)
              } catch {
                // the model's text as it was
              }
            }
            return {
              id: a.id,
              pid: a.pid,
              agent: owner === undefined ? a.name : agents.get(owner)!.name,
              tool: a.tool,
              arguments: args,
              requestedAt: a.requestedAt
            }
          })
        }),
      "approval.respond": ({ id, approve, reason }) =>
        kernel.respond(id, { approve, by: operator, reason }).pipe(
          Effect.as({ id, approved: approve }),
          Effect.mapError((e) => new AgentdError({ reason: "unknown-approval", message: e.message }))
        ),
      "kernel.ps": () =>
        Effect.map(kernel.ps(), (ps): ReadonlyArray<ProcessRow> =>
          ps.map((p) => ({ ...p, budget: budgetInfo(p.budget) }))
        ),
      "kernel.kill": ({ pid }) => signal(pid, "kill"),
      "kernel.suspend": ({ pid }) => signal(pid, "suspend"),
      "kernel.resume": ({ pid }) => signal(pid, "resume"),
      "kernel.trace": ({ pid, since, follow, tree }) =>
        Stream.map(traceStream(kernel, { pid, since, follow, tree }), AuditLog.jsonSafe),
      "kernel.metrics": () => kernel.metricsText()
    })
    return { kernel, initPid, handlers, audit } as Daemon
  })

/**
 * The kernel's events as a stream: those the ring still holds (after `since`, of `pid` — with `tree`, of its
 * descendants too), then, with `follow`, every
 * new one as it is emitted (subscribed before the ring is read, so none falls in between; none comes twice).
 *
 * @category streams
 */
export const traceStream = (
  kernel: Kernel.KernelShape,
  options: {
    readonly pid?: number | undefined
    readonly since?: number | undefined
    readonly follow?: boolean | undefined
    /** With `pid`: its descendants' events too (a process spawned by one in the tree joins it). */
    readonly tree?: boolean | undefined
  }
): Stream.Stream<KernelEvent> =>
  Stream.callback<KernelEvent>((queue) =>
    Effect.gen(function* () {
      const tree = options.tree === true && options.pid !== undefined ? new Set([options.pid]) : undefined
      const ofPid = (e: KernelEvent) => {
        if (options.pid === undefined) return true
        if (tree === undefined) return e.pid === options.pid
        if (e._tag === "Spawn" && tree.has(e.parent)) tree.add(e.pid)
        return tree.has(e.pid)
      }
      const keep = (e: KernelEvent) => ofPid(e) && (options.since === undefined || e.seq > options.since)
      let last = 0
      let held: Array<KernelEvent> | undefined = []
      const emit = (e: KernelEvent) => {
        if (e.seq <= last) return
        last = e.seq
        if (keep(e)) Queue.offerUnsafe(queue, e)
      }
      if (options.follow === true) {
        yield* kernel.subscribe((e) => (held === undefined ? emit(e) : held.push(e)))
      }
      for (const e of yield* kernel.trace()) emit(e)
      const early = held
      held = undefined
      for (const e of early) emit(e)
      if (options.follow !== true) yield* Queue.end(queue)
    })
  )
