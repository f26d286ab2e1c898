/**
 * MCP servers as tools devices: `Mcp.stdio({ name, command, args })` (a child process) and `Mcp.http({ name, url })`
 * (streamable HTTP) are drivers for `Kernel.layer({ drivers })`, over the official `@modelcontextprotocol/sdk` client.
 *
 * A read is a tool call exactly as on a `Tools` device — `{ tool, input }` (the arguments as a value) or
 * `{ tool, arguments }` (the JSON text a model returns) — or `{ _tag: "ListTools" }`, which reads back the tools the
 * device grants, each `{ name, description?, inputSchema }`, and costs nothing. What a call reads back:
 *
 * | call                                                         | outcome                                          |
 * | ------------------------------------------------------------ | ------------------------------------------------ |
 * | valid, the server answers                                    | `{ content, structuredContent? }` (plain JSON)   |
 * | a tool the server does not have, or `tools` does not grant   | a `ToolError`, reason `unknown-tool`             |
 * | arguments not JSON, or failing the tool's `inputSchema`      | a `ToolError`, reason `invalid-input`            |
 * | the server answers `isError`                                 | a `ToolError`, reason `failed` (its text)        |
 * | no answer within `timeout`                                   | `DeviceError` `timeout` (retryable)              |
 * | the server cannot be started or reached, or it went away     | `DeviceError` `unavailable` (retryable)          |
 * | the server breaks the protocol                               | `DeviceError` `protocol`                         |
 * | a request of another shape                                   | `DeviceError` `invalid-request`                  |
 *
 * **The membrane.** Each tool's JSON Schema `inputSchema` is compiled (Ajv; draft 2020-12 when the schema says so,
 * draft-07 otherwise) and checked in the kernel before the call leaves it: an invalid call never reaches the server.
 * A tool whose schema cannot be compiled cannot be checked, so every call to it is `invalid-input` (closed, not
 * open). `tools` narrows the device to some tools (default: all the server lists); a name it gives that the server
 * does not list makes the device `unavailable`. A process's cap can be narrowed further per tool, like any tools
 * device: `Sys.attenuate(cap, { tools: { read_file: {} } })` grants `read_file` and nothing else, and the kernel
 * refuses the rest (`out-of-scope`) before this driver sees them.
 *
 * **Cost and journal.** Every tool call that reaches the device costs one `toolCalls` (reserved before it starts),
 * valid or not. Results, `ToolError`s and `DeviceError`s are journaled by the kernel like any driver's, so a run
 * replays with the server gone: the driver connects only on its first live call (and lists the tools then), never in
 * a replay.
 *
 * **Lifecycle.** The server (for `stdio`, the child process, started with the SDK's default environment plus `env`,
 * not the host's whole environment) lives as long as the driver's scope — the kernel's. A server that exits or
 * drops the connection fails the calls in flight with `unavailable`; the next call starts (or reaches) it again.
 *
 * @since 0.1.0
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js"
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js"
import { ErrorCode, McpError } from "@modelcontextprotocol/sdk/types.js"
import { Ajv, type ValidateFunction } from "ajv"
import { Ajv2020 } from "ajv/dist/2020.js"
import { Duration, Effect, type Scope } from "effect"
import type { Cost } from "../services/Accounts.ts"
import { type CallContext, DeviceError, type Driver, type Handle } from "../services/Device.ts"
import { denied, toolError } from "./Tools.ts"

/**
 * Options shared by both transports.
 *
 * @category models
 */
export interface CommonOptions {
  /** The driver's name in the device table. */
  readonly name: string
  /** The tools the device grants (default: every tool the server lists). */
  readonly tools?: ReadonlyArray<string> | undefined
  /** How long one call may take (default 60 seconds). */
  readonly timeout?: Duration.Input | undefined
  /** How long connecting (starting the server, the MCP handshake, listing tools) may take (default 30 seconds). */
  readonly connectTimeout?: Duration.Input | undefined
}

/**
 * A server started as a child process, spoken to over its stdin and stdout.
 *
 * @category models
 */
export interface StdioOptions extends CommonOptions {
  readonly command: string
  readonly args?: ReadonlyArray<string> | undefined
  /** Added to the SDK's default environment (`HOME`, `PATH`, … — not the host's secrets). */
  readonly env?: Readonly<Record<string, string>> | undefined
  readonly cwd?: string | undefined
  /** The server's stderr: `"ignore"` (default) or `"inherit"`. */
  readonly stderr?: "ignore" | "inherit" | undefined
}

/**
 * A server reached over streamable HTTP.
 *
 * @category models
 */
export interface HttpOptions extends CommonOptions {
  readonly url: string
  /** Sent with every request (e.g. `Authorization`). */
  readonly headers?: Readonly<Record<string, string>> | undefined
}

/**
 * A tool as `ListTools` reads it back.
 *
 * @category models
 */
export interface ToolInfo {
  readonly name: string
  readonly description?: string
  readonly inputSchema: { readonly [key: string]: unknown }
}

/**
 * An MCP tools driver.
 *
 * @category models
 */
export interface McpDriver extends Driver {
  /** The tools the device grants, with their schemas (connects when it has not yet). */
  readonly listTools: Effect.Effect<ReadonlyArray<ToolInfo>, DeviceError>
}

/** The read that lists the granted tools. */
export const ListTools = { _tag: "ListTools" } as const

/**
 * A server as a tools driver, over stdio: the child process starts on the first live call.
 *
 * @category constructors
 */
export const stdio = (options: StdioOptions): Effect.Effect<McpDriver, never, Scope.Scope> =>
  make(options, () => {
    const env: Record<string, string> = {}
    for (const [key, value] of Object.entries(options.env ?? {})) env[key] = value
    return new StdioClientTransport({
      command: options.command,
      args: [...(options.args ?? [])],
      ...(options.env === undefined ? {} : { env: { ...defaultEnvironment(), ...env } }),
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      stderr: options.stderr ?? "ignore"
    })
  })

/**
 * A server as a tools driver, over streamable HTTP: reached on the first live call.
 *
 * @category constructors
 */
export const http = (options: HttpOptions): Effect.Effect<McpDriver, never, Scope.Scope> =>
  make(options, () => {
    const url = new URL(options.url)
    return new StreamableHTTPClientTransport(
      url,
      options.headers === undefined ? undefined : { requestInit: { headers: { ...options.headers } } }
    )
  })

// -----------------------------------------------------------------------------
// internals
// -----------------------------------------------------------------------------

/** The SDK's default environment for a child (what `StdioClientTransport` uses when no `env` is given). */
const defaultEnvironment = (): Record<string, string> => {
  const keys =
    process.platform === "win32"
      ? ["APPDATA", "HOMEDRIVE", "HOMEPATH", "LOCALAPPDATA", "PATH", "PROCESSOR_ARCHITECTURE", "SYSTEMDRIVE"]
      : ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"]
  const env: Record<string, string> = {}
  for (const key of keys) {
    const value = process.env[key]
    if (value !== undefined && !value.startsWith("()")) env[key] = value
  }
  return env
}

const callCost = { toolCalls: 1 } as const
const free = {} as const

/** The most tools a server may list (a hostile one could list without end). */
const toolsMax = 4096

interface Tool {
  readonly info: ToolInfo
  /** Compiled at the tool's first call (compiling every listed schema at once would hold the thread); a string: why
   * it cannot be, and every call is refused. */
  validate: ValidateFunction | string | undefined
}

const validatorOf = (tool: Tool): ValidateFunction | string => {
  if (tool.validate === undefined) {
    try {
      tool.validate =
        JSON.stringify(tool.info.inputSchema).length > schemaCharsMax
          ? `the schema is larger than ${schemaCharsMax} characters`
          : compile(tool.info.inputSchema)
    } catch (e) {
      tool.validate = e instanceof Error ? e.message : String(e)
    }
  }
  return tool.validate
}

interface Connection {
  readonly client: Client
  readonly tools: ReadonlyMap<string, Tool>
  closed: boolean
}

/** Plain JSON: what the server sent, without prototypes, getters or anything the journal cannot hold. */
const plain = (value: unknown): unknown => (value === undefined ? undefined : JSON.parse(JSON.stringify(value)))

// the arguments' copy runs after image code may have patched built-ins: it uses the ones captured here, at load
const getPrototypeOf = Reflect.getPrototypeOf
const ownKeys = Reflect.ownKeys
const getOwnPropertyDescriptor = Reflect.getOwnPropertyDescriptor
const isArray = Array.isArray
const objectPrototype = Object.prototype
const defineProperty = Reflect.defineProperty
const createObject = Object.create
const isFiniteNumber = Number.isFinite
const jsonParse = JSON.parse

/**
 * The arguments as JSON data, copied from own data properties of plain objects and arrays only: a class instance, an
 * accessor, a symbol key, a function or a non-finite number makes them invalid (`undefined`). Objects are made
 * without a prototype, so nothing on `Object.prototype` (a planted `toJSON`) changes what is validated and sent.
 */
const jsonArguments = (value: unknown, depth = 0): unknown => {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value
  if (typeof value === "number") return isFiniteNumber(value) ? value : undefined
  if (typeof value !== "object" || depth > 64) return undefined
  const array = isArray(value)
  if (!array) {
    const proto = getPrototypeOf(value)
    if (proto !== objectPrototype && proto !== null) return undefined
  }
  const out: object = array ? [] : (createObject(null) as object)
  const keys = ownKeys(value)
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    if (typeof key !== "string") return undefined
    if (array && key === "length") continue
    const descriptor = getOwnPropertyDescriptor(value, key)!
    if (!("value" in descriptor)) return undefined
    const copied = jsonArguments(descriptor.value, depth + 1)
    if (copied === undefined) return undefined
    defineProperty(out, key, { value: copied, enumerable: true, writable: true, configurable: true })
  }
  return out
}

/** The longest tool description kept (the rest is cut), and the largest input schema a tool may have. */
const descriptionCharsMax = 4096
const schemaCharsMax = 256 * 1024
/** The most pages of `tools/list` read (a server could page without end). */
const pagesMax = 256

const compile = (schema: { readonly [key: string]: unknown }): ValidateFunction => {
  const dialect = typeof schema.$schema === "string" ? schema.$schema : ""
  // one validator per schema: a schema's `$id` must not collide with another tool's in a shared instance
  const ajv = dialect.includes("2020-12")
    ? new Ajv2020({ strict: false, allErrors: true, validateFormats: false })
    : new Ajv({ strict: false, allErrors: true, validateFormats: false })
  return ajv.compile(schema)
}

const describeErrors = (validate: ValidateFunction): string =>
  (validate.errors ?? [])
    .slice(0, 20)
    .map((e) => `${e.instancePath === "" ? "(root)" : e.instancePath} ${e.message ?? "is invalid"}`)
    .join("; ")

const make = (options: CommonOptions, transport: () => Transport): Effect.Effect<McpDriver, never, Scope.Scope> =>
  Effect.gen(function* () {
    const device = options.name
    const timeoutMs = Duration.toMillis(Duration.fromInputUnsafe(options.timeout ?? "60 seconds"))
    const connectTimeoutMs = Duration.toMillis(Duration.fromInputUnsafe(options.connectTimeout ?? "30 seconds"))
    const granted = options.tools === undefined ? undefined : new Set(options.tools)
    let connecting: Promise<Connection> | undefined
    let current: Connection | undefined
    let ended = false

    const error = (reason: string, message: string, retryable?: boolean) =>
      new DeviceError({ device, reason, message: `${device}: ${message}`, ...(retryable ? { retryable } : {}) })

    const connect = async (): Promise<Connection> => {
      const client = new Client({ name: "effect-agent-os", version: "0.1.0" })
      const connection: { closed: boolean } = { closed: false }
      client.onclose = () => {
        connection.closed = true
      }
      try {
        // one deadline for the whole of connecting: the handshake and every page of the tool list
        const deadline = performance.now() + connectTimeoutMs
        const left = () => {
          const ms = deadline - performance.now()
          if (ms <= 0) throw new Error(`connecting took longer than ${connectTimeoutMs} ms`)
          return ms
        }
        await client.connect(transport(), { timeout: left() })
        const tools = new Map<string, Tool>()
        let cursor: string | undefined
        let listed = 0
        let pages = 0
        do {
          if (++pages > pagesMax) throw new Error(`the server's tool list runs past ${pagesMax} pages`)
          const page = await client.listTools(cursor === undefined ? {} : { cursor }, { timeout: left() })
          for (const tool of page.tools) {
            if (++listed > toolsMax) throw new Error(`the server lists more than ${toolsMax} tools`)
            if (granted !== undefined && !granted.has(tool.name)) continue
            const inputSchema = plain(tool.inputSchema) as { readonly [key: string]: unknown }
            const info: ToolInfo =
              typeof tool.description === "string"
                ? { name: tool.name, description: tool.description.slice(0, descriptionCharsMax), inputSchema }
                : { name: tool.name, inputSchema }
            tools.set(tool.name, { info, validate: undefined })
          }
          cursor = page.nextCursor
        } while (cursor !== undefined)
        if (granted !== undefined) {
          const missing = [...granted].filter((name) => !tools.has(name))
          if (missing.length > 0) throw new Error(`the server has no tool ${missing.join(", ")} (given in tools)`)
        }
        return Object.assign(connection, { client, tools }) as Connection
      } catch (e) {
        await client.close().catch(() => {})
        throw e
      }
    }

    /** The live connection, made when there is none (one attempt at a time). */
    const connection = Effect.tryPromise({
      try: async () => {
        if (ended) throw error("unavailable", "the driver has ended")
        if (current !== undefined && !current.closed) return current
        if (connecting === undefined) {
          connecting = connect().then(
            (made) => {
              connecting = undefined
              if (ended) {
                void made.client.close().catch(() => {})
                throw error("unavailable", "the driver has ended")
              }
              current = made
              return made
            },
            (e) => {
              connecting = undefined
              throw e
            }
          )
        }
        return connecting
      },
      catch: (e) =>
        e instanceof DeviceError
          ? e
          : error("unavailable", `cannot reach the MCP server: ${e instanceof Error ? e.message : String(e)}`, true)
    })

    const listTools = Effect.map(connection, (c) => [...c.tools.values()].map((t) => t.info))

    const call = (c: Connection, tool: Tool, args: unknown) =>
      Effect.tryPromise({
        try: (signal) =>
          c.client.callTool({ name: tool.info.name, arguments: args as Record<string, unknown> }, undefined, {
            signal,
            timeout: timeoutMs
          }),
        catch: (e) => {
          if (e instanceof McpError && e.code === ErrorCode.RequestTimeout) {
            return error("timeout", `${tool.info.name}: no answer within ${timeoutMs} ms`, true)
          }
          if (c.closed || (e instanceof McpError && e.code === ErrorCode.ConnectionClosed)) {
            c.closed = true
            return error("unavailable", `${tool.info.name}: the server went away`, true)
          }
          if (e instanceof McpError) {
            // a JSON-RPC error answer (e.g. invalid params the server refused): the agent reads it as a ToolError
            return error("protocol", `${tool.info.name}: ${e.message}`)
          }
          return error("unavailable", `${tool.info.name}: ${e instanceof Error ? e.message : String(e)}`, true)
        }
      })

    const read = (request: unknown, context: CallContext): Effect.Effect<{ value: unknown; cost: Cost }, DeviceError> =>
      Effect.gen(function* () {
        const r = request as { readonly _tag?: unknown; readonly tool?: unknown; readonly input?: unknown }
        if (typeof r === "object" && r !== null && r._tag === "ListTools") {
          return { value: yield* listTools, cost: free }
        }
        const parsed = parseCall(request)
        if (parsed === undefined) {
          return yield* error(
            "invalid-request",
            "a call is { tool, input }, { tool, arguments } or { _tag: ListTools }"
          )
        }
        const charged = (value: unknown) => ({ value, cost: callCost })
        const c = yield* connection
        const tool = c.tools.get(parsed.tool)
        if (tool === undefined) {
          const names = [...c.tools.keys()].join(", ")
          return charged(
            toolError(parsed.tool, "unknown-tool", `unknown tool "${parsed.tool}"; the tools are: ${names}`)
          )
        }
        if ("error" in parsed) {
          return charged(
            toolError(
              parsed.tool,
              "invalid-input",
              parsed.error === "not-json"
                ? `${parsed.tool}: the arguments are not JSON`
                : `${parsed.tool}: the arguments must be plain JSON data (no class instances, accessors or functions)`
            )
          )
        }
        // a scope this driver cannot enforce (a file tool's globs given to an MCP tool) refuses the call: closed
        if (context.scopes !== undefined && context.scopes.some((scope) => scope !== undefined)) {
          return charged(
            toolError(
              parsed.tool,
              "invalid-input",
              `${parsed.tool}: this MCP device enforces no scope; grant the tool without one`
            )
          )
        }
        const validate = validatorOf(tool)
        if (typeof validate === "string") {
          return charged(
            toolError(parsed.tool, "invalid-input", `${parsed.tool}: its input schema cannot be enforced (${validate})`)
          )
        }
        if (!validate(parsed.args)) {
          return charged(
            toolError(parsed.tool, "invalid-input", `${parsed.tool}: ${describeErrors(validate)}`, {
              errors: plain(validate.errors)
            })
          )
        }
        const result = (yield* call(c, tool, parsed.args)) as {
          readonly content?: unknown
          readonly structuredContent?: unknown
          readonly isError?: unknown
          readonly toolResult?: unknown
        }
        if (result.isError === true) {
          return charged(toolError(parsed.tool, "failed", `${parsed.tool}: ${textOf(result.content)}`))
        }
        const value: Record<string, unknown> = { content: plain(result.content ?? result.toolResult ?? []) }
        if (result.structuredContent !== undefined) value.structuredContent = plain(result.structuredContent)
        return charged(value)
      })

    const handle: Handle = { read: (request, context) => read(request, context) }

    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        ended = true
        // a connection still being made closes itself when it is done (see `connection`): never waited for here
        const open = current
        current = undefined
        if (open !== undefined) await open.client.close().catch(() => {})
      })
    )

    return {
      name: device,
      meters: ["toolCalls"],
      reserve: (request: unknown): Cost =>
        (request as { readonly _tag?: unknown } | null)?._tag === "ListTools" ? free : callCost,
      denied,
      open: () => Effect.succeed(handle),
      listTools
    } satisfies McpDriver
  })

type ParsedCall =
  | { readonly tool: string; readonly args: unknown }
  | { readonly tool: string; readonly error: "not-json" | "not-plain" }

/** `{ tool, input }` or `{ tool, arguments: "<json>" }`, read once each (a getter is not asked twice). */
const parseCall = (request: unknown): ParsedCall | undefined => {
  if (typeof request !== "object" || request === null) return undefined
  const ownData = (key: string): unknown => {
    const descriptor = getOwnPropertyDescriptor(request, key)
    return descriptor !== undefined && "value" in descriptor ? descriptor.value : undefined
  }
  // own data properties only: a prototype's getter must not name another tool or other arguments than were checked
  const tool = ownData("tool")
  if (typeof tool !== "string") return undefined
  const input = ownData("input")
  if (input !== undefined) {
    const args = jsonArguments(input)
    return args === undefined ? { tool, error: "not-plain" } : { tool, args }
  }
  const text = ownData("arguments")
  if (typeof text !== "string") return undefined
  let parsed: unknown
  try {
    parsed = jsonParse(text)
  } catch {
    return { tool, error: "not-json" }
  }
  const args = jsonArguments(parsed)
  return args === undefined ? { tool, error: "not-json" } : { tool, args }
}

const textOf = (content: unknown): string => {
  if (!Array.isArray(content)) return "the tool failed"
  const texts = content
    .filter((c): c is { type: "text"; text: string } => c?.type === "text" && typeof c.text === "string")
    .map((c) => c.text)
  return texts.length === 0 ? "the tool failed" : texts.join("\n").slice(0, 4000)
}
