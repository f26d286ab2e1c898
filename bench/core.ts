/**
 * The kernel-core workloads, each run three ways in one process: on our kernel, on the peer kernel, and on raw
 * Effect primitives (the floor: what the same communication pattern costs with no kernel at all).
 *
 * Workloads mirror the peer's own benchmark: IPC round trips (ping-pong through an echo process), spawn+exit (spawn
 * a process that returns at once, wait for it), yield switches (two processes yielding), 32→1 fan-in (32 senders,
 * one receiver), and bytes per idle process (10 000 processes parked in `recv`).
 */
import { Effect, Fiber, Queue } from "effect"
import { Kernel, Process, Sys } from "effect-agent-os"
import type { Peer } from "./peer.ts"

export interface Row {
  readonly name: string
  readonly unit: string
  readonly higherIsBetter: boolean
  readonly ours: number
  readonly peer: number | undefined
  readonly raw: number | undefined
  /** Target for ours/peer (or an absolute bound when `absolute`). */
  readonly target: string
}

const rate = (n: number, t0: number) => Math.round((n / (performance.now() - t0)) * 1000)
const gc = () => (globalThis as { gc?: () => void }).gc?.()

/** Runs `body` as init of a fresh kernel and returns what it measured. */
const onKernel = <A>(body: Effect.Effect<A, unknown, Sys.Sys>): Promise<A> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      let out: A | undefined
      const pid = yield* kernel.boot(Process.make("bench", () => Effect.map(body, (a) => void (out = a))))
      yield* kernel.waitExit(pid)
      return out as A
    }).pipe(
      Effect.scoped,
      Effect.provide(
        Kernel.layer({
          limits: { exitHistoryMax: 1000, ...(process.env.RING ? { eventRingMax: Number(process.env.RING) } : {}) }
        })
      )
    )
  )

const echo = Process.make("echo", () =>
  Effect.gen(function* () {
    const back = (yield* Sys.recv()).caps[0]!
    for (;;) {
      const m = yield* Sys.recv()
      yield* Sys.send(back, m.body)
    }
  })
)

const nop = Process.make("nop", () => Effect.void)

const yielder = Process.make<number>("y", (m) =>
  Effect.gen(function* () {
    for (let i = 0; i < m; i++) yield* Sys.yield()
  })
)

const sender = Process.make<number>("s", (per) =>
  Effect.gen(function* () {
    const to = (yield* Sys.recv()).caps[0]!
    for (let i = 0; i < per; i++) yield* Sys.send(to, i)
  })
)

const park = Process.make("park", () => Effect.asVoid(Sys.recv()))

export const ours = {
  ipc: (n: number) =>
    onKernel(
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(echo)
        yield* Sys.send(cap, 0, { caps: [yield* Sys.selfCap()] })
        const t0 = performance.now()
        for (let i = 0; i < n; i++) {
          yield* Sys.send(cap, i)
          yield* Sys.recv()
        }
        return rate(n, t0)
      })
    ),
  spawnExit: (n: number) =>
    onKernel(
      Effect.gen(function* () {
        const t0 = performance.now()
        for (let i = 0; i < n; i++) {
          const { cap } = yield* Sys.spawn(nop)
          yield* Sys.waitpid(cap)
          yield* Sys.revoke(cap)
        }
        return rate(n, t0)
      })
    ),
  yieldSwitch: (n: number) =>
    onKernel(
      Effect.gen(function* () {
        const t0 = performance.now()
        const a = yield* Sys.spawn(yielder, { args: n })
        const b = yield* Sys.spawn(yielder, { args: n })
        yield* Sys.waitpid(a.cap)
        yield* Sys.waitpid(b.cap)
        return rate(2 * n, t0)
      })
    ),
  fanIn: (n: number) =>
    onKernel(
      Effect.gen(function* () {
        const per = Math.floor(n / 32)
        const t0 = performance.now()
        for (let j = 0; j < 32; j++) {
          const { cap } = yield* Sys.spawn(sender, { args: per })
          yield* Sys.send(cap, 0, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        }
        for (let i = 0; i < per * 32; i++) yield* Sys.recv()
        return rate(per * 32, t0)
      })
    ),
  idleBytes: (count: number) =>
    onKernel(
      Effect.gen(function* () {
        gc()
        const m0 = process.memoryUsage().heapUsed
        for (let i = 0; i < count; i++) yield* Sys.spawn(park)
        gc()
        return Math.round((process.memoryUsage().heapUsed - m0) / count)
      })
    )
}

/** The same workloads on the peer kernel, written against its API. */
export const peer = (p: Peer) => {
  const { Kernel: PeerKernel } = p.module
  const run = async (body: (sys: any) => Promise<number>): Promise<number> => {
    const k = new PeerKernel()
    let done!: (x: number) => void
    const result = new Promise<number>((resolve) => (done = resolve))
    await k.boot(
      {
        name: "init",
        async main(sys: any) {
          await sys.recv()
          done(await body(sys))
        }
      },
      { grant: [] }
    )
    const value = await result
    await k.shutdown()
    return value
  }
  return {
    ipc: (n: number) =>
      run(async (sys) => {
        const peerEcho = {
          name: "echo",
          async main(s: any) {
            const back = (await s.recv()).caps[0]
            for (;;) {
              const m = await s.recv()
              await s.send(back, m.body)
            }
          }
        }
        const { cap } = await sys.spawn(peerEcho, {})
        await sys.send(cap, 0, { caps: [sys.selfCap()] })
        const t0 = performance.now()
        for (let i = 0; i < n; i++) {
          await sys.send(cap, i)
          await sys.recv()
        }
        return rate(n, t0)
      }),
    spawnExit: (n: number) =>
      run(async (sys) => {
        const peerNop = { name: "nop", async main() {} }
        const t0 = performance.now()
        for (let i = 0; i < n; i++) {
          const { cap } = await sys.spawn(peerNop, {})
          await sys.waitpid(cap)
        }
        return rate(n, t0)
      }),
    yieldSwitch: (n: number) =>
      run(async (sys) => {
        const y = {
          name: "y",
          async main(s: any) {
            for (let i = 0; i < n; i++) await s.yield()
          }
        }
        const t0 = performance.now()
        const a = await sys.spawn(y, {})
        const b = await sys.spawn(y, {})
        await sys.waitpid(a.cap)
        await sys.waitpid(b.cap)
        return rate(2 * n, t0)
      }),
    fanIn: (n: number) =>
      run(async (sys) => {
        const per = Math.floor(n / 32)
        const snd = {
          name: "s",
          async main(s: any) {
            const to = (await s.recv()).caps[0]
            for (let i = 0; i < per; i++) await s.send(to, i)
          }
        }
        const t0 = performance.now()
        for (let j = 0; j < 32; j++) {
          const { cap } = await sys.spawn(snd, {})
          await sys.send(cap, 0, { caps: [sys.selfCap()] })
        }
        for (let i = 0; i < per * 32; i++) await sys.recv()
        return rate(per * 32, t0)
      }),
    idleBytes: (count: number) =>
      run(async (sys) => {
        const peerPark = {
          name: "park",
          async main(s: any) {
            await s.recv()
          }
        }
        gc()
        const m0 = process.memoryUsage().heapUsed
        for (let i = 0; i < count; i++) await sys.spawn(peerPark, {})
        gc()
        return Math.round((process.memoryUsage().heapUsed - m0) / count)
      })
  }
}

/** The floor: the same patterns with Effect's own Queue, fork/join and yieldNow, on Effect's default scheduler. */
export const raw = {
  ipc: (n: number) =>
    Effect.runPromise(
      Effect.gen(function* () {
        const to = yield* Queue.unbounded<number>()
        const back = yield* Queue.unbounded<number>()
        const fiber = yield* Effect.forkChild(
          Effect.forever(Effect.flatMap(Queue.take(to), (x) => Queue.offer(back, x)))
        )
        const t0 = performance.now()
        for (let i = 0; i < n; i++) {
          yield* Queue.offer(to, i)
          yield* Queue.take(back)
        }
        const r = rate(n, t0)
        yield* Fiber.interrupt(fiber)
        return r
      })
    ),
  spawnExit: (n: number) =>
    Effect.runPromise(
      Effect.gen(function* () {
        const t0 = performance.now()
        for (let i = 0; i < n; i++) yield* Fiber.join(yield* Effect.forkChild(Effect.void))
        return rate(n, t0)
      })
    ),
  yieldSwitch: (n: number) =>
    Effect.runPromise(
      Effect.gen(function* () {
        const y = Effect.gen(function* () {
          for (let i = 0; i < n; i++) yield* Effect.yieldNow
        })
        const t0 = performance.now()
        const a = yield* Effect.forkChild(y)
        const b = yield* Effect.forkChild(y)
        yield* Fiber.join(a)
        yield* Fiber.join(b)
        return rate(2 * n, t0)
      })
    ),
  fanIn: (n: number) =>
    Effect.runPromise(
      Effect.gen(function* () {
        const per = Math.floor(n / 32)
        const inbox = yield* Queue.bounded<number>(1024)
        const t0 = performance.now()
        for (let j = 0; j < 32; j++) {
          yield* Effect.forkChild(
            Effect.gen(function* () {
              for (let i = 0; i < per; i++) yield* Queue.offer(inbox, i)
            })
          )
        }
        for (let i = 0; i < per * 32; i++) yield* Queue.take(inbox)
        return rate(per * 32, t0)
      })
    ),
  idleBytes: (count: number) =>
    Effect.runPromise(
      Effect.gen(function* () {
        gc()
        const m0 = process.memoryUsage().heapUsed
        const fibers = []
        for (let i = 0; i < count; i++) {
          const q = yield* Queue.bounded<number>(1024)
          fibers.push(yield* Effect.forkChild(Queue.take(q)))
        }
        gc()
        const bytes = Math.round((process.memoryUsage().heapUsed - m0) / count)
        yield* Fiber.interruptAll(fibers)
        return bytes
      })
    )
}
