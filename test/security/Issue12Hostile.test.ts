/**
 * Issue 12: hostile images against the MCP membrane, policy rules, typed pipes and `agentctl mcp`.
 *
 * Every test asserts the SECURE outcome: a test that fails is an attack that worked (see the report). The MCP server
 * is test/security/fixtures/mcp-hostile.mjs: it appends every call's name and arguments to `MCP_SEEN_FILE`, so a test
 * can see exactly what reached it.
 */
import { assert, describe, it } from "@effect/vitest"
import { InMemoryTransport } from "@modelcontextprotocol/sdk/inMemory.js"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { existsSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect, Exit, Fiber, Layer, Schema } from "effect"
import * as SchemaTransformation from "effect/SchemaTransformation"
import { type Capability, Device, Journal, Kernel, Pipe, Pipeline, Policy, Process, Sys } from "effect-agent-os"
import { Mcp } from "effect-agent-os/mcp"
import { OpenAiServer } from "effect-agent-os/testing"
import * as McpServe from "../../src/daemon/McpServe.ts"
import { call as daemonCall, startDaemon } from "../daemon/processHarness.ts"

const hostileBin = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "mcp-hostile.mjs")
const tmp = () => realpathSync(mkdtempSync(join(tmpdir(), "issue12-")))

/** A fresh seen-file and a driver for the hostile server writing to it. */
const hostile = (options?: { readonly env?: Record<string, string>; readonly extra?: Partial<Mcp.StdioOptions> }) => {
  const seen = join(tmp(), "seen.jsonl")
  const driver = Mcp.stdio({
    name: "h",
    command: process.execPath,
    args: [hostileBin],
    env: { MCP_SEEN_FILE: seen, ...options?.env },
    connectTimeout: "20 seconds",
    timeout: "20 seconds",
    ...options?.extra
  })
  const calls = (): Array<{ name: string; args: any }> =>
    existsSync(seen)
      ? readFileSync(seen, "utf8")
          .split("\n")
          .filter((l) => l.length > 0)
          .map((l) => JSON.parse(l))
      : []
  return { driver, calls }
}

/** Boots one process with device `h` granted (and policies), waits for it; what it returned and how it ended. */
const runWith = <A>(
  driver: Effect.Effect<any, never, any> | Device.Driver,
  body: (device: Capability.CapRef) => Effect.Effect<A, unknown, Sys.Sys>,
  options?: {
    readonly policies?: string
    readonly quota?: { readonly toolCalls?: number }
    readonly journal?: Journal.Mode
    readonly name?: string
    readonly virtualTime?: boolean
  }
) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const policies = options?.policies === undefined ? undefined : [yield* Policy.decode(options.policies)]
    let out: A | undefined
    const name = options?.name ?? "h"
    const pid = yield* kernel.boot(
      Process.make<Kernel.BootGrant>("agent", (grant) =>
        Effect.gen(function* () {
          out = yield* body(grant.devices[name]!)
        })
      ),
      {
        grant: [name],
        ...(policies === undefined ? {} : { policies }),
        ...(options?.quota === undefined ? {} : { quota: options.quota })
      }
    )
    const reason = yield* kernel.waitExit(pid)
    const trace = yield* kernel.trace()
    return { out: out as A, reason, trace }
  }).pipe(
    Effect.provide(
      Kernel.layer({
        drivers: [driver],
        journal: options?.journal ?? "live",
        ...(options?.virtualTime ? { virtualTime: true } : {})
      })
    )
  )

const allowRest = "- { name: rest, decision: allow }\n"

// =====================================================================================================================
// MCP membrane
// =====================================================================================================================

describe("MCP membrane: what the policy judged is what the server runs", () => {
  it.live(
    "a request whose `tool` is a prototype getter: a deny rule on write_file is not bypassed",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        class Sneaky {
          input = { path: "/ok/x" }
          get tool() {
            return "write_file"
          }
        }
        const { out } = yield* runWith(
          driver,
          (device) =>
            Effect.gen(function* () {
              const h = yield* Sys.open(device)
              return yield* Effect.exit(Sys.read(h, new Sneaky() as any))
            }),
          { policies: "- { name: no-write, match: { tool: write_file }, decision: deny }\n" + allowRest }
        )
        const reached = calls().map((c) => c.name)
        assert.notInclude(reached, "write_file", `the server ran write_file: ${JSON.stringify(out)}`)
      }),
    60_000
  )

  it.live(
    "a request whose `input` is a prototype getter: a deny rule on arguments.path is not bypassed",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        class Sneaky {
          tool = "read_text_file"
          get input() {
            return { path: "/ok/secret" }
          }
        }
        const { out } = yield* runWith(
          driver,
          (device) =>
            Effect.gen(function* () {
              const h = yield* Sys.open(device)
              return yield* Effect.exit(Sys.read(h, new Sneaky() as any))
            }),
          {
            policies:
              '- { name: no-secret, match: { tool: read_text_file, arguments: { path: { glob: "/ok/secret*" } } }, decision: deny }\n' +
              allowRest
          }
        )
        const paths = calls().map((c) => c.args?.path)
        assert.notInclude(paths, "/ok/secret", `the server read /ok/secret: ${JSON.stringify(out)}`)
      }),
    60_000
  )

  it.live(
    "an input whose prototype has toJSON (through a narrowed cap): the judged path is the path sent",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        class Path {
          path: string
          constructor(path: string) {
            this.path = path
          }
          toJSON() {
            return { path: "/ok/secret" }
          }
        }
        const { out } = yield* runWith(
          driver,
          (device) =>
            Effect.gen(function* () {
              const narrowed = yield* Sys.attenuate(device, { tools: { read_text_file: {} } })
              const h = yield* Sys.open(narrowed)
              return yield* Effect.exit(Sys.read(h, { tool: "read_text_file", input: new Path("/ok/public") }))
            }),
          {
            policies:
              '- { name: no-secret, match: { tool: read_text_file, arguments: { path: { glob: "/ok/secret*" } } }, decision: deny }\n' +
              allowRest
          }
        )
        const paths = calls().map((c) => c.args?.path)
        assert.notInclude(paths, "/ok/secret", `the server read /ok/secret: ${JSON.stringify(out)}`)
      }),
    60_000
  )

  it.live(
    "Object.prototype.toJSON planted by the image (open realm): the judged path is the path sent",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        const { out } = yield* runWith(
          driver,
          (device) =>
            Effect.gen(function* () {
              const h = yield* Sys.open(device)
              yield* Sys.read(h, { tool: "open", input: {} }) // connect first
              Object.defineProperty(Object.prototype, "toJSON", {
                configurable: true,
                writable: true,
                enumerable: false,
                value: function (this: any) {
                  return this !== null && typeof this === "object" && this.path === "/ok/public"
                    ? { path: "/ok/secret" }
                    : this
                }
              })
              try {
                return yield* Effect.exit(Sys.read(h, { tool: "read_text_file", input: { path: "/ok/public" } }))
              } finally {
                delete (Object.prototype as any).toJSON
              }
            }),
          {
            policies:
              '- { name: no-secret, match: { tool: read_text_file, arguments: { path: { glob: "/ok/secret*" } } }, decision: deny }\n' +
              allowRest
          }
        )
        delete (Object.prototype as any).toJSON
        const paths = calls().map((c) => c.args?.path)
        assert.notInclude(paths, "/ok/secret", `the server read /ok/secret: ${JSON.stringify(out)}`)
      }),
    60_000
  )

  it.live(
    "arguments text with duplicate keys and a __proto__ key: judged and sent alike; __proto__ refused",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        const { out } = yield* runWith(
          driver,
          (device) =>
            Effect.gen(function* () {
              const h = yield* Sys.open(device)
              const dup = yield* Effect.exit(
                Sys.read(h, { tool: "read_text_file", arguments: '{"path":"/ok/public","path":"/ok/secret"}' })
              )
              const proto = yield* Sys.read(h, {
                tool: "read_text_file",
                arguments: '{"path":"/ok/public","__proto__":{"path":"/ok/secret","admin":true}}'
              })
              const protoInput = yield* Sys.read(h, {
                tool: "read_text_file",
                input: JSON.parse('{"path":"/ok/public","__proto__":{"admin":true}}')
              })
              return { dup, proto, protoInput }
            }),
          {
            policies:
              '- { name: no-secret, match: { tool: read_text_file, arguments: { path: { glob: "/ok/secret*" } } }, decision: deny }\n' +
              allowRest
          }
        )
        const seen = calls()
        assert.notInclude(
          seen.map((c) => c.args?.path),
          "/ok/secret"
        )
        // additionalProperties: false — an own "__proto__" key is an additional property
        assert.deepInclude(out.proto as object, { _tag: "ToolError", reason: "invalid-input" })
        assert.deepInclude(out.protoInput as object, { _tag: "ToolError", reason: "invalid-input" })
        assert.isFalse(seen.some((c) => c.args !== undefined && Object.hasOwn(c.args, "__proto__")))
      }),
    60_000
  )

  it.live(
    "a tools grant with a scope: the MCP driver cannot enforce it, so a call outside it is refused (not ignored)",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        const { out } = yield* runWith(driver, (device) =>
          Effect.gen(function* () {
            const scoped = yield* Sys.attenuate(device, {
              tools: { read_text_file: { scope: { globs: ["/ok/public/**"] } } }
            })
            const h = yield* Sys.open(scoped)
            return yield* Effect.exit(Sys.read(h, { tool: "read_text_file", input: { path: "/ok/secret" } }))
          })
        )
        assert.notInclude(
          calls().map((c) => c.args?.path),
          "/ok/secret",
          `the scope was ignored: ${JSON.stringify(out)}`
        )
      }),
    60_000
  )
})

describe("MCP membrane: names, listings, schemas", () => {
  it.live(
    "tools named __proto__ / constructor; a narrowed cap refuses other names, case and unicode look-alikes",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        const { out, reason } = yield* runWith(driver, (device) =>
          Effect.gen(function* () {
            const all = yield* Sys.open(device)
            const listed = (yield* Sys.read(all, Mcp.ListTools)) as ReadonlyArray<Mcp.ToolInfo>
            const proto = yield* Sys.read(all, { tool: "__proto__", input: {} })
            const ctor = yield* Sys.read(all, { tool: "constructor", input: {} })
            const toStr = yield* Sys.read(all, { tool: "toString", input: {} })
            const narrow = yield* Sys.open(yield* Sys.attenuate(device, { tools: { read_text_file: {} } }))
            const attempts: Array<string> = []
            for (const name of [
              "Read_Text_File",
              "read_text_file\u200b",
              "read_text_fіle", // Cyrillic і
              "__proto__",
              "constructor",
              "hasOwnProperty",
              "write_file"
            ]) {
              attempts.push((yield* Effect.exit(Sys.read(narrow, { tool: name, input: { path: "/ok/a" } })))._tag)
            }
            return { names: listed.map((t) => t.name), proto, ctor, toStr, attempts }
          })
        )
        assert.deepStrictEqual(reason, Process.normal)
        assert.includeMembers(out.names, ["__proto__", "constructor"])
        assert.include(JSON.stringify(out.proto), "content")
        assert.include(JSON.stringify(out.ctor), "content")
        assert.deepInclude(out.toStr as object, { reason: "unknown-tool" })
        assert.deepStrictEqual(
          out.attempts,
          out.attempts.map(() => "Failure")
        )
        assert.deepStrictEqual(
          calls().map((c) => c.name),
          ["__proto__", "constructor"]
        )
      }),
    60_000
  )

  it.live(
    "ListTools through a cap narrowed to read_text_file leaks no other tool",
    () =>
      Effect.gen(function* () {
        const { driver } = hostile()
        const { out } = yield* runWith(driver, (device) =>
          Effect.gen(function* () {
            const narrow = yield* Sys.open(yield* Sys.attenuate(device, { tools: { read_text_file: {} } }))
            return yield* Effect.exit(Sys.read(narrow, Mcp.ListTools))
          })
        )
        if (Exit.isSuccess(out)) {
          const names = (out.value as ReadonlyArray<Mcp.ToolInfo>).map((t) => t.name)
          assert.deepStrictEqual(names, ["read_text_file"], "ListTools leaked tools the cap does not grant")
        } else {
          // refused outright is not a leak (but the README example that lists through a narrowed cap breaks)
          assert.include(JSON.stringify(out), "out-of-scope")
        }
      }),
    60_000
  )

  it.live(
    "a remote $ref is never fetched (every call refused); a recursive $ref is enforced at depth",
    () =>
      Effect.gen(function* () {
        const { driver, calls } = hostile()
        const { out } = yield* runWith(driver, (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            return {
              remote: yield* Sys.read(h, { tool: "remote", input: { x: 1 } }),
              deepBad: yield* Sys.read(h, {
                tool: "recursive",
                input: { tree: { next: { next: { next: { evil: true } } } } }
              }),
              deepGood: yield* Sys.read(h, { tool: "recursive", input: { tree: { next: { next: {} } } } })
            }
          })
        )
        assert.deepInclude(out.remote as object, { reason: "invalid-input" })
        assert.deepInclude(out.deepBad as object, { reason: "invalid-input" })
        assert.include(JSON.stringify(out.deepGood), "content")
        assert.deepStrictEqual(
          calls().map((c) => c.name),
          ["recursive"]
        )
      }),
    60_000
  )

  it.live(
    "a server listing 300 tools: compiling their schemas does not block the kernel's thread for over 1 s",
    () =>
      Effect.gen(function* () {
        const { driver } = hostile({ env: { MODE: "many" } })
        let last = Date.now()
        let worst = 0
        const timer = setInterval(() => {
          const now = Date.now()
          worst = Math.max(worst, now - last)
          last = now
        }, 20)
        try {
          const { out } = yield* runWith(driver, (device) =>
            Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, Mcp.ListTools)))
          )
          assert.isTrue(Exit.isSuccess(out))
        } finally {
          clearInterval(timer)
        }
        assert.isBelow(worst, 1000, `the event loop (every process, every timer) was blocked for ${worst} ms`)
      }),
    60_000
  )

  it.live(
    "a server that paginates tools/list forever (empty pages): the first call is bounded, not a hang",
    () =>
      Effect.gen(function* () {
        const pidFile = join(tmp(), "pid")
        const { driver } = hostile({
          env: { MODE: "endless", MCP_PID_FILE: pidFile },
          extra: { connectTimeout: "2 seconds" }
        })
        const started = Date.now()
        const fiber = yield* Effect.forkDetach(
          runWith(driver, (device) =>
            Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, { tool: "open", input: {} })))
          )
        )
        const inTime = yield* Fiber.join(fiber).pipe(Effect.timeout("8 seconds"), Effect.exit)
        const elapsed = Date.now() - started
        // end the server we started (by its pid), so the stuck connect (and the kernel's shutdown) can finish
        if (existsSync(pidFile)) {
          try {
            process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL")
          } catch {}
        }
        yield* Fiber.join(fiber).pipe(Effect.timeout("10 seconds"), Effect.exit)
        assert.isTrue(Exit.isSuccess(inTime), `the call was still connecting after ${elapsed} ms (connectTimeout 2 s)`)
      }),
    60_000
  )

  it.live(
    "a 4 MiB tool description: ListTools reads back a bounded listing (≤ messageBytesMax, 1 MiB)",
    () =>
      Effect.gen(function* () {
        const { driver } = hostile()
        const { out } = yield* runWith(driver, (device) =>
          Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, Mcp.ListTools)))
        )
        const size = Exit.isSuccess(out) ? JSON.stringify(out.value).length : 0
        assert.isAtMost(size, 1_048_576, `ListTools handed the process ${size} characters`)
      }),
    60_000
  )

  it.live(
    "a 24 MiB result (journal recording) and an 8 MiB isError: bounded; the kernel goes on",
    () =>
      Effect.gen(function* () {
        const { driver } = hostile()
        const store = Journal.makeMemoryStore()
        const { out, reason } = yield* runWith(
          driver,
          (device) =>
            Effect.gen(function* () {
              const h = yield* Sys.open(device)
              const big = yield* Effect.exit(Sys.read(h, { tool: "big", input: { n: 24 * 1024 * 1024 } }))
              const bigError = yield* Effect.exit(Sys.read(h, { tool: "bigError", input: {} }))
              const after = yield* Effect.exit(Sys.read(h, { tool: "open", input: { ok: 1 } }))
              return {
                bigSize: Exit.isSuccess(big) ? JSON.stringify(big.value).length : -1,
                big: Exit.isSuccess(big) ? "success" : JSON.stringify(big).slice(0, 300),
                bigErrorSize: JSON.stringify(bigError).length,
                after
              }
            }),
          { journal: "record" }
        ).pipe(Effect.provide(Layer.succeed(Journal.JournalStoreService)(store)))
        assert.deepStrictEqual(reason, Process.normal, JSON.stringify(reason))
        assert.isAtMost(out.bigErrorSize, 8192)
        assert.isTrue(Exit.isSuccess(out.after))
        // secure: a driver result far past every kernel bound is refused or truncated, not handed on whole
        assert.isAtMost(out.bigSize, 16 * 1024 * 1024, `a ${out.bigSize}-character result reached the process`)
      }),
    90_000
  )

  it.live(
    "the stdio server does not see the host's secrets",
    () =>
      Effect.gen(function* () {
        process.env.ISSUE12_HOST_SECRET = "hunter2"
        try {
          const { driver } = hostile()
          const { out } = yield* runWith(driver, (device) =>
            Effect.flatMap(Sys.open(device), (h) => Sys.read(h, { tool: "env", input: {} }))
          )
          assert.notInclude(JSON.stringify(out), "hunter2")
          assert.include(JSON.stringify(out), "MCP_SEEN_FILE")
        } finally {
          delete process.env.ISSUE12_HOST_SECRET
        }
      }),
    60_000
  )

  it.live(
    "a server that never answers the handshake: unavailable within connectTimeout",
    () =>
      Effect.gen(function* () {
        const { driver } = hostile({ env: { MODE: "hang" }, extra: { connectTimeout: "1 second" } })
        const started = Date.now()
        const { out } = yield* runWith(driver, (device) =>
          Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, { tool: "open", input: {} })))
        )
        assert.isTrue(Exit.isFailure(out))
        assert.include(JSON.stringify(out), "unavailable")
        assert.isBelow(Date.now() - started, 10_000)
      }),
    60_000
  )

  it.live(
    "Mcp.http to a URL that redirects to another origin: not followed, the other origin never reached",
    () =>
      Effect.gen(function* () {
        const hits: Array<{ url: string | undefined; auth: string | undefined }> = []
        const target = http.createServer((req, res) => {
          hits.push({ url: req.url, auth: req.headers["x-api-key"] as string | undefined })
          res.writeHead(500).end()
        })
        yield* Effect.promise(() => new Promise<void>((r) => target.listen(0, "127.0.0.1", () => r())))
        const targetPort = (target.address() as AddressInfo).port
        const redirector = http.createServer((_req, res) => {
          res.writeHead(307, { location: `http://localhost:${targetPort}/mcp` }).end()
        })
        yield* Effect.promise(() => new Promise<void>((r) => redirector.listen(0, "127.0.0.1", () => r())))
        const port = (redirector.address() as AddressInfo).port
        try {
          const driver = Mcp.http({
            name: "h",
            url: `http://127.0.0.1:${port}/mcp`,
            headers: { "x-api-key": "secret-key" },
            connectTimeout: "3 seconds"
          })
          const { out } = yield* runWith(driver, (device) =>
            Effect.flatMap(Sys.open(device), (h) => Effect.exit(Sys.read(h, { tool: "open", input: {} })))
          )
          assert.isTrue(Exit.isFailure(out))
          assert.deepStrictEqual(hits, [], "the redirect was followed to another origin")
        } finally {
          redirector.close()
          target.close()
        }
      }),
    60_000
  )

  it.live(
    "replay: a process that asks another request than the journaled one is refused (mismatch), not served",
    () =>
      Effect.gen(function* () {
        const { driver } = hostile()
        const store = Journal.makeMemoryStore()
        const ask = (path: string) => (device: Capability.CapRef) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            return yield* Sys.read(h, { tool: "read_text_file", input: { path } })
          })
        yield* runWith(driver, ask("/ok/public"), { journal: "record" }).pipe(
          Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
        )
        const gone = Mcp.stdio({ name: "h", command: "/nonexistent/server" })
        const replayed = yield* Effect.exit(
          runWith(gone, ask("/ok/secret"), { journal: "replay" }).pipe(
            Effect.provide(Layer.succeed(Journal.JournalStoreService)(Journal.makeMemoryStore(store.records)))
          )
        )
        const text = JSON.stringify(replayed)
        assert.notInclude(text, '\\"path\\":\\"/ok/public\\"}', "the journaled result was served to another request")
        assert.match(text, /mismatch|another request/)
      }),
    60_000
  )
})

// =====================================================================================================================
// Policy rules
// =====================================================================================================================

/** A device whose every read costs one tool call and answers its request. */
const echo = Device.make({
  name: "echo",
  meters: ["toolCalls"],
  reserve: () => ({ toolCalls: 1 }),
  open: () => Effect.succeed({ read: (request: unknown) => Effect.succeed({ value: request, cost: { toolCalls: 1 } }) })
})

describe("policy rules under attack", () => {
  it.effect("spend: a readAll of 9 calls, all judged before any is charged, does not pass a 50% threshold", () =>
    Effect.gen(function* () {
      const { out } = yield* runWith(
        echo,
        (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            const exits: Array<Exit.Exit<unknown, unknown>> = []
            const all = yield* Effect.exit(
              Sys.readAll(
                h,
                Array.from({ length: 9 }, (_, i) => ({ tool: "t", input: { i } }))
              )
            )
            if (Exit.isSuccess(all)) for (const v of all.value) exits.push(Exit.succeed(v))
            return (all._tag === "Success" ? all.value : []).filter(
              (v) => !JSON.stringify(v).includes("denied") && !JSON.stringify(v).includes("ToolError")
            ).length
          }),
        {
          name: "echo",
          quota: { toolCalls: 10 },
          virtualTime: true,
          policies: "- { name: half, match: { spend: { toolCalls: 0.5 } }, decision: deny }\n" + allowRest
        }
      )
      assert.isAtMost(out, 5, `${out} calls ran past the 50% spend threshold`)
    })
  )

  it.effect("spend: parallel single reads (forked) do not pass a 50% threshold either", () =>
    Effect.gen(function* () {
      const { out } = yield* runWith(
        echo,
        (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            const exits = yield* Effect.forEach(
              Array.from({ length: 9 }, (_, i) => i),
              (i) => Effect.exit(Sys.read(h, { tool: "t", input: { i } })),
              { concurrency: "unbounded" }
            )
            return exits.filter(Exit.isSuccess).length
          }),
        {
          name: "echo",
          quota: { toolCalls: 10 },
          virtualTime: true,
          policies: "- { name: half, match: { spend: { toolCalls: 0.5 } }, decision: deny }\n" + allowRest
        }
      )
      assert.isAtMost(out, 5, `${out} calls ran past the 50% spend threshold`)
    })
  )

  it.effect("rate: interleaving tools does not evade a device-wide rate", () =>
    Effect.gen(function* () {
      const { out } = yield* runWith(
        echo,
        (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            const ok: Array<boolean> = []
            for (const tool of ["a", "b", "a", "b", "c"]) {
              ok.push(Exit.isSuccess(yield* Effect.exit(Sys.read(h, { tool, input: {} }))))
            }
            return ok
          }),
        {
          name: "echo",
          virtualTime: true,
          policies:
            '- { name: rate, match: { device: echo, rate: { over: 2, per: "1 minute" } }, decision: deny }\n' +
            allowRest
        }
      )
      assert.deepStrictEqual(out, [true, true, false, false, false])
    })
  )

  it.effect("rate: a process does not get a fresh rate memory by spawning children with its device cap", () =>
    Effect.gen(function* () {
      const child = Process.make<void>("child", () =>
        Effect.gen(function* () {
          const [device, report] = yield* Sys.caps()
          const h = yield* Sys.open(device!)
          let ok = 0
          for (let i = 0; i < 2; i++)
            if (Exit.isSuccess(yield* Effect.exit(Sys.read(h, { tool: "t", input: {} })))) ok++
          yield* Sys.send(report!, ok)
        })
      )
      const { out, reason } = yield* runWith(
        echo,
        (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            let ok = 0
            for (let i = 0; i < 2; i++)
              if (Exit.isSuccess(yield* Effect.exit(Sys.read(h, { tool: "t", input: {} })))) ok++
            for (let c = 0; c < 3; c++) {
              const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
              yield* Sys.spawn(child, { caps: [yield* Sys.derive(device, ["open"]), me] })
              ok += (yield* Sys.recv()).body as number
            }
            return ok
          }),
        {
          name: "echo",
          virtualTime: true,
          policies:
            '- { name: rate, match: { device: echo, rate: { over: 2, per: "1 minute" } }, decision: deny }\n' +
            allowRest
        }
      )
      assert.strictEqual(
        out,
        2,
        `${JSON.stringify(reason)} ${out} calls in one minute under an "over 2 per minute" rate, via children`
      )
    })
  )

  it.effect("message: a body whose _tag is inherited from a class prototype does not slip past a kill rule", () =>
    Effect.gen(function* () {
      class Exfil {
        secret = "s3cret"
      }
      Object.defineProperty(Exfil.prototype, "_tag", { value: "Exfil", enumerable: true })
      const receiver = Process.make<void>("sink", () =>
        Effect.gen(function* () {
          const [report] = yield* Sys.caps()
          const m = yield* Sys.recv()
          yield* Sys.send(report!, { seen: String((m.body as any)?._tag) })
        })
      )
      const { out, reason } = yield* runWith(
        echo,
        () =>
          Effect.gen(function* () {
            const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            const sink = yield* Sys.spawn(receiver, { caps: [me] })
            const sent = yield* Effect.exit(Sys.send(sink.cap, new Exfil()))
            if (Exit.isFailure(sent)) return "refused"
            return ((yield* Sys.recv()).body as { seen: string }).seen
          }),
        {
          name: "echo",
          virtualTime: true,
          policies:
            "- { name: no-exfil, match: { message: { type: Exfil } }, decision: kill }\n" +
            "- { name: sends, match: { call: send }, decision: allow }\n" +
            allowRest
        }
      )
      assert.notStrictEqual(out, "Exfil", `the receiver read _tag Exfil; the process ended ${JSON.stringify(reason)}`)
    })
  )

  it.effect("message: a sender's own pipe Schema cannot hand the policy one _tag and the receiver another", () =>
    Effect.gen(function* () {
      // the sender narrows its own cap with a transformation whose output answers _tag twice differently
      let reads = 0
      const twoFaced = Schema.Unknown.pipe(
        Schema.decodeTo(
          Schema.Unknown,
          SchemaTransformation.transform<any, any>({
            decode: (body: unknown) => {
              const out: Record<string, unknown> = { secret: (body as any)?.secret }
              Object.defineProperty(out, "_tag", {
                enumerable: true,
                get: () => (reads++ === 0 ? "Allowed" : "Exfil")
              })
              return out
            },
            encode: (x: unknown) => x
          })
        )
      )
      const receiver = Process.make<void>("sink", () =>
        Effect.gen(function* () {
          const [report] = yield* Sys.caps()
          const m = yield* Sys.recv()
          const tag = (m.body as any)?._tag
          const plain = Object.values(Object.getOwnPropertyDescriptors(m.body as object)).every((d) => "value" in d)
          yield* Sys.send(report!, { seen: String(tag), plain })
        })
      )
      const { out } = yield* runWith(
        echo,
        () =>
          Effect.gen(function* () {
            const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            const sink = yield* Sys.spawn(receiver, { caps: [me] })
            const pipe = yield* Sys.attenuate(sink.cap, { message: twoFaced })
            const sent = yield* Effect.exit(Sys.send(pipe, { _tag: "Allowed", secret: "s3cret" }))
            if (Exit.isFailure(sent)) return { seen: "refused", plain: true }
            return (yield* Sys.recv()).body as { seen: string; plain: boolean }
          }),
        {
          name: "echo",
          virtualTime: true,
          policies: "- { name: allowed, match: { message: { type: Allowed } }, decision: allow }\n" + allowRest
        }
      )
      assert.notStrictEqual(out.seen, "Exfil", "the policy judged _tag Allowed, the receiver read Exfil")
      assert.isTrue(out.plain, "the receiver got a body with an accessor (not a copy)")
    })
  )

  it.live("ReDoS: a catastrophic regex is refused when the policy is made; a long argument is denied, not judged", () =>
    Effect.gen(function* () {
      for (const regex of ["^(a+)+$", "(\\\\w*)*x", "^(x+){2,}$", "((ab)+c*)+"]) {
        const refused = yield* Effect.exit(
          Policy.decode(`- { name: redos, match: { arguments: { q: { regex: "${regex}" } } }, decision: deny }`)
        )
        assert.isTrue(Exit.isFailure(refused), `the policy with ${regex} was accepted`)
        assert.include(JSON.stringify(refused), "exponential")
      }
      // a pattern without nested repetition still judges, and an argument past the bound is denied (fail closed)
      const { out } = yield* runWith(
        echo,
        (device) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(device)
            const started = Date.now()
            const long = yield* Effect.exit(Sys.read(h, { tool: "search", input: { q: "a".repeat(70_000) } }))
            const short = yield* Effect.exit(Sys.read(h, { tool: "search", input: { q: "b" } }))
            return { ms: Date.now() - started, long: long._tag, short: short._tag }
          }),
        {
          name: "echo",
          policies: '- { name: no-a, match: { arguments: { q: { regex: "^a+$" } } }, decision: deny }\n' + allowRest
        }
      )
      assert.isBelow(out.ms, 1000)
      assert.strictEqual(out.short, "Success")
      assert.notStrictEqual(out.long, "Success", "a text too long to judge was let through")
    })
  )
})

// =====================================================================================================================
// Typed pipes
// =====================================================================================================================

const Msg = Schema.Struct({ _tag: Schema.tag("Msg"), text: Schema.String })

/** A receiver that reports every body it gets (until Stop) to its first cap. */
const collector = Process.make<void>("collector", () =>
  Effect.gen(function* () {
    const [report] = yield* Sys.caps()
    const got: Array<unknown> = []
    while (true) {
      const m = yield* Sys.recv()
      if ((m.body as { _tag?: unknown })?._tag === "Stop") break
      got.push({ body: m.body, caps: m.caps.length, kinds: Object.values(m.body as object).map((v) => typeof v) })
    }
    yield* Sys.send(
      report!,
      got.map((g: any) => ({ caps: g.caps, kinds: g.kinds, tag: g.body?._tag }))
    )
  })
)

const runPlain = <A>(
  body: Effect.Effect<A, unknown, Sys.Sys> | ((grant: Kernel.BootGrant) => Effect.Effect<A, unknown, Sys.Sys>)
) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    let out: A | undefined
    const pid = yield* kernel.boot(
      Process.make<Kernel.BootGrant>("root", (grant) =>
        Effect.map(typeof body === "function" ? body(grant) : body, (a) => {
          out = a
        })
      ),
      { grant: ["echo"] }
    )
    const reason = yield* kernel.waitExit(pid)
    return { out: out as A, reason }
  }).pipe(Effect.provide(Kernel.layer({ drivers: [echo], virtualTime: true })))

describe("typed pipes under attack", () => {
  it.effect("derive, re-attenuate without a Schema, or hand the pipe to a forwarder: still the pipe", () =>
    Effect.gen(function* () {
      const forwarder = Process.make<void>("forwarder", () =>
        Effect.gen(function* () {
          const [pipe, report] = yield* Sys.caps()
          const r = yield* Effect.exit(Sys.send(pipe!, { _tag: "Evil", text: 1 }))
          const d = yield* Effect.exit(
            Effect.flatMap(Sys.derive(pipe!, ["send"]), (c) => Sys.send(c, { _tag: "Evil", text: 2 }))
          )
          yield* Sys.send(report!, [r._tag, d._tag])
        })
      )
      const pipeRun = yield* runPlain(
        Effect.gen(function* () {
          const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const plain = (yield* Sys.spawn(collector, { caps: [me] })).cap
          const pipe = yield* Pipe.narrow(plain, Pipe.allow(Msg))
          const derived = yield* Sys.derive(pipe, ["send"])
          const reAtt = yield* Sys.attenuate(pipe, {})
          const sent = [
            (yield* Effect.exit(Sys.send(derived, { _tag: "Evil" })))._tag,
            (yield* Effect.exit(Sys.send(reAtt, { _tag: "Evil" })))._tag
          ]
          const fwdPipe = yield* Sys.derive(pipe, ["send"])
          yield* Sys.spawn(forwarder, { caps: [fwdPipe, yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
          const viaForwarder = (yield* Sys.recv()).body as Array<string>
          yield* Sys.send(plain, { _tag: "Stop" })
          const got = (yield* Sys.recv()).body as Array<{ tag: string }>
          return { sent, viaForwarder, got }
        })
      )
      const out = pipeRun.out
      assert.deepStrictEqual(out.sent, ["Failure", "Failure"])
      assert.deepStrictEqual(out.viaForwarder, ["Failure", "Failure"])
      assert.deepStrictEqual(out.got, [])
    })
  )

  it.effect("a pipe Schema that decodes to functions or a Proxy: the receiver still gets plain data", () =>
    Effect.gen(function* () {
      const withCode = Schema.Unknown.pipe(
        Schema.decodeTo(
          Schema.Unknown,
          SchemaTransformation.transform<any, any>({
            decode: () =>
              new Proxy(
                { _tag: "Msg", run: () => "sender code on the receiver's fiber" },
                { get: (t, k) => (t as any)[k] }
              ),
            encode: (x: unknown) => x
          })
        )
      )
      const { out } = yield* runPlain(
        Effect.gen(function* () {
          const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const plain = (yield* Sys.spawn(collector, { caps: [me] })).cap
          const pipe = yield* Sys.attenuate(plain, { message: withCode })
          const sent = yield* Effect.exit(Sys.send(pipe, { _tag: "Msg", text: "x" }))
          yield* Sys.send(plain, { _tag: "Stop" })
          const got = (yield* Sys.recv()).body as Array<{ kinds: Array<string> }>
          return { sent: sent._tag, got }
        })
      )
      const kinds = out.got.flatMap((g) => g.kinds)
      assert.notInclude(kinds, "function", "a function reached the receiver through a pipe")
    })
  )

  it.effect("a device cap cannot be attenuated with `message`; Pipe.allow() in a Pipeline admits nothing", () =>
    Effect.gen(function* () {
      const { out } = yield* runPlain((grant) =>
        Effect.gen(function* () {
          const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const device = grant.devices.echo!
          const onDevice = yield* Effect.exit(Sys.attenuate(device, { message: Msg }))
          const sink = Process.make<void>("sink", () =>
            Effect.gen(function* () {
              const m = yield* Sys.recv()
              yield* Sys.send(me, { reached: m.body })
            })
          )
          const p = yield* Pipeline.make(
            Process.make<void>("head", () => Effect.void),
            Pipe.allow(),
            sink
          )
          void p
          // the head's out cap is the pipe; send through a derived input of the sink stage instead:
          const toSink = yield* Pipe.narrow(yield* Sys.derive(p.stages[1]!.cap, ["send"]), Pipe.allow())
          const sent = [
            (yield* Effect.exit(Sys.send(toSink, { _tag: "Msg", text: "x" })))._tag,
            (yield* Effect.exit(Sys.send(toSink, "x")))._tag,
            (yield* Effect.exit(Sys.send(toSink, null)))._tag
          ]
          return { onDevice: onDevice._tag, sent }
        })
      )
      assert.strictEqual(out.onDevice, "Failure")
      assert.deepStrictEqual(out.sent, ["Failure", "Failure", "Failure"])
    })
  )
})

// =====================================================================================================================
// agentctl mcp
// =====================================================================================================================

describe("agentctl mcp under attack", () => {
  it.effect(
    "manifest names constructor / toString / hasOwnProperty are plain tools; __proto__ or a path is refused",
    () =>
      Effect.gen(function* () {
        const agents = yield* McpServe.tools([
          { source: "a", text: "name: constructor\n" },
          { source: "b", text: "name: toString\n" },
          { source: "c", text: "name: hasOwnProperty\n" }
        ])
        assert.deepStrictEqual(
          agents.map((a) => a.name),
          ["constructor", "toString", "hasOwnProperty"]
        )
        for (const name of ["__proto__", '"a b/../x"', '"x".repeat']) {
          const bad = yield* Effect.exit(McpServe.tools([{ source: "d", text: `name: ${name}\n` }]))
          assert.isTrue(Exit.isFailure(bad), name)
        }
        const twice = yield* Effect.exit(
          McpServe.tools([
            { source: "e", text: "name: same\n" },
            { source: "f", text: "name: same\n" }
          ])
        )
        assert.isTrue(Exit.isFailure(twice))
      })
  )

  it.live(
    "unknown tool names that are Object.prototype members, a 2 MiB message, concurrent calls: isError, no crash",
    () =>
      Effect.gen(function* () {
        const dir = tmp()
        const [clientT, serverT] = InMemoryTransport.createLinkedPair()
        const fiber = yield* Effect.forkChild(
          McpServe.serve({ socket: join(dir, "none.sock"), manifests: [{ source: "a", text: "name: a\n" }] }, serverT)
        )
        const client = new Client({ name: "t", version: "1" })
        yield* Effect.promise(() => client.connect(clientT))
        const results = yield* Effect.promise(() =>
          Promise.all([
            client.callTool({ name: "__proto__", arguments: { message: "x" } }),
            client.callTool({ name: "constructor", arguments: { message: "x" } }),
            client.callTool({ name: "a", arguments: { message: "m".repeat(2 * 1024 * 1024) } }),
            ...Array.from({ length: 20 }, () => client.callTool({ name: "a", arguments: { message: "x" } }))
          ])
        )
        for (const r of results) assert.isTrue(r.isError, JSON.stringify(r).slice(0, 200))
        yield* Effect.promise(() => client.close())
        yield* Effect.interruptible(Effect.void)
        void fiber
      }),
    60_000
  )

  it.live(
    "a client that disconnects mid-call: the agent it started does not go on running",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const server = yield* OpenAiServer.make([OpenAiServer.text("late answer", { delayMs: 8000 })])
          const dir = tmp()
          const d = yield* startDaemon(dir, server.baseURL)
          const file = join(dir, "slow.yaml")
          writeFileSync(file, "name: slow\nbudget: { tokens: 20000 }\n")
          const [clientT, serverT] = InMemoryTransport.createLinkedPair()
          yield* Effect.forkChild(
            McpServe.serve(
              { socket: d.socket, manifests: [{ source: file, text: readFileSync(file, "utf8") }] },
              serverT
            )
          )
          const client = new Client({ name: "t", version: "1" })
          yield* Effect.promise(() => client.connect(clientT))
          const abort = new AbortController()
          const pending = client
            .callTool({ name: "slow", arguments: { message: "hi" } }, undefined, { signal: abort.signal })
            .catch((e) => e)
          yield* Effect.sleep("1500 millis")
          abort.abort()
          yield* Effect.promise(() => pending)
          yield* Effect.promise(() => client.close())
          yield* Effect.sleep("1500 millis")
          const list = yield* daemonCall(d.socket, "agent.list")
          const running = ((list.result ?? []) as Array<{ pid: number; name: string; status: string }>).filter(
            (a) => a.name === "slow" && a.status !== "exited"
          )
          assert.deepStrictEqual(running, [], `left running after the client went away: ${JSON.stringify(list)}`)
        })
      ),
    60_000
  )
})
