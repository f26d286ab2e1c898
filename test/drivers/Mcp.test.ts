/**
 * MCP tools under capabilities, against real servers from npm started by the test:
 * `@modelcontextprotocol/server-filesystem` (confined to a temporary directory) over stdio, and
 * `@modelcontextprotocol/server-everything` over stdio and streamable HTTP.
 *
 * Each grant beside its refusals: a tool the cap does not grant (the kernel refuses it, the server never sees it),
 * an argument that fails the tool's JSON Schema (refused at the membrane, the server never sees it), a tool the device
 * does not grant, a server that crashes, a call that times out; every call metered; a recorded run replayed with the
 * server gone.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { Effect, Exit, Layer } from "effect"
import { type Capability, Journal, Kernel, Process, Sys } from "effect-agent-os"
import { Mcp } from "effect-agent-os/mcp"

const require = createRequire(import.meta.url)
const binOf = (pkg: string) => join(dirname(require.resolve(`${pkg}/package.json`)), "dist", "index.js")
const filesystemBin = binOf("@modelcontextprotocol/server-filesystem")
const everythingBin = binOf("@modelcontextprotocol/server-everything")

const tmp = () => realpathSync(mkdtempSync(join(tmpdir(), "mcp-")))

const filesystem = (dir: string, options?: Partial<Mcp.StdioOptions>) =>
  Mcp.stdio({ name: "fs", command: process.execPath, args: [filesystemBin, dir], ...options })

const everything = (options?: Partial<Mcp.StdioOptions>) =>
  Mcp.stdio({ name: "everything", command: process.execPath, args: [everythingBin, "stdio"], ...options })

/** Boots `image` with the driver's device granted, waits for it, and returns what it recorded and how it ended. */
const runAgent = <A>(
  driver: Effect.Effect<Mcp.McpDriver, never, any>,
  name: string,
  body: (device: Capability.CapRef) => Effect.Effect<A, unknown, Sys.Sys>,
  options?: { readonly quota?: { readonly toolCalls?: number }; readonly journal?: Journal.Mode }
) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    let out: A | undefined
    const pid = yield* kernel.boot(
      Process.make<Kernel.BootGrant>("agent", (grant) =>
        Effect.gen(function* () {
          out = yield* body(grant.devices[name]!)
        })
      ),
      { grant: [name], ...(options?.quota === undefined ? {} : { quota: options.quota }) }
    )
    const reason = yield* kernel.waitExit(pid)
    return { out: out as A, reason }
  }).pipe(Effect.provide(Kernel.layer({ drivers: [driver], journal: options?.journal ?? "live" })))

describe("Mcp.stdio with @modelcontextprotocol/server-filesystem", () => {
  it.live(
    "ListTools, a granted read; write_file not granted by the cap; an invalid argument; a path outside the root",
    () =>
      Effect.gen(function* () {
        const dir = tmp()
        writeFileSync(join(dir, "notes.txt"), "hello from a file")
        const outside = join(tmp(), "secret.txt")
        writeFileSync(outside, "s3cret")
        const { out, reason } = yield* runAgent(filesystem(dir), "fs", (device) =>
          Effect.gen(function* () {
            const all = yield* Sys.open(device)
            const tools = (yield* Sys.read(all, Mcp.ListTools)) as ReadonlyArray<Mcp.ToolInfo>
            // a cap for reading only: read_text_file and list_directory, not write_file
            const readOnly = yield* Sys.open(
              yield* Sys.attenuate(device, { tools: { read_text_file: {}, list_directory: {} } })
            )
            const read = yield* Sys.read(readOnly, { tool: "read_text_file", input: { path: join(dir, "notes.txt") } })
            const write = yield* Effect.exit(
              Sys.read(readOnly, { tool: "write_file", input: { path: join(dir, "evil.txt"), content: "x" } })
            )
            // through the full cap: arguments that fail the schema never reach the server
            const invalid = yield* Sys.read(all, {
              tool: "write_file",
              input: { path: join(dir, "bad.txt"), content: 5 }
            })
            const notJson = yield* Sys.read(all, { tool: "write_file", arguments: "{not json" })
            const escaped = yield* Sys.read(readOnly, {
              tool: "read_text_file",
              arguments: JSON.stringify({ path: outside })
            })
            const unknown = yield* Sys.read(all, { tool: "rm_rf", input: {} })
            const used = (yield* Sys.budget()).used.toolCalls
            return { tools, read, write, invalid, notJson, escaped, unknown, used }
          })
        )
        assert.deepStrictEqual(reason, Process.normal)
        const names = out.tools.map((t) => t.name)
        assert.includeMembers(names, ["read_text_file", "write_file", "list_directory"])
        const readTool = out.tools.find((t) => t.name === "read_text_file")!
        assert.strictEqual((readTool.inputSchema as { type?: unknown }).type, "object")
        assert.include(JSON.stringify(out.read), "hello from a file")
        // the kernel refused write_file: a typed capability error, and nothing written
        assert.isTrue(Exit.isFailure(out.write))
        assert.include(JSON.stringify(out.write), "out-of-scope")
        assert.isFalse(existsSync(join(dir, "evil.txt")))
        // refused at the membrane, by the tool's JSON Schema (Ajv's words, not the server's)
        assert.deepInclude(out.invalid as object, { _tag: "ToolError", tool: "write_file", reason: "invalid-input" })
        assert.include((out.invalid as { message: string }).message, "/content must be string")
        assert.isFalse(existsSync(join(dir, "bad.txt")))
        assert.deepInclude(out.notJson as object, { reason: "invalid-input" })
        // the server's own refusal: a ToolError the agent reads, the secret not in it
        assert.deepInclude(out.escaped as object, { _tag: "ToolError", reason: "failed" })
        assert.notInclude(JSON.stringify(out.escaped), "s3cret")
        assert.deepInclude(out.unknown as object, { reason: "unknown-tool" })
        // ListTools is free; every tool call that reached the device is one tool call (the out-of-scope one did not)
        assert.strictEqual(out.used, 5)
      }),
    60_000
  )

  it.live("tools: the device grants only the named tools; a name the server lacks makes it unavailable", () =>
    Effect.gen(function* () {
      const dir = tmp()
      const { out } = yield* runAgent(filesystem(dir, { tools: ["list_directory"] }), "fs", (device) =>
        Effect.gen(function* () {
          const h = yield* Sys.open(device)
          return {
            tools: (yield* Sys.read(h, Mcp.ListTools)) as ReadonlyArray<Mcp.ToolInfo>,
            write: yield* Sys.read(h, { tool: "write_file", input: { path: join(dir, "x.txt"), content: "x" } })
          }
        })
      )
      assert.deepStrictEqual(
        out.tools.map((t) => t.name),
        ["list_directory"]
      )
      assert.deepInclude(out.write as object, { reason: "unknown-tool" })
      assert.isFalse(existsSync(join(dir, "x.txt")))
      const missing = yield* runAgent(filesystem(dir, { tools: ["list_directory", "format_disk"] }), "fs", (device) =>
        Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, Mcp.ListTools)))
      )
      assert.isTrue(Exit.isFailure(missing.out))
      assert.include(JSON.stringify(missing.out), "unavailable")
      assert.include(JSON.stringify(missing.out), "format_disk")
    })
  )

  it.live("a recorded run replays with the server gone: the same results, no server started", () =>
    Effect.gen(function* () {
      const dir = tmp()
      writeFileSync(join(dir, "a.txt"), "recorded content")
      const store = Journal.makeMemoryStore()
      const body = (device: Capability.CapRef) =>
        Effect.gen(function* () {
          const h = yield* Sys.open(device)
          const tools = yield* Sys.read(h, Mcp.ListTools)
          const read = yield* Sys.read(h, { tool: "read_text_file", input: { path: join(dir, "a.txt") } })
          const invalid = yield* Sys.read(h, { tool: "read_text_file", input: { path: 1 } })
          return { tools, read, invalid }
        })
      const recorded = yield* runAgent(filesystem(dir), "fs", body, { journal: "record" }).pipe(
        Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
      )
      assert.include(JSON.stringify(recorded.out.read), "recorded content")
      // the server is gone: a command that does not exist, the file changed
      writeFileSync(join(dir, "a.txt"), "changed since")
      const gone = Mcp.stdio({ name: "fs", command: join(dir, "no-such-server") })
      const replayed = yield* runAgent(gone, "fs", body, { journal: "replay" }).pipe(
        Effect.provide(Layer.succeed(Journal.JournalStoreService)(Journal.makeMemoryStore(store.records)))
      )
      assert.deepStrictEqual(replayed.reason, Process.normal)
      assert.deepStrictEqual(replayed.out, recorded.out)
      // and live, that server is a typed error, not a crash
      const live = yield* runAgent(gone, "fs", (device) =>
        Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, Mcp.ListTools)))
      )
      assert.include(JSON.stringify(live.out), "unavailable")
    })
  )
})

const crashyBin = join(dirname(new URL(import.meta.url).pathname), "fixtures", "mcp-crashy.mjs")
const crashy = (options?: Partial<Mcp.StdioOptions>) =>
  Mcp.stdio({ name: "crashy", command: process.execPath, args: [crashyBin], ...options })

describe("Mcp.stdio: a server that crashes, hangs or lists what cannot be enforced", () => {
  it.live(
    "a crash mid-call is unavailable and the next call starts it again; a hang times out; the kernel stays up",
    () =>
      Effect.gen(function* () {
        const { out, reason } = yield* runAgent(crashy({ timeout: "500 millis" }), "crashy", (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            const first = yield* Sys.read(h, { tool: "count", input: {} })
            const second = yield* Sys.read(h, { tool: "count", input: {} })
            const crashed = yield* Effect.exit(Sys.read(h, { tool: "crash", input: {} }))
            // a new server process: its count starts again
            const again = yield* Sys.read(h, { tool: "count", input: {} })
            const hung = yield* Effect.exit(Sys.read(h, { tool: "hang", input: {} }))
            const after = yield* Sys.read(h, { tool: "count", input: {} })
            return { first, second, crashed, again, hung, after }
          })
        )
        assert.deepStrictEqual(reason, Process.normal)
        const text = (v: unknown) => (v as { content: Array<{ text: string }> }).content[0]!.text
        assert.deepStrictEqual([text(out.first), text(out.second)], ["1", "2"])
        assert.isTrue(Exit.isFailure(out.crashed))
        assert.include(JSON.stringify(out.crashed), "unavailable")
        assert.strictEqual(text(out.again), "1", "the crashed server was started again")
        assert.isTrue(Exit.isFailure(out.hung))
        assert.include(JSON.stringify(out.hung), "timeout")
        assert.strictEqual(text(out.after), "2", "a timeout leaves the connection up")
      })
  )

  it.live(
    "a schema that cannot be compiled refuses every call (closed); arguments the schema refuses never arrive",
    () =>
      Effect.gen(function* () {
        const { out } = yield* runAgent(crashy(), "crashy", (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            return {
              unenforceable: yield* Sys.read(h, { tool: "unenforceable", input: { x: 1 } }),
              negative: yield* Sys.read(h, { tool: "seen", input: { n: -1 } }),
              fraction: yield* Sys.read(h, { tool: "seen", input: { n: 1.5 } }),
              missing: yield* Sys.read(h, { tool: "seen", input: {} }),
              notObject: yield* Sys.read(h, { tool: "seen", input: [1] }),
              ok: yield* Sys.read(h, { tool: "seen", input: { n: 7 } })
            }
          })
        )
        assert.deepInclude(out.unenforceable as object, { reason: "invalid-input" })
        assert.include((out.unenforceable as { message: string }).message, "cannot be enforced")
        for (const refused of [out.negative, out.fraction, out.missing, out.notObject]) {
          assert.deepInclude(refused as object, { _tag: "ToolError", reason: "invalid-input" })
        }
        // only the valid call reached the server
        assert.deepStrictEqual((out.ok as { structuredContent: unknown }).structuredContent, { seen: [{ n: 7 }] })
      })
  )

  it.live("the server process is the device's: started on the first call with env, ended with the kernel", () =>
    Effect.gen(function* () {
      const pidFile = join(tmp(), "pid")
      const started = yield* runAgent(crashy({ env: { MCP_PID_FILE: pidFile } }), "crashy", () =>
        Effect.sync(() => existsSync(pidFile))
      )
      assert.isFalse(started.out, "no call, no server")
      yield* runAgent(crashy({ env: { MCP_PID_FILE: pidFile } }), "crashy", (device) =>
        Effect.flatMap(Sys.open(device), (h) => Sys.read(h, { tool: "count", input: {} }))
      )
      const pid = Number(readFileSync(pidFile, "utf8"))
      assert.isAbove(pid, 0)
      // the kernel's scope closed: the child is gone
      let alive = true
      for (let i = 0; i < 50 && alive; i++) {
        try {
          process.kill(pid, 0)
          yield* Effect.sleep("100 millis")
        } catch {
          alive = false
        }
      }
      assert.isFalse(alive, "the MCP server outlived the kernel")
    })
  )

  it.live("a quota of tool calls ends the agent before the call that does not fit leaves the kernel", () =>
    Effect.gen(function* () {
      const { out, reason } = yield* runAgent(
        crashy(),
        "crashy",
        (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            const seen: Array<unknown> = []
            for (let n = 0; n < 5; n++) seen.push(yield* Sys.read(h, { tool: "seen", input: { n } }))
            return seen
          }),
        { quota: { toolCalls: 2 } }
      )
      assert.deepStrictEqual(reason, Process.quota("toolCalls"))
      assert.isUndefined(out)
    })
  )
})

/** A free port on 127.0.0.1. */
const freePort = Effect.callback<number>((resume) => {
  const probe = createServer()
  probe.listen(0, "127.0.0.1", () => {
    const address = probe.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    probe.close(() => resume(Effect.succeed(port)))
  })
})

/** server-everything over streamable HTTP, as a child process for the scope; its URL. */
const everythingHttp = Effect.gen(function* () {
  const port = yield* freePort
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn(process.execPath, [everythingBin, "streamableHttp"], {
        env: { ...process.env, PORT: String(port) },
        stdio: ["ignore", "ignore", "pipe"]
      })
    ),
    (child) => Effect.sync(() => child.kill("SIGKILL"))
  )
  yield* Effect.callback<void, Error>((resume) => {
    let text = ""
    child.stderr!.on("data", (chunk) => {
      text += String(chunk)
      if (text.includes("listening")) resume(Effect.void)
    })
    child.on("exit", (code) => resume(Effect.fail(new Error(`server-everything exited ${code}: ${text}`))))
  }).pipe(Effect.timeout("20 seconds"))
  return `http://127.0.0.1:${port}/mcp`
})

describe("Mcp with @modelcontextprotocol/server-everything", () => {
  it.live("stdio: tools, the host's environment kept from the server, a timeout, invalid arguments", () =>
    Effect.gen(function* () {
      process.env.MCP_TEST_HOST_SECRET = "sk-host-secret"
      const { out, reason } = yield* runAgent(everything({ timeout: "1 second" }), "everything", (device) =>
        Effect.gen(function* () {
          const h = yield* Sys.open(device)
          const sum = yield* Sys.read(h, { tool: "get-sum", input: { a: 2, b: 3 } })
          const badSum = yield* Sys.read(h, { tool: "get-sum", input: { a: "2", b: 3 } })
          const env = yield* Sys.read(h, { tool: "get-env", input: {} })
          const slow = yield* Effect.exit(
            Sys.read(h, { tool: "trigger-long-running-operation", input: { duration: 10, steps: 2 } })
          )
          return { sum, badSum, env, slow }
        })
      ).pipe(Effect.ensuring(Effect.sync(() => delete process.env.MCP_TEST_HOST_SECRET)))
      assert.deepStrictEqual(reason, Process.normal)
      assert.include(JSON.stringify(out.sum), "5")
      assert.deepInclude(out.badSum as object, { reason: "invalid-input" })
      assert.include(JSON.stringify(out.env), "PATH", "get-env ran")
      assert.notInclude(JSON.stringify(out.env), "sk-host-secret", "the server got the host's environment")
      assert.isTrue(Exit.isFailure(out.slow))
      assert.include(JSON.stringify(out.slow), "timeout")
    })
  )

  it.live("streamable HTTP: the same device over a URL; per-tool grants; a server that goes away is unavailable", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const url = yield* everythingHttp
        const { out } = yield* runAgent(Mcp.http({ name: "everything", url }), "everything", (device) =>
          Effect.gen(function* () {
            const all = yield* Sys.open(device)
            const tools = (yield* Sys.read(all, Mcp.ListTools)) as ReadonlyArray<Mcp.ToolInfo>
            const echoOnly = yield* Sys.open(yield* Sys.attenuate(device, { tools: { echo: {} } }))
            const echo = yield* Sys.read(echoOnly, { tool: "echo", input: { message: "over http" } })
            const sum = yield* Effect.exit(Sys.read(echoOnly, { tool: "get-sum", input: { a: 1, b: 2 } }))
            const invalid = yield* Sys.read(echoOnly, { tool: "echo", input: { message: 42 } })
            return { tools, echo, sum, invalid }
          })
        )
        assert.includeMembers(
          out.tools.map((t) => t.name),
          ["echo", "get-sum"]
        )
        assert.include(JSON.stringify(out.echo), "over http")
        assert.include(JSON.stringify(out.sum), "out-of-scope")
        assert.deepInclude(out.invalid as object, { reason: "invalid-input" })
        const port = Number(new URL(url).port)
        const gone = yield* runAgent(
          Mcp.http({ name: "everything", url: `http://127.0.0.1:${port === 1 ? 2 : 1}/mcp` }),
          "everything",
          (device) => Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, Mcp.ListTools)))
        )
        assert.include(JSON.stringify(gone.out), "unavailable")
      })
    )
  )
})
