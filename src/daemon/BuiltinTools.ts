/**
 * Runs the daemon's built-in tools — `echo`, `file_read`, `file_write`, `http_get`, `spawn_agent` — confined by the
 * scopes of the caller's caps.
 *
 * The kernel checks that a call names a tool its cap grants (`Sys.attenuate(cap, { tools })`, else a
 * `CapabilityError` `out-of-scope`) and hands the driver the `scope` each narrowing gave that tool
 * (`CallContext.scopes`, outermost first, `undefined` where a narrowing gave none). These tools allow a call only if
 * **every** scope given allows it, and refuse it when none was given at all — no narrowing, or narrowings that grant
 * the tool without a scope (fail closed: `{ file_read: {} }` reads nothing). A scope of the wrong shape allows
 * nothing.
 *
 * | tool         | input                 | result                         | scope                                 |
 * | ------------ | --------------------- | ------------------------------ | ------------------------------------- |
 * | `echo`       | `{ text }`            | the text                       | none needed                           |
 * | `file_read`  | `{ path }`            | `{ path, content }`            | `{ globs: ["/abs/glob/*", …] }`       |
 * | `file_write` | `{ path, content }`   | `{ path, bytes }`              | `{ globs: ["/abs/glob/*", …] }`       |
 * | `http_get`   | `{ url }`             | `{ status, headers, body }`    | `{ hosts: ["127.0.0.1:*", …] }`       |
 * | `spawn_agent`| `{ manifest, message }` | `{ _tag: "SpawnAgent", name, manifest, message }` | `{ names: ["summarizer", …] }` |
 *
 * **Files.** A path must be absolute (an agent has no working directory; a relative path is refused). It is resolved
 * — `.` and `..` removed, symlinks followed with `realpath` — before it is matched against the globs
 * (`FileAccess.check`), so `../`, absolute-path and symlink escapes are refused; the `path` returned is the resolved
 * one, where the bytes really are. `file_read` reads UTF-8 (invalid bytes become U+FFFD), at most `fileBytesMax`
 * bytes (a larger file is refused, not truncated); only regular files. `file_write` replaces the whole file: it
 * writes a temporary file beside the target, fsyncs it, then renames it over the target, so a crash leaves either the
 * old file or the new one, never half of one; an existing file keeps its mode. The target's directory must exist (no
 * directories are created) and the content is bounded by `fileBytesMax` too. A symlink is written through only when
 * what it resolves to is allowed; a dangling one is refused.
 *
 * What is not covered: a file system changed between the check and the open by someone else (the agent itself
 * cannot make symlinks; the final component is opened with `O_NOFOLLOW`, which narrows that window), and hard links
 * (one inode under an allowed and a forbidden name is the same file; path checks cannot see that).
 *
 * **HTTP.** `http:` and `https:` URLs only, without credentials. The URL's host and port must match a pattern of
 * every scope: a pattern is `host` or `host:port`, `*` in the host matches any run of characters (dots too, so
 * `*.example.com` matches `a.b.example.com` but not `example.com`), a port `*` matches any port, and **a pattern
 * without a port allows only the scheme's default port** (80 for `http:`, 443 for `https:`). Matching is on the
 * host as the URL parser normalizes it (lowercase; `http://2130706433/` is `127.0.0.1`); IPv6 literals match no
 * pattern. Redirects are not followed: a 3xx comes back as it is, `location` in its headers, so a redirect can never
 * reach a host outside the patterns. The body is read as UTF-8 text, at most `httpBodyBytesMax` bytes (a larger one
 * is refused); the whole request is bounded by `httpTimeoutMs`. Names are resolved by DNS when fetched: a pattern
 * names hosts, not addresses.
 *
 * **Agents.** `spawn_agent` only decides: its `manifest` (YAML or JSON text) must decode, and its `name` must be in
 * every scope's `names`. What it returns is the go-ahead the calling agent acts on in its own process
 * (`SpawnAgent.follow`, the daemon's conversations run it): there the helper is spawned as the caller's child, with
 * caps narrowed from the caller's own and a quota carved from the caller's budget, so it is never wider than the
 * caller.
 *
 * Every refusal and every I/O error is a `Tools.ToolFailure` with a message for the agent (it reads a `ToolError`
 * `failed`), never a defect. `grantsOf(manifest)` turns a manifest's capabilities into the tools narrowing that gives
 * exactly these scopes.
 *
 * @since 0.1.0
 */
import { randomUUID } from "node:crypto"
import * as fs from "node:fs/promises"
import * as nodePath from "node:path"
import { Effect, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import * as Tools from "../drivers/Tools.ts"
import type { ToolGrant, ToolGrants } from "../services/Capability.ts"
import type { CallContext } from "../services/Device.ts"
import * as FileAccess from "./FileAccess.ts"
import * as Manifest from "./Manifest.ts"

// -----------------------------------------------------------------------------
// declarations
// -----------------------------------------------------------------------------

/** @category tools */
export const Echo = Tool.make("echo", {
  description: "Returns the text it is given.",
  parameters: Schema.Struct({ text: Schema.String }),
  success: Schema.String
})

/** @category tools */
export const FileRead = Tool.make("file_read", {
  description:
    "Reads a UTF-8 text file. `path` must be absolute and inside the paths this agent may read; returns the resolved path and the content.",
  parameters: Schema.Struct({ path: Schema.String }),
  success: Schema.Struct({ path: Schema.String, content: Schema.String })
})

/** @category tools */
export const FileWrite = Tool.make("file_write", {
  description:
    "Writes a UTF-8 text file, replacing it whole. `path` must be absolute, inside the paths this agent may write, in a directory that exists; returns the resolved path and the bytes written.",
  parameters: Schema.Struct({ path: Schema.String, content: Schema.String }),
  success: Schema.Struct({ path: Schema.String, bytes: Schema.Int })
})

/** @category tools */
export const HttpGet = Tool.make("http_get", {
  description:
    "Fetches an http: or https: URL with GET, from the hosts this agent may reach; returns the status, the response headers and the body as text. Redirects are not followed.",
  parameters: Schema.Struct({ url: Schema.String }),
  success: Schema.Struct({
    status: Schema.Int,
    headers: Schema.Record(Schema.String, Schema.String),
    body: Schema.String
  })
})

/** @category tools */
export const SpawnAgent = Tool.make("spawn_agent", {
  description:
    "Starts a helper agent from a manifest (YAML or JSON text: name, system_prompt, capabilities, budget) whose name is one this agent may spawn, asks it `message`, and returns its answer. The helper gets at most this agent's own tools and a part of its budget.",
  parameters: Schema.Struct({ manifest: Schema.String, message: Schema.String }),
  success: Schema.Struct({
    _tag: Schema.Literal("SpawnAgent"),
    name: Schema.String,
    manifest: Schema.String,
    message: Schema.String
  })
})

/**
 * The declarations: what `tool.list` and the models are told, and what `make` implements.
 *
 * @category tools
 */
export const toolkit = Toolkit.make(Echo, FileRead, FileWrite, HttpGet, SpawnAgent)

/**
 * The tools as a model is told of them (`Tools.definitions(toolkit)`).
 *
 * @category tools
 */
export const definitions: ReadonlyArray<Tools.Definition> = Tools.definitions(toolkit)

// -----------------------------------------------------------------------------
// options
// -----------------------------------------------------------------------------

/**
 * Options of `make`; every one has its default in `defaults`.
 *
 * @category models
 */
export interface Options {
  /** The device name. */
  readonly name?: string | undefined
  /** The most bytes `file_read` reads and `file_write` writes. */
  readonly fileBytesMax?: number | undefined
  /** The most body bytes `http_get` returns. */
  readonly httpBodyBytesMax?: number | undefined
  /** How long one `http_get` may take, headers and body, in millis. */
  readonly httpTimeoutMs?: number | undefined
}

/**
 * The defaults of `Options`, declared once. 1 MiB is far more text than a model's context holds; a bigger file or
 * page is refused rather than truncated, so the agent never mistakes a part for the whole.
 *
 * @category models
 */
export const defaults = {
  name: "tools",
  fileBytesMax: 1024 * 1024,
  httpBodyBytesMax: 1024 * 1024,
  httpTimeoutMs: 10_000
} as const

// -----------------------------------------------------------------------------
// the driver
// -----------------------------------------------------------------------------

/**
 * Builds the tools device (`Tools.make(toolkit, …)`, named `options.name`, default `"tools"`), each call confined by
 * its scopes. It needs no services: pass it straight to `Kernel.layer({ drivers })`.
 *
 * @example
 * ```ts
 * const tools = yield* BuiltinTools.make()
 * const narrowed = yield* Sys.attenuate(grant.devices.tools!, { tools: BuiltinTools.grantsOf(manifest) })
 * ```
 *
 * @category constructors
 */
export const make = (
  options?: Options
): Effect.Effect<Tools.Toolset<(typeof toolkit)["tools"]>, Tools.ToolsetError> => {
  const fileBytesMax = options?.fileBytesMax ?? defaults.fileBytesMax
  const httpBodyBytesMax = options?.httpBodyBytesMax ?? defaults.httpBodyBytesMax
  const httpTimeoutMs = options?.httpTimeoutMs ?? defaults.httpTimeoutMs
  return Tools.make(
    toolkit,
    {
      echo: (params) => Effect.succeed(params.text),
      file_read: (params, call) =>
        Effect.gen(function* () {
          const path = yield* confine("file_read", params.path, call)
          return { path, content: yield* readText(path, fileBytesMax) }
        }),
      file_write: (params, call) =>
        Effect.gen(function* () {
          const path = yield* confine("file_write", params.path, call)
          const bytes = Buffer.byteLength(params.content, "utf8")
          if (bytes > fileBytesMax) {
            return yield* refuse(`file_write: the content is ${bytes} bytes, more than the ${fileBytesMax} allowed`)
          }
          yield* writeAtomic(path, params.content)
          return { path, bytes }
        }),
      http_get: (params, call) =>
        Effect.gen(function* () {
          const url = yield* confineUrl(params.url, call)
          return yield* fetchText(url, httpBodyBytesMax, httpTimeoutMs)
        }),
      spawn_agent: (params, call) =>
        Effect.gen(function* () {
          const scopes = listsOf(call, "names")
          if (scopes._tag === "none") return yield* refuse("spawn_agent: this agent may not spawn any agent")
          const manifest = yield* Manifest.decode(params.manifest).pipe(
            Effect.mapError((error) =>
              refuse(
                `spawn_agent: the manifest is invalid: ${error.problems.map((p) => `${p.path || "(root)"}: ${p.message}`).join("; ")}`
              )
            )
          )
          for (const names of scopes.lists) {
            if (!names.includes(manifest.name)) {
              return yield* refuse(`spawn_agent: this agent may not spawn "${manifest.name}"`)
            }
          }
          return {
            _tag: "SpawnAgent" as const,
            name: manifest.name,
            manifest: params.manifest,
            message: params.message
          }
        })
    },
    { name: options?.name ?? defaults.name }
  )
}

// -----------------------------------------------------------------------------
// grants
// -----------------------------------------------------------------------------

/**
 * The tools narrowing a manifest gives its agent, for `Sys.attenuate(cap, { tools })`:
 *
 * - `tool: x` → `x: {}` (no scope: a scoped tool granted this way alone is refused every call);
 * - every `file_read:` glob together → `file_read: { scope: { globs } }`, the same for `file_write`;
 * - every `http_get:` pattern → `http_get: { scope: { hosts } }`;
 * - every `spawn_agent:` name → `spawn_agent: { scope: { names } }`;
 * - each tool of `approval_required` gets `approval: { timeout: approval_timeout }`, or `approval: true` without one.
 *
 * @category grants
 */
export const grantsOf = (manifest: Manifest.Manifest): ToolGrants => {
  const lists = {
    file_read: new Set<string>(),
    file_write: new Set<string>(),
    http_get: new Set<string>(),
    spawn_agent: new Set<string>()
  }
  const grants: Record<string, ToolGrant> = {}
  for (const capability of manifest.capabilities) {
    switch (capability._tag) {
      case "Tool":
        grants[capability.name] = {}
        break
      case "FileRead":
        lists.file_read.add(capability.glob)
        break
      case "FileWrite":
        lists.file_write.add(capability.glob)
        break
      case "HttpGet":
        lists.http_get.add(capability.pattern)
        break
      case "SpawnAgent":
        for (const name of capability.names) lists.spawn_agent.add(name)
        break
    }
  }
  if (lists.file_read.size > 0) grants.file_read = { scope: { globs: [...lists.file_read] } }
  if (lists.file_write.size > 0) grants.file_write = { scope: { globs: [...lists.file_write] } }
  if (lists.http_get.size > 0) grants.http_get = { scope: { hosts: [...lists.http_get] } }
  if (lists.spawn_agent.size > 0) grants.spawn_agent = { scope: { names: [...lists.spawn_agent] } }
  const approval = manifest.approvalTimeout === undefined ? true : { timeout: manifest.approvalTimeout }
  for (const tool of manifest.approvalRequired) {
    // Manifest.decode already refuses an approval for a tool it does not grant; a hand-built manifest gets none
    const grant = grants[tool]
    if (grant !== undefined) grants[tool] = { ...grant, approval }
  }
  return grants
}

// -----------------------------------------------------------------------------
// host patterns
// -----------------------------------------------------------------------------

const defaultPorts: Readonly<Record<string, string>> = { "http:": "80", "https:": "443" }

/**
 * Whether `url`'s host and port match a host pattern (`127.0.0.1:*`, `*.example.com`, `localhost:8080`): `*` in
 * the host matches any run of characters but `:` and `/`; port `*` any port; no port only the scheme's default port.
 * Case-insensitive.
 *
 * @category checking
 */
export const hostMatches = (url: URL, pattern: string): boolean => {
  const colon = pattern.lastIndexOf(":")
  const hostPattern = colon === -1 ? pattern : pattern.slice(0, colon)
  const portPattern = colon === -1 ? undefined : pattern.slice(colon + 1)
  const port = url.port === "" ? defaultPorts[url.protocol] : url.port
  if (port === undefined) return false
  if (portPattern === undefined ? port !== defaultPorts[url.protocol] : portPattern !== "*" && portPattern !== port) {
    return false
  }
  const source = hostPattern
    .toLowerCase()
    .split("*")
    .map((part) => part.replace(/[.+?^${}()|[\]\\/]/g, "\\$&"))
    .join("[^:/]*")
  return new RegExp(`^${source}$`).test(url.hostname.toLowerCase())
}

// -----------------------------------------------------------------------------
// internals
// -----------------------------------------------------------------------------

const refuse = (message: string) => new Tools.ToolFailure({ message })

type Lists = { readonly _tag: "none" } | { readonly _tag: "some"; readonly lists: ReadonlyArray<ReadonlyArray<string>> }

/**
 * The `key` lists of a call's scopes: `none` when no scope was given (refused: fail closed). A scope of the wrong
 * shape counts as an empty list, which allows nothing.
 */
const listsOf = (call: CallContext, key: string): Lists => {
  const lists: Array<ReadonlyArray<string>> = []
  for (const scope of call.scopes ?? []) {
    if (scope === undefined) continue
    const list = typeof scope === "object" && scope !== null ? (scope as Record<string, unknown>)[key] : undefined
    lists.push(Array.isArray(list) && list.every((item) => typeof item === "string") ? list : [])
  }
  return lists.length === 0 ? { _tag: "none" } : { _tag: "some", lists }
}

/** The resolved path, if it is absolute and every scope's globs allow it. */
const confine = (tool: string, path: string, call: CallContext): Effect.Effect<string, Tools.ToolFailure> =>
  Effect.gen(function* () {
    const scopes = listsOf(call, "globs")
    if (scopes._tag === "none") return yield* refuse(`${tool}: this agent may not ${verbs[tool]} any path`)
    if (!nodePath.isAbsolute(path)) return yield* refuse(`${tool}: "${path}" is not an absolute path`)
    let resolved = path
    for (const globs of scopes.lists) {
      const allowed = yield* FileAccess.compile(globs)
      resolved = yield* FileAccess.check(path, allowed).pipe(
        Effect.mapError((error) => refuse(`${tool}: ${error.message}`))
      )
    }
    return resolved
  })

const verbs: Readonly<Record<string, string>> = { file_read: "read", file_write: "write" }

/** The URL, if it is `http:`/`https:`, without credentials, and every scope's host patterns allow it. */
const confineUrl = (text: string, call: CallContext): Effect.Effect<URL, Tools.ToolFailure> =>
  Effect.gen(function* () {
    const scopes = listsOf(call, "hosts")
    if (scopes._tag === "none") return yield* refuse("http_get: this agent may not reach any host")
    const url = URL.parse(text)
    if (url === null) return yield* refuse(`http_get: "${text}" is not a URL`)
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      return yield* refuse(`http_get: only http: and https: URLs are fetched, not ${url.protocol}`)
    }
    if (url.username !== "" || url.password !== "") {
      return yield* refuse("http_get: a URL with credentials is refused")
    }
    for (const hosts of scopes.lists) {
      if (!hosts.some((pattern) => hostMatches(url, pattern))) {
        return yield* refuse(`http_get: ${url.host} is not a host this agent may reach`)
      }
    }
    return url
  })

/** Says what an I/O error was, for the agent. */
const describe = (error: unknown): string => {
  const code = (error as { readonly code?: unknown } | null)?.code
  switch (code) {
    case "ENOENT":
      return "no such file or directory"
    case "EACCES":
    case "EPERM":
      return "permission denied"
    case "EISDIR":
      return "is a directory"
    case "ENOTDIR":
      return "a component of the path is not a directory"
    case "ELOOP":
      return "is a symlink, not followed (it dangles, or was swapped in after the check)"
  }
  return error instanceof Error ? error.message : String(error)
}

/** A refusal carried through a promise, so that its message is not rewritten by `describe`. */
class Refusal extends Error {}

const ioFailure = (tool: string, path: string) => (error: unknown) =>
  refuse(error instanceof Refusal ? `${tool}: ${path}: ${error.message}` : `${tool}: ${path}: ${describe(error)}`)

/**
 * `O_NOFOLLOW`: the path was resolved, so a symlink at its end now means it was swapped after the check.
 * `O_NONBLOCK`: opening a FIFO for reading would otherwise wait for a writer; with it the open returns and the
 * regular-file check refuses it.
 */
const readFlags = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK

/** At most `max` bytes of a regular file, as UTF-8; one byte more is a refusal (the file is read, not its `size`). */
const readText = (path: string, max: number): Effect.Effect<string, Tools.ToolFailure> =>
  Effect.tryPromise({
    try: async () => {
      const handle = await fs.open(path, readFlags)
      try {
        const stat = await handle.stat()
        if (stat.isDirectory()) throw new Refusal("is a directory")
        if (!stat.isFile()) throw new Refusal("is not a regular file")
        if (stat.size > max) throw new Refusal(`is ${stat.size} bytes, more than the ${max} allowed`)
        // read to the end rather than trusting `size`: a file may grow, and some report 0
        const buffer = Buffer.alloc(max + 1)
        let length = 0
        while (length < buffer.length) {
          const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length)
          if (bytesRead === 0) break
          length += bytesRead
        }
        if (length > max) throw new Refusal(`is more than the ${max} bytes allowed`)
        return buffer.toString("utf8", 0, length)
      } finally {
        await handle.close()
      }
    },
    catch: ioFailure("file_read", path)
  })

/**
 * Replaces the file at the resolved `path` with `content`: a temporary file in the same directory (so the rename
 * cannot cross file systems), fsynced before the rename so a power loss cannot leave the new name on empty blocks,
 * and the directory fsynced after it (best effort) so the rename itself is durable. The temporary file is removed on
 * any failure. Interruption does not stop the promise halfway: it runs to the end or to its own cleanup.
 */
const writeAtomic = (path: string, content: string): Effect.Effect<void, Tools.ToolFailure> =>
  Effect.tryPromise({
    try: async () => {
      const directory = nodePath.dirname(path)
      const parent = await fs.stat(directory).catch((error: unknown) => {
        const code = (error as { readonly code?: unknown }).code
        throw new Refusal(
          code === "ENOENT" ? `the directory ${directory} does not exist` : `${directory}: ${describe(error)}`
        )
      })
      if (!parent.isDirectory()) throw new Refusal(`${directory} is not a directory`)
      const existing = await fs.lstat(path).catch(() => undefined)
      // the path was resolved, so a symlink here dangles (or was swapped in after the check): never follow it
      if (existing?.isSymbolicLink()) throw new Refusal("is a symlink to nothing")
      if (existing?.isDirectory()) throw new Refusal("is a directory")
      if (existing !== undefined && !existing.isFile()) throw new Refusal("is not a regular file")
      const temporary = nodePath.join(directory, `.${nodePath.basename(path)}.${randomUUID()}.tmp`)
      const handle = await fs.open(temporary, "wx")
      try {
        try {
          if (existing !== undefined) await handle.chmod(existing.mode & 0o7777)
          await handle.writeFile(content, "utf8")
          await handle.sync()
        } finally {
          await handle.close()
        }
        await fs.rename(temporary, path)
      } catch (error) {
        await fs.rm(temporary, { force: true })
        throw error
      }
      await syncDirectory(directory)
    },
    catch: ioFailure("file_write", path)
  })

const syncDirectory = async (directory: string): Promise<void> => {
  try {
    const handle = await fs.open(directory, fs.constants.O_RDONLY)
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {
    // some file systems cannot fsync a directory; the rename is still atomic, only its durability is weaker
  }
}

/** One GET, redirects returned rather than followed, the body read up to `max` bytes and the whole bounded in time. */
const fetchText = (
  url: URL,
  max: number,
  timeoutMs: number
): Effect.Effect<{ status: number; headers: Record<string, string>; body: string }, Tools.ToolFailure> =>
  Effect.tryPromise({
    try: async (signal) => {
      const response = await fetch(url, {
        method: "GET",
        redirect: "manual",
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)])
      })
      const reader = response.body?.getReader()
      const chunks: Array<Uint8Array> = []
      let length = 0
      while (reader !== undefined) {
        const { done, value } = await reader.read()
        if (done) break
        length += value.byteLength
        if (length > max) {
          await reader.cancel()
          throw new Refusal(`the body is more than the ${max} bytes allowed`)
        }
        chunks.push(value)
      }
      return {
        status: response.status,
        headers: Object.fromEntries(response.headers),
        body: Buffer.concat(chunks).toString("utf8")
      }
    },
    catch: (error) => {
      if (error instanceof Refusal) return refuse(`http_get: ${url.href}: ${error.message}`)
      const name = (error as { readonly name?: unknown } | null)?.name
      if (name === "TimeoutError") return refuse(`http_get: ${url.href}: no answer within ${timeoutMs} ms`)
      const cause = (error as { readonly cause?: unknown } | null)?.cause
      return refuse(`http_get: ${url.href}: ${describe(error)}${cause === undefined ? "" : `: ${describe(cause)}`}`)
    }
  })
