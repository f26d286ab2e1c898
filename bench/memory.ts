/**
 * The context-memory workloads of the peer's benchmark: remembering with no ceiling, remembering under paging (a
 * `mem` quota of 4000 tokens), and recalling from the ~100 000 segments that paging leaves in swap.
 */
import { Effect } from "effect"
import { Kernel, Process, Sys } from "effect-agent-os"
import type { Peer } from "./peer.ts"

const rate = (n: number, t0: number) => Math.round((n / (performance.now() - t0)) * 1000)

const onKernel = <A>(body: Effect.Effect<A, unknown, Sys.Sys>, quota?: { readonly mem: number }): Promise<A> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      let out: A | undefined
      const pid = yield* kernel.boot(
        Process.make("bench", () => Effect.map(body, (a) => void (out = a))),
        quota === undefined ? {} : { quota }
      )
      yield* kernel.waitExit(pid)
      return out as A
    }).pipe(Effect.scoped, Effect.provide(Kernel.layer()))
  )

export const ours = {
  remember: (n: number) =>
    onKernel(
      Effect.gen(function* () {
        const t0 = performance.now()
        for (let i = 0; i < n; i++) yield* Sys.remember({ role: "user", content: "note " + i }, { tokens: 8 })
        return rate(n, t0)
      })
    ),
  /** [remember under paging /s, recall from swap /s] */
  paging: (n: number, recalls: number) =>
    onKernel(
      Effect.gen(function* () {
        let t0 = performance.now()
        for (let i = 0; i < n; i++) {
          yield* Sys.remember({ role: "user", content: "fact " + (i % 997) + " alpha" }, { tokens: 8 })
        }
        const paging = rate(n, t0)
        t0 = performance.now()
        for (let i = 0; i < recalls; i++) yield* Sys.recall("fact " + (i % 997), 1)
        return [paging, rate(recalls, t0)] as const
      }),
      { mem: 4000 }
    )
}

export const peer = (p: Peer) => {
  const { Kernel: PeerKernel } = p.module
  const run = async <A>(body: (sys: any) => Promise<A>, quota?: object): Promise<A> => {
    const k = new PeerKernel()
    let done!: (x: A) => void
    const result = new Promise<A>((resolve) => (done = resolve))
    await k.boot(
      {
        name: "init",
        async main(sys: any) {
          await sys.recv()
          done(await body(sys))
        }
      },
      { grant: [], quota }
    )
    const value = await result
    await k.shutdown()
    return value
  }
  return {
    remember: (n: number) =>
      run(async (sys) => {
        const t0 = performance.now()
        for (let i = 0; i < n; i++) await sys.remember({ role: "user", content: "note " + i }, { tokens: 8 })
        return rate(n, t0)
      }),
    paging: (n: number, recalls: number) =>
      run(
        async (sys) => {
          let t0 = performance.now()
          for (let i = 0; i < n; i++)
            await sys.remember({ role: "user", content: "fact " + (i % 997) + " alpha" }, { tokens: 8 })
          const paging = rate(n, t0)
          t0 = performance.now()
          for (let i = 0; i < recalls; i++) await sys.recall("fact " + (i % 997), 1)
          return [paging, rate(recalls, t0)] as const
        },
        { mem: 4000 }
      )
  }
}
