/**
 * Hostile images against the agent VFS (`Vfs.driver`): requests built to trip the kernel's copy, paths built to
 * escape or to slip past a policy, namespaces built to collide, checkpoints used to refund or to re-receive, batches
 * built to overshoot, fibers that outlive their process, and the journal.
 *
 * Every test asserts the SECURE outcome: a test that fails is an attack that worked (see the report).
 */
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Exit, Fiber, Layer } from "effect"
import { KeyValueStore } from "effect/persistence"
import { TestClock } from "effect/testing"
import { type Capability, Journal, Kernel, Kv, Policy, Process, Sys, Vfs } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { cat, put, restore, rm } from "../vfsRequests.ts"

type Entry = Vfs.Entry
type CapRef = Capability.CapRef

const layer = (options?: Vfs.Options) => TestKernel.layer({ drivers: [Vfs.driver(options), Kv.driver()] })

/** Runs `body` in a root process named `name` granted the VFS and the KV device, on the kernel in context. */
const inVfs = <A, E>(
  body: (vfs: CapRef, grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>,
  options?: Kernel.BootOptions & {
    readonly name?: string
    readonly vfs?: Vfs.Options
    readonly stallTimeout?: Duration.Input
  }
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

/** Spawns `image` with a copy of `vfs` as its argument, and waits for it to end; its exit reason. */
const spawnAndWait = (image: Process.Image<CapRef>, vfs: CapRef, options?: Sys.SpawnOptions<CapRef>) =>
  Effect.gen(function* () {
    const copy = yield* Sys.derive(vfs, ["read", "write"])
    const child = yield* Sys.spawn(image, { args: copy, caps: [copy], ...options })
    yield* Sys.monitor(child.cap)
    const down = yield* Sys.recv<{ readonly _tag: string; readonly reason?: Process.ExitReason }>()
    return down.body
  })

const ls = (vfs: CapRef, path: string) => Sys.read<ReadonlyArray<Entry>>(vfs, { op: "list", path })

/** The typed error's reason (or tag) an effect fails with; a defect or an interrupt is reported as such. */
const reasonOf = <A>(effect: Effect.Effect<A, unknown, Sys.Sys>) =>
  Effect.map(Effect.exit(effect), (exit) => {
    if (Exit.isSuccess(exit)) return `succeeded: ${JSON.stringify(exit.value)}`
    const failure = exit.cause.reasons.find((r) => r._tag === "Fail")
    if (failure !== undefined && failure._tag === "Fail") {
      const error = failure.error as { readonly reason?: string; readonly _tag: string }
      return error.reason ?? error._tag
    }
    return `not a typed error: ${String(exit.cause)}`
  })

/** Logs `value` as JSON, for the test to read back from the trace. */
const report = (value: unknown) => Sys.log("info", JSON.stringify(value))

/** What processes logged (JSON), in order. */
const reports = Effect.gen(function* () {
  const kernel = yield* Kernel.Kernel
  return (yield* kernel.trace())
    .filter((e) => e._tag === "Log")
    .map((e) => JSON.parse((e as unknown as { readonly message: string }).message) as unknown)
})

// =====================================================================================================================
// requests: what the kernel copies is what the VFS runs
// =====================================================================================================================

describe("VfsHostile: requests that are not plain data", () => {
  it.effect("a getter `path` that names another mount the second time it is read never reaches /state", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          let reads = 0
          const sneaky = {
            op: "write",
            data: "x",
            get path() {
              reads++
              return reads === 1 ? "/mem/working" : "/state"
            }
          }
          const reason = yield* reasonOf(Sys.write(vfs, sneaky))
          assert.deepStrictEqual(yield* ls(vfs, "/state"), [], `no checkpoint was made (${reason})`)
          assert.isAtMost(reads, 1, "the kernel read the getter once, or not at all")
        })
      )
    )
  )

  it.effect("a Proxy request, a class-instance request and a String-object path: typed errors, nothing changes", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          let traps = 0
          const proxy = new Proxy(
            { op: "write", path: "/mem/working", data: "x" },
            {
              get(target, key, receiver) {
                traps++
                if (key === "path" && traps > 3) return "/state"
                return Reflect.get(target, key, receiver)
              }
            }
          )
          const r1 = yield* reasonOf(Sys.write(vfs, proxy))
          class Req {
            op = "write"
            path = "/state"
          }
          const r2 = yield* reasonOf(Sys.write(vfs, new Req()))
          const r3 = yield* reasonOf(Sys.write(vfs, { op: "write", path: new String("/state") }))
          const r4 = yield* reasonOf(Sys.write(vfs, Object.create({ op: "write", path: "/state" })))
          for (const r of [r2, r3, r4]) assert.notInclude(r, "succeeded", r)
          assert.notInclude(r1, "not a typed error", r1)
          assert.deepStrictEqual(yield* ls(vfs, "/state"), [], "no checkpoint was made")
        })
      )
    )
  )

  it.effect("`data` with toJSON, a getter, a Proxy, a Map, a Date, a bigint or a cycle: typed, memory untouched", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          const cyclic: Record<string, unknown> = {}
          cyclic.self = cyclic
          let gets = 0
          const datas: ReadonlyArray<unknown> = [
            { toJSON: () => "x".repeat(10_000) },
            {
              get big() {
                gets++
                return gets > 1 ? "y".repeat(100_000) : "small"
              }
            },
            new Proxy(
              {},
              {
                ownKeys: () => ["a"],
                getOwnPropertyDescriptor: () => ({ value: 1, configurable: true, enumerable: true })
              }
            ),
            new Map([["a", 1]]),
            new Date(0),
            { n: 1n },
            cyclic,
            [undefined],
            { n: NaN }
          ]
          const out: Array<string> = []
          for (const data of datas) out.push(yield* reasonOf(put(vfs, "/mem/working", data)))
          for (const r of out) assert.notInclude(r, "not a typed error", out.join(" | "))
          const ws = yield* Sys.workingSet()
          for (const s of ws) {
            const text = JSON.stringify(s.body) ?? ""
            assert.isBelow(
              text.length,
              1000,
              `a segment holds what the getter said the second time: ${text.slice(0, 40)}`
            )
            assert.isAbove(s.tokens, text.length / 8, "a segment's tokens count what it holds")
          }
        })
      )
    )
  )

  it.effect("mutating data after the write, or a value read back, does not change the memory or a checkpoint", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          const data = { note: "small" }
          yield* put(vfs, "/mem/working", data)
          data.note = "changed after the write"
          const read = yield* cat<{ readonly body: { note: string } }>(vfs, "/mem/working/1")
          assert.strictEqual(read.body.note, "small", "the write kept a copy")
          // the value read back is the process's own: changing it (a huge body, counted at its old size) changes
          // nothing the kernel keeps
          read.body.note = "z".repeat(5_000)
          const found = yield* Sys.read<ReadonlyArray<{ readonly body: { note: string } }>>(vfs, {
            op: "search",
            path: "/mem/working",
            query: "small",
            k: 3
          })
          found[0]?.body && ((found[0].body as { note: string }).note = "w".repeat(5_000))
          yield* put(vfs, "/state")
          const snap = yield* cat<{ memory: { working: ReadonlyArray<{ body: { note: string } }> } }>(vfs, "/state/1")
          assert.isTrue(
            snap.memory.working[0]?.body.note === "small",
            `the checkpoint holds ${snap.memory.working[0]?.body.note.slice(0, 12)}…, not what was written`
          )
          const again = yield* cat<{ readonly body: { note: string } }>(vfs, "/mem/working/1")
          assert.isTrue(
            again.body.note === "small",
            `the segment holds ${again.body.note.slice(0, 12)}…, not what was written`
          )
        })
      )
    )
  )
})

// =====================================================================================================================
// paths
// =====================================================================================================================

describe("VfsHostile: paths", () => {
  it.effect("`..`, encoded dots and slashes, `//`, NUL, unicode, backslashes, huge and non-string paths", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          yield* put(vfs, "/mem/working", "mine")
          const escapes = [
            "/..",
            "/../",
            "/mem/working/../../..",
            "/./../state",
            "/" + "a/".repeat(100) + "../".repeat(101),
            "/" + "../".repeat(300)
          ]
          for (const path of escapes) {
            const r = yield* reasonOf(ls(vfs, path))
            assert.strictEqual(r, "denied", `${path.slice(0, 40)}: ${r}`)
          }
          const odd = [
            "/%2E%2E/state",
            "/mem%2Fworking",
            "/mem/working%2F1",
            "/ｓtate",
            "/state\u200b",
            "/mem\\working",
            "/mem/working/1\0",
            "/\0",
            "/mem/working/ 1",
            "/mem/working/1.0",
            "/mem/working/0x1",
            "/mem/working/-1",
            "/mem/working/1e0",
            "/mem/working/9999999999999999999",
            "/policy/0",
            "/policy/-0",
            "/state/1/..",
            "/" + "x".repeat(1100),
            "state",
            "",
            "~/state"
          ]
          for (const path of odd) {
            const r = yield* reasonOf(cat(vfs, path))
            assert.include(
              ["invalid-request", "not-found", "denied", "is-a-directory"],
              r,
              `${JSON.stringify(path.slice(0, 40))}: ${r}`
            )
          }
          for (const path of [1, null, ["/state"], { toString: () => "/state" }, undefined]) {
            const r = yield* reasonOf(Sys.write(vfs, { op: "write", path }))
            assert.include(["invalid-request", "ArgumentError"], r, `${String(path)}: ${r}`)
          }
          // a path made of 500 000 slashes: refused by its length, quickly
          const started = Date.now()
          const r = yield* reasonOf(ls(vfs, "/".repeat(500_000)))
          assert.notInclude(r, "succeeded")
          assert.isBelow(Date.now() - started, 1000)
          assert.deepStrictEqual(
            (yield* Sys.workingSet()).map((s) => s.body),
            ["mine"],
            "nothing was changed"
          )
        })
      )
    )
  )
})

// =====================================================================================================================
// policies: what a policy judged is what the VFS runs
// =====================================================================================================================

const judgedBy = (rules: ReadonlyArray<Policy.RuleFields>) => Policy.make(rules)

describe("VfsHostile: policies on the vfs device", () => {
  it.effect("a deny on writes to /state (glob on `path`) is not slipped past by a non-canonical path", () =>
    withStore(
      Effect.gen(function* () {
        const policies = yield* judgedBy([
          {
            name: "no-checkpoints",
            match: { device: "vfs", call: "write", arguments: { path: { glob: "/state" } } },
            decision: "deny"
          },
          {
            name: "no-restore",
            match: { device: "vfs", call: "write", arguments: { path: { glob: "/state/**" } } },
            decision: "deny"
          },
          { name: "rest", decision: "allow" }
        ])
        yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              const results: Record<string, string> = {}
              for (const path of ["/state", "/state/", "//state", "/./state", "/mem/../state", "/state/."]) {
                results[path] = yield* reasonOf(put(vfs, path, "sneaky"))
              }
              yield* report({ results, state: yield* ls(vfs, "/state") })
            }),
          { policies }
        )
        const [out] = (yield* reports) as Array<{ results: Record<string, string>; state: ReadonlyArray<Entry> }>
        assert.deepStrictEqual(out!.state, [], `a checkpoint was made past the deny: ${JSON.stringify(out!.results)}`)
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a kill rule on /mem/episodic/** is not slipped past through /mem/working/../episodic", () =>
    withStore(
      Effect.gen(function* () {
        const policies = yield* judgedBy([
          {
            name: "no-episodes",
            match: { device: "vfs", arguments: { path: { glob: "/mem/episodic{,/**}" } } },
            decision: "kill"
          },
          {
            name: "no-episodes-2",
            match: { device: "vfs", arguments: { path: { glob: "/mem/episodic" } } },
            decision: "kill"
          },
          { name: "rest", decision: "allow" }
        ])
        const exit = yield* Effect.exit(
          inVfs(
            (vfs) =>
              Effect.gen(function* () {
                yield* put(vfs, "/mem/working/../episodic", "exfiltrated")
                yield* put(vfs, "/mem//episodic", "exfiltrated")
                return "the process went on"
              }),
            { policies, name: "spy" }
          )
        )
        const store = yield* KeyValueStore.KeyValueStore
        const keys = yield* store.keys
        assert.deepStrictEqual(
          keys.filter((k) => k.includes("episodic")),
          [],
          `episodes were written past the kill rule (${Exit.isSuccess(exit) ? exit.value : "ended"})`
        )
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a kill rule on the vfs device ends the caller on a kernel-state call; a deny reads back typed", () =>
    withStore(
      Effect.gen(function* () {
        const kill = yield* judgedBy([
          { name: "no-vfs", match: { device: "vfs", call: "write" }, decision: "kill" },
          { name: "rest", decision: "allow" }
        ])
        const ended = yield* Effect.flip(
          inVfs(
            (vfs) =>
              Effect.gen(function* () {
                yield* put(vfs, "/mem/working", "x")
                return "went on"
              }),
            { policies: kill }
          )
        )
        assert.deepStrictEqual((ended as TestKernel.ProcessEnded).reason, Process.policy("no-vfs"))
        const deny = yield* judgedBy([
          { name: "no-vfs-read", match: { device: "vfs", call: "read" }, decision: "deny" },
          { name: "rest", decision: "allow" }
        ])
        yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              yield* put(vfs, "/mem/working", "secret")
              assert.strictEqual(yield* reasonOf(cat(vfs, "/mem/working/1")), "denied")
              assert.strictEqual(yield* reasonOf(ls(vfs, "/state")), "denied")
              assert.strictEqual(
                yield* reasonOf(
                  Sys.readAll(vfs, [
                    { op: "list", path: "/mem/working" },
                    { op: "list", path: "/" }
                  ])
                ),
                "denied"
              )
            }),
          { policies: deny }
        )
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a result rule screens kernel-state reads: a secret segment is withheld by read, search and list", () =>
    withStore(
      Effect.gen(function* () {
        const policies = yield* judgedBy([
          { name: "no-secrets", match: { device: "vfs", result: { regex: "(?i)hunter2" } }, decision: "deny" },
          { name: "rest", decision: "allow" }
        ])
        yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              yield* put(vfs, "/mem/working", "the password is HUNTER2")
              yield* put(vfs, "/state")
              const seen: Array<string> = []
              for (const effect of [
                cat(vfs, "/mem/working/1"),
                cat(vfs, "/state/1"),
                Sys.readAll(vfs, [{ op: "read", path: "/mem/working/./1" }]),
                Sys.read(vfs, { op: "search", path: "/mem/working", query: "password", k: 5 })
              ]) {
                const exit = yield* Effect.exit(effect)
                seen.push(JSON.stringify(Exit.isSuccess(exit) ? exit.value : "refused"))
              }
              for (const text of seen) assert.notMatch(text, /hunter2/i, text)
            }),
          { policies }
        )
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("/policy is read-only by every spelling; a mutated read changes nothing", () =>
    withStore(
      Effect.gen(function* () {
        const policies = yield* judgedBy([
          { name: "no-store", match: { device: "kv" }, decision: "deny" },
          { name: "rest", decision: "allow" }
        ])
        yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              const out: Array<string> = []
              for (const path of ["/policy", "/policy/1", "/policy/../policy/1", "//policy/1/", "/policy/2"]) {
                out.push(yield* reasonOf(put(vfs, path, [{ name: "all", decision: "allow" }])))
                out.push(yield* reasonOf(rm(vfs, path)))
                out.push(yield* reasonOf(restore(vfs, path)))
              }
              for (const r of out) assert.strictEqual(r, "read-only", out.join(","))
              const rules = yield* cat<Array<{ name: string; decision: string }>>(vfs, "/policy/1")
              rules[0]!.decision = "allow"
              rules.length = 0
              assert.deepStrictEqual(
                (yield* cat<Array<{ name: string }>>(vfs, "/policy/1")).map((r) => r.name),
                ["no-store", "rest"]
              )
            }),
          { policies }
        )
        // the deny still holds for the kv device
        yield* inVfs(
          (_vfs, grant) =>
            Effect.gen(function* () {
              const kv = yield* Sys.open(grant.devices.kv!)
              assert.strictEqual(yield* reasonOf(Sys.read(kv, { op: "keys" })), "denied")
            }),
          { policies }
        )
      }).pipe(Effect.provide(layer()))
    )
  )
})

// =====================================================================================================================
// whose state: namespaces, handles passed on
// =====================================================================================================================

/** A child image that writes a lesson and an episode of its own, and logs what it saw before. */
const writer = (name: string, tag: string) =>
  Process.make<CapRef>(name, (vfs) =>
    Effect.gen(function* () {
      const lessons = yield* ls(vfs, "/mem/semantic")
      const episodes = yield* ls(vfs, "/mem/episodic")
      yield* put(vfs, "/mem/semantic", `lesson of ${tag}`)
      yield* put(vfs, "/mem/episodic", `episode of ${tag}`)
      yield* report({ tag, saw: [...lessons.map((e) => e.text), ...episodes.map((e) => e.name)] })
    })
  )

describe("VfsHostile: long-term namespaces", () => {
  it.effect(
    "children named `semantic`, `episodic`, `..`, `.`, ``, `%2F`, `a/b` see nothing of each other or the parent",
    () =>
      withStore(
        Effect.gen(function* () {
          const names = ["semantic", "episodic", "..", ".", "", "%2F", "b/c", "b%2Fc", "vfs", "a"]
          yield* inVfs(
            (vfs, grant) =>
              Effect.gen(function* () {
                yield* put(vfs, "/mem/semantic", "the parent's own lesson")
                yield* put(vfs, "/mem/episodic", "the parent's own episode")
                for (const name of names) yield* spawnAndWait(writer(name, `child ${JSON.stringify(name)}`), vfs)
                // and a grandchild under `b`, next to a child named `b/c`
                const spawn = yield* Sys.derive(grant.spawn, ["spawn"])
                const copy = yield* Sys.derive(vfs, ["read", "write"])
                const b = yield* Sys.spawn(
                  Process.make<CapRef>("b", (own) =>
                    Effect.catch(spawnAndWait(writer("c", "grandchild b>c"), own), (e) =>
                      report({ tag: "b failed", saw: [String(e)] })
                    )
                  ),
                  { args: copy, caps: [copy, spawn] }
                )
                yield* Sys.monitor(b.cap)
                yield* Sys.recv()
                const lessons = yield* ls(vfs, "/mem/semantic")
                const episodes = yield* ls(vfs, "/mem/episodic")
                yield* report({ tag: "parent", saw: [...lessons.map((e) => e.text), ...episodes.map((e) => e.name)] })
              }),
            { name: "a" }
          )
          const seen = (yield* reports) as Array<{ tag: string; saw: Array<string> }>
          for (const { tag, saw } of seen) {
            if (tag === "parent") assert.deepStrictEqual(saw, ["the parent's own lesson", "1"], tag)
            else assert.deepStrictEqual(saw, [], `${tag} saw ${JSON.stringify(saw)}`)
          }
          assert.strictEqual(seen.length, names.length + 2)
        }).pipe(Effect.provide(layer()))
      )
  )

  it.effect("roots named `a/b`, `a%2Fb`, `a/b/semantic` and `a` do not see root `a`'s child `b`, nor it theirs", () =>
    withStore(
      Effect.gen(function* () {
        yield* alone(
          (vfs) =>
            Effect.gen(function* () {
              yield* spawnAndWait(writer("b", "child a>b"), vfs)
            }),
          { name: "a" }
        )
        for (const name of ["a/b", "a%2Fb", "a/b/semantic", "a", "a/", "a\u2215b", "A"]) {
          const out = yield* alone(
            (vfs) =>
              Effect.gen(function* () {
                const lessons = yield* ls(vfs, "/mem/semantic")
                const episodes = yield* ls(vfs, "/mem/episodic")
                const found = yield* Sys.read<ReadonlyArray<unknown>>(vfs, {
                  op: "search",
                  path: "/mem/semantic",
                  query: "lesson of child",
                  k: 100
                })
                return [...lessons, ...episodes, ...found]
              }),
            { name }
          )
          assert.deepStrictEqual(out, [], `root ${JSON.stringify(name)} saw the child's entries`)
        }
      })
    )
  )

  it.effect(
    "a process whose name is not well-formed UTF-16 gets typed errors from the store mounts, never a defect",
    () =>
      withStore(
        Effect.gen(function* () {
          const names = ["\uD800", "x".repeat(255) + "\u{1F600}"]
          yield* inVfs((vfs) =>
            Effect.gen(function* () {
              for (const name of names) {
                const down = yield* spawnAndWait(
                  Process.make<CapRef>(name, (own) =>
                    Effect.gen(function* () {
                      const out: Array<string> = []
                      out.push(yield* reasonOf(ls(own, "/mem/semantic")))
                      out.push(yield* reasonOf(put(own, "/mem/semantic", "a lesson")))
                      out.push(yield* reasonOf(ls(own, "/mem/episodic")))
                      out.push(yield* reasonOf(put(own, "/mem/working", "still works")))
                      yield* report(out)
                    })
                  ),
                  vfs
                )
                yield* report({ down })
              }
            })
          )
          const out = yield* reports
          assert.strictEqual(out.length, 2 * names.length, `a child did not get to report: ${JSON.stringify(out)}`)
          for (const entry of out) {
            const text = JSON.stringify(entry)
            assert.notInclude(text, "not a typed error", text.slice(0, 300))
            assert.notInclude(text, "Fault", text.slice(0, 300))
          }
        }).pipe(Effect.provide(layer()))
      )
  )
})

describe("VfsHostile: a handle passed on shows the caller its own state only", () => {
  it.effect("a child with the parent's handle cannot read, restore or remove the parent's checkpoints or memory", () =>
    withStore(
      Effect.gen(function* () {
        yield* inVfs((vfs) =>
          Effect.gen(function* () {
            yield* put(vfs, "/mem/working", "parent secret")
            yield* put(vfs, "/state", "parent checkpoint")
            yield* spawnAndWait(
              Process.make<CapRef>("child", (handle) =>
                Effect.gen(function* () {
                  const out: Array<string> = []
                  out.push(yield* reasonOf(cat(handle, "/state/1")))
                  out.push(yield* reasonOf(restore(handle, "/state/1")))
                  out.push(yield* reasonOf(rm(handle, "/state/1")))
                  out.push(yield* reasonOf(rm(handle, "/mem/working/1")))
                  out.push(yield* reasonOf(cat(handle, "/mem/working/1")))
                  // its own checkpoint, through the parent's handle
                  yield* put(handle, "/mem/working", "child note")
                  yield* put(handle, "/state", "child checkpoint")
                  const found = yield* Sys.read<ReadonlyArray<{ body: unknown }>>(handle, {
                    op: "search",
                    path: "/mem/working",
                    query: "parent secret",
                    k: 100
                  })
                  yield* report({ out, found: found.map((s) => s.body) })
                })
              ),
              vfs
            )
            const state = yield* ls(vfs, "/state")
            const working = yield* Sys.workingSet()
            yield* report({ state: state.map((e) => e.label), working: working.map((s) => s.body) })
          })
        )
        const [child, parent] = (yield* reports) as [
          { out: Array<string>; found: Array<unknown> },
          { state: Array<string>; working: Array<unknown> }
        ]
        assert.deepStrictEqual(child.out, ["not-found", "not-found", "not-found", "not-found", "not-found"])
        assert.notInclude(JSON.stringify(child.found), "parent secret")
        assert.deepStrictEqual(parent.state, ["parent checkpoint"])
        assert.deepStrictEqual(parent.working, ["parent secret"])
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a revoked handle, a read-only copy and a tools-narrowed copy: refused, nothing changes", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          yield* put(vfs, "/mem/working", "kept")
          const copy = yield* Sys.derive(vfs, ["read", "write"])
          const readOnly = yield* Sys.derive(vfs, ["read"])
          const narrowed = yield* Sys.attenuate(vfs, { tools: { write: {}, restore: {}, list: {} } })
          yield* Sys.revoke(copy)
          const out: Array<string> = []
          out.push(yield* reasonOf(put(copy, "/mem/working", "x")))
          out.push(yield* reasonOf(put(readOnly, "/state")))
          out.push(yield* reasonOf(Sys.read(readOnly, { op: "write", path: "/state" })))
          out.push(yield* reasonOf(Sys.read(readOnly, { op: "restore", path: "/state/1" })))
          out.push(yield* reasonOf(Sys.write(narrowed, { tool: "write", op: "write", path: "/state" })))
          out.push(yield* reasonOf(Sys.read(narrowed, { tool: "list", op: "list", path: "/" })))
          assert.deepStrictEqual(out.slice(2), ["invalid-request", "invalid-request", "out-of-scope", "out-of-scope"])
          for (const r of out) assert.notInclude(r, "succeeded", out.join(","))
          assert.deepStrictEqual(yield* ls(vfs, "/state"), [])
          assert.deepStrictEqual(
            (yield* Sys.workingSet()).map((s) => s.body),
            ["kept"]
          )
        })
      )
    )
  )
})

// =====================================================================================================================
// checkpoints and restore
// =====================================================================================================================

describe("VfsHostile: checkpoints and restore", () => {
  it.effect("restore gives back no budget, no message already received, no revoked cap", () =>
    withStore(
      alone(
        (vfs) =>
          Effect.gen(function* () {
            const me = yield* Sys.selfCap()
            const spare = yield* Sys.derive(vfs, ["read"])
            yield* Sys.send(me, { _tag: "Hello" })
            yield* put(vfs, "/state", "with a message waiting")
            const before = yield* Sys.budget()
            yield* Sys.recv()
            yield* Sys.revoke(spare)
            const capsBefore = (yield* Sys.caps()).length
            yield* restore(vfs, "/state/1")
            const after = yield* Sys.budget()
            assert.strictEqual(
              after.remaining.toolCalls,
              before.remaining.toolCalls - 1,
              "the restore cost one call, and nothing came back"
            )
            assert.strictEqual(after.used.toolCalls, before.used.toolCalls + 1)
            assert.strictEqual((yield* Sys.caps()).length, capsBefore, "no cap came back")
            assert.notStrictEqual(yield* reasonOf(ls(spare, "/")), `succeeded: []`)
            assert.include(["revoked", "CapabilityError"], yield* reasonOf(ls(spare, "/")))
            // the message is not in the mailbox again
            yield* put(vfs, "/state", "after")
            const snap = yield* cat<{ mailbox: ReadonlyArray<unknown> }>(vfs, "/state/2")
            assert.deepStrictEqual(snap.mailbox, [], "the message received is not waiting again")
          }),
        { quota: { toolCalls: 50 } }
      )
    )
  )

  it.effect(
    "checkpoint spam: never more than checkpointsMax kept, each write past it refused, kernel memory bounded",
    () =>
      withStore(
        alone(
          (vfs) =>
            Effect.gen(function* () {
              yield* put(vfs, "/mem/working", "k".repeat(3000))
              let refused = 0
              for (let i = 0; i < 60; i++) {
                const r = yield* reasonOf(put(vfs, "/state", "l".repeat(10_000)))
                if (r === "limit") refused++
              }
              const listed = yield* ls(vfs, "/state")
              assert.strictEqual(listed.length, 4)
              assert.strictEqual(refused, 56)
              for (const e of listed) assert.isAtMost(String(e.label).length, 256, "labels are bounded")
            }),
          { vfs: { checkpointsMax: 4 } }
        )
      )
  )

  it.effect("a forged checkpoint cannot be written or restored; a changed read of one is not what restore uses", () =>
    withStore(
      alone((vfs) =>
        Effect.gen(function* () {
          yield* put(vfs, "/mem/working", "real")
          const forged = { abi: 1, memory: { working: [{ id: 1, body: "forged", tokens: 0, pinned: true }], swap: [] } }
          const out: Array<string> = []
          out.push(yield* reasonOf(put(vfs, "/state/1", forged)))
          out.push(yield* reasonOf(put(vfs, "/state/99", forged)))
          out.push(yield* reasonOf(restore(vfs, "/state")))
          out.push(yield* reasonOf(restore(vfs, "/mem/working/1")))
          out.push(yield* reasonOf(Sys.write(vfs, { op: "restore", path: "/state/1", data: forged })))
          for (const r of out) assert.notInclude(r, "succeeded", out.join(","))
          yield* put(vfs, "/state", forged)
          const snap = yield* cat<{ memory: { working: Array<{ body: unknown }> } }>(vfs, "/state/1")
          snap.memory.working[0]!.body = "forged"
          yield* restore(vfs, "/state/1")
          assert.deepStrictEqual(
            (yield* Sys.workingSet()).map((s) => s.body),
            ["real"]
          )
        })
      )
    )
  )

  it.effect("a pinned segment grown after its write (through a value read back) cannot sit past the mem quota", () =>
    withStore(
      Effect.gen(function* () {
        const exit = yield* Effect.exit(
          alone(
            (vfs) =>
              Effect.gen(function* () {
                yield* put(vfs, "/mem/working", { note: "small" }, { pin: true })
                const read = yield* cat<{ body: { note: string } }>(vfs, "/mem/working/1")
                read.body.note = "z".repeat(8_000)
                yield* put(vfs, "/state")
                yield* restore(vfs, "/state/1")
                const ws = yield* Sys.workingSet()
                const tokens = ws.reduce((n, s) => n + s.tokens, 0)
                const chars = ws.reduce((n, s) => n + (JSON.stringify(s.body) ?? "").length, 0)
                return { tokens, chars }
              }),
            { quota: { mem: 200 } }
          )
        )
        // the value read back was a copy: the memory (and so the checkpoint) still holds the small body
        if (Exit.isSuccess(exit)) {
          assert.isAtMost(
            exit.value.chars,
            200,
            `the process holds ${exit.value.chars} chars of pinned memory counted as ${exit.value.tokens} tokens under a mem quota of 200`
          )
        }
      })
    )
  )

  it.effect("another process cannot stop a checkpoint by sending a message JSON cannot carry", () =>
    withStore(
      Effect.gen(function* () {
        yield* inVfs((vfs) =>
          Effect.gen(function* () {
            const me = yield* Sys.selfCap()
            const meCopy = yield* Sys.derive(me, ["send"])
            yield* spawnAndWait(
              Process.make<CapRef>("sender", (target) => Sys.send(target, { bytes: new Uint8Array([1, 2, 3]) })),
              meCopy
            ).pipe(Effect.catch(() => Effect.void))
            yield* report(yield* reasonOf(put(vfs, "/state", "mine")))
          })
        )
        const [r] = yield* reports
        assert.include(String(r), "succeeded", `the victim's checkpoint was refused: ${String(r)}`)
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect(
    "a memory body with a throwing or two-faced getter (Sys.remember): read once at the call, so the checkpoint holds what was counted",
    () =>
      withStore(
        alone((vfs) =>
          Effect.gen(function* () {
            let n = 0
            yield* Sys.remember({
              get two() {
                n++
                if (n > 1) return 1n
                return "safe"
              }
            })
            assert.strictEqual(yield* reasonOf(put(vfs, "/state")), 'succeeded: {"path":"/state/1"}')
            const refused = yield* reasonOf(
              Sys.remember({
                get boom(): string {
                  throw new Error("boom")
                }
              })
            )
            assert.strictEqual(refused, "ArgumentError", "a body the kernel cannot read is refused at remember")
            assert.strictEqual(yield* reasonOf(put(vfs, "/state")), 'succeeded: {"path":"/state/2"}')
            assert.strictEqual(n, 1, "the getter was read once")
          })
        )
      )
  )

  it.effect(
    "a memory write whose text says little (a short content beside a long field) is counted for what it holds",
    () =>
      withStore(
        Effect.gen(function* () {
          const ended = yield* Effect.flip(
            alone(
              (vfs) => put(vfs, "/mem/working", { content: "short", big: "x".repeat(4_000) }, { tokens: 1, pin: true }),
              {
                quota: { mem: 100 }
              }
            )
          )
          const reason = (ended as { readonly reason?: unknown }).reason
          assert.deepStrictEqual(reason, Process.quota("mem"), "1000 tokens pinned under mem 100")
        })
      )
  )
})

// =====================================================================================================================
// metering: reserved first, never refunded, never overshot
// =====================================================================================================================

describe("VfsHostile: metering", () => {
  it.effect("a readAll mixing kernel-state and store calls past the toolCalls quota: none runs, none is charged", () =>
    withStore(
      Effect.gen(function* () {
        const ended = yield* Effect.flip(
          inVfs(
            (vfs) =>
              Effect.gen(function* () {
                yield* Sys.readAll(vfs, [
                  { op: "list", path: "/mem/working" },
                  { op: "list", path: "/mem/episodic" },
                  { op: "list", path: "/state" },
                  { op: "search", path: "/mem/semantic", query: "x" },
                  { op: "list", path: "/policy" },
                  { op: "list", path: "/mem/episodic" }
                ])
                return "the batch ran"
              }),
            { quota: { toolCalls: 3 } }
          )
        )
        assert.deepStrictEqual((ended as TestKernel.ProcessEnded).reason, Process.quota("toolCalls"))
        const kernel = yield* Kernel.Kernel
        const charges = (yield* kernel.trace()).filter((e) => e._tag === "Charge")
        assert.deepStrictEqual(charges, [], "nothing was charged: nothing ran")
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a readAll of exactly the quota runs; the next call ends the process; used never passes the quota", () =>
    withStore(
      Effect.gen(function* () {
        let used = -1
        const ended = yield* Effect.flip(
          inVfs(
            (vfs) =>
              Effect.gen(function* () {
                yield* Sys.readAll(vfs, [
                  { op: "list", path: "/mem/working" },
                  { op: "list", path: "/mem/episodic" },
                  { op: "list", path: "/state" }
                ])
                used = (yield* Sys.budget()).used.toolCalls
                yield* ls(vfs, "/")
                return "went on"
              }),
            { quota: { toolCalls: 3 } }
          )
        )
        assert.strictEqual(used, 3)
        assert.deepStrictEqual((ended as TestKernel.ProcessEnded).reason, Process.quota("toolCalls"))
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("failed calls are metered too: a process with 5 toolCalls cannot make 200 store scans that fail", () =>
    withStore(
      Effect.gen(function* () {
        // the store holds many entries of another namespace: each failing call scans them all
        const store = yield* KeyValueStore.KeyValueStore
        for (let i = 1; i <= 200; i++)
          yield* store.set(`vfs/other/episodic/${i}`, JSON.stringify({ seq: i, at: 0, data: i }))
        let made = 0
        const exit = yield* Effect.exit(
          inVfs(
            (vfs) =>
              Effect.gen(function* () {
                for (let i = 0; i < 200; i++) {
                  yield* Effect.exit(cat(vfs, `/mem/episodic/${i + 1}`))
                  yield* Effect.exit(Sys.read(vfs, { op: "search", path: "/mem/episodic/1", query: "x" }))
                  made++
                }
                return (yield* Sys.budget()).used.toolCalls
              }),
            { quota: { toolCalls: 5 }, name: "scanner" }
          )
        )
        assert.isTrue(
          Exit.isFailure(exit),
          `${made * 2} failing calls (each a scan of the whole store) cost ${Exit.isSuccess(exit) ? exit.value : "?"} toolCalls`
        )
        // ended at its quota (the loop may spin on for a while, every syscall after the end a no-op)
        const kernel = yield* Kernel.Kernel
        const charged = (yield* kernel.trace()).filter((e) => e._tag === "Charge")
        assert.isAtMost(charged.length, 5, `${made} iterations; charges past the quota`)
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a VFS call after the process's wall quota passed (its timer not yet run) is refused", () =>
    withStore(
      Effect.gen(function* () {
        let after = "not reached"
        const fiber = yield* Effect.forkChild(
          Effect.exit(
            inVfs(
              (vfs) =>
                Effect.gen(function* () {
                  yield* put(vfs, "/mem/working", "before")
                  // the kernel cannot interrupt this: the process is past its wall time when it calls again
                  yield* Effect.uninterruptible(
                    Effect.gen(function* () {
                      yield* Effect.sleep("2 seconds")
                      after = yield* reasonOf(put(vfs, "/state", "after the wall"))
                    })
                  )
                  return after
                }),
              { quota: { wall: "1 second" }, stallTimeout: "5 seconds" }
            )
          )
        )
        yield* TestClock.adjust("3 seconds")
        const exit = yield* Fiber.join(fiber)
        assert.notStrictEqual(after, "not reached", "the call past the wall was made")
        assert.notInclude(after, "succeeded", `a call past the wall quota ran: ${after}`)
        assert.isTrue(Exit.isFailure(exit))
      }).pipe(Effect.provide(layer()))
    )
  )

  it.effect("a fiber forked by a process that then ends: its VFS calls run nothing and charge nothing", () =>
    withStore(
      Effect.gen(function* () {
        const results: Array<string> = []
        let done = false
        yield* inVfs(
          (vfs) =>
            Effect.gen(function* () {
              yield* Effect.forkDetach(
                Effect.gen(function* () {
                  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
                  results.push(yield* reasonOf(put(vfs, "/mem/episodic", "from beyond")))
                  results.push(yield* reasonOf(put(vfs, "/state", "from beyond")))
                  results.push(yield* reasonOf(put(vfs, "/mem/working", "from beyond")))
                }).pipe(Effect.onExit(() => Effect.sync(() => void (done = true))))
              )
              yield* put(vfs, "/mem/working", "in life")
            }),
          { name: "ghost" }
        )
        for (let i = 0; i < 200 && !done; i++) yield* Effect.yieldNow
        assert.isTrue(done, "the forked fiber ran to its end")
        const kernel = yield* Kernel.Kernel
        const trace = yield* kernel.trace()
        const exitAt = trace.findIndex((e) => e._tag === "Exit")
        const chargesAfter = trace.slice(exitAt + 1).filter((e) => e._tag === "Charge")
        assert.deepStrictEqual(chargesAfter, [], "a call after the exit was charged")
        for (const r of results) assert.notInclude(r, "succeeded", results.join(","))
        const store = yield* KeyValueStore.KeyValueStore
        assert.deepStrictEqual(
          (yield* store.keys).filter((k) => k.includes("episodic")),
          [],
          "the dead process wrote to the store"
        )
      }).pipe(Effect.provide(layer()))
    )
  )
})

// =====================================================================================================================
// the journal
// =====================================================================================================================

describe("VfsHostile: journal", () => {
  const worker = (episode: string) =>
    Process.make<Kernel.BootGrant>("worker", (grant) =>
      Effect.gen(function* () {
        const vfs = yield* Sys.open(grant.devices.vfs!)
        yield* Sys.write(vfs, { op: "write", path: "/mem/working", data: "first" })
        yield* Sys.write(vfs, { op: "write", path: "/state", data: "one" })
        const batch = yield* Sys.readAll(vfs, [
          { op: "list", path: "/mem/working" },
          { op: "list", path: "/mem/episodic" },
          { op: "read", path: "/state/1" },
          { op: "search", path: "/mem/semantic", query: "units" }
        ])
        yield* Sys.write(vfs, { op: "write", path: "/mem/episodic", data: episode })
        yield* Sys.write(vfs, { op: "write", path: "/mem/semantic", data: "check the units" })
        yield* Sys.write(vfs, { op: "restore", path: "/state/1" })
        const episodes = yield* Sys.read(vfs, { op: "list", path: "/mem/episodic" })
        const found = yield* Sys.read(vfs, { op: "search", path: "/mem/episodic", query: episode })
        yield* Sys.log("info", JSON.stringify({ batch, episodes, found, budget: yield* Sys.budget() }))
      })
    )

  const session = (image: Process.Image<Kernel.BootGrant>, mode: Journal.Mode, store: Journal.JournalStore) =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(image, { grant: ["vfs"], quota: { toolCalls: 100 } })
      const reason = yield* kernel.waitExit(pid)
      return { reason, trace: yield* kernel.trace() }
    }).pipe(
      Effect.provide(TestKernel.layer({ drivers: [Vfs.driver()], journal: mode })),
      Effect.provide(Layer.succeed(Journal.JournalStoreService)(store)),
      withStore
    )

  it.effect("record, then replay on an empty store: the same trace, batch and budget included", () =>
    Effect.gen(function* () {
      const records = Journal.makeMemoryStore()
      const recorded = yield* session(worker("sunny"), "record", records)
      assert.deepStrictEqual(recorded.reason, Process.normal)
      const replayed = yield* session(worker("sunny"), "replay", Journal.makeMemoryStore(records.records))
      assert.deepStrictEqual(replayed.reason, Process.normal)
      assert.deepStrictEqual(replayed.trace, recorded.trace)
    }).pipe(Effect.provide(TestClock.layer()))
  )

  it.effect("a replay whose program writes another episode is refused, and is never served the recorded answers", () =>
    Effect.gen(function* () {
      const records = Journal.makeMemoryStore()
      yield* session(worker("sunny"), "record", records)
      const replayed = yield* session(worker("stormy"), "replay", Journal.makeMemoryStore(records.records))
      assert.notDeepEqual(replayed.reason, Process.normal, "the diverged replay ran to its end")
      const log = replayed.trace.find((e) => e._tag === "Log")
      assert.isUndefined(log, "the diverged program got the recorded results")
    }).pipe(Effect.provide(TestClock.layer()))
  )
})
