/**
 * Distills a finished transcript into a few reusable lessons with one model call on a metered LLM handle.
 *
 * `distill(llm, transcript, options)` renders the transcript as text, asks the model (through `Sys.read` on `llm`, a
 * handle cap from `Sys.open` on an LLM device, so the tokens are charged to the calling process and its ancestors)
 * for a JSON array of short, general lessons, and decodes the reply with `Schema`. The reply is untrusted:
 *
 * - the first JSON array found in the reply is decoded, so an array wrapped in prose, a code fence or an object
 *   (`{ "lessons": [...] }`) is found (the text from one of the first 32 `[` to the last `]`, the first that decodes);
 * - a reply with no decodable JSON array yields no lessons (never a failure);
 * - entries that are not strings, or blank, are dropped; each lesson is trimmed and cut at `lessonCharsMax`;
 * - lessons equal after normalization (`LongTermMemory.normalize`) are kept once; at most `max` are returned.
 *
 * Defaults: `max` `3`; `lessonCharsMax` `300`; `transcriptCharsMax` `12000` (a longer rendered transcript keeps its
 * first quarter and its end, with a `[… N characters omitted …]` marker between); `system`: the built-in
 * instruction `defaults.system`; `maxTokens`, `temperature`, `model`: not sent (the driver's defaults).
 *
 * Only a failed device call fails `distill` (`Sys.DeviceCallError`).
 *
 * @since 0.1.0
 */
import { Effect, Option, Schema } from "effect"
import type { LlmReply, Message } from "../drivers/Llm.ts"
import type { CapRef } from "../services/Capability.ts"
import * as Sys from "../services/Sys.ts"
import { normalize } from "./LongTermMemory.ts"

/**
 * Options of `distill` (defaults in the module documentation).
 *
 * @category models
 */
export interface Options {
  readonly max?: number | undefined
  readonly lessonCharsMax?: number | undefined
  readonly transcriptCharsMax?: number | undefined
  readonly system?: string | undefined
  readonly maxTokens?: number | undefined
  readonly temperature?: number | undefined
  readonly model?: string | undefined
}

/** The defaults of `Options`. */
export const defaults = {
  max: 3,
  lessonCharsMax: 300,
  transcriptCharsMax: 12_000,
  system:
    "You review the transcript of a finished task and extract reusable lessons: short, general rules that would " +
    "help with similar tasks next time (what worked, what to avoid, which tool to use for what). Do not restate " +
    "facts specific to this task. Answer with a JSON array of strings and nothing else."
} as const

const decodeArray = Schema.decodeUnknownOption(Schema.fromJsonString(Schema.Array(Schema.Unknown)))

/**
 * Renders a transcript as plain text, one message per paragraph (`role: content`, tool calls as `name(arguments)`).
 *
 * @category transcript
 */
export const render = (transcript: ReadonlyArray<Message>): string =>
  transcript
    .map((message) => {
      switch (message.role) {
        case "system":
        case "tool":
          return `${message.role}: ${message.content}`
        case "user":
          return `user: ${
            typeof message.content === "string"
              ? message.content
              : message.content.map((part) => (part.type === "text" ? part.text : `[image ${part.url}]`)).join(" ")
          }`
        case "assistant": {
          const calls = (message.toolCalls ?? []).map(
            (call) =>
              `${call.name}(${typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments)})`
          )
          return `assistant: ${[message.content ?? "", ...calls].filter((part) => part !== "").join(" ")}`
        }
      }
    })
    .join("\n\n")

/** Keeps the first quarter and the end of a text longer than `max`, with a marker between. */
const clip = (text: string, max: number): string => {
  if (text.length <= max) return text
  const head = Math.floor(max / 4)
  const tail = max - head
  return `${text.slice(0, head)}\n[… ${text.length - max} characters omitted …]\n${text.slice(text.length - tail)}`
}

/** The first JSON array in a text: from one of its first 32 `[` to its last `]`. */
const findArray = (text: string): Option.Option<ReadonlyArray<unknown>> => {
  const end = text.lastIndexOf("]")
  let start = text.indexOf("[")
  for (let tries = 0; start >= 0 && start < end && tries < 32; tries++) {
    const decoded = decodeArray(text.slice(start, end + 1))
    if (Option.isSome(decoded)) return decoded
    start = text.indexOf("[", start + 1)
  }
  return Option.none()
}

/**
 * Decodes a model reply into lessons (see the module documentation): never fails, junk gives `[]`.
 *
 * @category lessons
 */
export const parseLessons = (
  reply: string,
  options?: Pick<Options, "max" | "lessonCharsMax">
): ReadonlyArray<string> => {
  const max = Math.max(0, Math.floor(options?.max ?? defaults.max))
  const charsMax = Math.max(1, options?.lessonCharsMax ?? defaults.lessonCharsMax)
  const decoded = findArray(reply)
  if (Option.isNone(decoded)) return []
  const out: Array<string> = []
  const seen = new Set<string>()
  for (const item of decoded.value) {
    if (out.length >= max) break
    if (typeof item !== "string") continue
    const lesson = item.trim().slice(0, charsMax).trim()
    const key = normalize(lesson)
    if (key === "" || seen.has(key)) continue
    seen.add(key)
    out.push(lesson)
  }
  return out
}

/**
 * Asks the model on `llm` (a handle cap) for at most `max` lessons from `transcript`.
 *
 * @category distilling
 */
export const distill = (
  llm: CapRef,
  transcript: ReadonlyArray<Message>,
  options?: Options
): Effect.Effect<ReadonlyArray<string>, Sys.DeviceCallError, Sys.Sys> =>
  Effect.gen(function* () {
    const max = Math.max(0, Math.floor(options?.max ?? defaults.max))
    if (max === 0 || transcript.length === 0) return []
    const text = clip(render(transcript), Math.max(1, options?.transcriptCharsMax ?? defaults.transcriptCharsMax))
    const reply = yield* Sys.read<LlmReply>(llm, {
      messages: [
        { role: "system", content: options?.system ?? defaults.system },
        {
          role: "user",
          content: `Transcript:\n\n${text}\n\nGive at most ${max} lessons as a JSON array of strings.`
        }
      ],
      ...(options?.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
      ...(options?.temperature === undefined ? {} : { temperature: options.temperature }),
      ...(options?.model === undefined ? {} : { model: options.model })
    })
    return parseLessons(reply.text, { max, lessonCharsMax: options?.lessonCharsMax })
  })
