/**
 * Agents as an MCP server: each manifest becomes a tool an MCP client can call (`agentctl mcp FILE...`, an MCP
 * server over stdio, as MCP clients start their servers). A call `{ message }` runs a new agent from that manifest on
 * the daemon (`agent.spawn`, then `agent.run`, over its socket: the manifest's capabilities, budget, policies and
 * approvals, enforced by the daemon's kernel), stops it once the call ends (answered, failed or cancelled), and reads back the answer as text, with
 * `{ pid, answer, steps, spend }` as structured content. A run that fails (the agent ended, the daemon refused it or
 * is not there) is an `isError` result naming why; the server goes on.
 *
 * The tool's name is the manifest's `name`, its description built from the manifest's `system_prompt`, its input
 * schema `{ message: string }` (nothing else). Manifests are decoded when the server starts:
 * an invalid one, or two with one name, stops it before it serves anything.
 *
 * Uses the optional peer `@modelcontextprotocol/sdk`.
 *
 * @since 0.1.0
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js"
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js"
import { Effect, Exit, Schema } from "effect"
import * as Client from "./Client.ts"
import * as Manifest from "./Manifest.ts"

/**
 * The server could not start: a manifest that does not decode, two manifests with one name, a name MCP does not
 * accept as a tool name.
 *
 * @category errors
 */
export class McpServeError extends Schema.TaggedError<McpServeError>()("McpServeError", {
  message: Schema.String
}) {}

/**
 * @category models
 */
export interface Options {
  /** agentd's socket. */
  readonly socket: string
  /** The manifests' texts (YAML or JSON), each with where it came from (for errors). */
  readonly manifests: ReadonlyArray<{ readonly source: string; readonly text: string }>
}

/** MCP's tool names: letters, digits, `_`, `-`, `.`, 1 to 128 characters. */
const toolName = /^[A-Za-z0-9_.-]{1,128}$/

const inputSchema = {
  type: "object",
  properties: { message: { type: "string", description: "what to ask the agent" } },
  required: ["message"],
  additionalProperties: false
} as const

interface Agent {
  readonly name: string
  readonly description: string
  readonly text: string
}

/** Decodes the manifests into tools; every problem at once. */
export const tools = (manifests: Options["manifests"]): Effect.Effect<ReadonlyArray<Agent>, McpServeError> =>
  Effect.gen(function* () {
    const agents: Array<Agent> = []
    const problems: Array<string> = []
    for (const { source, text } of manifests) {
      const decoded = yield* Effect.exit(Manifest.decode(text))
      if (Exit.isFailure(decoded)) {
        const error = decoded.cause.reasons.find((r) => r._tag === "Fail")?.error
        const details =
          error instanceof Manifest.ManifestError
            ? error.problems.map((p) => `${p.path === "" ? "(root)" : p.path}: ${p.message}`).join("; ")
            : "does not decode"
        problems.push(`${source}: ${details}`)
        continue
      }
      const manifest = decoded.value
      if (!toolName.test(manifest.name)) {
        problems.push(`${source}: the name ${JSON.stringify(manifest.name)} is not an MCP tool name`)
      } else if (agents.some((a) => a.name === manifest.name)) {
        problems.push(`${source}: a second agent named ${manifest.name}`)
      } else {
        agents.push({
          name: manifest.name,
          description:
            manifest.systemPrompt === undefined
              ? `Ask the ${manifest.name} agent (effect-agent-os)`
              : `Ask the ${manifest.name} agent: ${manifest.systemPrompt}`.slice(0, 1000),
          text
        })
      }
    }
    if (problems.length > 0) return yield* new McpServeError({ message: problems.join("\n") })
    if (agents.length === 0) return yield* new McpServeError({ message: "no manifest given" })
    return agents
  })

const failure = (text: string) => ({ content: [{ type: "text" as const, text }], isError: true })

/**
 * Serves the agents over `transport` (default: this process's stdin and stdout) until the client goes away.
 *
 * @category constructors
 */
export const serve = (options: Options, transport?: Transport): Effect.Effect<void, McpServeError> =>
  Effect.gen(function* () {
    const agents = yield* tools(options.manifests)
    const client = Client.make({ socket: options.socket })
    const server = new Server({ name: "agentd", version: "0.1.0" }, { capabilities: { tools: {} } })
    server.setRequestHandler(ListToolsRequestSchema, async () => ({
      tools: agents.map((a) => ({ name: a.name, description: a.description, inputSchema: { ...inputSchema } }))
    }))
    server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
      const agent = agents.find((a) => a.name === request.params.name)
      if (agent === undefined) return failure(`no agent ${request.params.name}`)
      const message = (request.params.arguments as { readonly message?: unknown } | undefined)?.message
      const extraKeys = Object.keys(request.params.arguments ?? {}).filter((k) => k !== "message")
      if (typeof message !== "string" || extraKeys.length > 0) {
        return failure(`${agent.name}: the arguments are { message: string }`)
      }
      // spawned, then run: the pid is known before the run, so the agent is stopped however the call ends (answered,
      // failed, or cancelled by the client)
      const run = Effect.gen(function* () {
        const spawned = (yield* client.call("agent.spawn", { manifest: agent.text })) as { readonly pid: number }
        return yield* Effect.gen(function* () {
          const result = (yield* client.call("agent.run", { pid: spawned.pid, message })) as {
            readonly answer: string
            readonly steps: number
            readonly spend: unknown
          }
          return {
            content: [{ type: "text" as const, text: result.answer }],
            structuredContent: { pid: spawned.pid, answer: result.answer, steps: result.steps, spend: result.spend }
          }
        }).pipe(
          Effect.ensuring(client.call("agent.stop", { pid: spawned.pid }).pipe(Effect.ignore, Effect.uninterruptible))
        )
      }).pipe(
        Effect.catch((error: Client.ClientError) =>
          Effect.succeed(
            failure(
              `${agent.name}: ${error.message}${
                typeof (error.data as { reason?: unknown } | undefined)?.reason === "string"
                  ? ` (${(error.data as { reason: string }).reason})`
                  : ""
              }`
            )
          )
        )
      )
      // the client's cancellation interrupts the run; the agent is stopped all the same
      return Effect.runPromise(run, { signal: extra.signal })
    })
    const closed = Effect.callback<void>((resume) => {
      server.onclose = () => resume(Effect.void)
    })
    if (transport === undefined) {
      // the client closing our stdin is the end of the session
      process.stdin.once("end", () => void server.close().catch(() => {}))
    }
    yield* Effect.tryPromise({
      try: () => server.connect(transport ?? new StdioServerTransport()),
      catch: (error) => new McpServeError({ message: `cannot serve MCP: ${String(error)}` })
    })
    yield* closed.pipe(Effect.ensuring(Effect.promise(() => server.close().catch(() => {}))))
  })
