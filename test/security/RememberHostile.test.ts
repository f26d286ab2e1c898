/**
 * Hostile images against context memory (`Sys.remember`, `Sys.workingSet`, `Sys.recall`, the VFS's `/mem/working`
 * and `/state`, `kernel.restore`): bodies built so that what the kernel keeps is more than what it counted, image code
 * that gets its hands on the kernel's own copy (and grows it after it was counted), bodies that turn a syscall into a
 * defect, bodies that make the copy itself unbounded, and snapshots that carry their own token counts.
 *
 * The guarantee (README, "Context memory"): a body is copied when it is remembered, every segment handed back is
 * frozen or a copy, so nothing the process does later grows what was counted; a segment counts at least its size in
 * bytes over 8; pinned segments alone over the `mem` quota end the process with `Quota { mem }`.
 *
 * Every test asserts the SECURE outcome: a test that fails is an attack that worked.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { KeyValueStore } from "effect/persistence"
import { type Capability, Kernel, Process, Snapshot, Sys, Vfs } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import {
  assertArgumentError,
  attempt,
  endOf as endOfChild,
  patchBuiltins,
  pollute,
  run,
  show,
  tagOf
} from "./harness.ts"
import { put, restore as restoreCheckpoint } from "../vfsRequests.ts"

type CapRef = Capability.CapRef

// ---------------------------------------------------------------------------------------------------------------------
// helpers

const big = (n: number) => "x".repeat(n)

/** Runs `body` as a child process with a `mem` quota (100 unless said); how it ended. */
const endOf = (body: () => Effect.Effect<unknown, unknown, Sys.Sys>, mem = 100) => endOfChild(body, { mem })

const quotaMem = Process.quota("mem")

/** Applies `patch` (which returns its undo) only while `effect` runs; undone whatever happens. */
const patchedDuring = <A, E, R>(patch: () => () => void, effect: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const undo = patch()
    return Effect.ensuring(effect, Effect.sync(undo))
  })

/**
 * Bytes a value holds, as the README counts them (strings at two bytes a char, buffers by their bytes, bigints by
 * their magnitude), found by walking every own property (symbol keys and non-enumerable ones too) and every Map and
 * Set entry. Prototypes are not walked (a class's prototype is its code).
 */
const bytesHeld = (root: unknown): number => {
  const seen = new Set<unknown>()
  let bytes = 0
  const visit = (v: unknown): void => {
    if (typeof v === "string") {
      bytes += 2 * v.length
      return
    }
    if (typeof v === "bigint") {
      bytes += Math.ceil((v < 0n ? -v : v).toString(16).length / 2)
      return
    }
    if (typeof v !== "object" || v === null || seen.has(v)) return
    seen.add(v)
    if (ArrayBuffer.isView(v)) {
      bytes += v.byteLength
      return
    }
    if (v instanceof ArrayBuffer) {
      bytes += v.byteLength
      return
    }
    if (v instanceof Map) {
      for (const [k, x] of v) {
        visit(k)
        visit(x)
      }
    }
    if (v instanceof Set) for (const x of v) visit(x)
    for (const key of Reflect.ownKeys(v)) {
      if (typeof key === "string") bytes += 2 * key.length
      const descriptor = Object.getOwnPropertyDescriptor(v, key)
      if (descriptor !== undefined && "value" in descriptor) visit(descriptor.value)
    }
  }
  visit(root)
  return bytes
}

/**
 * Reads the working set and names every segment that holds more than it is counted for (`tokens` below its bytes
 * over 8, or not a finite number ≥ 1): what an attack that worked leaves behind.
 */
const audit = Effect.map(Sys.workingSet(), (segments) => {
  const found: Array<string> = []
  for (const s of segments) {
    // the default pager's marker (`{ _tag: "PagedOut", ids, count }`) is the kernel's own, counted by the pager
    if ((s.body as { readonly _tag?: unknown } | null)?._tag === "PagedOut") continue
    const bytes = bytesHeld(s.body)
    if (!Number.isFinite(s.tokens) || s.tokens < 1 || s.tokens * 8 < bytes) {
      found.push(`segment ${s.id}: ${bytes} bytes counted as ${s.tokens} tokens`)
    }
  }
  return found
})

/**
 * Remembers `body` pinned as 1 token in a child under `mem` 100 and audits what was kept. Secure: the process ends
 * with `Quota { mem }` (the body was counted) or it ends normally and nothing kept holds more than it was counted for
 * (what was not counted was not kept).
 */
const assertCounted = (label: string, body: () => unknown) =>
  Effect.gen(function* () {
    const found: Array<string> = []
    const reason = yield* endOf(() =>
      Effect.gen(function* () {
        const r = yield* attempt(Sys.remember(body(), { tokens: 1, pin: true }))
        if (r !== "succeeded") found.push(`remember: ${show(r)}`)
        found.push(...(yield* audit))
      })
    )
    const secure =
      show(reason) === show(quotaMem) ||
      (tagOf(reason) === "Normal" && found.every((f) => !f.startsWith("segment") && !f.includes("died")))
    assert.isTrue(secure, `${label}: ended ${show(reason)}; ${found.join("; ")}`)
  })

/** A value nested `depth` arrays deep around `leaf`. */
const nest = (depth: number, leaf: unknown): unknown => {
  let v = leaf
  for (let i = 0; i < depth; i++) v = [v]
  return v
}

const forgedSnapshot = (working: ReadonlyArray<unknown>, mem = 100) => ({
  abi: Snapshot.abi,
  name: "forged",
  memory: { working, swap: [] },
  mailbox: [],
  budget: { tokens: null, toolCalls: null, usd: null, mem, mailbox: 8, wallMs: null },
  priority: 0,
  deadlineInMs: null
})

const vfsLayer = () => TestKernel.layer({ drivers: [Vfs.driver()] })

/** Runs `body` as a child with a `mem` quota and a VFS handle of its own; how it ended. */
const endOfWithVfs = (body: (vfs: CapRef) => Effect.Effect<unknown, unknown, Sys.Sys>, mem = 100) =>
  TestKernel.runProcess(
    (grant) =>
      Effect.gen(function* () {
        const vfs = yield* Sys.open(grant.devices.vfs!)
        const copy = yield* Sys.derive(vfs, ["read", "write"])
        const { cap } = yield* Sys.spawn(
          Process.make<CapRef>("rememberer", (handle) => Effect.asVoid(body(handle))),
          { args: copy, caps: [copy], quota: { mem } }
        )
        return yield* Sys.waitpid(cap)
      }),
    { grant: ["vfs"] }
  ).pipe(Effect.provide(vfsLayer()), Effect.provide(KeyValueStore.layerMemory))

// =====================================================================================================================
// A. bodies whose size the count does not see
// =====================================================================================================================

describe("RememberHostile: what is kept is what is counted", () => {
  it.effect("a huge bigint beside a short content (2 MB of magnitude) is counted for its size", () =>
    assertCounted("bigint of 16 M bits", () => ({ content: "x", n: 1n << 16_000_000n }))
  )

  it.effect("a Uint8Array given a Float64Array prototype is not stored eight times larger than it was counted", () =>
    assertCounted("Uint8Array(500) as a Float64Array", () => ({
      content: "x",
      data: Object.setPrototypeOf(new Uint8Array(500), Float64Array.prototype) as unknown
    }))
  )

  it.effect("a Uint8Array given a Float64Array prototype, alone: the kept view is never larger than counted", () =>
    assertCounted("Uint8Array(4000) as a Float64Array", () =>
      Object.setPrototypeOf(new Uint8Array(4000), Float64Array.prototype)
    )
  )

  it.effect("long strings held where text says little: Map keys, Sets, buffers, typed arrays, sparse arrays", () =>
    Effect.gen(function* () {
      const s = big(2_000_000)
      const bodies: ReadonlyArray<readonly [string, () => unknown]> = [
        ["a Map key", () => ({ content: "x", m: new Map([[s, 1]]) })],
        ["a Set value", () => ({ content: "x", s: new Set([s]) })],
        ["an ArrayBuffer", () => ({ content: "x", b: new ArrayBuffer(2_000_000) })],
        ["a Uint16Array", () => ({ content: "x", u: new Uint16Array(1_000_000) })],
        ["a sparse array of length 1e6", () => ({ content: "x", a: new Array(1_000_000) })],
        ["an Error message", () => new Error(s)]
      ]
      for (const [label, body] of bodies) yield* assertCounted(label, body)
    })
  )

  it.effect("class instances: non-enumerable and symbol-keyed own properties are counted (or not kept)", () =>
    Effect.gen(function* () {
      class Note {
        readonly title = "t"
      }
      const s = big(2_000_000)
      yield* assertCounted("a non-enumerable own property", () =>
        Object.defineProperty(new Note(), "hidden", { value: s, enumerable: false })
      )
      yield* assertCounted("a symbol-keyed own property", () => Object.assign(new Note(), { [Symbol("k")]: s }))
      yield* assertCounted("many own properties", () => {
        const n = new Note() as unknown as Record<string, string>
        for (let i = 0; i < 5_000; i++) n[`p${i}`] = "v"
        return n
      })
      // on plain objects the copy takes enumerable string keys only: the rest is not kept, so not counted either
      yield* assertCounted("a plain object's non-enumerable and symbol keys", () =>
        Object.defineProperty({ [Symbol("k")]: s }, "hidden", { value: s, enumerable: false })
      )
    })
  )

  it.effect("a proxy that answers differently on each read is kept as it answered once", () => {
    const seen: Array<unknown> = []
    let reads = 0
    return Effect.gen(function* () {
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          const two = new Proxy<Record<string, unknown>>(
            {},
            {
              ownKeys: () => ["a"],
              getOwnPropertyDescriptor: () => ({ value: "", enumerable: true, configurable: true, writable: true }),
              get: () => (reads++ === 0 ? "small" : big(20_000_000))
            }
          )
          yield* Sys.remember(two, { tokens: 1, pin: true })
          for (const s of yield* Sys.workingSet()) seen.push(s.body)
          seen.push(...(yield* audit))
        })
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(seen, [{ a: "small" }])
    })
  })

  it.effect("a hole read through a getter on Array.prototype is counted for what the getter gave", () =>
    Effect.gen(function* () {
      const s = big(2_000_000)
      const target: Array<unknown> = [, "b"]
      const reason = yield* endOf(() =>
        patchedDuring(
          () =>
            pollute(Array.prototype, "0", {
              get(this: unknown) {
                return this === target ? s : undefined
              },
              set() {
                // swallow every index-0 assignment
              }
            }),
          Sys.remember(target, { tokens: 1, pin: true })
        )
      )
      assert.deepStrictEqual(reason, quotaMem, `ended ${show(reason)}`)
    })
  )

  it.effect("tokens near Number.MAX_VALUE do not wash the pinned total out of the count", () =>
    Effect.gen(function* () {
      const found: Array<string> = []
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          // 70 tokens pinned: fits under mem 100
          yield* Sys.remember(big(280), { pin: true })
          // 1e300 unpinned absorbs the 70 in floating point; paging it out leaves the running total at ~0
          yield* Sys.remember("b", { tokens: 1e300 })
          // 70 more pinned: 140 pinned under mem 100, yet the running total says 75
          yield* Sys.remember(big(280), { pin: true })
          const pinned = (yield* Sys.workingSet()).filter((s) => s.pinned).reduce((n, s) => n + s.tokens, 0)
          found.push(`pinned ${pinned} tokens under mem 100`)
        })
      )
      assert.deepStrictEqual(reason, quotaMem, `ended ${show(reason)}: ${found.join("; ")}`)
    })
  )

  it.effect("a swapped segment pinned back over the quota ends the process", () =>
    Effect.gen(function* () {
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          const id = yield* Sys.remember(big(2_000_000))
          yield* Sys.pin(id)
        })
      )
      assert.deepStrictEqual(reason, quotaMem, `ended ${show(reason)}`)
    })
  )

  it.effect("swap is bounded too: a process under mem 100 cannot make the kernel keep megabytes unpinned", () =>
    Effect.gen(function* () {
      const found: Array<number> = []
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          for (let i = 0; i < 4; i++) yield* Sys.remember(`alpha ${i} ${big(1_000_000)}`)
          const back = yield* Sys.recall("alpha", 10)
          found.push(back.reduce((n, s) => n + s.tokens, 0))
        })
      )
      const kept = found[0] ?? 0
      assert.isTrue(
        show(reason) === show(quotaMem) || kept <= 100,
        `ended ${show(reason)}; the kernel still held ${kept} tokens for a process of mem 100`
      )
    })
  )

  it.effect("a VFS write of 2 MB claimed as 1 token, pinned, under mem 100 is counted", () =>
    Effect.gen(function* () {
      const found: Array<string> = []
      const reason = yield* endOfWithVfs((vfs) =>
        Effect.gen(function* () {
          const r = yield* attempt(put(vfs, "/mem/working", big(2_000_000), { pin: true, tokens: 1 }))
          if (r !== "succeeded") found.push(`write: ${show(r).slice(0, 120)}`)
          found.push(...(yield* audit))
        })
      )
      assert.isTrue(
        show(reason) === show(quotaMem) || (tagOf(reason) === "Normal" && !found.some((f) => f.startsWith("segment"))),
        `ended ${show(reason)}; ${found.join("; ")}`
      )
    })
  )
})

// =====================================================================================================================
// B. image code that gets the kernel's own copy, and grows it after it was counted
// =====================================================================================================================

describe("RememberHostile: nothing the process does later grows what was counted", () => {
  /** Remembers `body` pinned under mem 100, lets `grow` act, then audits. */
  const growAfter = (remember: () => Effect.Effect<unknown, unknown, Sys.Sys>, grow: () => string | undefined) =>
    Effect.gen(function* () {
      const found: Array<string> = []
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          yield* remember()
          const how = grow()
          if (how !== undefined) found.push(how)
          found.push(...(yield* audit))
        })
      )
      return { reason, found }
    })

  const assertUngrown = (result: { readonly reason: unknown; readonly found: ReadonlyArray<string> }) => {
    assert.deepStrictEqual(result.reason, Process.normal, `ended ${show(result.reason)}`)
    assert.isFalse(
      result.found.some((f) => f.startsWith("segment")),
      `the kept segment grew after it was counted: ${result.found.join("; ")}`
    )
  }

  it.effect("a class's toJSON never runs on the kernel's copy (it would keep it and grow it later)", () => {
    let stolen: Record<string, unknown> | undefined
    class Leak {
      readonly note = "short"
      toJSON() {
        stolen = this as unknown as Record<string, unknown>
        return "short"
      }
    }
    return Effect.map(
      growAfter(
        () => Sys.remember(new Leak(), { pin: true }),
        () => {
          if (stolen === undefined) return undefined
          stolen.grown = big(20_000_000)
          return "toJSON was given an object, and 20 M chars were added to it"
        }
      ),
      assertUngrown
    )
  })

  it.effect("a `content` getter on a class prototype never runs on the kernel's copy", () => {
    let stolen: Record<string, unknown> | undefined
    class Leak {
      readonly note = "short"
      get content(): string {
        stolen = this as unknown as Record<string, unknown>
        return "short"
      }
    }
    return Effect.map(
      growAfter(
        () => Sys.remember(new Leak(), { pin: true }),
        () => {
          if (stolen === undefined) return undefined
          stolen.grown = big(20_000_000)
          return "the content getter was given an object, and 20 M chars were added to it"
        }
      ),
      assertUngrown
    )
  })

  it.effect("Object.prototype.toJSON (installed by image code) never receives the kernel's Map", () => {
    let stolen: Map<string, string> | undefined
    return Effect.map(
      growAfter(
        () =>
          patchedDuring(
            () =>
              pollute(Object.prototype, "toJSON", {
                writable: true,
                value: function (this: unknown) {
                  if (this instanceof Map) stolen = this as Map<string, string>
                  return this instanceof Map ? {} : this
                }
              }),
            Sys.remember(new Map([["k", "v"]]), { pin: true })
          ),
        () => {
          if (stolen === undefined) return undefined
          stolen.set("grown", big(20_000_000))
          return "Object.prototype.toJSON got a Map, and 20 M chars were set in it"
        }
      ),
      assertUngrown
    )
  })

  it.effect(
    "Object.prototype.toJSON installed after remember never receives the kernel's Map when it pages out",
    () => {
      let stolen: Map<string, string> | undefined
      const found: Array<string> = []
      return Effect.gen(function* () {
        const reason = yield* endOf(() =>
          Effect.gen(function* () {
            yield* Sys.remember(new Map([["alpha", "v"]]))
            // past the high watermark: the Map pages out, and its text is read for the recall index
            yield* patchedDuring(
              () =>
                pollute(Object.prototype, "toJSON", {
                  writable: true,
                  value: function (this: unknown) {
                    if (this instanceof Map) stolen = this as Map<string, string>
                    return this instanceof Map ? { alpha: "v" } : this
                  }
                }),
              Sys.remember("z".repeat(320))
            )
            if (stolen !== undefined) {
              stolen.set("grown", big(20_000_000))
              found.push("the index got the swapped Map, and 20 M chars were set in it")
            }
            yield* Sys.recall("alpha", 1)
            found.push(...(yield* audit))
          })
        )
        assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
        assert.isFalse(
          found.some((f) => f.startsWith("segment")),
          `the swapped segment grew after it was counted: ${found.join("; ")}`
        )
      })
    }
  )

  it.effect("an Object.prototype `content` getter (installed by image code) never receives the kernel's copy", () => {
    let stolen: object | undefined
    return Effect.map(
      growAfter(
        () =>
          patchedDuring(
            () =>
              pollute(Object.prototype, "content", {
                get(this: unknown) {
                  if (this instanceof Date || this instanceof Map) stolen ??= this
                  return undefined
                }
              }),
            Sys.remember(new Map([["k", "v"]]), { pin: true })
          ),
        () => {
          if (!(stolen instanceof Map)) return undefined
          stolen.set("grown", big(20_000_000))
          return "the Object.prototype getter got a Map, and 20 M chars were set in it"
        }
      ),
      assertUngrown
    )
  })

  it.effect("a patched JSON.stringify never receives the kernel's copy of a body holding a Date", () => {
    let stolen: Record<string, unknown> | undefined
    const original = JSON.stringify
    return Effect.map(
      growAfter(
        () =>
          patchedDuring(
            () => {
              JSON.stringify = function (this: unknown, value: unknown, ...rest: Array<never>) {
                if (typeof value === "object" && value !== null && "when" in value) {
                  stolen = value as Record<string, unknown>
                }
                return Reflect.apply(original, this, [value, ...rest]) as string
              } as typeof JSON.stringify
              return () => {
                JSON.stringify = original
              }
            },
            Sys.remember({ when: new Date(0), note: "short" }, { pin: true })
          ),
        () => {
          if (stolen === undefined) return undefined
          try {
            stolen.grown = big(20_000_000)
            return "JSON.stringify got the body, and 20 M chars were added to it"
          } catch {
            return "JSON.stringify got the body, frozen"
          }
        }
      ),
      assertUngrown
    )
  })

  it.effect("Map, Set, Array methods, Object.freeze and iterators wrapped by image code never see the kept Map", () => {
    const found: Array<string> = []
    return Effect.gen(function* () {
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          const original = new Map([["k", "v"]])
          let seen: ReadonlyArray<object> = []
          yield* patchedDuring(
            () => {
              const recorder = patchBuiltins()
              return () => {
                recorder.restore()
                seen = recorder.seen()
              }
            },
            Effect.andThen(Sys.remember(original, { pin: true }), Sys.workingSet())
          )
          for (const o of seen) {
            if (o instanceof Map && o !== original && o.get("k") === "v") {
              o.set("grown", big(20_000_000))
              found.push("a wrapped built-in saw a Map holding k, and 20 M chars were set in it")
            }
          }
          found.push(...(yield* audit))
        })
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.isFalse(
        found.some((f) => f.startsWith("segment")),
        `the kept Map grew after it was counted: ${found.join("; ")}`
      )
    })
  })

  // An instance's prototype is its type, kept shared (Option, Exit, Schema classes and errors need theirs); what sits
  // on a prototype is the sender's, never copied into the segment, never in its text, and not what is counted.
  it.effect(
    "an object whose prototype holds data: the segment's own state is a copy; the prototype's is not its",
    () => {
      const out: Array<unknown> = []
      return Effect.gen(function* () {
        const reason = yield* endOf(() =>
          Effect.gen(function* () {
            const holder = { notes: ["short"] }
            const body = Object.create(holder) as { own?: string }
            body.own = "mine"
            yield* Sys.remember(body, { pin: true })
            body.own = big(20_000_000)
            holder.notes.push(big(20_000_000))
            const [segment] = yield* Sys.workingSet()
            out.push(Object.keys(segment!.body as object), (segment!.body as { own: string }).own, segment!.tokens)
          })
        )
        assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
        assert.deepStrictEqual(out.slice(0, 2), [["own"], "mine"], "own state copied at the call")
        assert.isBelow(out[2] as number, 10, "the prototype's data is not the segment's")
      })
    }
  )

  it.effect("a message whose prototype is a plain object: the receiver's own state is a copy", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const body = Object.create({ _tag: "T", describe: () => "t" }) as { n: number; _tag: string }
        body.n = 1
        yield* Sys.send(me, body)
        body.n = 2
        const message = yield* Sys.recv<{ readonly n: number; readonly _tag: string }>()
        assert.strictEqual(message.body.n, 1, "the sender's later change is not the receiver's")
        assert.strictEqual(message.body._tag, "T", "the type (prototype) is kept")
        assert.notStrictEqual(message.body, body)
      })
    )
  )

  it.effect("a pre-frozen body holding a Map: the Map handed back is a copy, growing it grows nothing kept", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          yield* Sys.remember(Object.freeze({ m: new Map([["k", "v"]]) }), { pin: true })
          const [first] = yield* Sys.workingSet()
          ;(first!.body as { m: Map<string, string> }).m.set("grown", big(20_000_000))
          try {
            ;(first!.body as Record<string, unknown>).grown = big(20_000_000)
          } catch {
            // frozen: fine
          }
          seen.push(...(yield* audit))
          const [again] = yield* Sys.workingSet()
          seen.push((again!.body as { m: Map<string, string> }).m.size)
        })
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(seen, [1])
    })
  )

  it.effect("a Map nested in a plain body paged back in by recall is a copy too", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          yield* Sys.remember({ note: "alpha", m: new Map([["k", "v"]]) })
          yield* Sys.remember("z".repeat(320))
          const [found] = yield* Sys.recall("alpha", 1)
          const body = found!.body as { m: Map<string, string>; note: string }
          body.m.set("grown", big(20_000_000))
          try {
            ;(body as Record<string, unknown>).grown = big(20_000_000)
          } catch {
            // frozen: fine
          }
          seen.push(...(yield* audit))
          const kept = (yield* Sys.workingSet()).find((s) => s.id === found!.id)
          seen.push((kept!.body as { m: Map<string, string> }).m.size)
        })
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(seen, [1])
    })
  )

  it.effect("a CapRef in a body is handed back frozen (it grants nothing, and cannot be grown)", () =>
    Effect.gen(function* () {
      const seen: Array<unknown> = []
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          const me = yield* Sys.selfCap()
          yield* Sys.remember({ me, note: "n" }, { pin: true })
          const [segment] = yield* Sys.workingSet()
          const ref = (segment!.body as { me: CapRef }).me
          seen.push(ref === me, Object.isFrozen(ref), Object.isFrozen(segment!.body))
          try {
            ;(ref as unknown as Record<string, unknown>).grown = big(20_000_000)
          } catch {
            // frozen
          }
          seen.push(...(yield* audit))
        })
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(seen, [true, true, true])
    })
  )

  it.effect(
    "Object.freeze and Object.isFrozen replaced by image code: plain bodies are still frozen, Maps copied",
    () =>
      Effect.gen(function* () {
        const isFrozen = Object.isFrozen
        const seen: Array<unknown> = []
        const reason = yield* endOf(() =>
          patchedDuring(
            () => {
              const freeze = Object.freeze
              const frozen = Object.isFrozen
              Object.freeze = (<T>(o: T) => o) as typeof Object.freeze
              Object.isFrozen = () => true
              return () => {
                Object.freeze = freeze
                Object.isFrozen = frozen
              }
            },
            Effect.gen(function* () {
              yield* Sys.remember({ notes: ["a"] }, { pin: true })
              yield* Sys.remember(new Map([["k", "v"]]), { pin: true })
              const [plain, map] = yield* Sys.workingSet()
              seen.push(isFrozen(plain!.body), isFrozen((plain!.body as { notes: Array<string> }).notes))
              ;(map!.body as Map<string, string>).set("grown", big(20_000_000))
              seen.push(...(yield* audit))
            })
          )
        )
        assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
        assert.deepStrictEqual(seen, [true, true])
      })
  )
})

// =====================================================================================================================
// C. bodies that turn a memory syscall into a defect
// =====================================================================================================================

describe("RememberHostile: a body the kernel cannot measure is a typed error, never a defect", () => {
  const assertTyped = (label: string, r: unknown) =>
    assert.isTrue(
      r === "succeeded" || tagOf(r) === "ArgumentError",
      `${label}: ${typeof r === "string" ? r : show(r)} (expected success or an ArgumentError)`
    )

  it.effect("a null-prototype object holding a bigint (JSON throws, String throws) is no defect", () =>
    run(() =>
      Effect.gen(function* () {
        const body = Object.assign(Object.create(null) as object, { n: 1n })
        assertTyped("null prototype with a bigint", yield* attempt(Sys.remember(body)))
      })
    )
  )

  it.effect("class instances whose toJSON, toString or content getter throw are no defect", () =>
    run(() =>
      Effect.gen(function* () {
        class Thrower {
          readonly note = "n"
          toJSON(): never {
            throw new Error("toJSON")
          }
          toString(): never {
            throw new Error("toString")
          }
        }
        class ContentThrower {
          readonly note = "n"
          get content(): never {
            throw new Error("content")
          }
        }
        assertTyped("toJSON and toString throw", yield* attempt(Sys.remember(new Thrower())))
        assertTyped("content getter throws", yield* attempt(Sys.remember(new ContentThrower())))
      })
    )
  )

  it.effect("a body whose text cannot be read when it pages out is no defect of a later remember", () =>
    run(
      () =>
        Effect.gen(function* () {
          let reads = 0
          class Flaky {
            readonly note = "n"
            get content(): string {
              if (++reads > 2) throw new Error("read a third time")
              return "ok"
            }
          }
          const first = yield* attempt(Sys.remember(new Flaky()))
          assertTyped("the first remember", first)
          // past the high watermark: the Flaky segment pages out and its text is read for the index
          const second = yield* attempt(Sys.remember("z".repeat(400)))
          assertTyped("the remember that pages it out", second)
        }),
      { quota: { mem: 100 } }
    )
  )

  it.effect("a content getter that answers a string, then a string-like object, is no defect (nor NaN tokens)", () =>
    Effect.gen(function* () {
      const found: Array<string> = []
      const reason = yield* endOf(() =>
        Effect.gen(function* () {
          let reads = 0
          class TwoFaced {
            readonly note = "n"
            get content(): unknown {
              // textOf reads `content` twice: a string the first time, then a string-like that is not one
              return reads++ % 2 === 0 ? "ok" : { length: 1 }
            }
          }
          const r = yield* attempt(Sys.remember(new TwoFaced(), { pin: true }))
          if (r !== "succeeded" && tagOf(r) !== "ArgumentError") found.push(`remember: ${show(r)}`)
          found.push(...(yield* audit))
        })
      )
      assert.deepStrictEqual(reason, Process.normal, `ended ${show(reason)}`)
      assert.deepStrictEqual(found, [])
    })
  )

  it.effect("recall and remember with odd arguments are typed errors or results, never defects", () =>
    run(() =>
      Effect.gen(function* () {
        yield* Sys.remember("alpha beta")
        const recalls: ReadonlyArray<readonly [unknown, unknown]> = [
          ["alpha", -1],
          ["alpha", 1.5],
          ["alpha", Number.NaN],
          ["alpha", Infinity],
          ["alpha", "3"],
          ["alpha", 2 ** 53],
          ["alpha", Number.MAX_VALUE],
          [{ toString: () => "alpha" }, 1],
          [undefined, 1],
          [big(1_000_000), 1],
          ["", 0]
        ]
        for (const [query, k] of recalls) {
          const r = yield* attempt(Sys.recall(query as string, k as number))
          assertTyped(`recall(${show(query).slice(0, 20)}, ${String(k)})`, r)
        }
        const throwing = {
          get tokens(): number {
            throw new Error("tokens")
          }
        }
        const options: ReadonlyArray<unknown> = [
          { tokens: -1 },
          { tokens: Number.NaN },
          { tokens: Infinity },
          { tokens: "5" },
          { pin: "yes" },
          throwing,
          new Proxy(
            {},
            {
              get() {
                throw new Error("trap")
              }
            }
          ),
          [1]
        ]
        for (const o of options) {
          const r = yield* attempt(Sys.remember("note", o as never))
          assertArgumentError(r, "remember")
        }
      })
    )
  )
})

// =====================================================================================================================
// D. the copy itself is bounded by the quota it is counted against
// =====================================================================================================================

describe("RememberHostile: the copy's work is bounded by the mem quota", () => {
  it.effect("a DAG of 31 small arrays (2^30 leaves by path) is not walked leaf by leaf under mem 100", () =>
    Effect.gen(function* () {
      let reads = 0
      const leaf = {
        get v() {
          if (++reads > 20_000) throw new Error("walked 20 000 leaves")
          return 0
        }
      }
      let node: unknown = leaf
      for (let i = 0; i < 30; i++) node = [node, node]
      const reason = yield* endOf(() => Effect.ignore(Sys.remember(node)))
      assert.isTrue(tagOf(reason) === "Normal" || show(reason) === show(quotaMem), `ended ${show(reason)}`)
      assert.isAtMost(reads, 2_000, `the kernel read ${reads} leaves of a body that may hold 800 bytes`)
    })
  )

  it.effect("an array claiming 2^32-1 elements is not walked element by element under mem 100", () =>
    Effect.gen(function* () {
      let reads = 0
      const huge = new Proxy([] as Array<unknown>, {
        get(target, key) {
          if (key === "length") return 2 ** 32 - 1
          if (typeof key === "string" && /^\d+$/.test(key)) {
            if (++reads > 20_000) throw new Error("walked 20 000 elements")
            return undefined
          }
          return Reflect.get(target, key)
        }
      })
      const reason = yield* endOf(() => Effect.ignore(Sys.remember(huge)))
      assert.isTrue(tagOf(reason) === "Normal" || show(reason) === show(quotaMem), `ended ${show(reason)}`)
      assert.isAtMost(reads, 2_000, `the kernel read ${reads} elements of a body that may hold 800 bytes`)
    })
  )
})

// =====================================================================================================================
// E. snapshots and checkpoints carry their own token counts
// =====================================================================================================================

describe("RememberHostile: a restored segment is counted as remember counts it", () => {
  /** Restores `snapshot` on a fresh kernel; how the restored process ended, or the restore's error. */
  const restored = (snapshot: unknown, body: Effect.Effect<unknown, unknown, Sys.Sys>) =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const image = Process.make("resumed", () => Effect.asVoid(body))
      const pid = yield* Effect.result(kernel.restore(snapshot, image))
      if (pid._tag === "Failure") return pid.failure as unknown
      return yield* kernel.waitExit(pid.success)
    }).pipe(Effect.provide(TestKernel.layer()))

  it.effect("kernel.restore of pinned segments over the snapshot's mem quota does not leave them running", () =>
    Effect.gen(function* () {
      const found: Array<string> = []
      const end = yield* restored(
        forgedSnapshot([{ id: 1, body: big(40_000), tokens: 1, pinned: true }]),
        Effect.gen(function* () {
          const set = yield* Sys.workingSet()
          found.push(`running with ${set.reduce((n, s) => n + s.tokens, 0)} pinned tokens under mem 100`)
        })
      )
      assert.isTrue(
        show(end) === show(quotaMem) || tagOf(end) === "SnapshotError",
        `ended ${show(end)}; ${found.join("; ")}`
      )
    })
  )

  it.effect("kernel.restore of a segment nested past the copy's depth keeps no claimed count", () =>
    Effect.gen(function* () {
      const found: Array<string> = []
      const end = yield* restored(
        forgedSnapshot([{ id: 1, body: nest(70, big(40_000)), tokens: 1, pinned: true }]),
        Effect.gen(function* () {
          // a small remember runs the check: the deep segment counts as the 1 token it claimed
          yield* Sys.remember("tiny")
          found.push(...(yield* audit))
        })
      )
      assert.isTrue(
        show(end) === show(quotaMem) || tagOf(end) === "SnapshotError",
        `ended ${show(end)}; ${found.join("; ")}`
      )
    })
  )

  it.effect("kernel.restore of a segment claiming negative tokens gives no credit to pin more", () =>
    Effect.gen(function* () {
      const end = yield* restored(
        forgedSnapshot([{ id: 1, body: nest(70, "x"), tokens: -1e9, pinned: true }]),
        Sys.remember(big(40_000), { pin: true })
      )
      assert.isTrue(show(end) === show(quotaMem) || tagOf(end) === "SnapshotError", `ended ${show(end)}`)
    })
  )

  it.effect("a checkpoint written through a patched JSON.stringify cannot carry forged counts into restore", () =>
    Effect.gen(function* () {
      const original = JSON.stringify
      const reason = yield* endOfWithVfs((vfs) =>
        Effect.gen(function* () {
          yield* Sys.remember("an honest note")
          yield* patchedDuring(
            () => {
              JSON.stringify = function (this: unknown, value: unknown, ...rest: Array<never>) {
                if (typeof value === "object" && value !== null && "abi" in value && "memory" in value) {
                  const snapshot = JSON.parse(Reflect.apply(original, this, [value]) as string) as {
                    memory: { working: Array<unknown> }
                  }
                  // a segment the restore cannot copy (too deep), claiming a billion tokens less than nothing
                  snapshot.memory.working = [{ id: 1, body: nest(70, "x"), tokens: -1e9, pinned: true }]
                  return Reflect.apply(original, this, [snapshot]) as string
                }
                return Reflect.apply(original, this, [value, ...rest]) as string
              } as typeof JSON.stringify
              return () => {
                JSON.stringify = original
              }
            },
            put(vfs, "/state")
          )
          yield* restoreCheckpoint(vfs, "/state/1")
          // 10 000 tokens pinned under mem 100
          yield* Sys.remember(big(40_000), { pin: true })
        })
      )
      assert.deepStrictEqual(reason, quotaMem, `ended ${show(reason)}`)
    })
  )

  it.effect("a checkpoint restored through a patched JSON.parse keeps no live object of the process", () =>
    Effect.gen(function* () {
      const original = JSON.parse
      const found: Array<string> = []
      const live = { notes: [] as Array<string>, f: () => 0 }
      const reason = yield* endOfWithVfs((vfs) =>
        Effect.gen(function* () {
          yield* Sys.remember("MARK-live")
          yield* put(vfs, "/state")
          yield* patchedDuring(
            () => {
              JSON.parse = function (this: unknown, text: string, ...rest: Array<never>) {
                const value = Reflect.apply(original, this, [text, ...rest]) as Record<string, unknown>
                if (typeof text === "string" && text.includes("MARK-live") && "memory" in value) {
                  return { ...value, memory: { working: [{ id: 1, body: live, tokens: 1, pinned: true }], swap: [] } }
                }
                return value
              } as typeof JSON.parse
              return () => {
                JSON.parse = original
              }
            },
            restoreCheckpoint(vfs, "/state/1")
          )
          // the kernel's segment is the process's object: grown after it was counted
          live.notes.push(big(2_000_000))
          yield* Sys.remember("tiny")
          found.push(...(yield* audit))
        })
      )
      assert.isTrue(
        show(reason) === show(quotaMem) || (tagOf(reason) === "Normal" && found.length === 0),
        `ended ${show(reason)}; ${found.join("; ")}`
      )
    })
  )
})
