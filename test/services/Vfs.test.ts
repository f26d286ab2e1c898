// The agent VFS: each mount works as documented and is refused where it must be (no cap, wrong right, bad path,
// read-only, over quota, over a limit), and a recorded run replays with the same VFS reads.
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { KeyValueStore } from "effect/persistence"
import { TestClock } from "effect/testing"
import { type Capability, Journal, Kernel, LongTermMemory, Kv, Policy, Process, Sys, Vfs } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { cat, put, rm } from "../vfsRequests.ts"

type Entry = Vfs.Entry
type CapRef = Capability.CapRef

/** Spawns `image` with a copy of `vfs` (caps given at spawn move) as its argument, and waits for it to end. */
const spawnAndWait = (image: Process.Image<CapRef>, vfs: CapRef, options?: Sys.SpawnOptions<CapRef>) =>
  Effect.gen(function* () {
    const copy = yield* Sys.derive(vfs, ["read", "write"])
    const child = yield* Sys.spawn(image, { args: copy, caps: [copy], ...options })
    yield* Sys.monitor(child.cap)
    yield* Sys.recv()
  })

const layer = (options?: Vfs.Options) => TestKernel.layer({ drivers: [Vfs.driver(options), Kv.driver()] })

/** Runs `body` in a root process named `name` granted the VFS and the KV device, on the kernel in context. */
const inVfs = <A, E>(
  body: (vfs: CapRef, grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>,
  options?: Kernel.BootOptions & { readonly name?: string; readonly vfs?: Vfs.Options }
) =>
  TestKernel.runProcess((grant) => Effect.flatMap(Sys.open(grant.devices.vfs!), (vfs) => body(vfs, grant)), {
    grant: ["vfs", "kv"],
    ...options
  })

/** `inVfs` on a kernel of its own. */
const alone = <A, E>(
  body: (vfs: CapRef, grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>,
  options?: Kernel.BootOptions & { readonly name?: string; readonly vfs?: Vfs.Options }
) => Effect.provide(inVfs(body, options), layer(options?.vfs))

const withStore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.provide(effect, KeyValueStore.layerMemory)

const ls = (vfs: CapRef, path: string) => Sys.read<ReadonlyArray<Entry>>(vfs, { op: "list", path })
const reasonOf = <A>(effect: Effect.Effect<A, unknown, Sys.Sys>) =>
  Effect.map(
    Effect.flip(effect),
    (error) => (error as { readonly reason?: string; readonly _tag: string }).reason ?? (error as { _tag: string })._tag
  )

describe("Vfs: the tree and its paths", () => {
  it.effect("lists the mounts; resolves . and ..; refuses a .. past the root and relative paths", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          assert.deepStrictEqual(
            (yield* ls(vfs, "/")).map((e) => [e.path, e.type]),
            [
              ["/mem", "dir"],
              ["/state", "dir"],
              ["/policy", "dir"]
            ]
          )
          assert.deepStrictEqual(
            (yield* ls(vfs, "/mem/./working/../")).map((e) => e.path),
            ["/mem/working", "/mem/episodic", "/mem/semantic"]
          )
          assert.strictEqual(yield* reasonOf(ls(vfs, "/../etc")), "denied")
          assert.strictEqual(yield* reasonOf(ls(vfs, "/mem/../../state")), "denied")
          assert.strictEqual(yield* reasonOf(ls(vfs, "mem")), "invalid-request")
          assert.strictEqual(yield* reasonOf(ls(vfs, "/nothing")), "not-found")
          assert.strictEqual(yield* reasonOf(cat(vfs, "/mem")), "is-a-directory")
          assert.strictEqual(yield* reasonOf(Sys.read(vfs, { op: "unlink", path: "/" })), "invalid-request")
          // a write sent as a read, and a look sent as a write
          assert.strictEqual(
            yield* reasonOf(Sys.read(vfs, { op: "write", path: "/mem/working", data: 1 })),
            "invalid-request"
          )
          assert.strictEqual(yield* reasonOf(Sys.write(vfs, { op: "list", path: "/" })), "invalid-request")
        })
      )
    )
  )

  it.effect("without a cap to the device there is no VFS; a read-only cap changes nothing", () =>
    withStore(
      TestKernel.runProcess(
        (grant) =>
          Effect.gen(function* () {
            const vfs = yield* Sys.open(grant.devices.vfs!)
            const readOnly = yield* Sys.derive(vfs, ["read"])
            assert.deepStrictEqual(yield* ls(readOnly, "/mem/working"), [])
            const denied = yield* Effect.flip(put(readOnly, "/mem/working", "a note"))
            assert.strictEqual(denied._tag, "CapabilityError")
            assert.deepStrictEqual(yield* Sys.workingSet(), [], "nothing was remembered")
            yield* Sys.revoke(vfs)
            assert.strictEqual((yield* Effect.flip(ls(vfs, "/")))._tag, "CapabilityError")
          }),
        { grant: ["vfs"] }
      ).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a handle narrowed to tools grants no VFS call", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          const narrowed = yield* Sys.attenuate(vfs, { tools: { list: {} } })
          const error = yield* Effect.flip(Sys.read(narrowed, { tool: "list", op: "list", path: "/" }))
          assert.deepInclude(error, { _tag: "CapabilityError", reason: "out-of-scope" })
        })
      )
    )
  )
})

describe("Vfs: /mem/working is the context memory", () => {
  it.effect("write = remember, list and read look, search = recall, remove = forget", () =>
    withStore(
      alone(
        (vfs) =>
          Effect.gen(function* () {
            const a = yield* put(vfs, "/mem/working", { note: "the user wants a summary of zebras" })
            const b = yield* put(vfs, "/mem/working", "pinned fact", { pin: true, tokens: 5 })
            assert.deepStrictEqual([a.path, b.path], ["/mem/working/1", "/mem/working/2"])
            const ws = yield* Sys.workingSet()
            assert.deepStrictEqual(
              ws.map((s) => [s.id, s.pinned]),
              [
                [1, false],
                [2, true]
              ],
              "the same memory Sys sees"
            )
            assert.deepStrictEqual(yield* cat(vfs, "/mem/working/2"), {
              id: 2,
              body: "pinned fact",
              tokens: 5,
              pinned: true,
              swapped: false
            })
            // past the mem quota the oldest unpinned segment is paged out; search finds it and pages it back in
            for (let i = 0; i < 8; i++) yield* put(vfs, "/mem/working", `filler ${i} `.repeat(10))
            const listed = yield* ls(vfs, "/mem/working")
            assert.isTrue(listed.find((e) => e.name === "1")?.swapped === true, "segment 1 was paged out")
            const found = yield* Sys.read<ReadonlyArray<{ readonly id: number }>>(vfs, {
              op: "search",
              path: "/mem/working",
              query: "zebras",
              k: 1
            })
            assert.deepStrictEqual(
              found.map((s) => s.id),
              [1]
            )
            assert.strictEqual((yield* cat<{ swapped: boolean }>(vfs, "/mem/working/1")).swapped, false)
            assert.strictEqual(yield* rm(vfs, "/mem/working/1"), null)
            assert.strictEqual(yield* reasonOf(cat(vfs, "/mem/working/1")), "not-found")
            assert.strictEqual(yield* reasonOf(rm(vfs, "/mem/working/1")), "not-found")
            assert.strictEqual(yield* reasonOf(cat(vfs, "/mem/working/01")), "not-found")
          }),
        { quota: { mem: 60 } }
      )
    )
  )

  it.effect("data must be a JSON value; tokens cannot undercount; pinned past the mem quota ends with Quota", () =>
    withStore(
      Effect.gen(function* () {
        const ended = yield* Effect.flip(
          alone(
            (vfs) =>
              Effect.gen(function* () {
                assert.strictEqual(yield* reasonOf(put(vfs, "/mem/working", new Date(0))), "invalid-request")
                assert.strictEqual(yield* reasonOf(put(vfs, "/mem/working", { n: Infinity })), "invalid-request")
                assert.strictEqual(yield* reasonOf(put(vfs, "/mem/working", "x", { tokens: -5 })), "invalid-request")
                assert.strictEqual(yield* reasonOf(put(vfs, "/mem/working")), "invalid-request")
                yield* put(vfs, "/mem/working", "y".repeat(400), { tokens: 1 })
                const [segment] = yield* Sys.workingSet()
                assert.isAbove(segment!.tokens, 1, "the estimate, not the caller's 1")
                yield* put(vfs, "/mem/working", "z".repeat(4000), { pin: true })
                return "not ended"
              }),
            { quota: { mem: 200 } }
          )
        )
        assert.deepInclude(ended, { _tag: "ProcessEnded" })
        assert.deepStrictEqual((ended as TestKernel.ProcessEnded).reason, Process.quota("mem"))
      })
    )
  )
})

describe("Vfs: /state holds checkpoints", () => {
  it.effect("write checkpoints, list lists, read gives a snapshot, restore rolls memory back (never the budget)", () =>
    withStore(
      Effect.gen(function* () {
        const snapshot = yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              yield* put(vfs, "/mem/working", "before")
              const first = yield* put(vfs, "/state", "clean")
              assert.strictEqual(first.path, "/state/1")
              yield* put(vfs, "/mem/working", "a mistake")
              yield* Sys.forget(1)
              assert.deepStrictEqual(
                (yield* Sys.workingSet()).map((s) => s.body),
                ["a mistake"]
              )
              const listed = yield* ls(vfs, "/state")
              assert.deepStrictEqual(
                listed.map((e) => [e.path, e.label]),
                [["/state/1", "clean"]]
              )
              const restored = yield* Sys.write(vfs, { op: "restore", path: "/state/1" })
              assert.deepStrictEqual(restored, { path: "/state/1", working: 1, swap: 0 })
              assert.deepStrictEqual(
                (yield* Sys.workingSet()).map((s) => [s.id, s.body]),
                [[1, "before"]]
              )
              // new segments go on after the restored ids
              assert.strictEqual((yield* put(vfs, "/mem/working", "after")).path, "/mem/working/2")
              const snap = yield* cat<{ readonly budget: { readonly toolCalls: number } }>(vfs, "/state/1")
              assert.strictEqual(snap.budget.toolCalls, 98, "two VFS calls were spent when it was taken")
              return snap
            }),
          { quota: { toolCalls: 100 } }
        )
        // what /state gives, kernel.restore takes
        const kernel = yield* Kernel.Kernel
        const image = Process.make("restored", () =>
          Effect.gen(function* () {
            const ws = yield* Sys.workingSet()
            yield* Sys.log("info", JSON.stringify(ws.map((s) => s.body)))
          })
        )
        const pid = yield* kernel.restore(snapshot, image)
        yield* kernel.waitExit(pid)
        const log = (yield* kernel.trace(pid)).find((e) => e._tag === "Log")
        assert.deepInclude(log, { message: JSON.stringify(["before"]) })
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("restoring a checkpoint gives back no spent budget", () =>
    withStore(
      Effect.gen(function* () {
        const ended = yield* Effect.flip(
          alone(
            (vfs) =>
              Effect.gen(function* () {
                yield* put(vfs, "/state")
                for (let i = 0; i < 10; i++) yield* Sys.write(vfs, { op: "restore", path: "/state/1" })
                return "never"
              }),
            { quota: { toolCalls: 4 } }
          )
        )
        assert.deepStrictEqual((ended as TestKernel.ProcessEnded).reason, Process.quota("toolCalls"))
      })
    )
  )

  it.effect("at most checkpointsMax checkpoints; remove makes room; numbers are never reused", () =>
    withStore(
      alone(
        (vfs) =>
          Effect.gen(function* () {
            yield* put(vfs, "/state")
            yield* put(vfs, "/state")
            assert.strictEqual(yield* reasonOf(put(vfs, "/state")), "limit")
            assert.strictEqual(yield* rm(vfs, "/state/1"), null)
            assert.strictEqual((yield* put(vfs, "/state")).path, "/state/3")
            assert.strictEqual(yield* reasonOf(cat(vfs, "/state/1")), "not-found")
            assert.strictEqual(yield* reasonOf(Sys.write(vfs, { op: "restore", path: "/state/1" })), "not-found")
          }),
        { vfs: { checkpointsMax: 2 } }
      )
    )
  )

  it.effect("a checkpoint past checkpointBytesMax, or of memory JSON cannot carry, is refused", () =>
    withStore(
      alone(
        (vfs) =>
          Effect.gen(function* () {
            yield* put(vfs, "/mem/working", "k".repeat(2000))
            assert.strictEqual(yield* reasonOf(put(vfs, "/state")), "limit")
            yield* Sys.forget(1)
            yield* Sys.remember({ big: 1n })
            assert.strictEqual(yield* reasonOf(put(vfs, "/state")), "unencodable")
            assert.deepStrictEqual(yield* ls(vfs, "/state"), [])
          }),
        { vfs: { checkpointBytesMax: 1000 } }
      )
    )
  )
})

describe("Vfs: /policy is read-only", () => {
  it.effect("lists the caller's policy sets, parent's first; reads their rules; refuses every write", () =>
    withStore(
      Effect.gen(function* () {
        const outer = yield* Policy.make([
          { name: "no-drop", match: { device: "sql" }, decision: "deny" },
          { name: "rest", decision: "allow" }
        ])
        const inner = yield* Policy.make([{ name: "all", decision: "allow" }])
        yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              assert.deepStrictEqual(
                (yield* ls(vfs, "/policy")).map((e) => [e.path, e.rules]),
                [["/policy/1", 2]]
              )
              const rules = yield* cat<ReadonlyArray<{ readonly name: string }>>(vfs, "/policy/1")
              assert.deepStrictEqual(
                rules.map((r) => r.name),
                ["no-drop", "rest"]
              )
              assert.strictEqual(yield* reasonOf(put(vfs, "/policy", "x")), "read-only")
              assert.strictEqual(yield* reasonOf(rm(vfs, "/policy/1")), "read-only")
              // a child sees its parent's set, then its own
              yield* spawnAndWait(
                Process.make<CapRef>("child", (cap) =>
                  Effect.gen(function* () {
                    const own = cap
                    const sets = yield* ls(own, "/policy")
                    yield* Sys.log("info", JSON.stringify(sets.map((e) => e.rules)))
                  })
                ),
                vfs,
                { policies: inner }
              )
            }),
          { policies: outer }
        )
        const kernel = yield* Kernel.Kernel
        const log = (yield* kernel.trace()).find((e) => e._tag === "Log")
        assert.deepInclude(log, { message: JSON.stringify([2, 1]) })
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a policy judges VFS calls like any: a deny reads back as a DeviceError naming the rule", () =>
    withStore(
      Effect.gen(function* () {
        const rules = yield* Policy.make([
          { name: "no-restore", match: { device: "vfs", arguments: { op: { glob: "restore" } } }, decision: "deny" },
          {
            name: "no-approve",
            match: { device: "vfs", arguments: { path: { glob: "/mem/working/*" } } },
            decision: "approve"
          },
          { name: "rest", decision: "allow" }
        ])
        yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              yield* put(vfs, "/state")
              const denied = yield* Effect.flip(Sys.write(vfs, { op: "restore", path: "/state/1" }))
              assert.deepInclude(denied, { _tag: "DeviceError", reason: "denied" })
              assert.include((denied as { message: string }).message, "no-restore")
              yield* put(vfs, "/mem/working", "x")
              // an approval cannot be journaled for a kernel-state call: refused, never passed
              const held = yield* Effect.flip(cat(vfs, "/mem/working/1"))
              assert.deepInclude(held, { _tag: "DeviceError", reason: "denied" })
              assert.include((held as { message: string }).message, "approval")
            }),
          { policies: rules }
        )
      }).pipe(Effect.provide(layer()))
    )
  )
})

describe("Vfs: /mem/episodic and /mem/semantic are long-term", () => {
  it.effect("episodes append and search; lessons dedupe and search; both outlive the kernel, by name", () =>
    withStore(
      Effect.gen(function* () {
        yield* alone(
          (vfs) =>
            Effect.gen(function* () {
              assert.strictEqual(
                (yield* put(vfs, "/mem/episodic", { task: "sum", outcome: "units were wrong" })).path,
                "/mem/episodic/1"
              )
              assert.strictEqual((yield* put(vfs, "/mem/episodic", "fetched the weather")).path, "/mem/episodic/2")
              const lesson = yield* put(vfs, "/mem/semantic", "Check the units before comparing numbers.")
              assert.match(lesson.path!, /^\/mem\/semantic\/[0-9a-f]{8}$/)
              assert.strictEqual(
                (yield* put(vfs, "/mem/semantic", "check THE units, before comparing numbers")).path,
                null
              )
              assert.strictEqual(yield* reasonOf(put(vfs, "/mem/semantic", { not: "a string" })), "invalid-request")
            }),
          { name: "researcher" }
        )
        // a new kernel over the same store: the same name finds them
        yield* alone(
          (vfs) =>
            Effect.gen(function* () {
              assert.deepStrictEqual(
                (yield* ls(vfs, "/mem/episodic")).map((e) => e.path),
                ["/mem/episodic/1", "/mem/episodic/2"]
              )
              assert.deepInclude(yield* cat(vfs, "/mem/episodic/1"), {
                seq: 1,
                data: { task: "sum", outcome: "units were wrong" }
              })
              const found = yield* Sys.read<ReadonlyArray<{ readonly seq: number }>>(vfs, {
                op: "search",
                path: "/mem/episodic",
                query: "weather"
              })
              assert.deepStrictEqual(
                found.map((e) => e.seq),
                [2]
              )
              const lessons = yield* Sys.read<ReadonlyArray<{ readonly text: string }>>(vfs, {
                op: "search",
                path: "/mem/semantic",
                query: "how do I compare two numbers?"
              })
              assert.deepStrictEqual(
                lessons.map((l) => l.text),
                ["Check the units before comparing numbers."]
              )
              yield* rm(vfs, "/mem/episodic/1")
              assert.strictEqual(yield* reasonOf(cat(vfs, "/mem/episodic/1")), "not-found")
            }),
          { name: "researcher" }
        )
        // another name sees none of it
        yield* alone(
          (vfs) =>
            Effect.gen(function* () {
              assert.deepStrictEqual(yield* ls(vfs, "/mem/episodic"), [])
              assert.deepStrictEqual(yield* ls(vfs, "/mem/semantic"), [])
            }),
          { name: "intruder" }
        )
      })
    )
  )

  it.effect(
    "a lesson written through the VFS is one LongTermMemory reads; a child's namespace is below its parent's",
    () =>
      withStore(
        alone(
          (vfs, grant) =>
            Effect.gen(function* () {
              yield* put(vfs, "/mem/semantic", "Prefer primary sources.")
              const kv = yield* Sys.open(grant.devices.kv!)
              const memory = LongTermMemory.open(kv, { namespace: "vfs/lead/semantic" })
              assert.deepStrictEqual(yield* memory.all(), ["Prefer primary sources."])
              assert.isTrue(yield* memory.add("Cite every claim."))
              assert.deepStrictEqual(
                (yield* ls(vfs, "/mem/semantic")).map((e) => e.text),
                ["Prefer primary sources.", "Cite every claim."]
              )
              // a child named like its parent still has its own namespace, below the parent's
              yield* spawnAndWait(
                Process.make<CapRef>("lead", (cap) =>
                  Effect.gen(function* () {
                    const own = cap
                    const seen = yield* ls(own, "/mem/semantic")
                    yield* put(own, "/mem/semantic", "child lesson")
                    yield* Sys.log("info", JSON.stringify(seen.length))
                  })
                ),
                vfs
              )
              assert.strictEqual((yield* ls(vfs, "/mem/semantic")).length, 2, "the child's lesson is not the parent's")
              const keys = yield* Sys.read<ReadonlyArray<string>>(kv, { op: "keys" })
              assert.isTrue(
                keys.some((key) => key.startsWith("vfs/lead/lead/semantic/")),
                keys.join(",")
              )
            }),
          { name: "lead" }
        )
      )
  )
})

describe("Vfs: whose VFS", () => {
  it.effect("a handle passed to another process shows that process its own memory, never the opener's", () =>
    withStore(
      Effect.gen(function* () {
        yield* inVfs((vfs) =>
          Effect.gen(function* () {
            yield* put(vfs, "/mem/working", "the parent's secret")
            yield* put(vfs, "/state")
            yield* spawnAndWait(
              Process.make<CapRef>("child", (handle) =>
                Effect.gen(function* () {
                  const working = yield* ls(handle, "/mem/working")
                  const state = yield* ls(handle, "/state")
                  const read = yield* Effect.flip(cat(handle, "/mem/working/1"))
                  yield* Sys.log(
                    "info",
                    JSON.stringify([working.length, state.length, (read as { reason: string }).reason])
                  )
                })
              ),
              vfs
            )
          })
        )
        const kernel = yield* Kernel.Kernel
        const log = (yield* kernel.trace()).find((e) => e._tag === "Log")
        assert.deepInclude(log, { message: JSON.stringify([0, 0, "not-found"]) })
      }).pipe(Effect.provide(layer()))
    )
  )
})

describe("Vfs: metering and replay", () => {
  it.effect("each operation costs one toolCalls, reserved first: past the quota the call never starts", () =>
    withStore(
      Effect.gen(function* () {
        const ended = yield* Effect.flip(
          inVfs(
            (vfs) =>
              Effect.gen(function* () {
                yield* put(vfs, "/mem/working", "one")
                yield* put(vfs, "/mem/episodic", "two")
                yield* put(vfs, "/mem/working", "three")
                return "never"
              }),
            { quota: { toolCalls: 2 } }
          )
        )
        assert.deepStrictEqual((ended as TestKernel.ProcessEnded).reason, Process.quota("toolCalls"))
        const kernel = yield* Kernel.Kernel
        const charges = (yield* kernel.trace()).filter((e) => e._tag === "Charge")
        assert.strictEqual(charges.length, 2)
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("`cost: {}` makes VFS calls free", () =>
    withStore(
      alone(
        (vfs) =>
          Effect.gen(function* () {
            for (let i = 0; i < 5; i++) yield* put(vfs, "/mem/working", `n${i}`)
            assert.strictEqual((yield* ls(vfs, "/mem/working")).length, 5)
          }),
        { quota: { toolCalls: 1 }, vfs: { cost: {} } }
      )
    )
  )

  const worker = Process.make<Kernel.BootGrant>("worker", (grant) =>
    Effect.gen(function* () {
      const vfs = yield* Sys.open(grant.devices.vfs!)
      yield* Sys.write(vfs, { op: "write", path: "/mem/working", data: "first" })
      yield* Sys.write(vfs, { op: "write", path: "/state", data: "one" })
      yield* Sys.write(vfs, { op: "write", path: "/mem/working", data: "second" })
      yield* Sys.write(vfs, { op: "write", path: "/mem/episodic", data: "ran once" })
      yield* Sys.write(vfs, { op: "restore", path: "/state/1" })
      const working = yield* Sys.read(vfs, { op: "list", path: "/mem/working" })
      const episodes = yield* Sys.read(vfs, { op: "list", path: "/mem/episodic" })
      yield* Sys.log("info", JSON.stringify({ working, episodes }))
    })
  )

  const session = (mode: Journal.Mode, store: Journal.JournalStore) =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(worker, { grant: ["vfs"] })
      const reason = yield* kernel.waitExit(pid)
      return { reason, trace: yield* kernel.trace() }
    }).pipe(
      Effect.provide(TestKernel.layer({ drivers: [Vfs.driver()], journal: mode })),
      Effect.provide(Layer.succeed(Journal.JournalStoreService)(store))
    )

  it.effect("journals only the store's calls; a replay runs the kernel-state calls again and reads the same", () =>
    Effect.gen(function* () {
      const records = Journal.makeMemoryStore()
      const recorded = yield* session("record", records).pipe(withStore)
      assert.deepStrictEqual(recorded.reason, Process.normal)
      assert.deepStrictEqual(
        records.records.map((r) => r.device),
        ["vfs", "vfs"],
        "the episodic write and list"
      )
      // the replay runs on an empty store: the episodes come from the journal
      const replayed = yield* session("replay", Journal.makeMemoryStore(records.records)).pipe(withStore)
      assert.deepStrictEqual(replayed.reason, Process.normal)
      assert.deepStrictEqual(replayed.trace, recorded.trace)
      const log = replayed.trace.find((e) => e._tag === "Log") as { readonly message: string }
      const { working, episodes } = JSON.parse(log.message)
      assert.deepStrictEqual(
        working.map((e: Entry) => e.path),
        ["/mem/working/1"]
      )
      assert.deepStrictEqual(
        episodes.map((e: Entry) => e.path),
        ["/mem/episodic/1"]
      )
    }).pipe(Effect.provide(TestClock.layer()))
  )
})
