/**
 * Writes and improves system prompts with the model, one call each on a metered LLM handle.
 *
 * - `forge(llm, brief)` asks the model to write a system prompt for an agent described by `brief`.
 * - `refine(llm, prompt, input)` asks it to improve `prompt` given feedback (a string, or `{ feedback?, lessons? }`,
 *   lessons sent as a bullet list).
 *
 * Both call `Sys.read` on `llm`, a handle cap from `Sys.open` on an LLM device, so the tokens are charged to the
 * calling process and its ancestors. The reply is the new prompt: trimmed, and unwrapped when the whole reply is one
 * Markdown code fence. An empty reply makes `forge` fail with `PromptError` and makes `refine` return `prompt`
 * unchanged (an empty rewrite is no improvement). A failed device call fails both (`Sys.DeviceCallError`).
 *
 * Defaults: `system`: `defaults.forgeSystem` / `defaults.refineSystem`; `maxTokens`, `temperature`, `model`: not
 * sent (the driver's defaults).
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import type { LlmReply } from "../drivers/Llm.ts"
import type { CapRef } from "../services/Capability.ts"
import * as Sys from "../services/Sys.ts"

/**
 * Options of `forge` and `refine`.
 *
 * @category models
 */
export interface Options {
  readonly system?: string | undefined
  readonly maxTokens?: number | undefined
  readonly temperature?: number | undefined
  readonly model?: string | undefined
}

/**
 * What `refine` works from: free-form feedback, and/or lessons learned.
 *
 * @category models
 */
export type RefineInput =
  string | { readonly feedback?: string | undefined; readonly lessons?: ReadonlyArray<string> | undefined }

/**
 * `forge` got an empty reply.
 *
 * @category errors
 */
export class PromptError extends Schema.TaggedError<PromptError>()("PromptError", {
  call: Schema.String,
  reason: Schema.Literals(["empty-reply"])
}) {}

/** The defaults of `Options`. */
export const defaults = {
  forgeSystem:
    "You write system prompts for LLM agents. Given a brief, write one clear, concise system prompt that states " +
    "the agent's role, how it should work and what a good answer looks like. Answer with the prompt only.",
  refineSystem:
    "You improve system prompts for LLM agents. Given a prompt and feedback or lessons from earlier runs, rewrite " +
    "the prompt so the agent does better, keeping what works. Answer with the new prompt only."
} as const

/** The reply text trimmed, unwrapped when it is one Markdown code fence. */
const unwrap = (text: string): string => {
  const trimmed = text.trim()
  const fenced = /^```[^\n]*\n([\s\S]*?)\n?```$/.exec(trimmed)
  return (fenced?.[1] ?? trimmed).trim()
}

const ask = (llm: CapRef, system: string, user: string, options: Options | undefined) =>
  Effect.map(
    Sys.read<LlmReply>(llm, {
      messages: [
        { role: "system", content: system },
        { role: "user", content: user }
      ],
      ...(options?.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
      ...(options?.temperature === undefined ? {} : { temperature: options.temperature }),
      ...(options?.model === undefined ? {} : { model: options.model })
    }),
    (reply) => unwrap(reply.text)
  )

/**
 * Writes a system prompt from a brief.
 *
 * @category prompts
 */
export const forge = (
  llm: CapRef,
  brief: string,
  options?: Options
): Effect.Effect<string, Sys.DeviceCallError | PromptError, Sys.Sys> =>
  Effect.flatMap(ask(llm, options?.system ?? defaults.forgeSystem, `Brief:\n${brief.trim()}`, options), (prompt) =>
    prompt === "" ? Effect.fail(new PromptError({ call: "forge", reason: "empty-reply" })) : Effect.succeed(prompt)
  )

/**
 * The user message of a `refine` call (exposed for tests).
 *
 * @category prompts
 */
export const refineRequest = (prompt: string, input: RefineInput): string => {
  const { feedback, lessons } = typeof input === "string" ? { feedback: input, lessons: undefined } : input
  const parts = [`Prompt:\n${prompt.trim()}`]
  if (feedback !== undefined && feedback.trim() !== "") parts.push(`Feedback:\n${feedback.trim()}`)
  const listed = (lessons ?? []).map((l) => l.trim()).filter((l) => l !== "")
  if (listed.length > 0) parts.push(`Lessons:\n${listed.map((l) => `- ${l}`).join("\n")}`)
  return parts.join("\n\n")
}

/**
 * Improves a system prompt from feedback and/or lessons; an empty reply keeps `prompt`.
 *
 * @category prompts
 */
export const refine = (
  llm: CapRef,
  prompt: string,
  input: RefineInput,
  options?: Options
): Effect.Effect<string, Sys.DeviceCallError, Sys.Sys> =>
  Effect.map(ask(llm, options?.system ?? defaults.refineSystem, refineRequest(prompt, input), options), (refined) =>
    refined === "" ? prompt : refined
  )
