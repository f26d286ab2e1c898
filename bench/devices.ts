/**
 * The device workloads: metered driver reads (live, and recording a journal), 16-way parallel I/O with `readAll`
 * against sequential reads, and replaying 10 000 journaled ops. Each on our kernel; the first two also on the peer.
 */
import { Effect, Layer, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { Device, Journal, Kernel, Process, Sys, Tools } from "effect-agent-os"
import type { Peer } from "./peer.ts"

const rate = (n: number, t0: number) => Math.round((n / (performance.now() - t0)) * 1000)

const Id = Tool.make("id", { parameters: Schema.Struct({ x: Schema.Finite }), success: Schema.Finite })
const Slow = Tool.make("slow", { parameters: Schema.Struct({ x: Schema.Finite }), success: Schema.Finite })
const toolset = Tools.make(Toolkit.make(Id, Slow), {
  id: ({ x }) => Effect.succeed(x),
  slow: ({ x }) => Effect.as(Effect.sleep(5), x)
})

/**
 * The peer's workload exactly: a tools device whose `id` tool returns its input, with no argument checking, costing
 * one tool call. (`toolset` above is the same device with Schema-guarded arguments and results.)
 */
const plain = Device.make({
  name: "tools",
  meters: ["toolCalls"],
  open: () =>
    Effect.succeed({
      read: (request: unknown) => {
        const { tool, input } = request as { readonly tool: string; readonly input: { readonly x: number } }
        return tool === "slow"
          ? Effect.as(Effect.sleep(5), { value: input.x, cost: { toolCalls: 1 } })
          : Effect.succeed({ value: input.x, cost: { toolCalls: 1 } })
      }
    })
})

export type Flavour = "plain" | "schema"

/** Runs `body` as init with the tools device granted, in `mode`, over `store`; returns what the body measured. */
const onKernel = <A>(
  body: (tools: Kernel.BootGrant) => Effect.Effect<A, unknown, Sys.Sys>,
  mode: Journal.Mode = "live",
  store: Journal.JournalStore = Journal.makeMemoryStore(),
  flavour: Flavour = "plain"
): Promise<A> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      let out: A | undefined
      const pid = yield* kernel.boot(
        Process.make<Kernel.BootGrant>("bench", (grant) => Effect.map(body(grant), (a) => void (out = a))),
        { grant: ["tools"] }
      )
      yield* kernel.waitExit(pid)
      return out as A
    }).pipe(
      Effect.scoped,
      Effect.provide(Kernel.layer({ drivers: [flavour === "plain" ? plain : toolset], journal: mode })),
      Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
    )
  )

export const ours = {
  driverRead: (n: number, mode: Journal.Mode = "live", flavour: Flavour = "plain") =>
    onKernel(
      (grant) =>
        Effect.gen(function* () {
          const tools = yield* Sys.open(grant.devices.tools!)
          const t0 = performance.now()
          for (let i = 0; i < n; i++) yield* Sys.read(tools, { tool: "id", input: { x: i } })
          return rate(n, t0)
        }),
      mode,
      Journal.makeMemoryStore(),
      flavour
    ),
  parallelSpeedup: () =>
    onKernel((grant) =>
      Effect.gen(function* () {
        const tools = yield* Sys.open(grant.devices.tools!)
        const requests = Array.from({ length: 16 }, (_, i) => ({ tool: "slow", input: { x: i } }))
        let t0 = performance.now()
        for (const request of requests) yield* Sys.read(tools, request)
        const sequential = performance.now() - t0
        t0 = performance.now()
        yield* Sys.readAll(tools, requests)
        const parallel = performance.now() - t0
        return +(sequential / parallel).toFixed(2)
      })
    ),
  /** Milliseconds to replay `n` journaled reads (recorded first, then replayed with no live driver call). */
  replayMs: async (n: number) => {
    const store = Journal.makeMemoryStore()
    const work = (grant: Kernel.BootGrant) =>
      Effect.gen(function* () {
        const tools = yield* Sys.open(grant.devices.tools!)
        const t0 = performance.now()
        for (let i = 0; i < n; i++) yield* Sys.read(tools, { tool: "id", input: { x: i } })
        return performance.now() - t0
      })
    await onKernel(work, "record", store)
    const replayStore = Journal.makeMemoryStore(store.records)
    const t0 = performance.now()
    await onKernel(work, "replay", replayStore)
    return +(performance.now() - t0).toFixed(1)
  }
}

/** The same workloads on the peer kernel, against its tool driver. */
export const peer = (p: Peer) => {
  const { Kernel: PeerKernel, toolDriver } = p.module
  const run = async (drivers: Array<unknown>, body: (sys: any, grant: any) => Promise<number>): Promise<number> => {
    const k = new PeerKernel()
    for (const d of drivers) k.registerDriver(d)
    let done!: (x: number) => void
    const result = new Promise<number>((resolve) => (done = resolve))
    await k.boot(
      {
        name: "init",
        async main(sys: any) {
          const grant = (await sys.recv()).body
          done(await body(sys, grant))
        }
      },
      { grant: ["tools"] }
    )
    const value = await result
    await k.shutdown()
    return value
  }
  return {
    driverRead: (n: number) =>
      run([toolDriver({ id: (x: unknown) => x })], async (sys, grant) => {
        const h = await sys.open(grant.devices.tools)
        const t0 = performance.now()
        for (let i = 0; i < n; i++) await sys.read(h, { tool: "id", input: i })
        return rate(n, t0)
      }),
    parallelSpeedup: () =>
      run(
        [toolDriver({ slow: (x: unknown) => new Promise((resolve) => setTimeout(() => resolve(x), 5)) })],
        async (sys, grant) => {
          const h = await sys.open(grant.devices.tools)
          const requests = Array.from({ length: 16 }, (_, i) => ({ tool: "slow", input: i }))
          let t0 = performance.now()
          for (const request of requests) await sys.read(h, request)
          const sequential = performance.now() - t0
          t0 = performance.now()
          await sys.readAll(h, requests)
          return +(sequential / (performance.now() - t0)).toFixed(2)
        }
      )
  }
}
