import { assert, describe, it } from "@effect/vitest"
import { chmodSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { request } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Schema, Scope, Stream } from "effect"
import { Rpc, RpcGroup } from "effect/rpc"
import { HttpRpc, JsonRpc } from "effect-agent-os"

const token = "t".repeat(64)

class Api extends RpcGroup.make(
  Rpc.make("add", { payload: { a: Schema.Number, b: Schema.Number }, success: Schema.Number }),
  Rpc.make("count", { payload: { to: Schema.Int }, success: Schema.Number, stream: true }),
  Rpc.make("follow", { success: Schema.Number, stream: true }),
  Rpc.make("quiet", { success: Schema.Number, stream: true })
) {}

const state = { calls: 0, followers: 0, finalized: 0 }
const handlers = Api.toLayer({
  add: ({ a, b }) => Effect.sync(() => (state.calls++, a + b)),
  count: ({ to }) => Stream.range(1, to),
  follow: () =>
    Stream.fromEffect(Effect.sync(() => ++state.followers)).pipe(
      Stream.concat(Stream.never),
      Stream.ensuring(Effect.sync(() => state.finalized++))
    ),
  quiet: () => Stream.never.pipe(Stream.ensuring(Effect.sync(() => state.finalized++)))
})

/** Serves `Api` on an ephemeral port for the scope. */
const serve = (options?: Partial<HttpRpc.Options>) =>
  Effect.gen(function* () {
    const handle = yield* JsonRpc.make(Api)
    return yield* HttpRpc.serve({ host: "127.0.0.1", port: 0, token, ...options }, handle)
  }).pipe(Effect.provide(handlers))

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body)
    })
    return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
  })

const until = (check: () => boolean) =>
  Effect.promise(
    () =>
      new Promise<void>((resolve, reject) => {
        const started = Date.now()
        const poll = () =>
          check() ? resolve() : Date.now() - started > 5000 ? reject(new Error("timed out")) : setTimeout(poll, 5)
        poll()
      })
  )

describe("HttpRpc", () => {
  it.live("a call answers 200 application/json; a batch one array; notifications only 204", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* serve()
        assert.isAbove(server.port, 0)
        assert.strictEqual(server.url, `http://127.0.0.1:${server.port}/rpc`)
        const call = yield* post(server.url, { jsonrpc: "2.0", id: 1, method: "add", params: { a: 2, b: 3 } })
        assert.strictEqual(call.status, 200)
        assert.match(call.type!, /^application\/json/)
        assert.deepStrictEqual(JSON.parse(call.text), { jsonrpc: "2.0", id: 1, result: 5 })
        const batch = yield* post(server.url, [
          { jsonrpc: "2.0", id: 1, method: "add", params: { a: 1, b: 1 } },
          { jsonrpc: "2.0", method: "add", params: { a: 1, b: 1 } },
          { jsonrpc: "2.0", id: 2, method: "nope" },
          { jsonrpc: "2.0", id: 3, method: "count", params: { to: 2 } }
        ])
        assert.deepStrictEqual(
          JSON.parse(batch.text).map((r: { id: number; result?: number; error?: { code: number } }) => [
            r.id,
            r.result ?? r.error?.code
          ]),
          [
            [1, 2],
            [2, -32601],
            [3, -32600]
          ]
        )
        const before = state.calls
        const quiet = yield* post(server.url, { jsonrpc: "2.0", method: "add", params: { a: 1, b: 1 } })
        assert.strictEqual(quiet.status, 204)
        assert.strictEqual(quiet.text, "")
        assert.strictEqual(state.calls, before + 1)
        // JSON-RPC errors are answers too
        const parse = yield* post(server.url, "{ not json")
        assert.strictEqual(parse.status, 200)
        assert.strictEqual(JSON.parse(parse.text).error.code, -32700)
      })
    )
  )

  it.live("401 for a missing, wrong or malformed token, with a JSON body; nothing runs", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* serve()
        const before = state.calls
        const body = { jsonrpc: "2.0", id: 1, method: "add", params: { a: 1, b: 1 } }
        const missing = yield* Effect.promise(() =>
          fetch(server.url, { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" })
        )
        assert.strictEqual(missing.status, 401)
        assert.strictEqual(missing.headers.get("www-authenticate"), "Bearer")
        assert.deepStrictEqual(yield* Effect.promise(() => missing.json()), { error: "unauthorized" })
        for (const authorization of [
          `Bearer ${token}x`,
          `Bearer ${token.slice(1)}`,
          `Basic ${token}`,
          token,
          "Bearer"
        ]) {
          const refused = yield* post(server.url, body, { Authorization: authorization })
          assert.strictEqual(refused.status, 401, authorization)
          assert.deepStrictEqual(JSON.parse(refused.text), { error: "unauthorized" })
        }
        assert.strictEqual(state.calls, before)
        // the scheme is case-insensitive
        assert.strictEqual((yield* post(server.url, body, { Authorization: `bearer ${token}` })).status, 200)
      })
    )
  )

  it.live("404 for another path, 405 for another method, 415 for another content type", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* serve()
        const base = `http://127.0.0.1:${server.port}`
        const other = yield* post(`${base}/other`, {})
        assert.strictEqual(other.status, 404)
        assert.deepStrictEqual(JSON.parse(other.text), { error: "not found" })
        assert.strictEqual((yield* post(`${base}/`, {})).status, 404)
        const get = yield* Effect.promise(() => fetch(server.url, { headers: { Authorization: `Bearer ${token}` } }))
        assert.strictEqual(get.status, 405)
        assert.strictEqual(get.headers.get("allow"), "POST")
        const text = yield* post(server.url, "{}", { "Content-Type": "text/plain" })
        assert.strictEqual(text.status, 415)
        // parameters are allowed
        const charset = yield* post(
          server.url,
          { jsonrpc: "2.0", id: 1, method: "add", params: { a: 1, b: 1 } },
          { "Content-Type": "application/json; charset=utf-8" }
        )
        assert.strictEqual(charset.status, 200)
        // the query string is not part of the path
        assert.strictEqual(
          (yield* post(`${server.url}?x=1`, { jsonrpc: "2.0", id: 1, method: "add", params: { a: 1, b: 1 } })).status,
          200
        )
      })
    )
  )

  it.live("413 for a body past the bound: declared, or streamed (reading stops)", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* serve({ bodyBytesMax: 1024 })
        const before = state.calls
        const declared = yield* post(server.url, JSON.stringify({ pad: "x".repeat(2000) }))
        assert.strictEqual(declared.status, 413)
        assert.deepStrictEqual(JSON.parse(declared.text), { error: "body too large" })
        // chunked, no Content-Length: far more than the bound, sent until the server answers
        const streamed = yield* Effect.promise(
          () =>
            new Promise<{ status: number; sent: number }>((resolve, reject) => {
              let sent = 0
              const req = request(
                server.url,
                {
                  method: "POST",
                  headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" }
                },
                (res) => {
                  res.resume()
                  resolve({ status: res.statusCode!, sent })
                  req.destroy()
                }
              )
              req.on("error", reject)
              const chunk = Buffer.alloc(512, 0x20)
              const pump = () => {
                while (sent < 64 * 1024 * 1024) {
                  sent += chunk.length
                  if (!req.write(chunk)) return req.once("drain", pump)
                }
                req.end()
              }
              pump()
            })
        )
        assert.strictEqual(streamed.status, 413)
        assert.isBelow(streamed.sent, 64 * 1024 * 1024)
        assert.strictEqual(state.calls, before)
        // the server goes on
        const ok = yield* post(server.url, { jsonrpc: "2.0", id: 1, method: "add", params: { a: 1, b: 2 } })
        assert.deepStrictEqual(JSON.parse(ok.text).result, 3)
      })
    )
  )

  it.live("a stream answers application/x-ndjson: the items, then the final response", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* serve()
        const out = yield* post(server.url, { jsonrpc: "2.0", id: 7, method: "count", params: { to: 3 } })
        assert.strictEqual(out.status, 200)
        assert.strictEqual(out.type, "application/x-ndjson")
        assert.deepStrictEqual(
          out.text
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l)),
          [
            { jsonrpc: "2.0", method: "stream", params: { id: 7, item: 1 } },
            { jsonrpc: "2.0", method: "stream", params: { id: 7, item: 2 } },
            { jsonrpc: "2.0", method: "stream", params: { id: 7, item: 3 } },
            { jsonrpc: "2.0", id: 7, result: null }
          ]
        )
        // an empty stream is a stream too
        const empty = yield* post(server.url, { jsonrpc: "2.0", id: 8, method: "count", params: { to: 0 } })
        assert.strictEqual(empty.type, "application/x-ndjson")
        assert.deepStrictEqual(JSON.parse(empty.text), { jsonrpc: "2.0", id: 8, result: null })
      })
    )
  )

  it.live("a follow stream comes as it goes, and a client that goes away interrupts it", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const server = yield* serve()
        const before = state.finalized
        const controller = new AbortController()
        const first = yield* Effect.promise(async () => {
          const response = await fetch(server.url, {
            method: "POST",
            headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
            body: JSON.stringify({ jsonrpc: "2.0", id: "f", method: "follow" }),
            signal: controller.signal
          })
          const reader = response.body!.getReader()
          const { value } = await reader.read()
          return { type: response.headers.get("content-type"), line: new TextDecoder().decode(value) }
        })
        assert.strictEqual(first.type, "application/x-ndjson")
        assert.strictEqual(JSON.parse(first.line).params.id, "f")
        assert.strictEqual(state.finalized, before)
        controller.abort()
        yield* until(() => state.finalized === before + 1)
        // a stream with nothing to say yet: its head is out, so the client knows it is connected
        const quiet = new AbortController()
        const type = yield* Effect.promise(async () => {
          const response = await fetch(server.url, {
            method: "POST",
            headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
            body: JSON.stringify({ jsonrpc: "2.0", id: "q", method: "quiet" }),
            signal: quiet.signal
          })
          return response.headers.get("content-type")
        })
        assert.strictEqual(type, "application/x-ndjson")
        quiet.abort()
        yield* until(() => state.finalized === before + 2)
      })
    )
  )

  it.live("binds 127.0.0.1 only; closing the scope closes the server and ends its streams", () =>
    Effect.gen(function* () {
      for (const host of ["0.0.0.0", "::", "localhost", "192.168.1.1"]) {
        const refused = yield* Effect.flip(Effect.scoped(serve({ host })))
        assert.strictEqual(refused.reason, "host", host)
      }
      const scope = yield* Scope.make()
      const server = yield* serve().pipe(Scope.provide(scope))
      const before = state.finalized
      const controller = new AbortController()
      yield* Effect.promise(async () => {
        const response = await fetch(server.url, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "follow" }),
          signal: controller.signal
        })
        await response.body!.getReader().read()
      })
      yield* Scope.close(scope, Exit.void)
      assert.strictEqual(state.finalized, before + 1)
      const after = yield* Effect.promise(() =>
        fetch(server.url, { method: "POST" }).then(
          () => "answered",
          () => "refused"
        )
      )
      assert.strictEqual(after, "refused")
      controller.abort()
      // the port is taken: listen fails with a typed error
      const other = yield* Effect.scoped(
        Effect.gen(function* () {
          const first = yield* serve()
          return yield* Effect.flip(serve({ port: first.port }))
        })
      )
      assert.strictEqual(other.reason, "listen")
    })
  )
})

describe("HttpRpc.ensureToken", () => {
  it.effect("creates a random hex token 0600 (its directory 0700), then reads the same one back", () =>
    Effect.gen(function* () {
      const root = mkdtempSync(join(tmpdir(), "agentos-token-"))
      const path = join(root, "run", "agentd", "token")
      const made = yield* HttpRpc.ensureToken(path)
      assert.match(made, /^[0-9a-f]{64}$/)
      assert.strictEqual(statSync(path).mode & 0o777, 0o600)
      assert.strictEqual(statSync(join(root, "run", "agentd")).mode & 0o777, 0o700)
      assert.strictEqual(readFileSync(path, "utf8"), made + "\n")
      assert.strictEqual(yield* HttpRpc.ensureToken(path), made)
      assert.notStrictEqual(yield* HttpRpc.ensureToken(join(root, "other")), made)
    })
  )

  it.effect("refuses a token file others may read, a symlink, or one without a token", () =>
    Effect.gen(function* () {
      const root = mkdtempSync(join(tmpdir(), "agentos-token-"))
      const wide = join(root, "wide")
      writeFileSync(wide, "a".repeat(64))
      chmodSync(wide, 0o644)
      const unsafe = yield* Effect.flip(HttpRpc.ensureToken(wide))
      assert.strictEqual(unsafe.reason, "token-unsafe")
      assert.match(unsafe.message, /644/)
      assert.strictEqual(statSync(wide).mode & 0o777, 0o644, "left as it was")
      chmodSync(wide, 0o600)
      assert.strictEqual(yield* HttpRpc.ensureToken(wide), "a".repeat(64))
      const link = join(root, "link")
      symlinkSync(wide, link)
      assert.strictEqual((yield* Effect.flip(HttpRpc.ensureToken(link))).reason, "token-unsafe")
      const short = join(root, "short")
      writeFileSync(short, "abc\n", { mode: 0o600 })
      assert.strictEqual((yield* Effect.flip(HttpRpc.ensureToken(short))).reason, "token-invalid")
    })
  )
})
