/**
 * Replays that must end, and must not believe a changed record: request digests, a diverged program ending the run,
 * driver calls that wait on real time under virtual time, a real-time shutdown bound, and idempotency keys.
 */
import { assert, describe, it } from "@effect/vitest"
import { NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit, FileSystem, Layer } from "effect"
import { Device, Journal, JournalFileStore, Kernel, Llm, Process, Sys } from "effect-agent-os"
import { OpenAiServer } from "effect-agent-os/testing"
import * as TestKernel from "effect-agent-os/testing"
import { within } from "../security/harness.ts"

/** A device with real latency: results come back out of program order and carry a `seq`. */
const network = Device.make({
  name: "net",
  open: () =>
    Effect.succeed({
      read: (request: unknown) => {
        const { id, ms } = request as { readonly id: string; readonly ms: number }
        return Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms))).pipe(
          Effect.as({ value: `reply to ${id}`, cost: { tokens: ms } })
        )
      }
    })
})

type Variant = "same" | "changed-request" | "stops-early"

const worker = Process.make<{
  readonly name: string
  readonly delays: ReadonlyArray<number>
  readonly variant: Variant
}>("worker", ({ name, delays, variant }) =>
  Effect.gen(function* () {
    const [net, report] = yield* Sys.caps()
    const handle = yield* Sys.open(net!)
    for (const [i, ms] of delays.entries()) {
      // the changed program asks b's second call for another id; the early one has b stop after its first call
      if (variant === "stops-early" && name === "b" && i === 1) return
      const id = variant === "changed-request" && name === "b" && i === 1 ? "something else" : `${name}-${i}`
      const reply = yield* Sys.read<string>(handle, { id, ms })
      yield* Sys.send(report!, reply)
      yield* Effect.sleep("1 second")
    }
  })
)

const init = (variant: Variant) =>
  Process.make<Kernel.BootGrant>("init", (grant) =>
    Effect.gen(function* () {
      const me = yield* Sys.selfCap()
      const plan = { a: [3, 1, 4], b: [2, 5, 1], c: [4, 1, 2] }
      for (const [name, delays] of Object.entries(plan)) {
        const caps = [yield* Sys.derive(grant.devices.net!, ["open"]), yield* Sys.derive(me, ["send"])]
        yield* Sys.spawn(worker, { args: { name, delays, variant }, caps })
      }
      const got: Array<unknown> = []
      for (let i = 0; i < 9; i++) got.push((yield* Sys.recv()).body)
      yield* Sys.log("info", JSON.stringify(got))
    })
  )

const run = (mode: Journal.Mode, store: Journal.JournalStore, variant: Variant = "same") =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(init(variant), { grant: ["net"] })
    const reason = yield* kernel.waitExit(pid)
    return { reason, trace: yield* kernel.trace() }
  }).pipe(
    Effect.provide(Kernel.layer({ drivers: [network], journal: mode, virtualTime: true })),
    Effect.provide(Layer.succeed(Journal.JournalStoreService)(store)),
    (effect) => within(effect, "5 seconds")
  )

const recording = Effect.gen(function* () {
  const store = Journal.makeMemoryStore()
  const recorded = yield* run("record", store)
  assert.deepStrictEqual(recorded.reason, Process.normal)
  return { records: store.records, recorded }
})

const faultOf = (reason: Process.ExitReason): string => {
  assert.strictEqual(reason._tag, "Fault", `expected a Fault, got ${JSON.stringify(reason)}`)
  return (reason as { readonly error: string }).error
}

describe("request digests", () => {
  it.live("every record carries its request's digest; the same program replays identically", () =>
    Effect.gen(function* () {
      const { records, recorded } = yield* recording
      for (const record of records) {
        assert.isString(record.digest)
        assert.strictEqual(
          record.digest,
          Journal.requestDigest(record.device, record.call, { id: idOf(record), ms: msOf(record) })
        )
      }
      const replayed = yield* run("replay", Journal.makeMemoryStore(records))
      assert.deepStrictEqual(replayed.trace, recorded.trace)
    })
  )

  it.live("a program that sends another request fails with mismatch naming pid and op, and the whole run ends", () =>
    Effect.gen(function* () {
      const { records } = yield* recording
      const replayed = yield* run("replay", Journal.makeMemoryStore(records), "changed-request")
      const error = faultOf(replayed.reason)
      assert.match(error, /^JournalError: pid 3 op 2: the read on net sends another request than the one journaled/)
      // no process is left waiting on b: every one ended with the error
      const exits = replayed.trace.filter((e) => e._tag === "Exit")
      assert.strictEqual(exits.length, 4)
      for (const exit of exits)
        assert.match(faultOf((exit as { readonly reason: Process.ExitReason }).reason), /JournalError/)
    })
  )

  it("the digest ignores key order but not values, and tells tagged values apart", () => {
    const digest = (request: unknown) => Journal.requestDigest("d", "read", request)
    assert.strictEqual(digest({ a: 1, b: [1, { c: 2, d: 3 }] }), digest({ b: [1, { d: 3, c: 2 }], a: 1 }))
    const distinct = [
      { a: 1 },
      { a: 2 },
      { a: "1" },
      { a: null },
      { a: NaN },
      { a: -0 },
      { a: 0 },
      { a: undefined },
      {},
      { a: [undefined] },
      { a: [null] },
      { a: 1n },
      { a: new Date(0) },
      { a: new Date(0).toISOString() },
      { $agentos: "NaN" },
      { a: new Uint8Array([1]) },
      { a: new Uint8Array([2]) }
    ]
    const digests = distinct.map(digest)
    assert.strictEqual(new Set(digests).size, distinct.length)
    assert.notStrictEqual(Journal.requestDigest("d", "read", 1), Journal.requestDigest("d", "write", 1))
    assert.notStrictEqual(Journal.requestDigest("d", "read", 1), Journal.requestDigest("e", "read", 1))
  })

  it.live("a record without a digest (a journal from before digests) is refused as corrupt, naming pid and op", () =>
    Effect.gen(function* () {
      const { records } = yield* recording
      const stripped = records.map(({ digest: _digest, ...rest }) => rest)
      const replayed = yield* run("replay", Journal.makeMemoryStore(stripped))
      assert.match(faultOf(replayed.reason), /JournalError: pid \d+ op \d+: .* carries no request digest/)
    })
  )
})

describe("a replay never hangs", () => {
  it.live("a program that stops short of its journal ends with mismatch instead of leaving init waiting", () =>
    Effect.gen(function* () {
      const { records } = yield* recording
      const replayed = yield* run("replay", Journal.makeMemoryStore(records), "stops-early")
      assert.match(faultOf(replayed.reason), /JournalError: .*(nobody asked for|has not asked for)/)
    })
  )

  it.live("a missing record ends the run with missing; a record for another device with mismatch", () =>
    Effect.gen(function* () {
      const { records } = yield* recording
      const inline = records.findIndex((r) => r.seq === records.length)
      const missing = yield* run(
        "replay",
        Journal.makeMemoryStore(records.filter((_, i) => i !== 0).map(renumber(records[0]!)))
      )
      assert.match(faultOf(missing.reason), /JournalError: no journal entry for pid \d+ op \d+/)
      const moved = records.map((r, i) => (i === inline ? { ...r, device: "other" } : r))
      const mismatched = yield* run("replay", Journal.makeMemoryStore(moved))
      assert.match(faultOf(mismatched.reason), /JournalError: pid \d+ op \d+: journaled read on other, now read on net/)
    })
  )
})

describe("Journal load checks for records that do not fit together", () => {
  const base = (pid: number, op: number, seq?: number): Journal.JournalRecord => ({
    pid,
    op,
    ...(seq === undefined ? {} : { seq }),
    device: "dev",
    call: "read",
    digest: "x",
    result: { _tag: "Success", value: null, cost: {} }
  })
  const load = (records: ReadonlyArray<Journal.JournalRecord>) =>
    Effect.exit(Journal.make("replay", Journal.makeMemoryStore(records)))
  const corrupt = (exit: Exit.Exit<unknown, Journal.JournalError>) => {
    assert.isTrue(Exit.isFailure(exit))
    const error = Cause.squash((exit as Exit.Failure<unknown, Journal.JournalError>).cause) as Journal.JournalError
    assert.strictEqual(error.reason, "corrupt")
    return error
  }

  it.effect("contiguous seqs from 1, one record per (pid, op), in any line order: loads", () =>
    Effect.gen(function* () {
      const journal = yield* Journal.make("replay", Journal.makeMemoryStore([base(2, 1, 2), base(1, 1), base(1, 2, 1)]))
      assert.strictEqual(journal.size(), 3)
      assert.strictEqual(journal.lastSeq(), 2)
      assert.deepStrictEqual(journal.unconsumed(), base(1, 2, 1), "the lowest seq nobody asked for")
      journal.replayed(1, 2)
      journal.replayed(2, 1)
      assert.deepStrictEqual(journal.unconsumed(), base(1, 1))
      journal.replayed(1, 1)
      assert.isUndefined(journal.unconsumed())
    })
  )

  it.effect("two records for one (pid, op), even identical, are corrupt naming them", () =>
    Effect.gen(function* () {
      const error = corrupt(yield* load([base(1, 1), base(1, 2), base(1, 1)]))
      assert.strictEqual(error.pid, 1)
      assert.strictEqual(error.op, 1)
    })
  )

  it.effect("a repeated seq, or a seq missing below the highest, is corrupt", () =>
    Effect.gen(function* () {
      assert.match(corrupt(yield* load([base(1, 1, 1), base(2, 1, 1)])).message, /two records with seq 1/)
      assert.match(corrupt(yield* load([base(1, 1, 1), base(2, 1, 3)])).message, /no record with seq 2/)
      assert.match(corrupt(yield* load([base(1, 1, 2)])).message, /no record with seq 1/)
    })
  )
})

describe("virtual time and real waits", () => {
  const sleepy = (realMs: { value: number }) =>
    Device.make({
      name: "sleepy",
      open: () =>
        Effect.succeed({
          read: () =>
            Effect.gen(function* () {
              const started = performance.now()
              // a driver that sleeps inside its call: under virtual time this is real time
              yield* Effect.sleep("60 millis")
              realMs.value = performance.now() - started
              return { value: "rested" }
            })
        })
    })

  const realMs = { value: 0 }
  it.live("a driver that sleeps inside its call completes; the process's own sleeps stay virtual", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(
        Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.sleepy!)
            yield* Effect.sleep("1 hour")
            assert.strictEqual(yield* Sys.read(handle, {}), "rested")
            yield* Effect.sleep("1 hour")
          })
        ),
        { grant: ["sleepy"] }
      )
      assert.deepStrictEqual(yield* within(kernel.waitExit(pid), "5 seconds"), Process.normal)
      assert.isAtLeast(realMs.value, 50, "the driver waited on the real clock")
      const exit = (yield* kernel.trace()).find((e) => e._tag === "Exit")!
      assert.strictEqual(exit.at, 2 * 3_600_000, "the kernel clock moved by the process's sleeps alone")
    }).pipe(Effect.provide(Kernel.layer({ drivers: [sleepy(realMs)], virtualTime: true })))
  )

  it.live(
    "the LLM driver's 429 backoff (Retry-After) completes under virtual time, one idempotency key throughout",
    () =>
      Effect.gen(function* () {
        const server = yield* OpenAiServer.make([OpenAiServer.rateLimited(1), OpenAiServer.text("ok")])
        const llm = Llm.make({ baseURL: server.baseURL, apiKey: "k", model: "m", retry: { base: "10 millis" } })
        const outcome = yield* Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          const pid = yield* kernel.boot(
            Process.make<Kernel.BootGrant>("init", (grant) =>
              Effect.gen(function* () {
                const model = yield* Sys.open(grant.devices.llm!)
                const reply = yield* Sys.read<Llm.LlmReply>(model, { messages: [{ role: "user", content: "hi" }] })
                yield* Sys.log("info", reply.text)
              })
            ),
            { grant: ["llm"] }
          )
          return yield* within(kernel.waitExit(pid), "10 seconds")
        }).pipe(Effect.provide(Kernel.layer({ drivers: [llm], virtualTime: true })))
        assert.deepStrictEqual(outcome, Process.normal)
        const requests = yield* server.requests
        assert.deepStrictEqual(
          requests.map((r) => r.status),
          [429, 200]
        )
        // the retry carries the same key as the first attempt: a server that deduplicates does the work once
        assert.deepStrictEqual(
          requests.map((r) => r.headers["idempotency-key"]),
          ["agentos-1:1", "agentos-1:1"]
        )
      }).pipe(Effect.scoped)
  )

  const stuck = Device.make({
    name: "stuck",
    open: () => Effect.succeed({ read: () => Effect.uninterruptible(Effect.never) })
  })

  for (const virtualTime of [false, true]) {
    it.effect(
      `shutdownTimeoutMs is real time: a stuck driver call cannot hold close (virtualTime: ${virtualTime})`,
      () =>
        Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          yield* kernel.boot(
            Process.make<Kernel.BootGrant>("init", (grant) =>
              Effect.gen(function* () {
                yield* Sys.read(yield* Sys.open(grant.devices.stuck!), {})
              })
            ),
            { grant: ["stuck"] }
          )
          // the TestClock is not moved: only a real-time bound lets shutdown return
          yield* within(kernel.shutdown(), "3 seconds")
          assert.strictEqual((yield* kernel.metrics()).fibers, 1, "the stuck fiber is still finishing")
        }).pipe(Effect.provide(TestKernel.layer({ drivers: [stuck], limits: { shutdownTimeoutMs: 100 }, virtualTime })))
    )
  }

  it.effect("with nothing stuck, shutdown returns without waiting for its bound", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      yield* kernel.boot(Process.make("idle", () => Sys.recv()))
      yield* within(kernel.shutdown(), "3 seconds")
      assert.strictEqual((yield* kernel.metrics()).fibers, 0)
    }).pipe(Effect.provide(TestKernel.layer({ limits: { shutdownTimeoutMs: 600_000 } })))
  )
})

describe("idempotency keys", () => {
  const recorder = (seen: Array<string | undefined>) =>
    Device.make({
      name: "side",
      open: () =>
        Effect.succeed({
          read: (request: unknown, context: Device.CallContext) =>
            Effect.sync(() => {
              seen.push(context.idempotencyKey)
              return { value: request }
            })
        })
    })
  const program = Process.make<Kernel.BootGrant>("init", (grant) =>
    Effect.gen(function* () {
      const handle = yield* Sys.open(grant.devices.side!)
      for (let i = 0; i < 3; i++) yield* Sys.read(handle, { i })
    })
  )
  const runWith = (mode: Journal.Mode, store: Journal.JournalStore, seen: Array<string | undefined>) =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      return yield* kernel.waitExit(yield* kernel.boot(program, { grant: ["side"] }))
    }).pipe(
      Effect.provide(Kernel.layer({ drivers: [recorder(seen)], journal: mode })),
      Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
    )

  it.effect("every driver call gets (pid, op) as its key; a call re-run on recover gets the same key", () =>
    Effect.gen(function* () {
      const seen: Array<string | undefined> = []
      const store = Journal.makeMemoryStore()
      assert.deepStrictEqual(yield* runWith("record", store, seen), Process.normal)
      assert.deepStrictEqual(seen, ["1:1", "1:2", "1:3"])
      // a crash while op 3 was in flight: its record never reached the store, so recover runs it again
      const again: Array<string | undefined> = []
      const crashed = Journal.makeMemoryStore(store.records.filter((r) => r.op !== 3))
      assert.deepStrictEqual(yield* runWith("recover", crashed, again), Process.normal)
      assert.deepStrictEqual(again, ["1:3"], "only the lost call ran again, with its original key")
    })
  )

  const onFile = (mode: Journal.Mode, file: string, seen: Array<string | undefined>) =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const reason = yield* kernel.waitExit(yield* kernel.boot(program, { grant: ["side"] }))
      return { reason, trace: yield* kernel.trace() }
    }).pipe(
      Effect.provide(Kernel.layer({ drivers: [recorder(seen)], journal: mode })),
      Effect.provide(JournalFileStore.layer({ path: file }))
    )

  it.effect(
    "over a file, recover names the calls a crash left in flight in one Recover event, and runs them again",
    () =>
      Effect.gen(function* () {
        const fs = yield* FileSystem.FileSystem
        const file = `${yield* fs.makeTempDirectoryScoped()}/journal.jsonl`
        yield* onFile("record", file, [])
        // the crash: op 3 started, its result never written
        const lines = (yield* fs.readFileString(file)).trim().split("\n")
        const last = JSON.parse(lines.at(-1)!)
        assert.strictEqual(last.result._tag, "Success")
        yield* fs.writeFileString(file, `${lines.slice(0, -1).join("\n")}\n`)
        const again: Array<string | undefined> = []
        const recovered = yield* onFile("recover", file, again)
        assert.deepStrictEqual(recovered.reason, Process.normal)
        assert.deepStrictEqual(again, ["1:3"])
        const events = recovered.trace.filter((e) => e._tag === "Recover")
        assert.deepStrictEqual(
          events.map((e) => (e as { readonly calls: unknown }).calls),
          [[{ pid: 1, op: 3, device: "side", call: "read" }]]
        )
        assert.strictEqual(recovered.trace[0]!._tag, "Recover", "said before any process starts")
        // recovered again: nothing is in flight any more, so no Recover event
        const calm = yield* onFile("recover", file, [])
        assert.isFalse(calm.trace.some((e) => e._tag === "Recover"))
      }).pipe(Effect.scoped, Effect.provide(NodeServices.layer))
  )

  it.effect("calls of different processes or ops never share a key", () =>
    Effect.gen(function* () {
      const seen: Array<string | undefined> = []
      yield* runWith("live", Journal.makeMemoryStore(), seen)
      yield* runWith("live", Journal.makeMemoryStore(), seen)
      assert.strictEqual(new Set(seen.slice(0, 3)).size, 3)
    })
  )
})

function idOf(record: Journal.JournalRecord): string {
  return (record.result as { readonly value: string }).value.replace("reply to ", "")
}
function msOf(record: Journal.JournalRecord): number {
  return (record.result as { readonly cost: { readonly tokens: number } }).cost.tokens
}

/** Renumbers the seqs of `records` without `dropped`, so that only the dropped record itself is missing. */
function renumber(dropped: Journal.JournalRecord) {
  return (record: Journal.JournalRecord): Journal.JournalRecord =>
    dropped.seq !== undefined && record.seq !== undefined && record.seq > dropped.seq
      ? { ...record, seq: record.seq - 1 }
      : record
}
