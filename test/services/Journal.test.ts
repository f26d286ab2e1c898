import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Schema } from "effect"
import { Journal } from "effect-agent-os"

type JournalRecord = Journal.JournalRecord

const record = (pid: number, op: number, cost: JournalRecord["result"] = success(op)): JournalRecord => ({
  pid,
  op,
  device: "dev",
  call: "read",
  result: cost
})

function success(op: number): JournalRecord["result"] {
  return { _tag: "Success", value: { op }, cost: { tokens: op } }
}

/** A replaying journal over an in-memory store holding `records` (typed loosely: a store may hand back anything). */
const replaying = (records: ReadonlyArray<unknown>) =>
  Journal.make("replay", Journal.makeMemoryStore(records as ReadonlyArray<JournalRecord>))

const corruption = (records: ReadonlyArray<unknown>) =>
  Effect.gen(function* () {
    const exit = yield* Effect.exit(replaying(records))
    assert.isTrue(Exit.isFailure(exit), "the journal must not load")
    const error = yield* Effect.flip(replaying(records))
    assert.strictEqual(error._tag, "JournalError")
    assert.strictEqual(error.reason, "corrupt")
    return error
  })

describe("Journal index", () => {
  it.effect("small pids and ops: each (pid, op) serves its own record", () =>
    Effect.gen(function* () {
      const journal = yield* replaying([record(1, 1), record(1, 2), record(2, 1)])
      assert.strictEqual(journal.size(), 3)
      assert.deepStrictEqual(journal.replayed(1, 2), record(1, 2))
      assert.deepStrictEqual(journal.replayed(2, 1), record(2, 1))
    })
  )

  it.effect("pids above 2^21 and 2^32: no two (pid, op) pairs share a record", () =>
    Effect.gen(function* () {
      // with one `pid * 2^32 + op` number per pair these pairs collide: past 2^53 doubles cannot tell op 1 from op 2
      const pids = [2 ** 21 + 1, 2 ** 32, 2 ** 32 + 1, Number.MAX_SAFE_INTEGER]
      const records = pids.flatMap((pid) => [1, 2, 3, 4].map((op) => record(pid, op)))
      const journal = yield* replaying(records)
      assert.strictEqual(journal.size(), records.length)
      for (const pid of pids) {
        for (const op of [1, 2, 3, 4]) {
          const found = journal.replayed(pid, op)
          assert.deepStrictEqual(found, record(pid, op), `pid ${pid} op ${op}`)
        }
        const missing = journal.replayed(pid, 5)
        assert.instanceOf(missing, Journal.JournalError)
      }
    })
  )
})

describe("Journal load checks", () => {
  it.effect("a record with a negative cost does not load: corrupt, naming its pid and op", () =>
    Effect.gen(function* () {
      const error = yield* corruption([
        record(1, 1),
        record(7, 3, { _tag: "Success", value: null, cost: { tokens: 5, usd: -0.5 } })
      ])
      assert.strictEqual(error.pid, 7)
      assert.strictEqual(error.op, 3)
      assert.include(error.message, "pid 7 op 3")
    })
  )

  it.effect("a record with an infinite or NaN cost does not load", () =>
    Effect.gen(function* () {
      for (const tokens of [Infinity, -Infinity, NaN]) {
        const error = yield* corruption([record(2, 1, { _tag: "Success", value: null, cost: { tokens } })])
        assert.strictEqual(error.pid, 2)
        assert.strictEqual(error.op, 1)
      }
    })
  )

  it.effect("pid, op and seq must be non-negative safe integers", () =>
    Effect.gen(function* () {
      for (const bad of [
        { ...record(1, 1), pid: -1 },
        { ...record(1, 1), op: 1.5 },
        { ...record(1, 1), pid: 2 ** 53 },
        { ...record(1, 1), seq: -2 },
        { ...record(1, 1), op: "1" }
      ]) {
        const error = yield* corruption([bad])
        assert.strictEqual(error.reason, "corrupt")
      }
    })
  )

  it.effect("the checks are the JournalRecord Schema's, so every store that decodes with it gets them", () =>
    Effect.sync(() => {
      const is = Schema.is(Journal.JournalRecord)
      assert.isTrue(is(record(1, 1)))
      assert.isFalse(is(record(1, 1, { _tag: "Success", value: null, cost: { toolCalls: -1 } })))
      assert.isFalse(is({ ...record(1, 1), pid: Infinity }))
    })
  )

  it.effect("record and live modes load nothing, so they check nothing", () =>
    Effect.gen(function* () {
      const bad = [record(1, 1, { _tag: "Success", value: null, cost: { tokens: -1 } })]
      const journal = yield* Journal.make("record", Journal.makeMemoryStore(bad))
      assert.strictEqual(journal.size(), 0)
    })
  )
})

describe("Journal end (in-flight calls in a replay)", () => {
  const started = (pid: number, op: number): JournalRecord => ({ ...record(pid, op), result: { _tag: "Started" } })
  const records = [record(1, 1), started(1, 2), record(2, 1), started(2, 2), record(2, 2)]

  it.effect("default: no call ends only itself; end call: only a Started call without a result does", () =>
    Effect.gen(function* () {
      const byRun = yield* replaying(records)
      const byCall = yield* Journal.make("replay", Journal.makeMemoryStore(records), { end: "call" })
      for (const journal of [byRun, byCall]) {
        // a missing call is a typed `missing` either way; a re-run call that completed is served
        assert.strictEqual((journal.replayed(1, 2) as Journal.JournalError).reason, "missing")
        assert.deepStrictEqual(journal.replayed(2, 2), record(2, 2))
      }
      assert.isFalse(byRun.inFlight(1, 2))
      assert.isTrue(byCall.inFlight(1, 2), "in flight when the recording stopped")
      assert.isFalse(byCall.inFlight(2, 2), "it has its result")
      assert.isFalse(byCall.inFlight(1, 3), "never started: the program asks what the recording never did")
      // only a replay: recover runs in-flight calls again, live
      const recovering = yield* Journal.make("recover", Journal.makeMemoryStore(records), { end: "call" })
      assert.isFalse(recovering.inFlight(1, 2))
    })
  )
})
