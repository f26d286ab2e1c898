import { assert, describe, it, layer } from "@effect/vitest"
import { type Duration, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { Device, Kernel, Llm, Process, Sandbox, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { OpenAiServer } from "effect-agent-os/testing"

layer(TestKernel.layer())((it) => {
  it.effect("a kernel shared by a describe block runs on the test clock", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(Process.make("sleeper", () => Effect.sleep("1 hour")))
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.normal)
    })
  )
})

layer(TestKernel.layer())("runProcess", (it) => {
  it.effect("returns the body's value, fails with its error, or ProcessEnded when the process is ended first", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* TestKernel.runProcess(() => Sys.self().pipe(Effect.map((pid) => pid > 0))), true)
      const failed = yield* Effect.flip(TestKernel.runProcess(() => Effect.fail("nope" as const)))
      assert.strictEqual(failed, "nope")
      const ended = yield* Effect.flip(TestKernel.runProcess(() => Sys.charge({ tokens: 5 }), { quota: { tokens: 1 } }))
      assert.deepInclude(ended, { _tag: "ProcessEnded", reason: Process.quota("tokens") })
    })
  )
})

describe("runProcess on an un-moved TestClock", () => {
  const sleeper = (duration: Duration.Input) => Process.make("sleeper", () => Effect.sleep(duration))

  it.effect("fails with TestClockStalled, naming TestClock.adjust and virtualTime, instead of hanging", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        TestKernel.runProcess(() =>
          Effect.gen(function* () {
            const { cap } = yield* Sys.spawn(sleeper("1 hour"))
            yield* Sys.waitpid(cap)
          })
        )
      )
      assert.strictEqual(error._tag, "TestClockStalled")
      if (error._tag !== "TestClockStalled") return
      assert.strictEqual(error.pendingSleeps, 1)
      assert.include(error.message, "TestClock.adjust")
      assert.include(error.message, "virtualTime")
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("a wall quota nobody reaches is a pending sleep too", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        TestKernel.runProcess(() => Effect.asVoid(Sys.recv()), { quota: { wall: "1 minute" } })
      )
      assert.strictEqual(error._tag, "TestClockStalled")
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("a run forked while the test moves the clock finishes", () =>
    Effect.gen(function* () {
      const fiber = yield* Effect.forkChild(
        TestKernel.runProcess(() =>
          Effect.gen(function* () {
            const { cap } = yield* Sys.spawn(sleeper("1 hour"))
            return yield* Sys.waitpid(cap)
          })
        )
      )
      yield* TestClock.adjust("1 hour")
      assert.deepStrictEqual(yield* Fiber.join(fiber), Process.normal)
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("virtualTime: true runs the sleeps by itself", () =>
    TestKernel.runProcess(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(sleeper("1 hour"))
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
      })
    ).pipe(Effect.provide(TestKernel.layer({ virtualTime: true })))
  )

  // A driver call that takes real time (1.5 s here, past the 1 s stall timeout) while a TestClock sleep is pending.
  const slow = Device.make({
    name: "slow",
    open: () =>
      Effect.succeed({
        read: () =>
          Effect.promise(() => new Promise<number>((resolve) => setTimeout(() => resolve(42), 1_500))).pipe(
            Effect.map((value) => ({ value }))
          )
      })
  })

  it.effect("never fires while a driver call is in flight, however long it takes", () =>
    TestKernel.runProcess(
      (grant) =>
        Effect.gen(function* () {
          yield* Sys.spawn(sleeper("1 hour"))
          const handle = yield* Sys.open(grant.devices.slow!)
          assert.strictEqual(yield* Sys.read<number>(handle, null), 42)
        }),
      { grant: ["slow"], quota: { wall: "1 minute" } }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [slow] })))
  )

  it.effect("never fires while a real HTTP call is in flight (the loopback server answers after 1.5 s)", () =>
    Effect.gen(function* () {
      const server = yield* OpenAiServer.make([OpenAiServer.text("late", { delayMs: 1_500 })])
      const llm = yield* Llm.make({ baseURL: server.baseURL, apiKey: "k", model: "m" })
      const text = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.llm!)
            return (yield* Sys.read<Llm.LlmReply>(handle, { messages: [{ role: "user", content: "hi" }] })).text
          }),
        { grant: ["llm"], quota: { wall: "1 minute" } }
      ).pipe(Effect.provide(TestKernel.layer({ drivers: [llm] })))
      assert.strictEqual(text, "late")
    })
  )
})

describe("runProcess on an un-moved TestClock, with a worker thread", () => {
  it.effect("never fires while a sandbox's worker thread computes (1.5 s, no syscall)", () =>
    TestKernel.runProcess(
      () =>
        Effect.gen(function* () {
          const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          yield* Sys.spawn(
            Sandbox.make(
              `const [reply] = await sys.caps()
               const end = Date.now() + 1500
               while (Date.now() < end) {}
               await sys.send(reply, "done")`,
              { allow: ["caps", "send"] }
            ),
            { caps: [replyTo] }
          )
          assert.strictEqual((yield* Sys.recv<string>()).body, "done")
        }),
      { quota: { wall: "1 minute" } }
    ).pipe(Effect.provide(TestKernel.layer()))
  )
})
