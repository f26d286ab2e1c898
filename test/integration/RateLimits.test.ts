import { assert, describe, it } from "@effect/vitest"
import { Clock, Effect } from "effect"
import { TestClock } from "effect/testing"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { Kernel, Llm, Process, Sys } from "effect-agent-os"

/**
 * A loopback chat-completions server that enforces a request rate on the kernel's (test) clock: past `perMinute`
 * requests in 60 s it answers 429, like a real provider. It counts what it answered.
 */
interface Running {
  readonly url: string
  readonly arrivals: Array<number>
  readonly refused: { n: number }
  readonly close: () => void
}

const rateLimitedServer = (perMinute: number, now: () => number) =>
  Effect.acquireRelease(
    Effect.callback<Running>((resume) => {
      const arrivals: Array<number> = []
      const refused = { n: 0 }
      const server = createServer((request, response) => {
        request.resume()
        request.on("end", () => {
          const at = now()
          if (arrivals.filter((t) => t > at - 60_000).length >= perMinute) {
            refused.n++
            response.writeHead(429, { "content-type": "application/json", "retry-after": "60" })
            response.end(JSON.stringify({ error: { message: "rate limited", type: "rate_limit" } }))
            return
          }
          arrivals.push(at)
          response.writeHead(200, { "content-type": "application/json" })
          response.end(
            JSON.stringify({
              id: "x",
              object: "chat.completion",
              created: 0,
              model: "m",
              choices: [{ index: 0, finish_reason: "stop", message: { role: "assistant", content: "ok" } }],
              usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 }
            })
          )
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ url: `http://127.0.0.1:${port}/v1`, arrivals, refused, close: () => server.close() }))
      })
    }),
    (server) => Effect.sync(server.close)
  )

describe("inference scheduler against a rate-limited server", () => {
  it.effect("requests per minute are never exceeded: the server answers 429 past its limit and never sees one", () =>
    Effect.gen(function* () {
      const clock = yield* Clock.clockWith(Effect.succeed)
      const server = yield* rateLimitedServer(2, () => clock.currentTimeMillisUnsafe())
      const driver = Llm.make({
        baseURL: server.url,
        apiKey: "test",
        model: "m",
        retry: { times: 0 },
        schedule: { concurrency: 5, requestsPerMinute: 2 }
      })
      yield* Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        const pids = []
        for (let i = 0; i < 5; i++) {
          pids.push(
            yield* kernel.boot(
              Process.make<Kernel.BootGrant>(`caller-${i}`, (grant) =>
                Effect.gen(function* () {
                  const llm = yield* Sys.open(grant.devices.llm!)
                  yield* Sys.read(llm, { messages: [{ role: "user", content: `question ${i}` }] })
                })
              ),
              { grant: ["llm"] }
            )
          )
        }
        // let each minute's HTTP calls finish on real time before moving the test clock on
        for (let minute = 0; minute < 3; minute++) {
          yield* TestClock.withLive(Effect.sleep("150 millis"))
          yield* TestClock.adjust("1 minute")
        }
        yield* TestClock.withLive(Effect.sleep("150 millis"))
        for (const pid of pids) assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.normal)
      }).pipe(Effect.provide(Kernel.layer({ drivers: [driver] })))
      assert.strictEqual(server.refused.n, 0)
      assert.deepStrictEqual(server.arrivals, [0, 0, 60_000, 60_000, 120_000])
    })
  )
})
