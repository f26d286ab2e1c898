/**
 * The README's quick start, kept compiling and running: `node --experimental-strip-types examples/quick-start.ts`.
 */
import { Effect } from "effect"
import { Kernel, Process, Sys } from "effect-agent-os"

// An image: a name and a main function whose only requirement is Sys.
const doubler = Process.make("doubler", () =>
  Effect.forever(
    Effect.gen(function* () {
      const m = yield* Sys.recv<number>()
      yield* Sys.charge({ tokens: 10 }) // metered: over quota, the kernel ends this process
      yield* Sys.send(m.caps[0]!, m.body * 2) // reply on the cap that came with the message
    })
  )
)

const init = Process.make<Kernel.BootGrant>("init", () =>
  Effect.gen(function* () {
    const { cap } = yield* Sys.spawn(doubler, { quota: { tokens: 25 } })
    const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"]) // attenuated: send only
    yield* Sys.send(cap, 21, { caps: [replyTo] }) // the cap moves to the doubler
    const answer = yield* Sys.recv<number>()
    yield* Sys.log("info", `answer: ${answer.body}`)
  })
)

const program = Effect.gen(function* () {
  const kernel = yield* Kernel.Kernel
  const pid = yield* kernel.boot(init, { quota: { wall: "1 minute" } })
  console.log(yield* kernel.waitExit(pid)) // { _tag: "Normal" }
  console.log(yield* kernel.trace()) // typed events, deterministic under TestClock
})

Effect.runPromise(program.pipe(Effect.provide(Kernel.layer())))
