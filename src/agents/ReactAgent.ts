/**
 * Answers one task with a tool-using ReAct loop (think → tool calls → observe → answer) that runs as a kernel process.
 *
 * `ReactAgent.make(options)` returns a `Process.Image<ReactAgent.Args>`. Spawn it with the task in its args
 * (`{ task }`) and three start caps, in this order (`Sys.caps()`):
 *
 * 1. `llm`: a device cap (right `open`) to an LLM device (`Llm.make`, `ScriptedLlm.make`, …);
 * 2. `tools`: a device cap (right `open`) to a tools device (`Tools.make`);
 * 3. `reply`: a cap (right `send`) to the process that wants the answer.
 *
 * An agent without tools (no `tools` option, or an empty one) needs no tools device: spawn it with `[llm, reply]`
 * (`[llm, tools, reply]` works too, the tools cap unused). A tool call its model makes anyway reads back a
 * `ToolError` `unknown-tool` without any device call.
 *
 * ## The loop
 *
 * - The transcript is kept in the agent's context memory (`Sys.remember`), one segment per message: the system prompt
 *   and the task are pinned, everything else may be paged out under the `mem` quota. The prompt of every model call
 *   is rebuilt from `Sys.workingSet()`: an assistant tool call is sent only with its result and a result only with
 *   its call (pairs whose other half was paged out are dropped); the paged-out markers become one system note
 *   counting the entries not shown.
 * - The tool calls of one turn run in parallel, with one `Sys.readAll` on the tools handle. Identical calls of a turn
 *   (same name and arguments, key order ignored) run once and share the result. A result is the tool's value as JSON
 *   text (a `Tools.ToolError` value too: the model reads it and corrects itself), cut at `toolResultCharsMax`
 *   characters with the marker `[truncated: N of M characters shown]`.
 * - A *step* is one model call. The step limit starts at `steps`; each turn that brings a new tool result (a call and
 *   result pair not observed before in this task: *progress*) raises it by `stepsGrowth`, never past `stepsMax`. The
 *   call that reaches the limit is a forced final answer: a request with `toolChoice: "none"` (no `tools` when the
 *   agent has none) and a last user note asking for the answer. So a task makes at most `stepsMax` model calls before
 *   reflection.
 * - Unproductive turns force the final answer too: a turn whose set of tool calls equals the previous turn's (its
 *   calls are not run again), or `staleTurnsMax` turns in a row that bring no new tool result.
 * - `reflect(answer, transcript)`, when given, judges each answer: `Accept` ends the task; `Revise { note }` has the
 *   model rewrite the answer without tools after the note; `Continue { note }` goes back to the tool loop after the
 *   note, with room for at least one tool turn and an answer (within `stepsMax`). The hook runs at most
 *   `reflectionsMax` times per task; the answer produced after the last allowed reflection is final. A hook that fails
 *   fails the task like a device error.
 * - With `stream: true`, requests ask for streaming: the LLM driver hands the text fragments to its `onDelta` option
 *   (`Llm.make({ onDelta })`), a live side channel (a replay emits none); the reply is the same.
 *
 * ## How it ends
 *
 * - It sends `{ _tag: "Result", answer, steps }` on the reply cap (`steps`: the model calls made, forced answers and
 *   revisions included) and exits `Normal`.
 * - On a failed device call (the LLM's `DeviceError`, a tool defect, a capability error) or a failing reflection hook
 *   it sends `{ _tag: "Error", message }` and exits with `Fault { error: message }`.
 * - Out of quota (`tokens`, `toolCalls`, `usd`, `mem`, `wall`), the kernel ends it with `Quota`: no reply is sent; its
 *   parent or supervisor sees the `Down`.
 *
 * ## Options and their defaults
 *
 * - `name` (default `"react-agent"`): the image name.
 * - `system` (default: a short instruction to use the tools and answer): the system prompt.
 * - `tools` (default `[]`): the tool definitions given to the model (`Tools.definitions(toolset)`).
 * - `steps` (default `8`), `stepsGrowth` (default `1`), `stepsMax` (default `20`): the step limit (see above).
 * - `staleTurnsMax` (default `2`): turns in a row without a new tool result that force the answer.
 * - `toolResultCharsMax` (default `4000`): the longest tool result the model reads.
 * - `reflect` (default: none, every answer is accepted) and `reflectionsMax` (default `2`).
 * - `stream` (default `false`): send `stream: true` in requests.
 * - `maxTokens`, `temperature`, `model` (default: not sent, the driver's defaults): passed on every request.
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
 * What a reflection hook returns.
 *
 * @category models
 */
export type Reflection = React.Reflection

/**
 * The agent's argument: the task.
 *
 * @category models
 */
export interface Args {
  readonly task: string
}

/**
 * What the agent sends on its reply cap.
 *
 * @category models
 */
export type Reply =
  | { readonly _tag: "Result"; readonly answer: string; readonly steps: number }
  | { readonly _tag: "Error"; readonly message: string }

/** The marker appended to a truncated tool result. */
export const truncationMarker = React.truncationMarker

/** The note sent with a forced final answer request. */
export const finalAnswerNote = React.finalAnswerNote

/**
 * Rebuilds a prompt from working-set segments (exposed for tests and custom agents).
 *
 * @category transcript
 */
export const promptOf = React.promptOf

/**
 * Makes the agent image.
 *
 * @example
 * ```ts
 * const agent = ReactAgent.make({ tools: Tools.definitions(toolset) })
 * const { cap } = yield* Sys.spawn(agent, {
 *   args: { task: "How many people live in Paris and Berlin together?" },
 *   caps: [llmCap, toolsCap, replyCap],
 *   quota: { tokens: 20_000, toolCalls: 10, mem: 8_000 }
 * })
 * ```
 *
 * @category constructors
 */
export const make = (options: Options = {}): Process.Image<Args> =>
  Process.make<Args>(options.name ?? "react-agent", ({ task }) =>
    Effect.gen(function* () {
      const caps = yield* Sys.caps()
      const withoutTools = (options.tools ?? []).length === 0 && caps.length === 2
      const [llmCap, toolsCap, reply] = withoutTools ? [caps[0], undefined, caps[1]] : caps
      if (llmCap === undefined || reply === undefined || (toolsCap === undefined && !withoutTools)) {
        return yield* Sys.exit(
          Process.fault("react-agent: start caps are [llm, tools, reply] ([llm, reply] for an agent without tools)")
        )
      }
      const outcome = yield* Effect.gen(function* () {
        const llm = yield* Sys.open(llmCap)
        const tools = toolsCap === undefined ? undefined : yield* Sys.open(toolsCap)
        yield* React.rememberMessage({ role: "system", content: options.system ?? React.defaults.system }, true)
        yield* React.rememberMessage({ role: "user", content: task } satisfies Message, true)
        return yield* React.run({ llm, tools }, options)
      }).pipe(Effect.result)
      if (outcome._tag === "Success") {
        yield* Sys.send(reply, { _tag: "Result", ...outcome.success } satisfies Reply)
        return
      }
      const message = Process.describeError(outcome.failure)
      yield* Sys.send(reply, { _tag: "Error", message } satisfies Reply)
      return yield* Sys.exit(Process.fault(message))
    })
  )
