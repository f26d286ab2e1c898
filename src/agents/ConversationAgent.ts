/**
 * Holds a conversation with a tool-using ReAct loop over many user turns, as a kernel process.
 *
 * `ConversationAgent.make(options)` returns a `Process.Image<ConversationAgent.Args>`. Spawn it with two start caps,
 * in this order (`Sys.caps()`): `llm` and `tools`, device caps (right `open`) to an LLM device and a tools device; an
 * agent without tools (no `tools` option, or an empty one) needs only `[llm]`. Its args may carry an initial
 * `history` (earlier messages, oldest first; remembered unpinned, so they page out first).
 *
 * It then serves messages, one at a time, in arrival order:
 *
 * - `{ _tag: "User", text, images?, reply? }` with a reply cap (right `send`) attached as the message's first cap:
 *   `text` is the user's turn, `images` image URLs (`https:` or `data:`) sent with it as image parts, `reply` any
 *   value the sender wants echoed back. The turn runs the same loop as `ReactAgent` (the shared loop of
 *   `internal/react.ts`: parallel deduplicated tool calls, truncation, paging in pairs, forced answers, step limit,
 *   reflection; each user turn starts with a fresh step limit and reflection count) and is answered with exactly one
 *   `{ _tag: "Result", answer, steps, reply? }` on the reply cap, sent with the message's `corr`. A failed turn (a
 *   device error, a failing reflection hook, an invalid image URL) is answered with `{ _tag: "Error", message,
 *   reply? }`, and the agent goes on with the next message. A `User` message without a reply cap is still answered
 *   into the transcript, and the reply is dropped.
 * - `Term` from the kernel (`Sys.term`): it exits `Normal`.
 * - Anything else (a `Down`, a body of another shape) is ignored.
 *
 * The transcript is kept in context memory like `ReactAgent`'s: the system prompt is pinned; the current user message
 * is pinned while its turn runs and unpinned once answered, so under a small `mem` quota earlier turns page out first
 * and the prompt keeps tool calls and results in pairs. Out of quota, the kernel ends the agent with `Quota` (the turn
 * in progress gets no answer).
 *
 * ## Options and their defaults
 *
 * The options of `ReactAgent` (`system`, `tools` default `[]`, `steps` default `8`, `stepsGrowth` default `1`,
 * `stepsMax` default `20`, `staleTurnsMax` default `2`, `toolResultCharsMax` default `4000`, `reflect` default none,
 * `reflectionsMax` default `2`, `stream` default `false`, `maxTokens`/`temperature`/`model` default not sent), applied to
 * each user turn, and `name` (default `"conversation-agent"`).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Message } from "../drivers/Llm.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"
import * as React from "./internal/react.ts"

/**
 * The options (see the module documentation for their defaults).
 *
 * @category models
 */
export interface Options extends React.LoopOptions {
  readonly name?: string | undefined
}

/**
 * The agent's argument: an optional initial history.
 *
 * @category models
 */
export interface Args {
  readonly history?: ReadonlyArray<Message> | undefined
}

/**
 * A user turn. Attach a reply cap as the message's first cap.
 *
 * @category models
 */
export interface User {
  readonly _tag: "User"
  readonly text: string
  readonly images?: ReadonlyArray<string> | undefined
  readonly reply?: unknown
}

/**
 * What the agent answers a user turn with (`reply` echoes the turn's `reply` when it had one).
 *
 * @category models
 */
export type Reply =
  | { readonly _tag: "Result"; readonly answer: string; readonly steps: number; readonly reply?: unknown }
  | { readonly _tag: "Error"; readonly message: string; readonly reply?: unknown }

const isUser = (body: unknown): body is User =>
  typeof body === "object" &&
  body !== null &&
  (body as { _tag?: unknown })._tag === "User" &&
  typeof (body as { text?: unknown }).text === "string" &&
  ((body as { images?: unknown }).images === undefined ||
    (Array.isArray((body as { images?: unknown }).images) &&
      (body as { images: ReadonlyArray<unknown> }).images.every((url) => typeof url === "string")))

/** The user message of a turn, or the reason it cannot be sent. */
const userMessage = (user: User): Message | string => {
  const images = user.images ?? []
  const invalid = images.find((url) => !URL.canParse(url))
  if (invalid !== undefined) return `invalid image URL: ${invalid}`
  if (images.length === 0) return { role: "user", content: user.text }
  return {
    role: "user",
    content: [{ type: "text", text: user.text }, ...images.map((url) => ({ type: "image" as const, url }))]
  }
}

/**
 * Makes the agent image.
 *
 * @example
 * ```ts
 * const { cap } = yield* Sys.spawn(ConversationAgent.make({ tools: Tools.definitions(toolset) }), {
 *   caps: [llmCap, toolsCap]
 * })
 * yield* Sys.send(cap, { _tag: "User", text: "hello" }, { caps: [replyCap] })
 * const answer = yield* Sys.recv<ConversationAgent.Reply>()
 * ```
 *
 * @category constructors
 */
export const make = (options: Options = {}): Process.Image<Args> =>
  Process.make<Args>(options.name ?? "conversation-agent", (args) =>
    Effect.gen(function* () {
      const [llmCap, toolsCap] = yield* Sys.caps()
      if (llmCap === undefined || (toolsCap === undefined && (options.tools ?? []).length > 0)) {
        return yield* Sys.exit(
          Process.fault("conversation-agent: start caps are [llm, tools] ([llm] for an agent without tools)")
        )
      }
      const handles = {
        llm: yield* Sys.open(llmCap),
        tools: toolsCap === undefined ? undefined : yield* Sys.open(toolsCap)
      }
      yield* React.rememberMessage({ role: "system", content: options.system ?? React.defaults.system }, true)
      for (const message of args?.history ?? []) yield* React.rememberMessage(message)
      while (true) {
        const message = yield* Sys.recv()
        if (Process.isKernelMessage(message)) {
          if (message.body._tag === "Term") return
          continue
        }
        if (!isUser(message.body)) continue
        const user = message.body
        const echo = user.reply === undefined ? {} : { reply: user.reply }
        const prompt = userMessage(user)
        const turn = yield* Effect.gen(function* () {
          if (typeof prompt === "string") return yield* Effect.fail(prompt)
          const id = yield* React.rememberMessage(prompt, true)
          // the user message is pinned while its turn runs, answered or not
          return yield* React.run(handles, options).pipe(Effect.ensuring(Sys.pin(id, false).pipe(Effect.ignore)))
        }).pipe(Effect.result)
        const answer: Reply =
          turn._tag === "Success"
            ? { _tag: "Result", ...turn.success, ...echo }
            : { _tag: "Error", message: Process.describeError(turn.failure), ...echo }
        const replyTo = message.caps[0]
        if (replyTo === undefined) {
          yield* Sys.log("warn", "conversation-agent: a User message without a reply cap", { answer: answer._tag })
          continue
        }
        yield* Sys.send(replyTo, answer, message.corr === undefined ? undefined : { corr: message.corr }).pipe(
          Effect.catch((error) =>
            Sys.log("warn", `conversation-agent: reply not sent: ${Process.describeError(error)}`)
          )
        )
        // the reply cap moved to us with the message: drop it so caps do not pile up over a long conversation
        yield* Sys.revoke(replyTo).pipe(Effect.ignore)
      }
    })
  )
