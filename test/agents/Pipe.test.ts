/**
 * Typed pipes: the kernel decodes what is sent through a narrowed cap before the receiver sees anything. Each pipe
 * beside the plain cap it narrows (which lets everything through, so the test can fail): a wrong type, a malformed
 * body, an empty allow list, a sender that derives or narrows again to widen it, a Schema whose code throws, drop
 * instead of fail; and the pipeline helper, researcher | Pipe.allow(ResearchResult) | summarizer.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { Kernel, Pipe, Pipeline, Process, Sys } from "effect-agent-os"

const ResearchResult = Schema.Struct({ _tag: Schema.tag("ResearchResult"), text: Schema.String })
const Question = Schema.Struct({ _tag: Schema.tag("Question"), text: Schema.String })

/** Runs `body` in a root process; its result and the kernel's Drop events. */
const run = <A>(body: Effect.Effect<A, unknown, Sys.Sys>) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    let out: A | undefined
    const pid = yield* kernel.boot(
      Process.make<Kernel.BootGrant>("root", () =>
        Effect.map(body, (a) => {
          out = a
        })
      )
    )
    const reason = yield* kernel.waitExit(pid)
    const trace = yield* kernel.trace()
    const drops = trace.filter((e) => e._tag === "Drop")
    const logs = trace.flatMap((e) => (e._tag === "Log" ? [{ pid: e.pid, message: e.message }] : []))
    return { out: out as A, reason, drops, logs }
  }).pipe(Effect.provide(Kernel.layer({ virtualTime: true })))

/** A receiver that collects what it gets until told to stop, then sends it all to its first cap. */
const collector = Process.make<void>("collector", () =>
  Effect.gen(function* () {
    const [report] = yield* Sys.caps()
    const got: Array<unknown> = []
    while (true) {
      const m = yield* Sys.recv()
      if ((m.body as { _tag?: unknown })?._tag === "Stop") break
      got.push(m.body)
    }
    yield* Sys.send(report!, got)
  })
)

/** Spawns a collector reporting to the caller; its plain cap. */
const spawnCollector = Effect.gen(function* () {
  const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
  return (yield* Sys.spawn(collector, { caps: [me] })).cap
})

/** Stops the collector (through `plain`) and reads what it got. */
const collected = (plain: Sys.Spawned["cap"]) =>
  Effect.gen(function* () {
    yield* Sys.send(plain, { _tag: "Stop" })
    return (yield* Sys.recv()).body as ReadonlyArray<unknown>
  })

describe("Pipe", () => {
  it.effect("allow(ResearchResult): a result passes, decoded; another type, a malformed one, a string fail", () =>
    Effect.gen(function* () {
      const { out } = yield* run(
        Effect.gen(function* () {
          const plain = yield* spawnCollector
          const pipe = yield* Pipe.narrow(plain, Pipe.allow(ResearchResult))
          const sent = [
            yield* Effect.exit(Sys.send(pipe, { _tag: "ResearchResult", text: "findings" })),
            yield* Effect.exit(Sys.send(pipe, { _tag: "Question", text: "?" })),
            yield* Effect.exit(Sys.send(pipe, { _tag: "ResearchResult", text: 5 })),
            yield* Effect.exit(Sys.send(pipe, "a string"))
          ]
          // the plain cap lets everything through (what the pipe stops is there to stop)
          yield* Sys.send(plain, { _tag: "Question", text: "via the plain cap" })
          return { sent, got: yield* collected(plain) }
        })
      )
      assert.deepStrictEqual(
        out.sent.map((e) => e._tag),
        ["Success", "Failure", "Failure", "Failure"]
      )
      const failure = out.sent[1]!
      assert.isTrue(Exit.isFailure(failure) && JSON.stringify(failure.cause).includes("ArgumentError"))
      assert.include(JSON.stringify(out.sent[2]), "does not match the pipe's Schema")
      assert.deepStrictEqual(out.got, [
        { _tag: "ResearchResult", text: "findings" },
        { _tag: "Question", text: "via the plain cap" }
      ])
    })
  )

  it.effect("allow() admits nothing; allow(A, B) admits both; drop dead-letters instead of failing", () =>
    Effect.gen(function* () {
      const { out, drops } = yield* run(
        Effect.gen(function* () {
          const plain = yield* spawnCollector
          const none = yield* Pipe.narrow(plain, Pipe.allow())
          const both = yield* Pipe.narrow(plain, Pipe.allow(ResearchResult, Question))
          const dropping = yield* Pipe.narrow(plain, Pipe.dropInvalid(Pipe.allow(Question)))
          const sent = [
            yield* Effect.exit(Sys.send(none, { _tag: "ResearchResult", text: "x" })),
            yield* Effect.exit(Sys.send(none, {})),
            yield* Effect.exit(Sys.send(both, { _tag: "Question", text: "q" })),
            yield* Effect.exit(Sys.send(both, { _tag: "ResearchResult", text: "r" })),
            // dropped: the send succeeds, nothing arrives
            yield* Effect.exit(Sys.send(dropping, { _tag: "ResearchResult", text: "dropped" }))
          ]
          return { sent, got: yield* collected(plain) }
        })
      )
      assert.deepStrictEqual(
        out.sent.map((e) => e._tag),
        ["Failure", "Failure", "Success", "Success", "Success"]
      )
      assert.deepStrictEqual(out.got, [
        { _tag: "Question", text: "q" },
        { _tag: "ResearchResult", text: "r" }
      ])
      assert.deepStrictEqual(
        drops.map((d) => (d as { reason: string }).reason),
        ["invalid"]
      )
    })
  )

  it.effect(
    "a sender cannot widen a pipe: derive keeps it, narrowing again adds a Schema, a plain cap is not reachable",
    () =>
      Effect.gen(function* () {
        const { out } = yield* run(
          Effect.gen(function* () {
            const plain = yield* spawnCollector
            const pipe = yield* Pipe.narrow(plain, Pipe.allow(ResearchResult))
            const derived = yield* Sys.derive(pipe, ["send"])
            const widened = yield* Pipe.narrow(pipe, Pipe.typed(Schema.Unknown))
            const sent = [
              yield* Effect.exit(Sys.send(derived, { _tag: "Question", text: "?" })),
              yield* Effect.exit(Sys.send(widened, { _tag: "Question", text: "?" })),
              yield* Effect.exit(Sys.send(widened, { _tag: "ResearchResult", text: "ok" }))
            ]
            // a pipe on a device cap is refused
            const [maybeDevice] = yield* Sys.caps()
            const wrong =
              maybeDevice === undefined ? undefined : yield* Effect.exit(Pipe.narrow(maybeDevice, Pipe.allow()))
            const notSchema = yield* Effect.exit(Sys.attenuate(plain, { message: { fake: true } as never }))
            return { sent, wrong, notSchema, got: yield* collected(plain) }
          })
        )
        assert.deepStrictEqual(
          out.sent.map((e) => e._tag),
          ["Failure", "Failure", "Success"]
        )
        assert.isTrue(Exit.isFailure(out.notSchema))
        assert.include(JSON.stringify(out.notSchema), "message must be a Schema")
        assert.deepStrictEqual(out.got, [{ _tag: "ResearchResult", text: "ok" }])
      })
  )

  it.effect("a Schema whose check throws makes the body invalid; the sender and the kernel go on", () =>
    Effect.gen(function* () {
      const Hostile = Schema.String.check(
        Schema.makeFilter(() => {
          throw new Error("boom")
        })
      )
      const { out, reason } = yield* run(
        Effect.gen(function* () {
          const plain = yield* spawnCollector
          const pipe = yield* Pipe.narrow(plain, Pipe.typed(Hostile))
          const sent = yield* Effect.exit(Sys.send(pipe, "x"))
          return { sent, got: yield* collected(plain) }
        })
      )
      assert.deepStrictEqual(reason, Process.normal)
      assert.isTrue(Exit.isFailure(out.sent))
      assert.deepStrictEqual(out.got, [])
    })
  )

  it.effect("a transforming Schema: the receiver gets the decoded value (a Date from its ISO text)", () =>
    Effect.gen(function* () {
      const Stamped = Schema.Struct({ at: Schema.Date })
      const { out } = yield* run(
        Effect.gen(function* () {
          const plain = yield* spawnCollector
          const pipe = yield* Pipe.narrow(plain, Pipe.typed(Schema.toCodecJson(Stamped)))
          yield* Sys.send(pipe, { at: "2026-12-03T00:00:00.000Z" })
          return yield* collected(plain)
        })
      )
      const got = out[0] as { at: Date }
      assert.instanceOf(got.at, Date)
      assert.strictEqual(got.at.toISOString(), "2026-12-03T00:00:00.000Z")
    })
  )
})

describe("Pipeline", () => {
  it.effect("researcher | Pipe.allow(ResearchResult) | summarizer: only results reach the summarizer", () =>
    Effect.gen(function* () {
      const researcher = Process.make<void>("researcher", () =>
        Effect.gen(function* () {
          const [next] = yield* Sys.caps()
          const topic = yield* Sys.recv()
          const text = String((topic.body as { text: string }).text)
          const tries = [
            yield* Effect.exit(Sys.send(next!, { _tag: "Chatter", text: "gossip" })),
            yield* Effect.exit(Sys.send(next!, { _tag: "ResearchResult", text: `notes on ${text}` }))
          ]
          yield* Sys.log("info", JSON.stringify(tries.map((t) => t._tag)))
          yield* Effect.never
        })
      )
      const summarizer = Process.make<void>("summarizer", () =>
        Effect.gen(function* () {
          const [report] = yield* Sys.caps()
          const m = yield* Sys.recv()
          yield* Sys.send(report!, { summary: `summary of ${(m.body as { text: string }).text}` })
          yield* Effect.never
        })
      )
      const { out, logs } = yield* run(
        Effect.gen(function* () {
          const me = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const pipeline = yield* Pipeline.make(researcher, Pipe.allow(ResearchResult), {
            image: summarizer,
            caps: [me]
          })
          yield* Sys.send(pipeline.input, { _tag: "Topic", text: "pipes" })
          const summary = (yield* Sys.recv()).body
          return { summary, stages: pipeline.stages.map((s) => s.pid) }
        })
      )
      assert.deepStrictEqual(out.summary, { summary: "summary of notes on pipes" })
      assert.strictEqual(out.stages.length, 2)
      // the researcher's chatter was refused at its send, by the kernel
      const researcherLog = logs.find((l) => l.pid === out.stages[0])
      assert.deepStrictEqual(JSON.parse(researcherLog!.message), ["Failure", "Success"])
    })
  )
})
