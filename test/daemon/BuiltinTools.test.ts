/**
 * The daemon's built-in tools through the kernel: a root process narrows its tools cap with the grants of a manifest
 * (`BuiltinTools.grantsOf`) and reads `{ tool, input }`. Each allowed call beside its refusal, on a real temp dir
 * tree with real symlinks and a real loopback HTTP server.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { Duration, Effect } from "effect"
import type { Capability } from "effect-agent-os"
import { BuiltinTools, Manifest, Sys, Tools } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertCapabilityError, outcome, runOn, show } from "../security/harness.ts"

// ---------------------------------------------------------------------------------------------------------------------
// fixtures

/**
 * A real tree, removed at the end of the test:
 *
 * ```
 * root/allowed/a.txt             "a"
 * root/allowed/sub/b.txt         "b"
 * root/allowed/out     -> root/secret.txt
 * root/allowed/inner   -> root/allowed/a.txt
 * root/allowed/nowhere -> root/missing.txt   (dangling)
 * root/secret.txt                "s3cret"
 * root/w/                        (an empty directory to write in)
 * ```
 */
const tree = Effect.acquireRelease(
  Effect.sync(() => {
    const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "agentos-builtin-")))
    fs.mkdirSync(path.join(root, "allowed", "sub"), { recursive: true })
    fs.mkdirSync(path.join(root, "w"))
    fs.writeFileSync(path.join(root, "allowed", "a.txt"), "a")
    fs.writeFileSync(path.join(root, "allowed", "sub", "b.txt"), "b")
    fs.writeFileSync(path.join(root, "secret.txt"), "s3cret")
    fs.symlinkSync(path.join(root, "secret.txt"), path.join(root, "allowed", "out"))
    fs.symlinkSync(path.join(root, "allowed", "a.txt"), path.join(root, "allowed", "inner"))
    fs.symlinkSync(path.join(root, "missing.txt"), path.join(root, "allowed", "nowhere"))
    return root
  }),
  (root) => Effect.sync(() => fs.rmSync(root, { recursive: true, force: true }))
)

interface Server {
  readonly port: number
  /** The paths requested, in order. */
  readonly hits: Array<string>
}

/**
 * A loopback HTTP server, closed at the end of the test: `/big/<n>` answers n bytes, `/redirect/<port>` a 302 to
 * that port, `/slow` never answers, anything else "hello".
 */
const server = Effect.acquireRelease(
  Effect.callback<Server & { readonly server: http.Server }>((resume) => {
    const hits: Array<string> = []
    const server = http.createServer((request, response) => {
      const url = request.url ?? "/"
      hits.push(url)
      const [, route, arg] = url.split("/")
      if (route === "big") {
        response.writeHead(200, { "content-type": "text/plain" })
        response.end("x".repeat(Number(arg)))
      } else if (route === "redirect") {
        response.writeHead(302, { location: `http://127.0.0.1:${arg}/` })
        response.end()
      } else if (route !== "slow") {
        response.writeHead(200, { "content-type": "text/plain", "x-served-by": "loopback" })
        response.end("hello")
      }
    })
    server.listen(0, "127.0.0.1", () => {
      resume(Effect.succeed({ server, port: (server.address() as AddressInfo).port, hits }))
    })
  }),
  ({ server }) =>
    Effect.sync(() => {
      server.closeAllConnections()
      server.close()
    })
)

/** A manifest granting `capabilities`, as YAML text. */
const manifest = (...capabilities: ReadonlyArray<string>) =>
  ["name: agent", `capabilities: [${capabilities.map((c) => JSON.stringify(c)).join(", ")}]`].join("\n")

/** A manifest's YAML (through `Manifest.decode` and `grantsOf`), or tool grants as they are. */
type Narrowing = string | Capability.ToolGrants
type Call = (tool: string, input: unknown) => Effect.Effect<unknown, unknown, Sys.Sys>

/**
 * Boots the built-in tools on a test kernel and runs `body` as the root process, its tools cap narrowed by each of
 * `narrowings` in turn, outermost first. `call` reads one `{ tool, input }` through the narrowed cap.
 */
const withTools = <A, E>(
  narrowings: ReadonlyArray<Narrowing>,
  body: (call: Call) => Effect.Effect<A, E, Sys.Sys>,
  options?: BuiltinTools.Options
) =>
  Effect.gen(function* () {
    const tools = yield* BuiltinTools.make(options)
    const grants = yield* Effect.forEach(narrowings, (narrowing) =>
      typeof narrowing === "string"
        ? Effect.map(Manifest.decode(narrowing), BuiltinTools.grantsOf)
        : Effect.succeed(narrowing)
    )
    return yield* runOn(
      (grant) =>
        Effect.gen(function* () {
          let cap = grant.devices.tools!
          for (const tools of grants) cap = yield* Sys.attenuate(cap, { tools })
          const handle = yield* Sys.open(cap)
          return yield* body((tool, input) => Sys.read(handle, { tool, input }))
        }),
      { grant: ["tools"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [tools] })))
  })

/** Asserts a refusal: a `ToolError` `failed` of `tool` (a read that succeeded), whose message holds each of `parts`. */
const assertRefused = (result: unknown, tool: string, ...parts: ReadonlyArray<string>) => {
  assert.isTrue(Tools.isToolError(result), `expected a ToolError, got ${show(result)}`)
  const error = result as Tools.ToolError
  assert.strictEqual(error.tool, tool)
  assert.strictEqual(error.reason, "failed", error.message)
  for (const part of parts) assert.include(error.message, part)
}

const read = (file: string) => fs.readFileSync(file, "utf8")

interface Fetched {
  readonly status: number
  readonly headers: Record<string, string>
  readonly body: string
}

// ---------------------------------------------------------------------------------------------------------------------

describe("echo, definitions and grants", () => {
  it.effect("echo answers; a tool the manifest does not grant is refused by the kernel (out-of-scope)", () =>
    withTools([manifest("tool: echo")], (call) =>
      Effect.gen(function* () {
        assert.strictEqual(yield* call("echo", { text: "hi" }), "hi")
        assertCapabilityError(yield* outcome(call("file_read", { path: "/etc/hostname" })), "out-of-scope")
        assertCapabilityError(yield* outcome(call("http_get", { url: "http://127.0.0.1/" })), "out-of-scope")
        // a bad input is the device's answer, once the kernel let the call through
        const invalid = yield* call("echo", { text: 1 })
        assert.isTrue(Tools.isToolError(invalid) && invalid.reason === "invalid-input")
      })
    )
  )

  it("definitions: the five tools, each with a description and its parameters' JSON Schema", () => {
    assert.deepStrictEqual(
      BuiltinTools.definitions.map((d) => d.name),
      ["echo", "file_read", "file_write", "http_get", "spawn_agent"]
    )
    assert.deepStrictEqual(BuiltinTools.definitions, Tools.definitions(BuiltinTools.toolkit))
    for (const definition of BuiltinTools.definitions) {
      assert.isString(definition.description)
      assert.strictEqual(definition.parameters.type, "object")
    }
    const fileWrite = BuiltinTools.definitions.find((d) => d.name === "file_write")!
    assert.deepStrictEqual(Object.keys(fileWrite.parameters.properties as object), ["path", "content"])
  })

  it.effect("grantsOf: globs and hosts gathered per tool, spawn_agent names, approval with its timeout", () =>
    Effect.gen(function* () {
      const full = yield* Manifest.decode(
        [
          "name: full",
          "capabilities:",
          '  - "tool: echo"',
          '  - "file_read: /data/a/*"',
          '  - "file_read: /data/b/**"',
          '  - "file_write: /data/out/*"',
          '  - "http_get: 127.0.0.1:*"',
          '  - "http_get: *.example.com"',
          '  - "spawn_agent: [summarizer, critic]"',
          "approval_required: [file_write, echo]",
          "approval_timeout: 30 seconds"
        ].join("\n")
      )
      const timeout = full.approvalTimeout!
      assert.isTrue(Duration.equals(timeout, Duration.seconds(30)))
      assert.deepStrictEqual(BuiltinTools.grantsOf(full), {
        echo: { approval: { timeout } },
        file_read: { scope: { globs: ["/data/a/*", "/data/b/**"] } },
        file_write: { scope: { globs: ["/data/out/*"] }, approval: { timeout } },
        http_get: { scope: { hosts: ["127.0.0.1:*", "*.example.com"] } },
        spawn_agent: { scope: { names: ["summarizer", "critic"] } }
      })
      const plain = yield* Manifest.decode(
        ["name: plain", 'capabilities: ["tool: echo", "tool: file_read"]', "approval_required: [echo]"].join("\n")
      )
      // `tool: file_read` grants the tool without a scope: every call of it is refused (see "scopes")
      assert.deepStrictEqual(BuiltinTools.grantsOf(plain), { echo: { approval: true }, file_read: {} })
    })
  )
})

describe("file_read", () => {
  it.effect("inside the glob reads (the resolved path back); ../ and absolute paths elsewhere are refused", () =>
    Effect.gen(function* () {
      const root = yield* tree
      yield* withTools([manifest(`file_read: ${root}/allowed/*`)], (call) =>
        Effect.gen(function* () {
          const a = path.join(root, "allowed", "a.txt")
          assert.deepStrictEqual(yield* call("file_read", { path: a }), { path: a, content: "a" })
          // a `..` that stays inside is fine: what is matched is the resolved path
          assert.deepStrictEqual(yield* call("file_read", { path: `${root}/allowed/sub/../a.txt` }), {
            path: a,
            content: "a"
          })
          assertRefused(
            yield* call("file_read", { path: `${root}/allowed/../secret.txt` }),
            "file_read",
            "outside the allowed paths"
          )
          assertRefused(
            yield* call("file_read", { path: `${root}/allowed/sub/../../secret.txt` }),
            "file_read",
            "outside"
          )
          assertRefused(yield* call("file_read", { path: `${root}/secret.txt` }), "file_read", "outside")
          assertRefused(yield* call("file_read", { path: "/etc/passwd" }), "file_read", "outside")
          // `*` is one segment: a nested file is outside `allowed/*`
          assertRefused(yield* call("file_read", { path: `${root}/allowed/sub/b.txt` }), "file_read", "outside")
          // an agent has no working directory to resolve against
          assertRefused(yield* call("file_read", { path: "allowed/a.txt" }), "file_read", "not an absolute path")
          assertRefused(yield* call("file_read", { path: "" }), "file_read")
        })
      )
    })
  )

  it.effect(
    "a symlink inside the allowed dir is followed: pointing inside it reads, pointing outside it is refused",
    () =>
      Effect.gen(function* () {
        const root = yield* tree
        yield* withTools([manifest(`file_read: ${root}/allowed/*`)], (call) =>
          Effect.gen(function* () {
            assert.deepStrictEqual(yield* call("file_read", { path: `${root}/allowed/inner` }), {
              path: `${root}/allowed/a.txt`,
              content: "a"
            })
            const out = yield* call("file_read", { path: `${root}/allowed/out` })
            assertRefused(out, "file_read", `${root}/secret.txt`, "outside")
            assert.notInclude(show(out), "s3cret")
          })
        )
      })
  )

  it.effect("a missing file, a directory, a dangling symlink inside the allowed dir: failures, not crashes", () =>
    Effect.gen(function* () {
      const root = yield* tree
      yield* withTools([manifest(`file_read: ${root}/allowed/*`)], (call) =>
        Effect.gen(function* () {
          assertRefused(
            yield* call("file_read", { path: `${root}/allowed/none.txt` }),
            "file_read",
            "no such file or directory"
          )
          assertRefused(yield* call("file_read", { path: `${root}/allowed/sub` }), "file_read", "is a directory")
          // a dangling link resolves to itself (inside) and is not followed
          assertRefused(yield* call("file_read", { path: `${root}/allowed/nowhere` }), "file_read", "symlink")
          // the device still serves after them
          assert.deepStrictEqual(yield* call("file_read", { path: `${root}/allowed/a.txt` }), {
            path: `${root}/allowed/a.txt`,
            content: "a"
          })
        })
      )
    })
  )

  it.effect("the size read is bounded: a file of fileBytesMax reads, one byte more is refused", () =>
    Effect.gen(function* () {
      const root = yield* tree
      fs.writeFileSync(path.join(root, "allowed", "eight.txt"), "12345678")
      fs.writeFileSync(path.join(root, "allowed", "nine.txt"), "123456789")
      yield* withTools(
        [manifest(`file_read: ${root}/allowed/*`)],
        (call) =>
          Effect.gen(function* () {
            const eight = (yield* call("file_read", { path: `${root}/allowed/eight.txt` })) as { content: string }
            assert.strictEqual(eight.content, "12345678")
            assertRefused(
              yield* call("file_read", { path: `${root}/allowed/nine.txt` }),
              "file_read",
              "more than the 8"
            )
          }),
        { fileBytesMax: 8 }
      )
    })
  )
})

describe("file_write", () => {
  it.effect("inside the glob writes, leaving no temporary file; an existing file is replaced and keeps its mode", () =>
    Effect.gen(function* () {
      const root = yield* tree
      const target = path.join(root, "w", "note.txt")
      yield* withTools([manifest(`file_write: ${root}/w/*`)], (call) =>
        Effect.gen(function* () {
          assert.deepStrictEqual(yield* call("file_write", { path: target, content: "héllo" }), {
            path: target,
            bytes: 6
          })
          assert.strictEqual(read(target), "héllo")
          fs.chmodSync(target, 0o600)
          assert.deepStrictEqual(yield* call("file_write", { path: target, content: "second" }), {
            path: target,
            bytes: 6
          })
          assert.strictEqual(read(target), "second")
          assert.strictEqual(fs.statSync(target).mode & 0o777, 0o600)
          assert.deepStrictEqual(fs.readdirSync(path.join(root, "w")), ["note.txt"])
        })
      )
    })
  )

  it.effect("outside the glob, ../ and absolute escapes are refused and nothing is written", () =>
    Effect.gen(function* () {
      const root = yield* tree
      yield* withTools([manifest(`file_write: ${root}/w/*`)], (call) =>
        Effect.gen(function* () {
          assertRefused(
            yield* call("file_write", { path: `${root}/w/../secret.txt`, content: "pwned" }),
            "file_write",
            "outside the allowed paths"
          )
          assertRefused(
            yield* call("file_write", { path: `${root}/secret.txt`, content: "pwned" }),
            "file_write",
            "outside"
          )
          assertRefused(
            yield* call("file_write", { path: `${root}/elsewhere.txt`, content: "new" }),
            "file_write",
            "outside"
          )
          assert.strictEqual(read(path.join(root, "secret.txt")), "s3cret")
          assert.isFalse(fs.existsSync(path.join(root, "elsewhere.txt")))
          assert.deepStrictEqual(fs.readdirSync(path.join(root, "w")), [])
          // file_read was not granted: the kernel refuses it, whatever the path
          assertCapabilityError(yield* outcome(call("file_read", { path: `${root}/w/x` })), "out-of-scope")
        })
      )
    })
  )

  it.effect(
    "a write through a symlink that resolves outside is refused; its target is unchanged (or not created)",
    () =>
      Effect.gen(function* () {
        const root = yield* tree
        yield* withTools([manifest(`file_write: ${root}/allowed/*`)], (call) =>
          Effect.gen(function* () {
            assertRefused(
              yield* call("file_write", { path: `${root}/allowed/out`, content: "pwned" }),
              "file_write",
              `${root}/secret.txt`,
              "outside"
            )
            assert.strictEqual(read(path.join(root, "secret.txt")), "s3cret")
            assert.isTrue(fs.lstatSync(path.join(root, "allowed", "out")).isSymbolicLink())
            // a dangling link to outside is not followed: its target is never created
            assertRefused(
              yield* call("file_write", { path: `${root}/allowed/nowhere`, content: "pwned" }),
              "file_write",
              "symlink"
            )
            assert.isFalse(fs.existsSync(path.join(root, "missing.txt")))
            // a link to a file inside writes that file, and stays a link
            assert.deepStrictEqual(yield* call("file_write", { path: `${root}/allowed/inner`, content: "A" }), {
              path: `${root}/allowed/a.txt`,
              bytes: 1
            })
            assert.strictEqual(read(path.join(root, "allowed", "a.txt")), "A")
            assert.isTrue(fs.lstatSync(path.join(root, "allowed", "inner")).isSymbolicLink())
          })
        )
      })
  )

  it.effect("a missing parent directory, a directory as the target and too much content are refused", () =>
    Effect.gen(function* () {
      const root = yield* tree
      yield* withTools(
        [manifest(`file_write: ${root}/allowed/**`)],
        (call) =>
          Effect.gen(function* () {
            assertRefused(
              yield* call("file_write", { path: `${root}/allowed/new/x.txt`, content: "x" }),
              "file_write",
              `the directory ${root}/allowed/new does not exist`
            )
            assert.isFalse(fs.existsSync(path.join(root, "allowed", "new")))
            assertRefused(
              yield* call("file_write", { path: `${root}/allowed/sub`, content: "x" }),
              "file_write",
              "is a directory"
            )
            assertRefused(
              yield* call("file_write", { path: `${root}/allowed/sub/b.txt`, content: "123456789" }),
              "file_write",
              "more than the 8"
            )
            assert.strictEqual(read(path.join(root, "allowed", "sub", "b.txt")), "b")
            assert.deepStrictEqual(
              yield* call("file_write", { path: `${root}/allowed/sub/b.txt`, content: "12345678" }),
              { path: `${root}/allowed/sub/b.txt`, bytes: 8 }
            )
          }),
        { fileBytesMax: 8 }
      )
    })
  )
})

describe("scopes", () => {
  it.effect("two stacked narrowings: a path must pass both (outer w/*, inner w/x: w/y refused)", () =>
    Effect.gen(function* () {
      const root = yield* tree
      const x = path.join(root, "w", "x")
      const y = path.join(root, "w", "y")
      fs.writeFileSync(x, "x")
      fs.writeFileSync(y, "y")
      const outer = manifest(`file_read: ${root}/w/*`, `file_write: ${root}/w/*`)
      const inner = manifest(`file_read: ${x}`, `file_write: ${x}`)
      yield* withTools([outer, inner], (call) =>
        Effect.gen(function* () {
          assert.deepStrictEqual(yield* call("file_read", { path: x }), { path: x, content: "x" })
          assertRefused(yield* call("file_read", { path: y }), "file_read", "outside")
          assert.deepStrictEqual(yield* call("file_write", { path: x, content: "X" }), { path: x, bytes: 1 })
          assertRefused(yield* call("file_write", { path: y, content: "Y" }), "file_write", "outside")
          assert.strictEqual(read(y), "y")
        })
      )
      // in the other order, too: an inner narrowing cannot widen the outer one
      yield* withTools([inner, outer], (call) =>
        Effect.gen(function* () {
          assertRefused(yield* call("file_read", { path: y }), "file_read", "outside")
          assert.deepStrictEqual(yield* call("file_read", { path: x }), { path: x, content: "X" })
        })
      )
    })
  )

  it.effect("no scope is no access: unnarrowed, { file_read: {} }, `tool: file_read`, a scope of the wrong shape", () =>
    Effect.gen(function* () {
      const root = yield* tree
      const a = path.join(root, "allowed", "a.txt")
      yield* withTools([], (call) =>
        Effect.gen(function* () {
          assertRefused(yield* call("file_read", { path: a }), "file_read", "may not read any path")
          assert.strictEqual(yield* call("echo", { text: "unnarrowed" }), "unnarrowed")
        })
      )
      yield* withTools([{ file_read: {} }], (call) =>
        Effect.gen(function* () {
          assertRefused(yield* call("file_read", { path: a }), "file_read", "may not read any path")
        })
      )
      yield* withTools([manifest("tool: file_read", "tool: file_write", "tool: http_get")], (call) =>
        Effect.gen(function* () {
          assertRefused(yield* call("file_read", { path: a }), "file_read", "may not read any path")
          assertRefused(yield* call("file_write", { path: a, content: "z" }), "file_write", "may not write any path")
          assertRefused(yield* call("http_get", { url: "http://127.0.0.1/" }), "http_get", "may not reach any host")
          assert.strictEqual(read(a), "a")
        })
      )
      yield* withTools([{ file_read: { scope: { paths: [`${root}/allowed/*`] } } }], (call) =>
        Effect.gen(function* () {
          assertRefused(yield* call("file_read", { path: a }), "file_read", "outside")
        })
      )
      // a narrowing without a scope under one with a scope adds no limit of its own
      yield* withTools([manifest(`file_read: ${root}/allowed/*`), { file_read: {} }], (call) =>
        Effect.gen(function* () {
          assert.deepStrictEqual(yield* call("file_read", { path: a }), { path: a, content: "a" })
          assertRefused(yield* call("file_read", { path: `${root}/secret.txt` }), "file_read", "outside")
        })
      )
    })
  )
})

describe("http_get", () => {
  it.effect("an allowed host:port is fetched; another port, another host, file: and credentials are refused", () =>
    Effect.gen(function* () {
      const allowed = yield* server
      const other = yield* server
      yield* withTools([manifest(`http_get: 127.0.0.1:${allowed.port}`)], (call) =>
        Effect.gen(function* () {
          const ok = (yield* call("http_get", { url: `http://127.0.0.1:${allowed.port}/` })) as Fetched
          assert.strictEqual(ok.status, 200)
          assert.strictEqual(ok.body, "hello")
          assert.strictEqual(ok.headers["x-served-by"], "loopback")
          assertRefused(
            yield* call("http_get", { url: `http://127.0.0.1:${other.port}/` }),
            "http_get",
            "not a host this agent may reach"
          )
          assertRefused(
            yield* call("http_get", { url: `http://localhost:${allowed.port}/` }),
            "http_get",
            "not a host this agent may reach"
          )
          assertRefused(yield* call("http_get", { url: "file:///etc/passwd" }), "http_get", "only http: and https:")
          assertRefused(
            yield* call("http_get", { url: `http://user:pw@127.0.0.1:${allowed.port}/` }),
            "http_get",
            "credentials"
          )
          assertRefused(yield* call("http_get", { url: "not a url" }), "http_get", "is not a URL")
          assert.deepStrictEqual(allowed.hits, ["/"])
          assert.deepStrictEqual(other.hits, [])
        })
      )
    })
  )

  it.effect("a redirect is returned, not followed: the host it points to is never reached", () =>
    Effect.gen(function* () {
      const allowed = yield* server
      const other = yield* server
      yield* withTools([manifest(`http_get: 127.0.0.1:${allowed.port}`)], (call) =>
        Effect.gen(function* () {
          const url = `http://127.0.0.1:${allowed.port}/redirect/${other.port}`
          const moved = (yield* call("http_get", { url })) as Fetched
          assert.strictEqual(moved.status, 302)
          assert.strictEqual(moved.headers.location, `http://127.0.0.1:${other.port}/`)
          assert.deepStrictEqual(other.hits, [])
        })
      )
    })
  )

  it.effect("a port wildcard allows every port; a pattern without a port only the default port", () =>
    Effect.gen(function* () {
      const one = yield* server
      const two = yield* server
      yield* withTools([manifest("http_get: 127.0.0.1:*")], (call) =>
        Effect.gen(function* () {
          for (const { port } of [one, two]) {
            assert.strictEqual(
              ((yield* call("http_get", { url: `http://127.0.0.1:${port}/` })) as Fetched).body,
              "hello"
            )
          }
        })
      )
      yield* withTools([manifest("http_get: 127.0.0.1")], (call) =>
        Effect.gen(function* () {
          assertRefused(yield* call("http_get", { url: `http://127.0.0.1:${one.port}/` }), "http_get", "not a host")
        })
      )
      assert.deepStrictEqual(one.hits, ["/"])
      assert.deepStrictEqual(two.hits, ["/"])
    })
  )

  it.effect("the body is bounded and the request timed: a body over the limit and a silent server are failures", () =>
    Effect.gen(function* () {
      const { port } = yield* server
      yield* withTools(
        [manifest(`http_get: 127.0.0.1:${port}`)],
        (call) =>
          Effect.gen(function* () {
            const small = (yield* call("http_get", { url: `http://127.0.0.1:${port}/big/16` })) as Fetched
            assert.strictEqual(small.body.length, 16)
            assertRefused(
              yield* call("http_get", { url: `http://127.0.0.1:${port}/big/17` }),
              "http_get",
              "more than the 16 bytes"
            )
            assertRefused(
              yield* call("http_get", { url: `http://127.0.0.1:${port}/slow` }),
              "http_get",
              "no answer within 200 ms"
            )
          }),
        { httpBodyBytesMax: 16, httpTimeoutMs: 200 }
      )
    })
  )

  it("hostMatches: `*` in the host, port `*`, no port means the default port", () => {
    const cases: ReadonlyArray<readonly [string, string, boolean]> = [
      ["http://127.0.0.1:8080/", "127.0.0.1:*", true],
      ["http://127.0.0.1/", "127.0.0.1:*", true],
      ["http://127.0.0.2:8080/", "127.0.0.1:*", false],
      ["http://localhost:8080/", "localhost:8080", true],
      ["http://localhost:8081/", "localhost:8080", false],
      ["http://localhost/", "localhost", true],
      ["http://localhost:80/", "localhost", true],
      ["http://localhost:8080/", "localhost", false],
      ["https://api.example.com/", "*.example.com", true],
      ["https://a.b.example.com/", "*.example.com", true],
      ["https://example.com/", "*.example.com", false],
      ["https://example.com.evil.net/", "*.example.com", false],
      ["https://evilexample.com/", "*.example.com", false],
      ["https://API.Example.COM/", "*.example.com", true],
      ["https://api.example.com:8443/", "*.example.com", false],
      ["https://api.example.com/", "*.example.com:443", true],
      ["http://api.example.com:443/", "*.example.com", false],
      ["http://2130706433/", "127.0.0.1", true],
      ["http://[::1]/", "*", false],
      ["http://anything.at.all/", "*", true]
    ]
    for (const [url, pattern, expected] of cases) {
      assert.strictEqual(BuiltinTools.hostMatches(new URL(url), pattern), expected, `${pattern} ~ ${url}`)
    }
  })
})
