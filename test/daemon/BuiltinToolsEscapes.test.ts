/**
 * The built-in tools through the kernel, confined by the scopes a manifest's caps give: each grant beside its
 * escape (`../`, an absolute path outside, a symlink out), on a real directory tree and a real loopback HTTP server.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as fs from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as os from "node:os"
import * as path from "node:path"
import { BuiltinTools, type Capability, Manifest, Sys, Tools } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertCapabilityError, outcome, runOn } from "../security/harness.ts"

const tree = () => {
  const root = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "builtin-")))
  fs.mkdirSync(path.join(root, "data"))
  fs.mkdirSync(path.join(root, "out"))
  fs.mkdirSync(path.join(root, "private"))
  fs.writeFileSync(path.join(root, "data", "a.txt"), "alpha")
  fs.writeFileSync(path.join(root, "private", "secret.txt"), "s3cret")
  fs.symlinkSync(path.join(root, "private", "secret.txt"), path.join(root, "data", "link.txt"))
  fs.symlinkSync(path.join(root, "private"), path.join(root, "out", "escape"))
  return root
}

/** Runs `body` with a tools handle narrowed as `yaml` (a manifest) says. */
const withManifest = <A>(yaml: string, body: (h: Capability.CapRef) => Effect.Effect<A, unknown, Sys.Sys>) =>
  Effect.gen(function* () {
    const tools = yield* BuiltinTools.make()
    const manifest = yield* Manifest.decode(yaml)
    return yield* runOn(
      (grant) =>
        Effect.gen(function* () {
          const narrowed = yield* Sys.attenuate(grant.devices.tools!, { tools: BuiltinTools.grantsOf(manifest) })
          return yield* body(yield* Sys.open(narrowed))
        }),
      { grant: ["tools"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [tools] })))
  })

const failed = (value: unknown, includes: string) => {
  assert.isTrue(Tools.isToolError(value), `expected a ToolError, got ${JSON.stringify(value)}`)
  const error = value as Tools.ToolError
  assert.strictEqual(error.reason, "failed")
  assert.include(error.message, includes)
}

describe("BuiltinTools", () => {
  it.live("file_read inside its glob; ../, absolute and symlink escapes refused; a missing file is a failure", () => {
    const root = tree()
    return withManifest(`name: r\ncapabilities: ["file_read: ${root}/data/*"]`, (h) =>
      Effect.gen(function* () {
        const read = (p: string) => Sys.read(h, { tool: "file_read", input: { path: p } })
        assert.deepStrictEqual(yield* read(path.join(root, "data", "a.txt")), {
          path: path.join(root, "data", "a.txt"),
          content: "alpha"
        })
        failed(yield* read(path.join(root, "data", "..", "private", "secret.txt")), "outside the allowed paths")
        failed(yield* read(path.join(root, "private", "secret.txt")), "outside the allowed paths")
        failed(yield* read("/etc/passwd"), "outside the allowed paths")
        failed(yield* read(path.join(root, "data", "link.txt")), "outside the allowed paths")
        failed(yield* read(path.join(root, "data", "missing.txt")), "missing.txt")
        // the manifest grants no file_write: the kernel refuses it
        assertCapabilityError(
          yield* outcome(
            Sys.read(h, { tool: "file_write", input: { path: path.join(root, "data", "b"), content: "" } })
          ),
          "out-of-scope"
        )
      })
    )
  })

  it.live("file_write inside its glob, atomically; through a symlink out refused, the target unchanged", () => {
    const root = tree()
    return withManifest(`name: w\ncapabilities: ["file_write: ${root}/out/*", "tool: echo"]`, (h) =>
      Effect.gen(function* () {
        const write = (p: string, content: string) => Sys.read(h, { tool: "file_write", input: { path: p, content } })
        assert.deepStrictEqual(yield* write(path.join(root, "out", "r.txt"), "report"), {
          path: path.join(root, "out", "r.txt"),
          bytes: 6
        })
        assert.strictEqual(fs.readFileSync(path.join(root, "out", "r.txt"), "utf8"), "report")
        assert.deepStrictEqual(
          fs.readdirSync(path.join(root, "out")).sort(),
          ["escape", "r.txt"],
          "no temporary file left"
        )
        failed(yield* write(path.join(root, "out", "escape", "secret.txt"), "pwned"), "outside the allowed paths")
        failed(yield* write(path.join(root, "out", "..", "private", "x.txt"), "pwned"), "outside the allowed paths")
        assert.strictEqual(fs.readFileSync(path.join(root, "private", "secret.txt"), "utf8"), "s3cret")
        assert.isFalse(fs.existsSync(path.join(root, "private", "x.txt")))
        failed(yield* write(path.join(root, "out", "no-dir", "x.txt"), "x"), "no-dir")
        assert.strictEqual(yield* Sys.read(h, { tool: "echo", input: { text: "hi" } }), "hi")
      })
    )
  })

  it.live("stacked narrowings: every scope must allow; a grant without a scope allows nothing (fail closed)", () => {
    const root = tree()
    return Effect.gen(function* () {
      const tools = yield* BuiltinTools.make()
      yield* runOn(
        (grant) =>
          Effect.gen(function* () {
            const outer = yield* Sys.attenuate(grant.devices.tools!, {
              tools: { file_read: { scope: { globs: [`${root}/data/*`] } } }
            })
            const inner = yield* Sys.attenuate(outer, {
              tools: { file_read: { scope: { globs: [`${root}/data/a.txt`] } } }
            })
            const h = yield* Sys.open(inner)
            fs.writeFileSync(path.join(root, "data", "b.txt"), "beta")
            const read = (handle: typeof h, p: string) => Sys.read(handle, { tool: "file_read", input: { path: p } })
            assert.strictEqual(
              ((yield* read(h, path.join(root, "data", "a.txt"))) as { content: string }).content,
              "alpha"
            )
            failed(yield* read(h, path.join(root, "data", "b.txt")), "outside the allowed paths")
            const bare = yield* Sys.open(yield* Sys.attenuate(grant.devices.tools!, { tools: { file_read: {} } }))
            failed(yield* read(bare, path.join(root, "data", "a.txt")), "may not read any path")
            const unnarrowed = yield* Sys.open(grant.devices.tools!)
            failed(yield* read(unnarrowed, path.join(root, "data", "a.txt")), "may not read any path")
          }),
        { grant: ["tools"] }
      ).pipe(Effect.provide(TestKernel.layer({ drivers: [tools] })))
    })
  })

  it.live("http_get to a granted host:port; another port, another host, file: and credentials refused", () =>
    Effect.gen(function* () {
      const server = http.createServer((_req, res) => res.end("hello over http"))
      yield* Effect.acquireRelease(
        Effect.callback<void>((resume) => {
          server.listen(0, "127.0.0.1", () => resume(Effect.void))
          return Effect.void
        }),
        () =>
          Effect.callback<void>((resume) => {
            server.close(() => resume(Effect.void))
            return Effect.void
          })
      )
      const port = (server.address() as AddressInfo).port
      yield* withManifest(`name: h\ncapabilities: ["http_get: 127.0.0.1:${port}"]`, (h) =>
        Effect.gen(function* () {
          const get = (url: string) => Sys.read(h, { tool: "http_get", input: { url } })
          assert.deepInclude(yield* get(`http://127.0.0.1:${port}/x`), { status: 200, body: "hello over http" })
          failed(yield* get(`http://127.0.0.1:${port + 1}/x`), "not a host this agent may reach")
          failed(yield* get(`http://localhost:${port}/x`), "not a host this agent may reach")
          failed(yield* get("file:///etc/passwd"), "only http: and https: URLs")
          failed(yield* get(`http://u:p@127.0.0.1:${port}/`), "credentials")
          failed(yield* get("not a url"), "not a URL")
        })
      )
    }).pipe(Effect.scoped)
  )

  it("grantsOf: a manifest's capabilities and approvals as one tools narrowing", () =>
    Effect.runPromise(
      Effect.gen(function* () {
        const m = yield* Manifest.decode(
          [
            "name: g",
            'capabilities: ["tool: echo", "file_read: /a/*", "file_read: /b/*", "file_write: /o/*", "http_get: 127.0.0.1:*"]',
            "approval_required: [file_write]",
            "approval_timeout: 5 minutes"
          ].join("\n")
        )
        const grants = BuiltinTools.grantsOf(m)
        assert.deepStrictEqual(Object.keys(grants).sort(), ["echo", "file_read", "file_write", "http_get"])
        assert.deepStrictEqual(grants.file_read, { scope: { globs: ["/a/*", "/b/*"] } })
        assert.deepStrictEqual(grants.http_get, { scope: { hosts: ["127.0.0.1:*"] } })
        assert.deepStrictEqual((grants.file_write as { scope: unknown }).scope, { globs: ["/o/*"] })
        assert.isDefined((grants.file_write as { approval?: { timeout?: unknown } }).approval?.timeout)
        assert.isUndefined(grants.echo!.approval)
      })
    ))
})
