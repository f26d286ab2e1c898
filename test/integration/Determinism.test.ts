import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Device, Journal, Kernel, Process, Sys } from "effect-agent-os"

/** A device with real, uneven latency: live results come back in an order set by timers, not by the program. */
const network = (calls: { n: number }) =>
  Device.make({
    name: "net",
    open: () =>
      Effect.succeed({
        read: (request: unknown) => {
          const { id, ms } = request as { readonly id: string; readonly ms: number }
          calls.n++
          return Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms))).pipe(
            Effect.as({ value: `reply to ${id}`, cost: { tokens: ms } })
          )
        }
      })
  })

const worker = Process.make<{ readonly name: string; readonly delays: ReadonlyArray<number> }>(
  "worker",
  ({ name, delays }) =>
    Effect.gen(function* () {
      const [net, report] = yield* Sys.caps()
      const handle = yield* Sys.open(net!)
      for (const [i, ms] of delays.entries()) {
        const reply = yield* Sys.read<string>(handle, { id: `${name}-${i}`, ms })
        yield* Sys.send(report!, reply)
        yield* Effect.sleep("1 second")
      }
    })
)

const init = Process.make<Kernel.BootGrant>("init", (grant) =>
  Effect.gen(function* () {
    const me = yield* Sys.selfCap()
    const plan = { a: [30, 1, 12], b: [2, 25, 3], c: [15, 8, 1] }
    for (const [name, delays] of Object.entries(plan)) {
      const caps = [yield* Sys.derive(grant.devices.net!, ["open"]), yield* Sys.derive(me, ["send"])]
      yield* Sys.spawn(worker, { args: { name, delays }, caps })
    }
    const got: Array<unknown> = []
    for (let i = 0; i < 9; i++) got.push((yield* Sys.recv()).body)
    yield* Sys.log("info", JSON.stringify(got))
  })
)

const run = (mode: Journal.Mode, store: Journal.JournalStore, calls: { n: number }) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(init, { grant: ["net"] })
    yield* kernel.waitExit(pid)
    return yield* kernel.trace()
  }).pipe(
    Effect.provide(Kernel.layer({ drivers: [network(calls)], journal: mode, virtualTime: true })),
    Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
  )

describe("deterministic replay across processes", () => {
  it.live("results with uneven real latency replay in the recorded order: identical traces", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore()
      const live = { n: 0 }
      const recorded = yield* run("record", store, live)
      assert.strictEqual(live.n, 9)
      assert.deepStrictEqual(
        store.records.map((r) => r.seq),
        Array.from({ length: 9 }, (_, i) => i + 1)
      )
      const offline = { n: 0 }
      const replayed = yield* run("replay", Journal.makeMemoryStore(store.records), offline)
      assert.strictEqual(offline.n, 0)
      assert.deepStrictEqual(replayed, recorded)
      const log = recorded.find((e) => e._tag === "Log")
      assert.isDefined(log)
    })
  )
})

describe("deterministic replay of synchronous drivers", () => {
  const calc = (calls: { n: number }) =>
    Device.make({
      name: "net",
      open: () =>
        Effect.succeed({
          read: (request: unknown) =>
            Effect.sync(() => {
              calls.n++
              const { id, ms } = request as { readonly id: string; readonly ms: number }
              return { value: `reply to ${id}`, cost: { tokens: ms } }
            })
        })
    })

  it.live("results that come back at once are handed back inline, in record and replay alike", () =>
    Effect.gen(function* () {
      const store = Journal.makeMemoryStore()
      const run = (mode: Journal.Mode, s: Journal.JournalStore, calls: { n: number }) =>
        Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          yield* kernel.waitExit(yield* kernel.boot(init, { grant: ["net"] }))
          return yield* kernel.trace()
        }).pipe(
          Effect.provide(Kernel.layer({ drivers: [calc(calls)], journal: mode, virtualTime: true })),
          Effect.provide(Layer.succeed(Journal.JournalStoreService)(s))
        )
      const recorded = yield* run("record", store, { n: 0 })
      assert.isTrue(
        store.records.every((r) => r.seq === undefined),
        "inline completions carry no seq"
      )
      const offline = { n: 0 }
      const replayed = yield* run("replay", Journal.makeMemoryStore(store.records), offline)
      assert.strictEqual(offline.n, 0)
      assert.deepStrictEqual(replayed, recorded)
    })
  )
})
