import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { ContextMemory, Device, Kernel, Llm, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const run = <A, E>(body: () => Effect.Effect<A, E, Sys.Sys>, quota?: Kernel.BootOptions["quota"]) =>
  TestKernel.runProcess(body, { quota }).pipe(Effect.provide(TestKernel.layer()))

describe("token estimates", () => {
  it("one per CJK character, one per four other characters, at least one", () => {
    assert.strictEqual(ContextMemory.estimateTokens("你好世界"), 4)
    assert.strictEqual(ContextMemory.estimateTokens("こんにちは"), 5)
    assert.strictEqual(ContextMemory.estimateTokens("hello world!"), 3)
    assert.strictEqual(ContextMemory.estimateTokens("東京 is big"), 2 + 2)
    assert.strictEqual(ContextMemory.estimateTokens(""), 1)
  })
})

describe("recallers", () => {
  it("BM25 ranks by term relevance and forgets removed segments", () => {
    const index = ContextMemory.bm25()
    index.add(1, "the population of Berlin is large")
    index.add(2, "Paris has a river and a tower")
    index.add(3, "Berlin Berlin Berlin wall history")
    index.add(4, "東京の人口")
    assert.deepStrictEqual(index.query("berlin", 5), [3, 1])
    assert.deepStrictEqual(index.query("tower river", 1), [2])
    assert.deepStrictEqual(index.query("人口", 3), [4])
    index.remove(3)
    assert.deepStrictEqual(index.query("berlin", 5), [1])
    assert.deepStrictEqual(index.query("nothing matches", 5), [])
  })

  it("the vector recaller finds the closest text", () => {
    const index = ContextMemory.vector()
    index.add(1, "apples and oranges are fruit")
    index.add(2, "trains run on rails")
    assert.deepStrictEqual(index.query("oranges fruit", 1), [1])
    assert.deepStrictEqual(index.query("rails trains", 1), [2])
  })
})

describe("Sys.remember / workingSet / forget / pin", () => {
  it.effect("remembers segments with given or estimated sizes; forget and pin; denials", () =>
    run(() =>
      Effect.gen(function* () {
        const a = yield* Sys.remember({ role: "user", content: "hello there" })
        const b = yield* Sys.remember("exact", { tokens: 7, pin: true })
        const set = yield* Sys.workingSet()
        // `a` is counted for all it holds (60 bytes: its keys and values at two bytes a character, 8 for the object)
        // over 8, not for its `content` alone (3 tokens): what is stored is what is counted
        assert.deepStrictEqual(
          set.map((s) => [s.id, s.tokens, s.pinned]),
          [
            [a, 8, false],
            [b, 7, true]
          ]
        )
        yield* Sys.forget(a)
        assert.deepStrictEqual(
          (yield* Sys.workingSet()).map((s) => s.id),
          [b]
        )
        yield* Sys.pin(b, false)
        assert.isFalse((yield* Sys.workingSet())[0]!.pinned)
        const unknown = yield* Effect.flip(Sys.forget(a))
        assert.deepInclude(unknown, { _tag: "MemoryError", reason: "unknown-segment", id: a })
        assert.strictEqual((yield* Effect.flip(Sys.pin(99)))._tag, "MemoryError")
        assert.strictEqual((yield* Effect.flip(Sys.remember("x", { tokens: -1 })))._tag, "ArgumentError")
      })
    )
  )

  it.effect(
    "past the high watermark, unpinned segments page out coldest first down to the low one, with a marker",
    () =>
      run(
        () =>
          Effect.gen(function* () {
            const pinned = yield* Sys.remember("the task: keep me", { tokens: 10, pin: true })
            const ids: Array<number> = []
            for (let i = 0; i < 8; i++) ids.push(yield* Sys.remember(`fact ${i}`, { tokens: 10 }))
            // 90 tokens > 80: page out down to 60 — the three coldest unpinned facts go, a marker comes in
            const set = yield* Sys.workingSet()
            const kept = set.map((s) => s.id)
            assert.include(kept, pinned)
            for (const id of ids.slice(0, 3)) assert.notInclude(kept, id)
            for (const id of ids.slice(3)) assert.include(kept, id)
            const marker = set.at(-1)!
            assert.deepInclude(marker.body as object, { _tag: "PagedOut", ids: ids.slice(0, 3), count: 3 })
            // down to the low watermark (60), then the marker, counted for what it holds
            assert.isAtMost(set.reduce((n, s) => n + s.tokens, 0) - marker.tokens, 60)
            assert.isBelow(marker.tokens, 30, "the marker is smaller than what it replaced")
          }),
        { mem: 100 }
      )
  )

  it.effect("pinned segments alone over the mem quota end the process with Quota", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(
        Process.make("hoarder", () =>
          Effect.gen(function* () {
            for (let i = 0; i < 20; i++) yield* Sys.remember(`pinned ${i}`, { tokens: 10, pin: true })
          })
        ),
        { quota: { mem: 50 } }
      )
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("mem"))
    }).pipe(Effect.provide(TestKernel.layer()))
  )
})

describe("Sys.recall", () => {
  it.effect("ranks swapped segments with BM25 and pages the best back in", () =>
    run(
      () =>
        Effect.gen(function* () {
          const facts = [
            "Berlin has 3.8 million inhabitants",
            "Paris is on the Seine",
            "Rome was not built in a day",
            "the Berlin wall fell in 1989",
            "Madrid is the capital of Spain"
          ]
          const ids: Array<number> = []
          for (const fact of facts) ids.push(yield* Sys.remember(fact, { tokens: 10 }))
          for (let i = 0; i < 10; i++) yield* Sys.remember(`filler ${i}`, { tokens: 10 })
          const before = (yield* Sys.workingSet()).map((s) => s.id)
          for (const id of ids) assert.notInclude(before, id, "every fact is in swap")
          const found = yield* Sys.recall("berlin wall", 2)
          assert.deepStrictEqual(
            found.map((s) => s.id),
            [ids[3]!, ids[0]!]
          )
          const after = (yield* Sys.workingSet()).map((s) => s.id)
          assert.include(after, ids[3]!)
          assert.include(after, ids[0]!)
          assert.deepStrictEqual(yield* Sys.recall("nothing like this", 3), [])
          assert.strictEqual((yield* Effect.flip(Sys.recall("x", -1)))._tag, "ArgumentError")
        }),
      { mem: 100 }
    )
  )
})

describe("watermarks", () => {
  it.effect("the low watermark must be below the high one", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Kernel.Kernel.use(() => Effect.void).pipe(
          Effect.provide(TestKernel.layer({ limits: { memoryHighWatermark: 0.5, memoryLowWatermark: 0.7 } }))
        )
      )
      assert.strictEqual(error._tag, "KernelConfigError")
    })
  )
})

describe("pluggable recaller and pager", () => {
  it.effect("Kernel.layer({ memory }) sets every process's recaller and pager", () => {
    const paged: Array<ReadonlyArray<number>> = []
    return TestKernel.runProcess(
      () =>
        Effect.gen(function* () {
          yield* Sys.remember("apples and oranges are fruit", { tokens: 40 })
          yield* Sys.remember("trains run on rails", { tokens: 40 })
          yield* Sys.remember("a third thing", { tokens: 40 })
          assert.deepStrictEqual(paged, [[1, 2]])
          const set = yield* Sys.workingSet()
          assert.deepStrictEqual(set.at(-1)!.body, "summary of 2")
          assert.deepStrictEqual(
            (yield* Sys.recall("fruit oranges", 1)).map((s) => s.id),
            [1]
          )
        }),
      { quota: { mem: 100 } }
    ).pipe(
      Effect.provide(
        TestKernel.layer({
          memory: {
            recaller: () => ContextMemory.vector(),
            pager: (segments) => {
              paged.push(segments.map((s) => s.id))
              return { body: `summary of ${segments.length}`, tokens: 3 }
            }
          }
        })
      )
    )
  })
})

describe("LLM pager", () => {
  it.effect("summarises paged-out segments through the process's llm device, charged to the process", () => {
    const llm = TestKernel.ScriptedLlm.make([
      { text: "Notes 1 to 3 were about apples.", usage: { inputTokens: 30, outputTokens: 8 } }
    ])
    return TestKernel.runProcess(
      () =>
        Effect.gen(function* () {
          for (let i = 0; i < 9; i++) yield* Sys.remember(`apple note ${i}`, { tokens: 10 })
          const summary = (yield* Sys.workingSet()).at(-1)!
          assert.deepInclude(summary.body as object, { _tag: "Summary", text: "Notes 1 to 3 were about apples." })
          assert.strictEqual((yield* Sys.budget()).used.tokens, 38, "the model call was charged to this process")
          assert.include(JSON.stringify(llm.requests[0]!.messages), "apple note 0")
        }),
      { grant: ["llm"], quota: { mem: 100 } }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [llm], memory: { pager: Llm.pager({ device: 1 }) } })))
  })

  it.effect("falls back to the marker when the device does not answer with an LlmReply", () => {
    const notAnLlm = Device.make({
      name: "llm",
      open: () => Effect.succeed({ read: () => Effect.succeed({ value: 42, cost: { tokens: 3 } }) })
    })
    return TestKernel.runProcess(
      () =>
        Effect.gen(function* () {
          for (let i = 0; i < 9; i++) yield* Sys.remember(`note ${i}`, { tokens: 10 })
          assert.deepInclude((yield* Sys.workingSet()).at(-1)!.body as object, { _tag: "PagedOut" })
          assert.strictEqual((yield* Sys.budget()).used.tokens, 3, "the call was made and charged")
        }),
      { grant: ["llm"], quota: { mem: 100 } }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [notAnLlm], memory: { pager: Llm.pager({ device: 1 }) } })))
  })

  it.effect("falls back to the marker when the process holds no llm device", () =>
    TestKernel.runProcess(
      () =>
        Effect.gen(function* () {
          for (let i = 0; i < 9; i++) yield* Sys.remember(`note ${i}`, { tokens: 10 })
          assert.deepInclude((yield* Sys.workingSet()).at(-1)!.body as object, { _tag: "PagedOut" })
        }),
      { quota: { mem: 100 } }
    ).pipe(Effect.provide(TestKernel.layer({ memory: { pager: Llm.pager({ device: 5 }) } })))
  )
})
