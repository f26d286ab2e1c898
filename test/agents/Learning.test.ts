import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import { KeyValueStore } from "effect/persistence"
import {
  Distiller,
  Evolution,
  type Kernel,
  Kv,
  type Llm,
  LongTermMemory,
  Persona,
  Prompts,
  ReactAgent,
  Sys,
  Tools
} from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { ScriptedLlm } from "effect-agent-os/testing"

type Script = ReadonlyArray<ScriptedLlm.Step | ((request: Llm.LlmRequest) => ScriptedLlm.Step)>

const Echo = Tool.make("echo", {
  description: "Echoes a text",
  parameters: Schema.Struct({ text: Schema.String }),
  success: Schema.String
})
const toolkit = Toolkit.make(Echo)
const tools = () => Tools.make(toolkit, { echo: ({ text }) => Effect.succeed(text) })

/** A kernel with an llm (scripted), a kv device and a tools device, over the `KeyValueStore` in context. */
const kernel = (llm: ScriptedLlm.ScriptedLlm) => TestKernel.layer({ drivers: [llm, Kv.driver(), tools()] })

/** Runs `body` in a root process granted llm, kv and tools, on a fresh kernel and a fresh in-memory store. */
const run = <A, E>(body: (grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>, script: Script = []) => {
  const llm = ScriptedLlm.make(script)
  return TestKernel.runProcess(body, { grant: ["llm", "kv", "tools"] }).pipe(
    Effect.provide(kernel(llm)),
    Effect.provide(KeyValueStore.layerMemory),
    Effect.map((value) => ({ value, llm }))
  )
}

const openMemory = (grant: Kernel.BootGrant, options?: LongTermMemory.Options) =>
  Effect.map(Sys.open(grant.devices.kv!), (kv) => LongTermMemory.open(kv, options))

const openLlm = (grant: Kernel.BootGrant) => Sys.open(grant.devices.llm!)

const userText = (request: Llm.LlmRequest | undefined) =>
  (request?.messages ?? [])
    .filter((m) => m.role === "user")
    .map((m) => (typeof m.content === "string" ? m.content : ""))
    .join("\n")

const systemText = (request: Llm.LlmRequest | undefined) =>
  (request?.messages ?? [])
    .filter((m) => m.role === "system")
    .map((m) => m.content)
    .join("\n")

const transcript: ReadonlyArray<Llm.Message> = [
  { role: "system", content: "You are a careful assistant." },
  { role: "user", content: "What is 17 * 23?" },
  { role: "assistant", content: "", toolCalls: [{ id: "c1", name: "calc", arguments: { expr: "17*23" } }] },
  { role: "tool", toolCallId: "c1", content: "391" },
  { role: "assistant", content: "391" }
]

describe("LongTermMemory", () => {
  it.effect("deduplicates lessons by normalized text and skips lessons without terms", () =>
    Effect.gen(function* () {
      const { value } = yield* run((grant) =>
        Effect.gen(function* () {
          const memory = yield* openMemory(grant)
          const first = yield* memory.add("Check the units before comparing.")
          const again = yield* memory.add("  check THE units -- before comparing!! ")
          const blank = yield* memory.add(" ... ")
          const added = yield* memory.addAll(["Prefer short answers.", "prefer short answers", "Cite sources."])
          return { first, again, blank, added, all: yield* memory.all() }
        })
      )
      assert.isTrue(value.first)
      assert.isFalse(value.again, "same text after normalization")
      assert.isFalse(value.blank, "no terms")
      assert.strictEqual(value.added, 2)
      assert.deepStrictEqual(value.all, ["Check the units before comparing.", "Prefer short answers.", "Cite sources."])
      assert.strictEqual(LongTermMemory.normalize("  Check THE units!! "), "check the units")
    })
  )

  it.effect("persists across two kernel runs sharing one store, per namespace, skipping junk entries", () =>
    Effect.gen(function* () {
      const first = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const memory = yield* openMemory(grant, { namespace: "researcher" })
            yield* memory.add("Search before answering.")
            yield* memory.add("Quote numbers with their units.")
            const kv = yield* Sys.open(grant.devices.kv!)
            yield* Sys.write(kv, { op: "set", key: "researcher/junk", value: "not json" })
            return yield* memory.all()
          }),
        { grant: ["kv"] }
      ).pipe(Effect.provide(kernel(ScriptedLlm.make([]))))
      const second = yield* TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const memory = yield* openMemory(grant, { namespace: "researcher" })
            const other = yield* openMemory(grant, { namespace: "writer" })
            const duplicate = yield* memory.add("search before answering")
            return { all: yield* memory.all(), other: yield* other.all(), duplicate }
          }),
        { grant: ["kv"] }
      ).pipe(Effect.provide(kernel(ScriptedLlm.make([]))))
      assert.deepStrictEqual(first, ["Search before answering.", "Quote numbers with their units."])
      assert.deepStrictEqual(second.all, first, "the second kernel reads what the first stored")
      assert.deepStrictEqual(second.other, [], "another namespace sees nothing")
      assert.isFalse(second.duplicate, "dedup holds across runs")
    }).pipe(Effect.provide(KeyValueStore.layerMemory))
  )

  it.effect("recalls by relevance, best first, only matching lessons, at most k", () =>
    Effect.gen(function* () {
      const { value } = yield* run((grant) =>
        Effect.gen(function* () {
          const memory = yield* openMemory(grant)
          yield* memory.addAll([
            "Use the calculator tool for arithmetic.",
            "Check population units: thousands versus millions.",
            "Cite the source of population figures.",
            "Prefer short answers."
          ])
          return {
            three: yield* memory.recall("source of the population figures", 3),
            one: yield* memory.recall("source of the population figures", 1),
            math: yield* memory.recall("arithmetic"),
            none: yield* memory.recall("weather tomorrow")
          }
        })
      )
      assert.deepStrictEqual(value.three, [
        "Cite the source of population figures.",
        "Check population units: thousands versus millions."
      ])
      assert.deepStrictEqual(value.one, ["Cite the source of population figures."])
      assert.deepStrictEqual(value.math, ["Use the calculator tool for arithmetic."])
      assert.deepStrictEqual(value.none, [])
    })
  )
})

describe("Distiller", () => {
  it.effect("turns a transcript into lessons from a JSON reply (in a code fence)", () =>
    Effect.gen(function* () {
      const { value, llm } = yield* run(
        (grant) => Effect.flatMap(openLlm(grant), (handle) => Distiller.distill(handle, transcript)),
        [{ text: 'Here:\n```json\n["Use the calculator for products.", "Answer with the number only."]\n```' }]
      )
      assert.deepStrictEqual(value, ["Use the calculator for products.", "Answer with the number only."])
      assert.strictEqual(llm.requests.length, 1)
      const request = llm.requests[0]
      assert.strictEqual(systemText(request), Distiller.defaults.system)
      assert.include(userText(request), "user: What is 17 * 23?")
      assert.include(userText(request), 'calc({"expr":"17*23"})')
      assert.include(userText(request), "tool: 391")
      assert.include(userText(request), "at most 3 lessons")
    })
  )

  it.effect("yields no lessons for junk replies, never failing", () =>
    Effect.gen(function* () {
      const { value } = yield* run(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* openLlm(grant)
            const out: Array<ReadonlyArray<string>> = []
            for (let i = 0; i < 5; i++) out.push(yield* Distiller.distill(handle, transcript))
            return out
          }),
        [
          { text: "I could not find any lessons, sorry." },
          { text: '["unterminated", ' },
          { text: '{"lesson": "an object, not an array"}' },
          { text: '[1, null, {"a": 2}, "   "]' },
          { text: "[see below] then nothing" }
        ]
      )
      assert.deepStrictEqual(value, [[], [], [], [], []])
    })
  )

  it.effect("caps the count and the length of lessons and drops duplicates", () =>
    Effect.gen(function* () {
      const long = "x".repeat(50)
      const reply = JSON.stringify(["One.", "one", 7, "Two.", long, "Four.", "Five."])
      const { value, llm } = yield* run(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* openLlm(grant)
            return {
              byDefault: yield* Distiller.distill(handle, transcript),
              two: yield* Distiller.distill(handle, transcript, { max: 2 }),
              short: yield* Distiller.distill(handle, transcript, { max: 5, lessonCharsMax: 10 })
            }
          }),
        [{ text: reply }, { text: reply }, { text: reply }]
      )
      assert.deepStrictEqual(value.byDefault, ["One.", "Two.", long])
      assert.deepStrictEqual(value.two, ["One.", "Two."])
      assert.deepStrictEqual(value.short, ["One.", "Two.", "x".repeat(10), "Four.", "Five."])
      assert.include(userText(llm.requests[1]), "at most 2 lessons")
      assert.deepStrictEqual(Distiller.parseLessons("no array"), [])
      assert.deepStrictEqual(Distiller.parseLessons('{"lessons": ["Wrapped."]}'), ["Wrapped."])
    })
  )

  it.effect("charges the model call's tokens to the calling process", () =>
    Effect.gen(function* () {
      const { value } = yield* run(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* openLlm(grant)
            const before = yield* Sys.budget()
            const lessons = yield* Distiller.distill(handle, transcript)
            const after = yield* Sys.budget()
            return { lessons, spent: after.used.tokens - before.used.tokens }
          }),
        [{ text: '["Use the calculator."]', usage: { inputTokens: 100, outputTokens: 20 } }]
      )
      assert.deepStrictEqual(value.lessons, ["Use the calculator."])
      assert.strictEqual(value.spent, 120)
    })
  )

  it.effect("asks nothing for an empty transcript or max 0", () =>
    Effect.gen(function* () {
      const { value, llm } = yield* run((grant) =>
        Effect.gen(function* () {
          const handle = yield* openLlm(grant)
          return [yield* Distiller.distill(handle, []), yield* Distiller.distill(handle, transcript, { max: 0 })]
        })
      )
      assert.deepStrictEqual(value, [[], []])
      assert.strictEqual(llm.requests.length, 0)
    })
  )
})

describe("Persona", () => {
  const researcher = Persona.define({
    name: "researcher",
    system: "You research questions.",
    style: "Terse, with sources.",
    tools: Tools.definitions(toolkit)
  })

  it("defines personas and indexes them by name", () => {
    const writer = Persona.define({ name: "writer", system: "You write." })
    const registry = Persona.registry(researcher, writer)
    assert.deepStrictEqual(registry.names, ["researcher", "writer"])
    assert.strictEqual(registry.get("writer"), writer)
    assert.isUndefined(registry.get("nobody"))
    assert.deepStrictEqual(writer.tools, [])
    assert.throws(() => Persona.registry(writer, writer), /two personas/)
    assert.throws(() => Persona.define({ name: " ", system: "x" }), /blank/)
    assert.throws(() => Persona.define({ name: "x", system: "" }), /blank/)
  })

  it("puts the style and the lessons (deduplicated, capped) in the system prompt", () => {
    const options = Persona.instantiate(researcher, {
      lessons: ["Cite sources.", "cite sources", " ", "Check dates.", "Third.", "Fourth."],
      lessonsMax: 3,
      agent: { steps: 4, system: "overridden" }
    })
    assert.strictEqual(options.name, "researcher")
    assert.strictEqual(options.steps, 4)
    assert.deepStrictEqual(options.tools, researcher.tools)
    assert.strictEqual(
      options.system,
      "You research questions.\n\nStyle: Terse, with sources.\n\n" +
        `${Persona.defaults.lessonsHeader}\n- Cite sources.\n- Check dates.\n- Third.`
    )
    assert.strictEqual(Persona.instantiate(researcher).system, "You research questions.\n\nStyle: Terse, with sources.")
  })

  it.effect("instantiates a ReactAgent with the lessons recalled for its task", () =>
    Effect.gen(function* () {
      const { value, llm } = yield* run(
        (grant) =>
          Effect.gen(function* () {
            const memory = yield* openMemory(grant)
            yield* memory.addAll(["Check population figures against a census.", "Use metric units for distances."])
            const options = yield* Persona.recallAndInstantiate(researcher, memory, "population of Paris")
            const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
            const { cap } = yield* Sys.spawn(ReactAgent.make(options), {
              args: { task: "population of Paris" },
              caps: [grant.devices.llm!, grant.devices.tools!, replyTo]
            })
            const reply = yield* Sys.recv<ReactAgent.Reply>()
            yield* Sys.waitpid(cap)
            return { options, reply: reply.body }
          }),
        [{ text: "About 2.1 million." }]
      )
      assert.include(value.options.system!, "- Check population figures against a census.")
      assert.notInclude(value.options.system!, "metric units", "an irrelevant lesson is not recalled")
      assert.deepStrictEqual(value.reply, { _tag: "Result", answer: "About 2.1 million.", steps: 1 })
      assert.strictEqual(systemText(llm.requests[0]), value.options.system)
    })
  )
})

describe("Prompts", () => {
  it.effect("forge sends the brief and returns the prompt, unwrapped from a code fence", () =>
    Effect.gen(function* () {
      const { value, llm } = yield* run(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* openLlm(grant)
            const prompt = yield* Prompts.forge(handle, "An agent that converts currencies.")
            const empty = yield* Effect.exit(Prompts.forge(handle, "anything"))
            return { prompt, empty }
          }),
        [{ text: "```\nYou convert currencies. Always state the rate used.\n```" }, { text: "   " }]
      )
      assert.strictEqual(value.prompt, "You convert currencies. Always state the rate used.")
      assert.strictEqual(systemText(llm.requests[0]), Prompts.defaults.forgeSystem)
      assert.include(userText(llm.requests[0]), "An agent that converts currencies.")
      assert.isTrue(Exit.isFailure(value.empty))
      if (Exit.isFailure(value.empty)) assert.include(String(value.empty.cause), "PromptError")
    })
  )

  it.effect("refine sends the prompt with feedback or lessons; an empty reply keeps the prompt", () =>
    Effect.gen(function* () {
      const { value, llm } = yield* run(
        (grant) =>
          Effect.gen(function* () {
            const handle = yield* openLlm(grant)
            return [
              yield* Prompts.refine(handle, "You convert currencies.", "It forgot to state the rate."),
              yield* Prompts.refine(handle, "You convert currencies.", {
                feedback: "Too slow.",
                lessons: ["Fetch the rate once.", " "]
              }),
              yield* Prompts.refine(handle, "You convert currencies.", "anything")
            ]
          }),
        [{ text: "You convert currencies and state the rate." }, { text: "Fetch the rate once." }, { text: "" }]
      )
      assert.deepStrictEqual(value, [
        "You convert currencies and state the rate.",
        "Fetch the rate once.",
        "You convert currencies."
      ])
      assert.strictEqual(systemText(llm.requests[0]), Prompts.defaults.refineSystem)
      assert.strictEqual(
        userText(llm.requests[0]),
        "Prompt:\nYou convert currencies.\n\nFeedback:\nIt forgot to state the rate."
      )
      assert.strictEqual(
        userText(llm.requests[1]),
        "Prompt:\nYou convert currencies.\n\nFeedback:\nToo slow.\n\nLessons:\n- Fetch the rate once."
      )
    })
  )
})

describe("Evolution", () => {
  const fit = (correct: boolean, steps: number, tokens = 100, usd = 0.01): Evolution.Fitness => ({
    correct,
    steps,
    tokens,
    usd
  })

  it.effect("ranks by correctness, then steps, then tokens, then dollars", () =>
    Effect.gen(function* () {
      const table: Record<string, Evolution.Fitness> = {
        wrong: fit(false, 1, 1, 0),
        slow: fit(true, 5),
        tokens: fit(true, 3, 100, 0.01),
        dollars: fit(true, 3, 50, 0.02),
        best: fit(true, 3, 50, 0.01),
        tie: fit(true, 3, 50, 0.01)
      }
      const { value } = yield* run(() =>
        Evolution.evolve({
          variants: ["wrong", "slow", "tokens", "dollars", "best", "tie", "best"],
          fitness: (variant) => Effect.succeed(table[variant]!),
          rounds: 1,
          population: 10
        })
      )
      assert.deepStrictEqual(
        value.ranked.map((s) => s.variant),
        ["best", "tie", "dollars", "tokens", "slow", "wrong"]
      )
      assert.strictEqual(value.best.variant, "best")
      assert.strictEqual(value.evaluations, 6, "a duplicate variant is scored once")
      assert.strictEqual(value.mutations, 0)
    })
  )

  it.effect("keeps the best and mutates it with refine each round, within its bounds, deterministically", () =>
    Effect.gen(function* () {
      const table: Record<string, Evolution.Fitness> = {
        "base-a": fit(true, 6),
        "base-b": fit(false, 1),
        "base-c": fit(true, 5),
        "mut-1": fit(true, 4),
        "mut-2": fit(true, 7),
        "mut-3": fit(true, 4, 60),
        "mut-4": fit(false, 2)
      }
      const once = Effect.gen(function* () {
        const scored: Array<string> = []
        const { value, llm } = yield* run(
          (grant) =>
            Effect.gen(function* () {
              const handle = yield* openLlm(grant)
              return yield* Evolution.evolve({
                variants: ["base-a", "base-b", "base-c"],
                fitness: (variant) => Effect.sync(() => (scored.push(variant), table[variant]!)),
                llm: handle,
                rounds: 3,
                population: 3,
                keep: 1
              })
            }),
          [1, 2, 3, 4].map((n) => ({ text: `mut-${n}` }))
        )
        return { value, scored, requests: llm.requests }
      })
      const first = yield* once
      const second = yield* once
      const { value, scored, requests } = first
      assert.strictEqual(value.best.variant, "mut-3")
      assert.deepStrictEqual(
        value.history.map((round) => round.map((s) => s.variant)),
        [
          ["base-c", "base-a", "base-b"],
          ["mut-1", "base-c", "mut-2"],
          ["mut-3", "mut-1", "mut-4"]
        ]
      )
      assert.deepStrictEqual(scored, ["base-a", "base-b", "base-c", "mut-1", "mut-2", "mut-3", "mut-4"])
      assert.strictEqual(value.evaluations, 7, "population + (rounds - 1) * (population - keep)")
      assert.strictEqual(value.mutations, 4)
      assert.strictEqual(requests.length, 4)
      assert.include(userText(requests[0]), "Prompt:\nbase-c")
      assert.include(userText(requests[0]), "5 steps")
      assert.include(userText(requests[2]), "Prompt:\nmut-1")
      assert.include(userText(requests[2]), "4 steps")
      assert.deepStrictEqual(second.value, value, "the same run gives the same result")
      assert.deepStrictEqual(second.scored, scored)
    })
  )

  it.effect("drops mutations already seen and stops without a mutator", () =>
    Effect.gen(function* () {
      const { value } = yield* run(() =>
        Effect.gen(function* () {
          let calls = 0
          const fitness = (variant: string) => Effect.sync(() => (calls++, fit(true, variant.length)))
          const same = yield* Evolution.evolve({
            variants: ["aa", "b"],
            fitness,
            mutate: (parent) => Effect.succeed(parent.variant),
            rounds: 4,
            population: 2
          })
          const selectionOnly = yield* Evolution.evolve({ variants: ["ccc", "dd"], fitness, rounds: 5 })
          return { same, selectionOnly, calls }
        })
      )
      assert.strictEqual(value.same.evaluations, 2)
      assert.strictEqual(value.same.mutations, 3)
      assert.strictEqual(value.same.history.length, 4)
      assert.deepStrictEqual(
        value.same.ranked.map((s) => s.variant),
        ["b"]
      )
      assert.strictEqual(value.selectionOnly.history.length, 1)
      assert.strictEqual(value.selectionOnly.best.variant, "dd")
      assert.strictEqual(value.calls, 4)
    })
  )

  it.effect("measures a spawned ReactAgent's spend as fitness", () =>
    Effect.gen(function* () {
      const { value } = yield* run(
        (grant) =>
          Effect.gen(function* () {
            const attempt = (variant: string) =>
              Evolution.measure(
                Effect.gen(function* () {
                  const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
                  const llm = yield* Sys.derive(grant.devices.llm!, ["open"])
                  const toolsCap = yield* Sys.derive(grant.devices.tools!, ["open"])
                  yield* Sys.spawn(ReactAgent.make({ system: variant }), {
                    args: { task: "What is 6 * 7?" },
                    caps: [llm, toolsCap, replyTo]
                  })
                  const message = yield* Sys.recv<ReactAgent.Reply>()
                  const reply = message.body
                  return reply._tag === "Result"
                    ? { correct: reply.answer.includes("42"), steps: reply.steps }
                    : { correct: false, steps: Infinity }
                })
              )
            return yield* Evolution.evolve({ variants: ["Guess.", "Compute exactly."], fitness: attempt, rounds: 1 })
          }),
        [
          { text: "41", usage: { inputTokens: 10, outputTokens: 2 } },
          { text: "42", usage: { inputTokens: 12, outputTokens: 3 } }
        ]
      )
      assert.deepStrictEqual(
        value.ranked.map((s) => [s.variant, s.fitness]),
        [
          ["Compute exactly.", { correct: true, steps: 1, tokens: 15, usd: 0 }],
          ["Guess.", { correct: false, steps: 1, tokens: 12, usd: 0 }]
        ]
      )
    })
  )
})
