/**
 * Runs Schema-guarded tools as a device: decodes each call's arguments before the implementation sees them.
 *
 * A tool set has two halves, given separately and checked against each other when it is built:
 *
 * - the **declarations**, an `effect/ai` `Toolkit` of `Tool.make(name, { description, parameters, success, failure })`
 *   values: what the model is told (`definitions`) and what the device checks;
 * - the **implementations**, one function per declared name, `(params, call) => Effect<Success, Failure | ToolFailure,
 *   R>`. `make` is an `Effect` that requires the services `R` the implementations use, so a tool set that talks to a
 *   database is built inside the layer that provides it; each call runs with those services.
 *
 * One read is one call: `{ tool, input }` (the arguments as a value) or `{ tool, arguments }` (the arguments as
 * the JSON text a model returns). What the agent gets back:
 *
 * | call                                                   | outcome                                          |
 * | ------------------------------------------------------ | ------------------------------------------------ |
 * | valid, the implementation succeeds                     | the result, encoded by `toCodecJson(success)`    |
 * | unknown tool                                           | a `ToolError` value, reason `unknown-tool`       |
 * | arguments fail the parameters Schema, or are not JSON  | a `ToolError` value, reason `invalid-input`      |
 * | the implementation fails (typed error)                 | a `ToolError` value, reason `failed`             |
 * | the implementation dies, or its result fails `success` | `DeviceError` `tool-defect`                      |
 * | the request is not one of the two forms above          | `DeviceError` `invalid-request`                  |
 *
 * A `ToolError` is a successful read: the agent reads the message (which carries the Schema's decode message), fixes
 * its call and tries again; on `invalid-input` the implementation never ran. A `tool-defect` is a bug in the tool, not
 * in the call, so it is an error of the read. Every call that reaches a tool, valid or not, costs `{ toolCalls: 1 }`,
 * and each call reserves that much before it starts (`reserve`).
 *
 * Parameters are decoded with `Schema.toCodecJson(parameters)` and results encoded with `Schema.toCodecJson(success)`,
 * the codec whose encoded side `Schema.toJsonSchemaDocument` describes: what `definitions` advertises is exactly what
 * the device accepts, and results are JSON (they are journaled). Prefer `Schema.Finite`/`Schema.Int` to
 * `Schema.Number` in parameters: the JSON form of `Schema.Number` also admits the strings `"NaN"` and `"Infinity"`.
 *
 * Why not `Toolkit.handle`: it forks a fiber and a queue per call for preliminary results the device does not use,
 * decodes with the Schema rather than its JSON codec, and a missing handler surfaces only when the tool is first
 * called. The declarations are `effect/ai` values, so the same `Toolkit` can also serve an `effect/ai` `LanguageModel`.
 * Of a tool's options, `failureMode` is ignored (failures are always returned as a `ToolError`) and `needsApproval` is
 * refused at construction: approval is kernel policy, a tool must not silently skip it.
 *
 * @since 0.1.0
 */
import { type Context, Effect, Predicate, Schema } from "effect"
import { Tool, type Toolkit } from "effect/ai"
import type { Cost } from "../services/Accounts.ts"
import type { CallContext, Denial, DeviceResult, Driver, Handle } from "../services/Device.ts"
import { DeviceError } from "../services/Device.ts"

/**
 * What an implementation fails with when the call was understood but could not be done ("no such city"). The agent
 * reads `message`. An implementation may also fail with its tool's declared `failure` type; other errors should be
 * mapped to a `ToolFailure` with a message meant for the agent.
 *
 * @category errors
 */
export class ToolFailure extends Schema.TaggedError<ToolFailure>()("ToolFailure", {
  message: Schema.String
}) {}

/**
 * What a call that did not produce a result reads: a plain JSON value, journaled like a result.
 *
 * - `unknown-tool`: no tool of that name in the set;
 * - `invalid-input`: the arguments are not JSON or fail the parameters Schema (the implementation did not run);
 * - `failed`: the implementation failed. `error` is the failure encoded with the tool's `failure` Schema, when it
 *   declares one that accepts it;
 * - `denied`: the call needed a human's approval (a cap granting the tool with `approval`) and was denied, or
 *   nobody answered before the timeout; `error` is `{ by, reason? }` (`by: "timeout"` for the latter) and the
 *   implementation did not run.
 *
 * @category models
 */
export const ToolError = Schema.Struct({
  _tag: Schema.tag("ToolError"),
  tool: Schema.String,
  reason: Schema.Literals(["unknown-tool", "invalid-input", "failed", "denied"]),
  message: Schema.String,
  error: Schema.optionalKey(Schema.Unknown)
})

/** @category models */
export type ToolError = typeof ToolError.Type

/**
 * Tells whether a read's value is a `ToolError` rather than a tool's result.
 *
 * @category guards
 */
export const isToolError: (u: unknown) => u is ToolError = Schema.is(ToolError)

/**
 * A set of tools could not be built: declared tools without an implementation (`missing`), implementations of tools
 * that are not declared (`unexpected`), or declared tools the device cannot run (`unsupported`: provider-defined tools,
 * parameters given as raw JSON Schema, tools that need approval).
 *
 * @category errors
 */
export class ToolsetError extends Schema.TaggedError<ToolsetError>()("ToolsetError", {
  missing: Schema.Array(Schema.String),
  unexpected: Schema.Array(Schema.String),
  unsupported: Schema.Array(Schema.String)
}) {
  override get message(): string {
    const parts = [
      this.missing.length > 0 ? `declared but not implemented: ${this.missing.join(", ")}` : "",
      this.unexpected.length > 0 ? `implemented but not declared: ${this.unexpected.join(", ")}` : "",
      this.unsupported.length > 0 ? `not supported by the tools device: ${this.unsupported.join(", ")}` : ""
    ]
    return parts.filter((part) => part !== "").join("; ")
  }
}

/**
 * The implementation of one declared tool. `call` tells who is calling (pid, op), for tools that keep per-process
 * state.
 *
 * @category models
 */
export type Implementation<T extends Tool.Any, R = never> = (
  params: Tool.Parameters<T>,
  call: CallContext
) => Effect.Effect<Tool.Success<T>, Tool.Failure<T> | ToolFailure, R>

/**
 * One implementation per declared tool, keyed by the tool's name.
 *
 * @category models
 */
export type Implementations<Tools extends Record<string, Tool.Any>> = {
  readonly [Name in keyof Tools]: Implementation<Tools[Name], any>
}

/**
 * The services a record of implementations requires.
 *
 * @category models
 */
export type ImplementationServices<I> = {
  [Name in keyof I]: I[Name] extends (...args: ReadonlyArray<any>) => Effect.Effect<any, any, infer R> ? R : never
}[keyof I]

/**
 * A tools driver that still knows its declarations (for `definitions`).
 *
 * @category models
 */
export interface Toolset<Tools extends Record<string, Tool.Any> = Record<string, Tool.Any>> extends Driver {
  readonly tools: Tools
}

/** @category models */
export interface MakeOptions {
  /** The driver's name in the device table. Default `"tools"`. */
  readonly name?: string | undefined
}

/**
 * One entry of an OpenAI `tools` list: the openai SDK's `FunctionDefinition` (Chat Completions wraps it as
 * `{ type: "function", function: definition }`; the Responses API spreads it into `{ type: "function", ... }`).
 *
 * @category models
 */
export interface Definition {
  readonly name: string
  readonly description?: string
  /** The JSON Schema of the parameters, with `$defs` when the Schema has named definitions. */
  readonly parameters: { readonly [key: string]: unknown }
}

/**
 * Describes a tool set to a model: one `Definition` per tool, its parameters as the JSON Schema generated from the
 * parameters Schema. Takes the `Toolset` driver or the `Toolkit` it was built from.
 *
 * @category getters
 */
export const definitions = (toolset: { readonly tools: Record<string, Tool.Any> }): ReadonlyArray<Definition> =>
  Object.values(toolset.tools).map((tool) => {
    const parameters = Tool.getJsonSchema(tool)
    return tool.description === undefined
      ? { name: tool.name, parameters }
      : { name: tool.name, description: tool.description, parameters }
  })

/**
 * What one call may cost at most, the tools driver's `reserve`: `{ toolCalls: 1 }` whatever the request, what every
 * call that reaches the tool set is charged (a request that does not reach it is charged nothing).
 *
 * @category pricing
 */
export const reserve = (_request: unknown): Cost => callCost

/**
 * Builds a tools driver from declarations and implementations, checking that every declared tool has exactly one
 * implementation (a `ToolsetError` otherwise). The type checker already refuses a literal record with a missing or an
 * extra name; the check guards implementations assembled at run time. The services the implementations require are
 * captured here and provided to every call.
 *
 * @example
 * ```ts
 * const Add = Tool.make("add", {
 *   description: "Adds two numbers",
 *   parameters: Schema.Struct({ a: Schema.Finite, b: Schema.Finite }),
 *   success: Schema.Finite
 * })
 * const driver = yield* Tools.make(Toolkit.make(Add), { add: ({ a, b }) => Effect.succeed(a + b) })
 * ```
 *
 * @category constructors
 */
export const make = <
  Tools extends Record<string, Tool.Any>,
  const I extends Implementations<Tools> & { readonly [Name in Exclude<keyof I, keyof Tools>]: never }
>(
  toolkit: Toolkit.Toolkit<Tools>,
  implementations: I,
  options?: MakeOptions
): Effect.Effect<Toolset<Tools>, ToolsetError, ImplementationServices<I> | Tool.SchemaServices<Tools[keyof Tools]>> =>
  Effect.gen(function* () {
    const tools: Record<string, Tool.Any> = toolkit.tools
    const given: Record<string, unknown> = implementations
    const declared = Object.keys(tools)
    const missing = declared.filter((name) => !Object.hasOwn(given, name) || typeof given[name] !== "function")
    const unexpected = Object.keys(given).filter((name) => !Object.hasOwn(tools, name))
    const unsupported = declared.filter((name) => !isSupported(tools[name]))
    if (missing.length > 0 || unexpected.length > 0 || unsupported.length > 0) {
      return yield* new ToolsetError({ missing, unexpected, unsupported })
    }
    const context = yield* Effect.context<ImplementationServices<I> | Tool.SchemaServices<Tools[keyof Tools]>>()
    const device = options?.name ?? "tools"
    const runners = new Map<string, Runner>()
    for (const name of declared) {
      const run = makeRunner(device, tools[name], given[name] as Implementation<Tool.Any, unknown>)
      // The implementations' services are erased inside the runner; they are all in `context`. The call runs in
      // exactly that context (the one the tool set was built in), swapped in without copying: merging it into the
      // caller's context would copy every service on every call.
      runners.set(name, (args, call) => Effect.updateContext(run(args, call), () => context as Context.Context<any>))
    }
    const names = declared.join(", ")
    const handle: Handle = {
      read: (request, call) =>
        Effect.flatMap(decodeCall(device, request), ({ tool, args }) => {
          const run = runners.get(tool)
          if (run === undefined) {
            const message = `unknown tool "${tool}"; the tools are: ${names}`
            return Effect.succeed(charged(toolError(tool, "unknown-tool", message)))
          }
          return run(args, call)
        })
    }
    return {
      name: device,
      meters: ["toolCalls"],
      reserve,
      denied,
      open: () => Effect.succeed(handle),
      tools: toolkit.tools
    }
  })

// -----------------------------------------------------------------------------
// internals
// -----------------------------------------------------------------------------

type Arguments = { readonly value: unknown } | { readonly json: string }

type Runner = (args: Arguments, call: CallContext) => Effect.Effect<DeviceResult, DeviceError>

/** Every call that reaches the tool set costs one tool call, whatever it returns. Shared, never mutated. */
const callCost = { toolCalls: 1 } as const

const charged = (value: unknown): DeviceResult => ({ value, cost: callCost })

/**
 * What a call whose approval (or policy) denied it reads on a tools device: a `ToolError` `denied` naming who and
 * why. A driver's `denied`; the MCP driver's too.
 *
 * @category constructors
 */
export const denied = (_request: unknown, denial: Denial): ToolError =>
  toolError(
    denial.tool,
    "denied",
    `${denial.tool}: denied by ${denial.by}${denial.reason === undefined ? "" : `: ${denial.reason}`}`,
    denial.reason === undefined ? { by: denial.by } : { by: denial.by, reason: denial.reason }
  )

/**
 * A `ToolError` value (`error` only when given).
 *
 * @category constructors
 */
export const toolError = (tool: string, reason: ToolError["reason"], message: string, error?: unknown): ToolError =>
  error === undefined
    ? { _tag: "ToolError", tool, reason, message }
    : { _tag: "ToolError", tool, reason, message, error }

const isSupported = (tool: Tool.Any): boolean =>
  !Tool.isProviderDefined(tool) &&
  Schema.isSchema(tool.parametersSchema) &&
  (tool.needsApproval === undefined || tool.needsApproval === false)

const ToolCall = Schema.Union([
  Schema.Struct({ tool: Schema.String, input: Schema.Unknown }),
  Schema.Struct({ tool: Schema.String, arguments: Schema.String })
])

const decodeToolCall = Schema.decodeUnknownEffect(ToolCall)

const decodeCall = (device: string, request: unknown) =>
  decodeToolCall(request).pipe(
    Effect.map((call) => ({
      tool: call.tool,
      args: "input" in call ? ({ value: call.input } as const) : ({ json: call.arguments } as const)
    })),
    Effect.mapError(
      (error) =>
        new DeviceError({
          device,
          reason: "invalid-request",
          message: `a tool call is { tool, input } or { tool, arguments }: ${error.message}`
        })
    )
  )

/** All issues at once, so the agent can fix every argument in one retry. */
const decodeOptions = { errors: "all" } as const

/** Says what a failure was, for the agent: a string, a non-empty `message`, a `_tag`, or its encoded JSON. */
const messageOf = (error: unknown, encoded: unknown): string => {
  if (typeof error === "string") return error
  if (Predicate.hasProperty(error, "message") && typeof error.message === "string" && error.message !== "") {
    return error.message
  }
  if (Predicate.hasProperty(error, "_tag") && typeof error._tag === "string") return error._tag
  return encoded === undefined ? "the tool failed" : `the tool failed: ${JSON.stringify(encoded)}`
}

const describeDefect = (defect: unknown): string =>
  defect instanceof Error ? defect.message : typeof defect === "string" ? defect : String(defect)

/**
 * Makes the call pipeline of one tool: decode the arguments, run the implementation, encode its result. The codecs
 * are derived once here, not per call.
 */
const makeRunner = (device: string, tool: Tool.Any, implementation: Implementation<Tool.Any, unknown>) => {
  const parameters = Schema.toCodecJson(tool.parametersSchema)
  const decodeValue = Schema.decodeUnknownEffect(parameters, decodeOptions)
  const decodeJson = Schema.decodeUnknownEffect(Schema.fromJsonString(parameters), decodeOptions)
  const encodeSuccess = Schema.encodeUnknownEffect(Schema.toCodecJson(tool.successSchema))
  const encodeFailure = Schema.encodeUnknownEffect(Schema.toCodecJson(tool.failureSchema))
  const defect = (message: string) =>
    new DeviceError({ device, reason: "tool-defect", message: `tool "${tool.name}" ${message}` })

  const failed = (error: unknown) =>
    error instanceof ToolFailure
      ? Effect.succeed(charged(toolError(tool.name, "failed", error.message)))
      : encodeFailure(error).pipe(
          Effect.match({
            onFailure: () => charged(toolError(tool.name, "failed", messageOf(error, undefined))),
            onSuccess: (encoded) => charged(toolError(tool.name, "failed", messageOf(error, encoded), encoded))
          })
        )

  const run = (params: unknown, call: CallContext) =>
    Effect.suspend(() => implementation(params, call)).pipe(
      Effect.matchEffect({
        onFailure: failed,
        onSuccess: (result) =>
          Effect.mapBoth(encodeSuccess(result), {
            onFailure: (error) => defect(`returned a result its success Schema rejects: ${error.message}`),
            onSuccess: charged
          })
      }),
      Effect.catchDefect((cause) => Effect.fail(defect(`died: ${describeDefect(cause)}`)))
    )

  return (args: Arguments, call: CallContext): Effect.Effect<DeviceResult, DeviceError, unknown> =>
    Effect.matchEffect("json" in args ? decodeJson(args.json) : decodeValue(args.value), {
      onFailure: (error) =>
        Effect.succeed(
          charged(toolError(tool.name, "invalid-input", `invalid input for "${tool.name}": ${error.message}`))
        ),
      onSuccess: (params) => run(params, call)
    })
}
