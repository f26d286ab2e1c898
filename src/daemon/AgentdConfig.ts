/**
 * The `agentd` configuration file (`agentd --config FILE`, else `<state>/agentd.yaml` when it exists): YAML or JSON,
 * decoded by one Schema, every problem reported at once with its path, unknown fields included (a typo is an error,
 * not a silent default).
 *
 * ```yaml
 * llm:
 *   base_url: http://127.0.0.1:8080/v1   # else OPENAI_BASE_URL, else OpenAI's
 *   model: qwen2.5                        # else OPENAI_MODEL
 *   api_key_env: MY_SERVER_KEY            # the key is read from this variable (else OPENAI_API_KEY); never in a file
 *   timeout: 60 seconds
 * http: 8080                              # POST /rpc on 127.0.0.1 (as --http)
 * socket: /run/agentd/agentd.sock         # (as --socket)
 * audit: { file_bytes: 16777216, files: 5 }
 * policies:                               # every agent's calls must pass these (see `Policy`), then its manifest's
 *   - { name: no-etc, match: { tool: "file_*", arguments: { path: { glob: "/etc/**" } } }, decision: kill }
 *   - { name: rest, decision: allow }
 * ```
 *
 * Command-line flags win over the file, the file over the environment.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Option, Schema } from "effect"
import * as Policy from "../services/Policy.ts"
import { type Problem, problemsOf } from "./Manifest.ts"
import * as Manifest from "./Manifest.ts"

/**
 * The file does not parse or does not decode: `problems` has every one with its path.
 *
 * @category errors
 */
export class AgentdConfigError extends Schema.TaggedError<AgentdConfigError>()("AgentdConfigError", {
  message: Schema.String,
  problems: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String }))
}) {}

const Port = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 65535 }))
const Positive = Schema.Int.check(Schema.isGreaterThanOrEqualTo(1))
const EnvName = Schema.String.check(
  Schema.makeFilter((n: string) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(n) ? true : `"${n}" is not a variable name`))
)
const DurationText = Schema.Union([Schema.String, Schema.Number]).check(
  Schema.makeFilter((input: string | number) =>
    Option.isSome(Duration.fromInput(input as Duration.Input)) ? true : `"${String(input)}" is not a duration`
  )
)

/**
 * The file's fields.
 *
 * @category schemas
 */
export const ConfigFields = Schema.Struct({
  llm: Schema.optionalKey(
    Schema.Struct({
      base_url: Schema.optionalKey(Schema.String.check(Schema.isNonEmpty())),
      model: Schema.optionalKey(Schema.String.check(Schema.isNonEmpty())),
      api_key_env: Schema.optionalKey(EnvName),
      timeout: Schema.optionalKey(DurationText)
    })
  ),
  http: Schema.optionalKey(Port),
  socket: Schema.optionalKey(Schema.String.check(Schema.isNonEmpty())),
  audit: Schema.optionalKey(
    Schema.Struct({
      file_bytes: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(4096))),
      files: Schema.optionalKey(Positive)
    })
  ),
  policies: Schema.optionalKey(Schema.Array(Schema.Unknown))
})

/**
 * A decoded configuration.
 *
 * @category models
 */
export interface AgentdConfig {
  readonly llm: {
    readonly baseURL?: string
    readonly model?: string
    readonly apiKeyEnv?: string
    readonly timeout?: Duration.Duration
  }
  readonly http?: number
  readonly socket?: string
  readonly audit: { readonly fileBytes?: number; readonly files?: number }
  /** The daemon's `policies:`, compiled. */
  readonly policies?: Policy.PolicySet
}

const decodeFields = Schema.decodeUnknownEffect(ConfigFields)

const fail = (problems: ReadonlyArray<Problem>) =>
  new AgentdConfigError({
    message: `invalid agentd config: ${problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`)).join("; ")}`,
    problems
  })

/**
 * Decodes the configuration from its text (JSON when it starts with `{`, else YAML, parsed as manifests are).
 *
 * @category decoding
 */
export const decode = (text: string): Effect.Effect<AgentdConfig, AgentdConfigError> =>
  Effect.gen(function* () {
    const parsed = yield* Manifest.parseText(text).pipe(Effect.mapError((problem) => fail([problem])))
    const fields = yield* decodeFields(parsed ?? {}, { errors: "all", onExcessProperty: "error" }).pipe(
      Effect.mapError((error) => fail(problemsOf(error.issue)))
    )
    const policies =
      fields.policies === undefined
        ? undefined
        : yield* Policy.make(fields.policies).pipe(
            Effect.mapError((error) =>
              fail(
                error.problems.map((p) => ({
                  path: `policies${p.path.startsWith("[") ? "" : "."}${p.path}`,
                  message: p.message
                }))
              )
            )
          )
    const llm = fields.llm ?? {}
    const timeout =
      llm.timeout === undefined ? undefined : Option.getOrThrow(Duration.fromInput(llm.timeout as Duration.Input))
    return {
      llm: {
        ...(llm.base_url === undefined ? {} : { baseURL: llm.base_url }),
        ...(llm.model === undefined ? {} : { model: llm.model }),
        ...(llm.api_key_env === undefined ? {} : { apiKeyEnv: llm.api_key_env }),
        ...(timeout === undefined ? {} : { timeout })
      },
      ...(fields.http === undefined ? {} : { http: fields.http }),
      ...(fields.socket === undefined ? {} : { socket: fields.socket }),
      ...(policies === undefined ? {} : { policies }),
      audit: {
        ...(fields.audit?.file_bytes === undefined ? {} : { fileBytes: fields.audit.file_bytes }),
        ...(fields.audit?.files === undefined ? {} : { files: fields.audit.files })
      }
    } satisfies AgentdConfig
  })
