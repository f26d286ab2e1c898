/**
 * The agent side of the `spawn_agent` tool: once the tools device has allowed a spawn (the manifest decodes and its
 * name is one the caller's `spawn_agent:` scopes list — see `BuiltinTools`), the calling agent starts the helper in
 * its own process, so that everything the kernel enforces on the caller binds the helper too:
 *
 * - **caps**: the helper's tools cap is the caller's own tools cap narrowed again by the helper manifest's grants
 *   (`Sys.attenuate` stacks: a call must be allowed by every layer, so the helper gets at most the tools, paths and
 *   hosts both allow, and every approval the caller's layers require); its LLM cap is derived from the caller's;
 * - **budget**: the helper is the caller's child, with its manifest's budget as a quota carved from the caller's
 *   (the kernel refuses a quota the caller cannot cover, and the helper's spend is the caller's spend);
 * - **model**: the helper runs on the caller's model; a helper manifest naming another one is refused;
 * - the helper gets no spawn cap and no `spawn_agent` tool: helpers do not start helpers in this version.
 *
 * The helper is a `ConversationAgent` asked `message` once; its answer is the tool's result
 * (`{ agent, pid, answer, steps }`), then it is stopped (`Sys.term`, killed if it has not ended 5 s later) and the
 * tool returns once it has ended. A helper that fails or ends first gives a `ToolError` the
 * model reads.
 *
 * @since 0.1.0
 */
import { Effect, Option } from "effect"
import * as ConversationAgent from "../agents/ConversationAgent.ts"
import type * as Tools from "../drivers/Tools.ts"
import type { Quota } from "../services/Accounts.ts"
import type { CapRef } from "../services/Capability.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"
import { grantsOf } from "./BuiltinTools.ts"
import * as Manifest from "./Manifest.ts"

/**
 * What `follow` needs from the calling agent.
 *
 * @category models
 */
export interface Options {
  /** The tool definitions the caller itself was given: the helper's are the ones its manifest grants among them. */
  readonly definitions: ReadonlyArray<Tools.Definition>
  /**
   * The caller's model (its manifest's, or the daemon's default): the helper runs on it. The helper's manifest is
   * text the caller's model wrote, so a `model:` in it that names another model is refused, never followed.
   */
  readonly model?: string | undefined
  /** The caller's caps to narrow from; default its start caps `[llm, tools, spawn]`. */
  readonly caps?: { readonly llm: CapRef; readonly tools: CapRef; readonly spawn: CapRef } | undefined
}

const failed = (message: string) => ({ _tag: "ToolError", tool: "spawn_agent", reason: "failed", message })

/** A manifest's budget as a kernel quota. */
export const quotaOf = (manifest: Manifest.Manifest): Quota => {
  const b = manifest.budget
  return {
    ...(b.tokens === undefined ? {} : { tokens: b.tokens }),
    ...(b.usd === undefined ? {} : { usd: b.usd }),
    ...(b.toolCalls === undefined ? {} : { toolCalls: b.toolCalls }),
    ...(b.wall === undefined ? {} : { wall: b.wall }),
    ...(b.children === undefined ? {} : { children: b.children })
  }
}

/**
 * The follow-up of `spawn_agent` for `ReactAgent` / `ConversationAgent`'s `after` option, run in the caller's
 * process. The caller's start caps must be `[llm, tools, spawn]` (or `options.caps` given).
 *
 * @category constructors
 */
export const follow =
  (options: Options) =>
  (result: unknown): Effect.Effect<unknown, never, Sys.Sys> =>
    Effect.gen(function* () {
      const go = result as { readonly _tag?: unknown; readonly manifest?: unknown; readonly message?: unknown }
      // the device's own refusal (a `ToolError` naming why) is what the model reads, unchanged
      if (go?._tag === "ToolError") return result
      if (go?._tag !== "SpawnAgent" || typeof go.manifest !== "string" || typeof go.message !== "string") {
        return failed("spawn_agent: the tools device did not allow a spawn")
      }
      const message = go.message
      const decoded = yield* Effect.exit(Manifest.decode(go.manifest))
      if (decoded._tag === "Failure") return failed("spawn_agent: the manifest is invalid")
      const manifest = decoded.value
      if (manifest.model !== undefined && manifest.model !== options.model) {
        return failed(
          `spawn_agent: a helper runs on its caller's model (${options.model ?? "the daemon's default"}); ` +
            `the manifest names ${manifest.model}`
        )
      }
      const [llm, tools, spawn] =
        options.caps === undefined ? yield* Sys.caps() : [options.caps.llm, options.caps.tools, options.caps.spawn]
      if (llm === undefined || tools === undefined || spawn === undefined) {
        return failed("spawn_agent: this agent holds no spawn cap")
      }
      const { spawn_agent: _none, ...grants } = grantsOf(manifest)
      const granted = new Set(Object.keys(grants))
      const definitions = options.definitions.filter((d) => granted.has(d.name))
      const started = yield* Effect.exit(
        Effect.gen(function* () {
          const childLlm = yield* Sys.derive(llm, ["open"])
          const childCaps =
            definitions.length === 0
              ? [childLlm]
              : [childLlm, yield* Sys.attenuate(tools, { rights: ["open"], tools: grants })]
          const image = ConversationAgent.make({
            name: manifest.name,
            tools: definitions,
            ...(manifest.systemPrompt === undefined ? {} : { system: manifest.systemPrompt }),
            ...(options.model === undefined ? {} : { model: options.model })
          })
          return yield* Sys.spawn(image, {
            caps: childCaps,
            quota: quotaOf(manifest)
          })
        })
      )
      if (started._tag === "Failure") {
        return failed(`spawn_agent: the kernel refused the helper: ${Process.describeError(started.cause)}`)
      }
      const child = started.value
      const ref = yield* Sys.monitor(child.cap)
      const corr = `spawn_agent:${child.pid}`
      const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
      const sent = yield* Effect.exit(
        Sys.send(child.cap, { _tag: "User", text: message } satisfies ConversationAgent.User, {
          caps: [replyTo],
          corr
        })
      )
      if (sent._tag === "Failure") return failed(`spawn_agent: ${manifest.name} ended before it was asked`)
      const outcome = yield* Effect.raceFirst(
        Effect.map(Sys.recvMatch<ConversationAgent.Reply>({ corr, from: child.pid }), (m) => m.body),
        Effect.map(Sys.recvMatch({ ref }), (m) => m.body)
      ).pipe(Effect.orElseSucceed(() => undefined))
      // stopped and waited for, so that its budget and its slot are the caller's again when the tool returns
      const body = outcome as
        { readonly _tag?: unknown; readonly answer?: unknown; readonly steps?: unknown } | undefined
      if (body?._tag !== "Down") {
        yield* Sys.term(child.cap).pipe(Effect.ignore)
        const down = yield* Sys.recvMatch({ ref }).pipe(
          Effect.timeoutOption("5 seconds"),
          Effect.orElseSucceed(() => Option.none())
        )
        if (Option.isNone(down)) yield* Sys.kill(child.cap).pipe(Effect.ignore)
      }
      if (body?._tag === "Result") {
        return { agent: manifest.name, pid: child.pid, answer: String(body.answer), steps: Number(body.steps) }
      }
      if (body?._tag === "Error") {
        return failed(`spawn_agent: ${manifest.name} failed: ${String((body as { message?: unknown }).message)}`)
      }
      const reason = (body as { readonly reason?: Process.ExitReason } | undefined)?.reason
      return failed(`spawn_agent: ${manifest.name} ended (${reason?._tag ?? "unknown"}) before it answered`)
    }).pipe(Effect.catch((error) => Effect.succeed(failed(`spawn_agent: ${Process.describeError(error)}`))))
