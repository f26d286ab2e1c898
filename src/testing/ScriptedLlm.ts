/**
 * Answers LLM calls from a script, in process: the fast stand-in for a model in unit tests and offline demos.
 *
 * The device has the LLM driver's contract: requests are `Llm.LlmRequest` (decoded; a bad one fails with
 * `invalid-request`), replies are `Llm.LlmReply`, each call costs its tokens, and calls pass the inference scheduler.
 * Each step of the script is a reply, or a function of the request giving one. A call past the end of the script
 * fails with `DeviceError` `unavailable` (a test must say what the model answers).
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import { LlmReply, LlmRequest } from "../drivers/Llm.ts"
import * as Device from "../services/Device.ts"
import type { Policy } from "../services/InferenceScheduler.ts"

/**
 * One scripted answer: text and/or tool calls (arguments as objects), usage when the test cares (otherwise about
 * four characters a token of the request and the answer).
 *
 * @category models
 */
export interface Step {
  readonly text?: string | undefined
  readonly toolCalls?: ReadonlyArray<{ readonly name: string; readonly arguments: Record<string, unknown> }> | undefined
  readonly usage?: { readonly inputTokens: number; readonly outputTokens: number } | undefined
}

/**
 * @category models
 */
export interface ScriptedLlm extends Device.Driver {
  /** Every request received, decoded, in order. */
  readonly requests: ReadonlyArray<LlmRequest>
}

const decode = Schema.decodeUnknownExit(LlmRequest)
const tokensOf = (text: string) => Math.max(1, Math.ceil(text.length / 4))

/**
 * Makes the scripted device (`name` default `"llm"`; `schedule`: the inference-scheduler policy, default `true`).
 *
 * @category constructors
 */
export const make = (
  script: ReadonlyArray<Step | ((request: LlmRequest) => Step)>,
  options?: { readonly name?: string | undefined; readonly schedule?: Policy | undefined }
): ScriptedLlm => {
  const name = options?.name ?? "llm"
  const requests: Array<LlmRequest> = []
  let next = 0
  let calls = 0
  const read = (request: unknown) =>
    Effect.suspend(() => {
      const decoded = decode(request)
      if (decoded._tag === "Failure") {
        return Effect.fail(
          new Device.DeviceError({ device: name, reason: "invalid-request", message: String(decoded.cause) })
        )
      }
      requests.push(decoded.value)
      const entry = script[next]
      if (entry === undefined) {
        return Effect.fail(
          new Device.DeviceError({
            device: name,
            reason: "unavailable",
            message: `the script has ${script.length} steps`
          })
        )
      }
      next++
      const step = typeof entry === "function" ? entry(decoded.value) : entry
      const text = step.text ?? ""
      const toolCalls = (step.toolCalls ?? []).map((call) => ({
        id: `call_${++calls}`,
        name: call.name,
        arguments: call.arguments
      }))
      const usage = step.usage ?? {
        inputTokens: tokensOf(JSON.stringify(decoded.value.messages)),
        outputTokens: tokensOf(text + JSON.stringify(toolCalls))
      }
      const reply: LlmReply = {
        text,
        toolCalls,
        finishReason: toolCalls.length > 0 ? "tool_calls" : "stop",
        usage,
        model: "scripted"
      }
      return Effect.succeed({ value: reply, cost: { tokens: usage.inputTokens + usage.outputTokens } })
    })
  return {
    name,
    meters: ["tokens", "usd"],
    scheduled: options?.schedule ?? true,
    open: () => Effect.succeed({ read }),
    requests
  }
}
