/**
 * Runs the think → tool calls → observe → answer loop shared by `ReactAgent` and `ConversationAgent`.
 *
 * The transcript lives in the calling process's context memory: every message is one segment whose body is a
 * `TranscriptEntry`. The prompt of each model call is rebuilt from `Sys.workingSet()` by `promptOf`, so whatever the
 * kernel paged out is gone from the prompt, in pairs (an assistant tool call is sent only with its result, and a
 * result only with its call). See `ReactAgent` for the options and their defaults.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { LlmReply, Message, ToolCall, ToolDefinition } from "../../drivers/Llm.ts"
import type { CapRef } from "../../services/Capability.ts"
import type { Segment } from "../../services/ContextMemory.ts"
import * as Sys from "../../services/Sys.ts"

/**
 * What a reflection hook decides about an answer: keep it, have the model rewrite it (no tools) with `note`, or go
 * back to the tool loop with `note` as a new instruction.
 *
 * @category models
 */
export type Reflection =
  | { readonly _tag: "Accept" }
  | { readonly _tag: "Revise"; readonly note: string }
  | { readonly _tag: "Continue"; readonly note: string }

/**
 * The options of the loop (documented with their defaults in `ReactAgent`).
 *
 * @category models
 */
export interface LoopOptions {
  readonly system?: string | undefined
  readonly tools?: ReadonlyArray<ToolDefinition> | undefined
  readonly steps?: number | undefined
  readonly stepsGrowth?: number | undefined
  readonly stepsMax?: number | undefined
  readonly staleTurnsMax?: number | undefined
  readonly toolResultCharsMax?: number | undefined
  readonly reflect?:
    ((answer: string, transcript: ReadonlyArray<Message>) => Effect.Effect<Reflection, unknown, Sys.Sys>) | undefined
  readonly reflectionsMax?: number | undefined
  readonly stream?: boolean | undefined
  readonly maxTokens?: number | undefined
  readonly temperature?: number | undefined
  readonly model?: string | undefined
  /**
   * In-process follow-ups of tools, by name: a successful result of that tool (read back from the tools device, so
   * checked, charged and journaled like any tool call) is handed to the function, and what it returns is what the
   * model reads instead. The daemon's `spawn_agent` uses it to start the helper the device allowed.
   */
  readonly after?: Readonly<Record<string, (result: unknown) => Effect.Effect<unknown, never, Sys.Sys>>> | undefined
}

/** The defaults of `LoopOptions`. */
export const defaults = {
  system:
    "You are a careful assistant. Use the tools when they help; call independent tools in the same turn. " +
    "When you have what you need, answer without calling tools.",
  steps: 8,
  stepsGrowth: 1,
  stepsMax: 20,
  staleTurnsMax: 2,
  toolResultCharsMax: 4000,
  reflectionsMax: 2
} as const

/** The instruction appended (not remembered) to a request that forces the final answer. */
export const finalAnswerNote = "Stop calling tools now and give your final answer with the information you have."

/** The note put in the prompt when parts of the transcript were paged out of context memory. */
export const pagedOutNote = (count: number): string =>
  `Note: ${count} earlier transcript entries were paged out of context memory and are not shown.`

/** Appended to a tool result cut at `toolResultCharsMax` characters. */
export const truncationMarker = (shown: number, total: number): string =>
  `\n[truncated: ${shown} of ${total} characters shown]`

/**
 * A transcript segment's body.
 *
 * @category models
 */
export interface TranscriptEntry {
  readonly _tag: "Transcript"
  readonly message: Message
}

const isEntry = (body: unknown): body is TranscriptEntry =>
  typeof body === "object" && body !== null && (body as { _tag?: unknown })._tag === "Transcript"

const isPagedOut = (body: unknown): body is { readonly _tag: "PagedOut"; readonly count: number } =>
  typeof body === "object" && body !== null && (body as { _tag?: unknown })._tag === "PagedOut"

/**
 * Remembers one transcript message (pinned or not) and returns its segment id.
 *
 * @category transcript
 */
export const rememberMessage = (message: Message, pin = false) =>
  Sys.remember({ _tag: "Transcript", message } satisfies TranscriptEntry, { pin })

/**
 * Rebuilds the prompt from working-set segments, oldest first:
 *
 * - system messages first (the pinned prompt), then one system note counting the entries paged out (when any);
 * - an assistant message keeps only the tool calls whose result is still in the working set, each followed at once by
 *   its result (in call order); it is dropped when nothing is left of it;
 * - a tool result is sent only right after its call: an orphan result (its call paged out) is dropped.
 *
 * @category transcript
 */
export const promptOf = (segments: ReadonlyArray<Segment>): Array<Message> => {
  const results = new Map<string, Message>()
  let pagedOut = 0
  for (const segment of segments) {
    if (isPagedOut(segment.body)) pagedOut += segment.body.count
    else if (isEntry(segment.body) && segment.body.message.role === "tool") {
      results.set(segment.body.message.toolCallId, segment.body.message)
    }
  }
  const system: Array<Message> = []
  const rest: Array<Message> = []
  for (const segment of segments) {
    if (!isEntry(segment.body)) continue
    const message = segment.body.message
    if (message.role === "system") system.push(message)
    else if (message.role === "user") rest.push(message)
    else if (message.role === "assistant") {
      const calls = (message.toolCalls ?? []).filter((call) => results.has(call.id))
      const content = message.content ?? ""
      if (calls.length === 0) {
        if (content !== "") rest.push({ role: "assistant", content })
        continue
      }
      rest.push({ role: "assistant", content, toolCalls: calls })
      for (const call of calls) rest.push(results.get(call.id)!)
    }
  }
  if (pagedOut > 0) system.push({ role: "system", content: pagedOutNote(pagedOut) })
  return [...system, ...rest]
}

/** A canonical JSON text (object keys sorted), so equal arguments give equal keys. */
const canonical = (value: unknown): string => {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`
  if (typeof value === "object" && value !== null) {
    const keys = Object.keys(value).sort()
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(",")}}`
  }
  return JSON.stringify(value) ?? "null"
}

/**
 * The identity of a tool call: its name and canonical arguments. Calls with equal keys in one turn run once.
 *
 * @category tools
 */
export const callKey = (call: ToolCall): string =>
  `${call.name}(${typeof call.arguments === "string" ? JSON.stringify(call.arguments) : canonical(call.arguments)})`

/** The tools-device request of a call: invalid arguments go as text, so the device answers `invalid-input`. */
const toolRequest = (call: ToolCall) =>
  typeof call.arguments === "string" || call.argumentsInvalid === true
    ? {
        tool: call.name,
        arguments: typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments)
      }
    : { tool: call.name, input: call.arguments }

/** What a tool call reads back in an agent without a tools device: the tools device's own `unknown-tool` error. */
const noTools = (call: ToolCall) => ({
  _tag: "ToolError",
  tool: call.name,
  reason: "unknown-tool",
  message: `unknown tool "${call.name}"; this agent has no tools: answer without calling tools`
})

/**
 * A tool result as the model reads it: its JSON text, cut at `max` characters with a `truncationMarker`.
 *
 * @category tools
 */
export const renderResult = (value: unknown, max: number): string => {
  const text = typeof value === "string" ? value : (JSON.stringify(value) ?? "null")
  return text.length <= max ? text : text.slice(0, max) + truncationMarker(max, text.length)
}

/**
 * The device handles the loop uses.
 *
 * @category models
 */
export interface Handles {
  readonly llm: CapRef
  /** Absent for an agent without tools: a tool call the model makes anyway reads back an `unknown-tool` error. */
  readonly tools: CapRef | undefined
}

/**
 * What a task ends with: the answer and how many model calls it took (tool turns, forced answers and revisions).
 *
 * @category models
 */
export interface Outcome {
  readonly answer: string
  readonly steps: number
}

/**
 * Runs the loop for the task already in context memory (the caller remembered it), until an answer is accepted.
 * The final answer is remembered as an assistant message. Fails with the first device error (LLM or tools) and with
 * what the reflection hook fails with.
 *
 * @category loop
 */
export const run = (handles: Handles, options: LoopOptions) =>
  Effect.gen(function* () {
    const definitions = options.tools ?? []
    const stepsGrowth = options.stepsGrowth ?? defaults.stepsGrowth
    const stepsMax = Math.max(1, options.stepsMax ?? defaults.stepsMax)
    const staleTurnsMax = options.staleTurnsMax ?? defaults.staleTurnsMax
    const charsMax = options.toolResultCharsMax ?? defaults.toolResultCharsMax
    const reflectionsMax = options.reflectionsMax ?? defaults.reflectionsMax
    const common = {
      ...(options.stream === true ? { stream: true } : {}),
      ...(options.maxTokens === undefined ? {} : { maxTokens: options.maxTokens }),
      ...(options.temperature === undefined ? {} : { temperature: options.temperature }),
      ...(options.model === undefined ? {} : { model: options.model })
    }
    const ask = (messages: ReadonlyArray<Message>, withTools: boolean) =>
      Sys.read<LlmReply>(handles.llm, {
        messages,
        ...(definitions.length === 0 ? {} : { tools: definitions }),
        ...(definitions.length > 0 && !withTools ? { toolChoice: "none" } : {}),
        ...common
      })
    const prompt = Effect.map(Sys.workingSet(), promptOf)

    let limit = Math.min(Math.max(1, options.steps ?? defaults.steps), stepsMax)
    let steps = 0
    let reflections = 0
    let previousTurn: string | undefined = undefined
    let staleTurns = 0
    const seen = new Set<string>()

    /** The final answer, forced: the working set plus `finalAnswerNote`, no tools. */
    const forceAnswer = Effect.gen(function* () {
      steps++
      const messages = yield* prompt
      const reply = yield* ask([...messages, { role: "user", content: finalAnswerNote }], false)
      return reply.text
    })

    /** Think → act → observe, until the model answers or the loop forces the answer. */
    const think = Effect.gen(function* () {
      while (true) {
        if (steps + 1 >= limit) return yield* forceAnswer
        steps++
        const reply = yield* ask(yield* prompt, true)
        if (reply.toolCalls.length === 0) return reply.text
        const keys = reply.toolCalls.map(callKey)
        const turn = Array.from(new Set(keys)).sort().join("\n")
        if (turn === previousTurn) {
          // the same calls as the previous turn: they are not run again, and the answer is forced
          yield* Sys.log("info", "react: repeated tool calls, forcing the final answer", { steps })
          return yield* forceAnswer
        }
        previousTurn = turn
        // identical calls (same name and arguments) run once and share the result
        const unique: Array<ToolCall> = []
        const index = new Map<string, number>()
        reply.toolCalls.forEach((call, i) => {
          if (!index.has(keys[i]!)) {
            index.set(keys[i]!, unique.length)
            unique.push(call)
          }
        })
        const values: Array<unknown> =
          handles.tools === undefined
            ? unique.map(noTools)
            : [...(yield* Sys.readAll(handles.tools, unique.map(toolRequest)))]
        const after = options.after
        if (after !== undefined) {
          for (let i = 0; i < unique.length; i++) {
            const follow = Object.hasOwn(after, unique[i]!.name) ? after[unique[i]!.name] : undefined
            const value = values[i] as { readonly _tag?: unknown } | null
            if (follow !== undefined && !(typeof value === "object" && value !== null && value._tag === "ToolError")) {
              values[i] = yield* follow(values[i])
            }
          }
        }
        const rendered = values.map((value) => renderResult(value, charsMax))
        let fresh = false
        unique.forEach((_, i) => {
          const observation = `${callKey(unique[i]!)}=${rendered[i]!}`
          if (!seen.has(observation)) {
            seen.add(observation)
            fresh = true
          }
        })
        // remembered only once the results are in: the transcript never holds a call without its result
        yield* rememberMessage({ role: "assistant", content: reply.text, toolCalls: reply.toolCalls })
        for (let i = 0; i < reply.toolCalls.length; i++) {
          const call = reply.toolCalls[i]!
          yield* rememberMessage({ role: "tool", toolCallId: call.id, content: rendered[index.get(keys[i]!)!]! })
        }
        if (fresh) {
          staleTurns = 0
          limit = Math.min(stepsMax, limit + stepsGrowth)
        } else if (++staleTurns >= staleTurnsMax) {
          yield* Sys.log("info", "react: no new information, forcing the final answer", { steps, staleTurns })
          return yield* forceAnswer
        }
      }
    })

    /** A rewrite of the last answer after a `Revise` note, without tools. */
    const revise = Effect.gen(function* () {
      steps++
      const reply = yield* ask(yield* prompt, false)
      return reply.text
    })

    let next: "think" | "revise" = "think"
    while (true) {
      const answer = next === "think" ? yield* think : yield* revise
      if (options.reflect === undefined || reflections >= reflectionsMax) {
        yield* rememberMessage({ role: "assistant", content: answer })
        return { answer, steps } satisfies Outcome
      }
      reflections++
      const verdict = yield* options.reflect(answer, yield* prompt)
      yield* rememberMessage({ role: "assistant", content: answer })
      if (verdict._tag === "Accept") return { answer, steps } satisfies Outcome
      yield* rememberMessage({ role: "user", content: verdict.note })
      if (verdict._tag === "Revise") {
        next = "revise"
      } else {
        // back to the tool loop, with room for one tool turn and an answer (never past stepsMax)
        next = "think"
        previousTurn = undefined
        staleTurns = 0
        limit = Math.min(stepsMax, Math.max(limit, steps + 2))
      }
    }
  })
