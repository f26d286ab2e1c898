/**
 * Image code runs in the kernel's realm and may pollute it: getters and setters on `Object.prototype` or
 * `Array.prototype`, replaced `Object.keys`, `Map.prototype.set`, iterators. None of it may change what the kernel
 * copied from a process (a cost, a quota) or show one process what another sends.
 *
 * Message bodies are copied whole at send: class instances too (own state copied over the same prototype).
 */
import { assert, describe, it } from "@effect/vitest"
import { Data, Effect, Equal, Exit, Option, Schema } from "effect"
import { Process, Sys } from "effect-agent-os"
import { assertArgumentError, outcome, pollute, run } from "./harness.ts"

const SECRET = "pw-7f3a9c"

/** Whether `value` is, or holds within a few levels, the secret. */
const holds = (value: unknown, depth = 0): boolean => {
  if (value === SECRET) return true
  if (depth > 3 || typeof value !== "object" || value === null) return false
  try {
    if (value instanceof Map) return [...value].some((entry) => holds(entry, depth + 1))
    if (value instanceof Set) return [...value].some((item) => holds(item, depth + 1))
    return Reflect.ownKeys(value).some((key) => {
      const d = Reflect.getOwnPropertyDescriptor(value, key)
      return d !== undefined && "value" in d && holds(d.value, depth + 1)
    })
  } catch {
    return false
  }
}

const apply = Reflect.apply
const define = Reflect.defineProperty

/** Appends to `seen` by definition: an index setter under test (or a spied `push`) is never run by the spy itself. */
/** Where a spy first saw the secret (for the failure message). */
let where: string | undefined
let busy = false

const note = (seen: Array<unknown>, value: unknown) => {
  if (where === undefined && !busy) {
    busy = true
    if (holds(value)) where = new Error().stack
    busy = false
  }
  define(seen, seen.length, { value, writable: true, enumerable: true, configurable: true })
}

/**
 * A setter that records the value, then defines it as an own property of the object written to (as the write would
 * have without the setter): the realm keeps working, the spy sees every write that reaches a prototype.
 */
const recordInto = (seen: Array<unknown>, key: PropertyKey) =>
  function (this: object, value: unknown) {
    note(seen, value)
    define(this, key, { value, writable: true, enumerable: true, configurable: true })
  }

/** Replaces `target[key]` by a spy that records its arguments and `this`, then calls the original. */
const spyOn = (target: object, key: PropertyKey, seen: Array<unknown>): (() => void) => {
  const original = Reflect.get(target, key) as (...args: Array<unknown>) => unknown
  return pollute(target, key, {
    writable: true,
    value: function (this: unknown, ...args: Array<unknown>) {
      // recorded by index writes: the spy may be on Array.prototype.push itself
      note(seen, this)
      for (let i = 0; i < args.length; i++) note(seen, args[i])
      return apply(original, this, args)
    }
  })
}

class Point {
  readonly label: string
  constructor(label: string) {
    this.label = label
  }
}

/**
 * The secret in every kind of container. Built before any spy is in place: what the sender's own code does with
 * built-ins is its own business; only what the kernel does with the body is under test.
 */
const payload = {
  secret: SECRET,
  list: [SECRET, SECRET, SECRET],
  map: new Map([["k", SECRET]]),
  set: new Set([SECRET]),
  point: new Point(SECRET),
  error: new Error(SECRET)
}

/** A child that sends its parent the payload, then ends. */
const talker = Process.make("talker", () =>
  Effect.gen(function* () {
    const parent = (yield* Sys.recv()).caps[0]!
    yield* Sys.send(parent, payload)
  })
)

/** Spawns the talker, lets it send, receives its body. */
const listen = Effect.gen(function* () {
  const { cap } = yield* Sys.spawn(talker)
  yield* Sys.send(cap, null, { caps: [yield* Sys.selfCap()] })
  yield* Sys.waitpid(cap)
  return (yield* Sys.recv()).body as Record<string, unknown>
})

describe("Object.prototype accessors", () => {
  it.effect("a usd getter on Object.prototype does not refund a charge of tokens", () =>
    run(() =>
      Effect.gen(function* () {
        // undefined on the caller's own cost objects; -1000 on any other object, such as the kernel's copy of one
        const mine = new WeakSet<object>()
        const restore = pollute(Object.prototype, "usd", {
          get(this: object) {
            return mine.has(this) ? undefined : -1000
          },
          set() {}
        })
        const cost = (tokens: number) => {
          const c = { tokens }
          mine.add(c)
          return c
        }
        try {
          yield* Sys.charge(cost(1))
          yield* Sys.charge(cost(1))
        } finally {
          restore()
        }
        const budget = yield* Sys.budget()
        assert.strictEqual(budget.used.usd, 0)
        assert.strictEqual(budget.used.tokens, 2)
      })
    )
  )

  it.effect("a setter on Object.prototype never sees (or swallows) another process's body", () =>
    run(() =>
      Effect.gen(function* () {
        const seen: Array<unknown> = []
        const restores = ["secret", "label", "message", "list", "k"].map((key) =>
          pollute(Object.prototype, key, { get: () => undefined, set: recordInto(seen, key) })
        )
        let body: Record<string, unknown>
        try {
          body = yield* listen
        } finally {
          restores.forEach((restore) => restore())
        }
        assert.isFalse(
          seen.some((v) => holds(v)),
          "a setter saw the secret"
        )
        assert.isTrue(Object.hasOwn(body, "secret"))
        assert.strictEqual(body.secret, SECRET)
        assert.strictEqual((body.point as Point).label, SECRET)
      })
    )
  )

  it.effect(
    "index setters on Array.prototype never see another process's messages on their way through the kernel",
    () =>
      run(() =>
        Effect.gen(function* () {
          const seen: Array<unknown> = []
          const restores = Array.from({ length: 64 }, (_, i) =>
            pollute(Array.prototype, String(i), { get: () => undefined, set: recordInto(seen, String(i)) })
          )
          let body: Record<string, unknown>
          try {
            body = yield* listen
          } finally {
            restores.forEach((restore) => restore())
          }
          assert.isFalse(
            seen.some((v) => holds(v)),
            "an index setter saw the secret"
          )
          assert.deepStrictEqual(body.list, [SECRET, SECRET, SECRET])
        })
      )
  )
})

describe("replaced built-ins", () => {
  it.effect("Object.keys, Reflect.ownKeys, Map/Set methods and iterators, push: never shown another's body", () =>
    run(() =>
      Effect.gen(function* () {
        const seen: Array<unknown> = []
        const mapIterator = Object.getPrototypeOf(new Map().entries()) as object
        const setIterator = Object.getPrototypeOf(new Set().values()) as object
        const arrayIterator = Object.getPrototypeOf([][Symbol.iterator]()) as object
        const restores = [
          spyOn(Object, "keys", seen),
          spyOn(Object, "create", seen),
          spyOn(Object, "getPrototypeOf", seen),
          spyOn(Reflect, "ownKeys", seen),
          spyOn(Reflect, "getOwnPropertyDescriptor", seen),
          spyOn(Reflect, "defineProperty", seen),
          spyOn(Object, "defineProperty", seen),
          spyOn(Map.prototype, "set", seen),
          spyOn(Map.prototype, "entries", seen),
          spyOn(Map.prototype, Symbol.iterator, seen),
          spyOn(Set.prototype, "add", seen),
          spyOn(Set.prototype, "values", seen),
          spyOn(Set.prototype, Symbol.iterator, seen),
          spyOn(mapIterator, "next", seen),
          spyOn(setIterator, "next", seen),
          spyOn(arrayIterator, "next", seen),
          spyOn(Array.prototype, "push", seen),
          spyOn(Array.prototype, "includes", seen),
          spyOn(Array.prototype, "slice", seen)
        ]
        let body: Record<string, unknown>
        try {
          body = yield* listen
        } finally {
          restores.reverse().forEach((restore) => restore())
        }
        assert.isFalse(
          seen.some((v) => holds(v)),
          `a replaced built-in saw the secret at ${where}`
        )
        assert.strictEqual((body.map as Map<string, string>).get("k"), SECRET)
        assert.isTrue((body.set as Set<string>).has(SECRET))
      })
    )
  )
})

class Person extends Schema.Class<Person>("Person")({ name: Schema.String, tags: Schema.Array(Schema.String) }) {}
class Oops extends Data.TaggedError("Oops")<{ readonly detail: string }> {}

describe("class instances in bodies are copied", () => {
  it.effect("Option, Exit, a Schema class, a tagged error and an Error arrive equal, as copies", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const tags = ["a"]
        const sent = {
          some: Option.some({ n: 1 }),
          none: Option.none(),
          ok: Exit.succeed(1),
          failed: Exit.fail("no"),
          person: new Person({ name: "Ada", tags }),
          oops: new Oops({ detail: "d" }),
          error: new Error("plain")
        }
        yield* Sys.send(me, sent)
        const got = (yield* Sys.recv<typeof sent>()).body
        assert.notStrictEqual(got.some, sent.some)
        assert.isTrue(Option.isSome(got.some))
        assert.isTrue(Equal.equals(got.some, Option.some({ n: 1 })) || Option.getOrThrow(got.some).n === 1)
        assert.isTrue(Option.isNone(got.none))
        assert.isTrue(Exit.isSuccess(got.ok))
        assert.isTrue(Equal.equals(got.ok, Exit.succeed(1)))
        assert.isTrue(Exit.isFailure(got.failed))
        assert.instanceOf(got.person, Person)
        assert.notStrictEqual(got.person, sent.person)
        assert.notStrictEqual(got.person.tags, tags, "nested state is copied too")
        assert.deepStrictEqual(got.person.tags, ["a"])
        assert.strictEqual(got.person.name, "Ada")
        assert.instanceOf(got.oops, Oops)
        assert.strictEqual(got.oops._tag, "Oops")
        assert.strictEqual(got.oops.detail, "d")
        assert.instanceOf(got.error, Error)
        assert.strictEqual(got.error.message, "plain")
        // the copy is usable as the value it was
        assert.strictEqual(
          Option.getOrElse(
            Option.map(got.some, (v) => v.n + 1),
            () => 0
          ),
          2
        )
      })
    )
  )

  it.effect("an own getter on an instance is read once, into a data property", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        let reads = 0
        const point = new Point("p")
        Object.defineProperty(point, "live", { enumerable: true, get: () => ++reads })
        yield* Sys.send(me, point)
        const got = (yield* Sys.recv<Point & { live: number }>()).body
        assert.strictEqual(reads, 1)
        assert.strictEqual(got.live, 1)
        assert.strictEqual(got.live, 1)
        assert.strictEqual(reads, 1)
      })
    )
  )

  it.effect("an ArrayBuffer is copied", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const buffer = new Uint8Array([1, 2, 3]).buffer
        yield* Sys.send(me, buffer)
        new Uint8Array(buffer)[0] = 9
        const got = (yield* Sys.recv<ArrayBuffer>()).body
        assert.notStrictEqual(got, buffer)
        assert.deepStrictEqual([...new Uint8Array(got)], [1, 2, 3])
      })
    )
  )

  for (const [name, make] of [
    ["a Promise", () => Promise.resolve(SECRET)],
    ["a WeakMap", () => new WeakMap()],
    ["a RegExp", () => /x/g],
    ["a SharedArrayBuffer", () => new SharedArrayBuffer(8)],
    ["a Boolean object", () => new Boolean(true)],
    ["a fake Map (Map.prototype without its slot)", () => Object.create(Map.prototype)],
    ["a fake Date", () => Object.create(Date.prototype)]
  ] as const) {
    it.effect(`${name} in a body is an ArgumentError of send`, () =>
      run(() =>
        Effect.gen(function* () {
          const me = yield* Sys.selfCap()
          assertArgumentError(yield* outcome(Sys.send(me, { inside: make() })), "send")
        })
      )
    )
  }
})
