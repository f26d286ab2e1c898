/**
 * Agent manifests: the YAML (or JSON) an operator writes to run an agent under `agentd`, decoded by one Schema.
 *
 * ```yaml
 * name: research-agent
 * model: gpt-4o-mini            # the LLM driver's model (optional; the daemon's default otherwise)
 * system_prompt: "You are a helpful research assistant."
 * capabilities:
 *   - "tool: echo"
 *   - "file_read: /data/project/*"
 *   - "file_write: /data/output/*"
 *   - "http_get: 127.0.0.1:*"
 *   - "spawn_agent: [summarizer]"
 * approval_required: [file_write]
 * budget: { tokens: 20000, usd: 0.5, tool_calls: 40, wall: 10 minutes, children: 2 }
 * restart: transient            # under the daemon's supervisor
 * ```
 *
 * Fields:
 * - `name` (required): letters, digits, `_` and `-`, at most 64, starting with a letter or digit;
 * - `model`, `system_prompt`: strings;
 * - `capabilities`: what the agent holds, each `"<kind>: <value>"`: `tool: <name>`; `file_read: <glob>` and
 *   `file_write: <glob>` (absolute path globs: `*` within a path segment, `**` across segments; no `..`);
 *   `http_get: <host>[:<port>]` (`*` wildcards, e.g. `127.0.0.1:*`); `spawn_agent: [<manifest name>, …]`;
 * - `approval_required`: tool names whose calls wait for a human's answer; each must be a tool the manifest grants;
 * - `approval_timeout`: a duration after which an unanswered approval is denied;
 * - `budget`: `tokens`, `tool_calls`, `children` (integers ≥ 0), `usd` (≥ 0), `wall` (a duration such as
 *   `10 minutes`);
 * - `restart` (default `temporary`): `permanent`, `transient` or `temporary`, under the daemon's supervisor.
 *
 * Unknown fields are errors (a typo never silently drops a limit). Every problem is reported at once, each with its
 * path (`budget.tokens`, `capabilities[2]`), in a typed `ManifestError`.
 *
 * @since 0.1.0
 */
import { Cause, Duration, Effect, Option, Schema } from "effect"
import * as Policy from "../services/Policy.ts"
import * as Yaml from "effect/encoding/Yaml"
import type * as SchemaIssue from "effect/SchemaIssue"
import { problemsOf as issueProblems } from "../services/internal/schemaProblems.ts"

/**
 * One problem of a manifest: where (`budget.tokens`, `capabilities[2]`, or `""` for the whole text) and what.
 *
 * @category models
 */
export interface Problem {
  readonly path: string
  readonly message: string
}

/**
 * A manifest that does not parse or does not decode: every problem, each with its path.
 *
 * @category errors
 */
export class ManifestError extends Schema.TaggedError<ManifestError>()("ManifestError", {
  message: Schema.String,
  problems: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String }))
}) {}

/**
 * A capability a manifest grants, parsed.
 *
 * @category models
 */
export type Capability =
  | { readonly _tag: "Tool"; readonly name: string }
  | { readonly _tag: "FileRead"; readonly glob: string }
  | { readonly _tag: "FileWrite"; readonly glob: string }
  | { readonly _tag: "HttpGet"; readonly pattern: string }
  | { readonly _tag: "SpawnAgent"; readonly names: ReadonlyArray<string> }

/**
 * The tool each capability kind grants (`tool: x` grants `x`).
 *
 * @category models
 */
export const toolOf = (capability: Capability): ReadonlyArray<string> => {
  switch (capability._tag) {
    case "Tool":
      return [capability.name]
    case "FileRead":
      return ["file_read"]
    case "FileWrite":
      return ["file_write"]
    case "HttpGet":
      return ["http_get"]
    case "SpawnAgent":
      return ["spawn_agent"]
  }
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/
const TOOL = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
const HOST = /^[A-Za-z0-9.*-]{1,253}(:(\d{1,5}|\*))?$/
const kinds = ["tool", "file_read", "file_write", "http_get", "spawn_agent"] as const

/** A capability string parsed, or what is wrong with it. */
export const parseCapability = (text: string): Capability | string => {
  const colon = text.indexOf(":")
  if (colon === -1) return `a capability is "<kind>: <value>" with kind one of ${kinds.join(", ")}`
  const kind = text.slice(0, colon).trim()
  const value = text.slice(colon + 1).trim()
  switch (kind) {
    case "tool":
      return TOOL.test(value) ? { _tag: "Tool", name: value } : `"${value}" is not a tool name`
    case "file_read":
    case "file_write": {
      const problem = globProblem(value)
      if (problem !== undefined) return problem
      return kind === "file_read" ? { _tag: "FileRead", glob: value } : { _tag: "FileWrite", glob: value }
    }
    case "http_get":
      return HOST.test(value) ? { _tag: "HttpGet", pattern: value } : `"${value}" is not a host[:port] pattern`
    case "spawn_agent": {
      const list = /^\[(.*)\]$/.exec(value)
      if (list === null) return `spawn_agent takes a list of manifest names: [a, b]`
      const names = list[1]!
        .split(",")
        .map((n) => n.trim())
        .filter((n) => n.length > 0)
      const bad = names.find((n) => !NAME.test(n))
      if (bad !== undefined) return `"${bad}" is not a manifest name`
      return { _tag: "SpawnAgent", names }
    }
    default:
      return `unknown capability kind "${kind}" (one of ${kinds.join(", ")})`
  }
}

/** What is wrong with a path glob of `file_read` / `file_write`, or `undefined`. */
const globProblem = (glob: string): string | undefined => {
  if (!glob.startsWith("/")) return `"${glob}" must be an absolute path glob`
  if (glob.includes("\0")) return "a path glob cannot hold a NUL"
  if (glob.split("/").some((segment) => segment === ".." || segment === ".")) {
    return `"${glob}" must not hold . or .. segments`
  }
  return undefined
}

const CapabilityText = Schema.String.check(
  Schema.makeFilter((text: string) => {
    const parsed = parseCapability(text)
    return typeof parsed === "string" ? parsed : true
  })
)

const Count = Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))

/** The most entries `capabilities` and `approval_required` may list: a kernel cap's tool grants are bounded too. */
export const listMax = 1024

const DurationText = Schema.Union([Schema.String, Schema.Number]).check(
  Schema.makeFilter((input: string | number) =>
    Option.isSome(Duration.fromInput(input as Duration.Input)) ? true : `"${String(input)}" is not a duration`
  )
)

/**
 * The manifest's encoded form (what YAML or JSON holds).
 *
 * @category schemas
 */
export const ManifestFields = Schema.Struct({
  name: Schema.String.check(
    Schema.makeFilter((n: string) => (NAME.test(n) ? true : "a name is letters, digits, _ and -, at most 64"))
  ),
  model: Schema.optionalKey(Schema.String.check(Schema.isNonEmpty())),
  system_prompt: Schema.optionalKey(Schema.String),
  capabilities: Schema.optionalKey(Schema.Array(CapabilityText).check(Schema.isMaxLength(listMax))),
  approval_required: Schema.optionalKey(Schema.Array(Schema.String).check(Schema.isMaxLength(listMax))),
  approval_timeout: Schema.optionalKey(DurationText),
  budget: Schema.optionalKey(
    Schema.Struct({
      tokens: Schema.optionalKey(Count),
      usd: Schema.optionalKey(Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0))),
      tool_calls: Schema.optionalKey(Count),
      wall: Schema.optionalKey(DurationText),
      children: Schema.optionalKey(Count)
    })
  ),
  restart: Schema.optionalKey(Schema.Literals(["permanent", "transient", "temporary"])),
  /** Policy rules the agent's calls must pass (see `Policy`), after the daemon's own. */
  policies: Schema.optionalKey(Schema.Array(Schema.Unknown))
})

/**
 * A decoded manifest.
 *
 * @category models
 */
export interface Manifest {
  readonly name: string
  readonly model: string | undefined
  readonly systemPrompt: string | undefined
  readonly capabilities: ReadonlyArray<Capability>
  /** The tools the capabilities grant, each once. */
  readonly tools: ReadonlyArray<string>
  readonly approvalRequired: ReadonlyArray<string>
  readonly approvalTimeout: Duration.Duration | undefined
  readonly budget: {
    readonly tokens?: number
    readonly usd?: number
    readonly toolCalls?: number
    readonly wall?: Duration.Duration
    readonly children?: number
  }
  readonly restart: "permanent" | "transient" | "temporary"
  /** The manifest's `policies:`, compiled; `undefined` when it has none. */
  readonly policies: Policy.PolicySet | undefined
}

const decodeFields = Schema.decodeUnknownEffect(ManifestFields)
/**
 * A Schema issue as problems, each with its path (`budget.tokens`, `capabilities[2]`).
 *
 * @category decoding
 */
export const problemsOf = (issue: SchemaIssue.Issue): Array<Problem> => issueProblems(issue)

const fail = (problems: ReadonlyArray<Problem>) =>
  new ManifestError({
    message: `invalid manifest: ${problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`)).join("; ")}`,
    problems
  })

/**
 * Decodes a manifest from a parsed value (an object from YAML or JSON): every problem at once.
 *
 * @category decoding
 */
export const decodeUnknown = (input: unknown): Effect.Effect<Manifest, ManifestError> =>
  Effect.gen(function* () {
    // the policies are compiled whatever else is wrong, so that their problems come with the others
    const rawPolicies =
      typeof input === "object" && input !== null && Object.hasOwn(input, "policies")
        ? (input as { readonly policies?: unknown }).policies
        : undefined
    const compiledPolicies = rawPolicies === undefined ? undefined : yield* Effect.exit(Policy.make(rawPolicies))
    const policyProblems: Array<Problem> = []
    if (compiledPolicies !== undefined && compiledPolicies._tag === "Failure") {
      const error = Cause.squash(compiledPolicies.cause)
      if (error instanceof Policy.PolicyError) {
        for (const p of error.problems) {
          policyProblems.push({
            path: `policies${p.path.startsWith("[") || p.path === "" ? "" : "."}${p.path}`,
            message: p.message
          })
        }
      } else policyProblems.push({ path: "policies", message: String(error) })
    }
    const fields = yield* decodeFields(input, { errors: "all", onExcessProperty: "error" }).pipe(
      Effect.mapError((error) =>
        fail([...problemsOf(error.issue).filter((p) => !p.path.startsWith("policies")), ...policyProblems])
      )
    )
    const capabilities = (fields.capabilities ?? []).map((text) => parseCapability(text) as Capability)
    const tools = [...new Set(capabilities.flatMap(toolOf))]
    const approvalRequired = fields.approval_required ?? []
    const problems: Array<Problem> = []
    approvalRequired.forEach((tool, i) => {
      if (!tools.includes(tool)) {
        problems.push({ path: `approval_required[${i}]`, message: `"${tool}" is not a tool the manifest grants` })
      }
    })
    const policies = compiledPolicies?._tag === "Success" ? compiledPolicies.value : undefined
    problems.push(...policyProblems)
    if (problems.length > 0) return yield* fail(problems)
    const duration = (input: string | number | undefined) =>
      input === undefined ? undefined : Option.getOrThrow(Duration.fromInput(input as Duration.Input))
    const budget = fields.budget ?? {}
    const wall = duration(budget.wall)
    return {
      name: fields.name,
      model: fields.model,
      systemPrompt: fields.system_prompt,
      capabilities,
      tools,
      approvalRequired,
      approvalTimeout: duration(fields.approval_timeout),
      budget: {
        ...(budget.tokens === undefined ? {} : { tokens: budget.tokens }),
        ...(budget.usd === undefined ? {} : { usd: budget.usd }),
        ...(budget.tool_calls === undefined ? {} : { toolCalls: budget.tool_calls }),
        ...(wall === undefined ? {} : { wall }),
        ...(budget.children === undefined ? {} : { children: budget.children })
      },
      restart: fields.restart ?? "temporary",
      policies
    } satisfies Manifest
  })

/**
 * Parses a text as JSON when it starts with `{`, else as YAML; what does not parse is one problem at path `""`.
 *
 * @category decoding
 */
export const parseText = (text: string): Effect.Effect<unknown, Problem> => {
  const json = text.trimStart().startsWith("{")
  return Effect.try({
    try: (): unknown => (json ? JSON.parse(text) : Yaml.parse(text)),
    catch: (error) => ({
      path: "",
      message: `not ${json ? "JSON" : "YAML"}: ${error instanceof Error ? error.message : String(error)}`
    })
  })
}

/**
 * Decodes a manifest from its text: JSON when it starts with `{`, else YAML (a YAML subset: no tags, one document).
 * A text that does not parse is a `ManifestError` whose one problem has the path `""`.
 *
 * @category decoding
 */
export const decode = (text: string): Effect.Effect<Manifest, ManifestError> =>
  Effect.gen(function* () {
    if (typeof text !== "string") return yield* fail([{ path: "", message: "a manifest is text" }])
    const parsed = yield* parseText(text).pipe(Effect.mapError((problem) => fail([problem])))
    return yield* decodeUnknown(parsed)
  })
