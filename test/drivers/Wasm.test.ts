import { assert, describe, it } from "@effect/vitest"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { Duration, Effect, Exit, Fiber } from "effect"
import { Device, Wasm } from "effect-agent-os"

const { DeviceError } = Device
type DeviceError = Device.DeviceError

const call = { pid: 1, op: 1, priority: 0, deadline: undefined }
/** These tests run real threads: one that hangs fails after 10 s rather than vitest's 60 s. */
const timeoutMs = 10_000

// A tiny WebAssembly encoder, enough for the modules below: every count and size fits one LEB128 byte.
const I32 = 0x7f
const I64 = 0x7e
const F64 = 0x7c

const byte = (n: number) => {
  assert.isBelow(n, 128, "one LEB128 byte")
  return n
}
const vector = (items: ReadonlyArray<ReadonlyArray<number>>) => [byte(items.length), ...items.flat()]
const section = (id: number, content: ReadonlyArray<number>) => [id, byte(content.length), ...content]
const text = (s: string) => [byte(s.length), ...new TextEncoder().encode(s)]
/** A function body: its size, then no locals, the instructions and `end`. */
const body = (content: ReadonlyArray<number>) => [byte(content.length), ...content]

interface Func {
  readonly name: string
  readonly params: ReadonlyArray<number>
  readonly results: ReadonlyArray<number>
  /** The body's instructions, without the closing `end`. */
  readonly code: ReadonlyArray<number>
}

/** A module of exported functions, with a mutable exported i32 global `counter`, and optionally an imported one. */
const wasm = (functions: ReadonlyArray<Func>, options?: { readonly importing?: boolean }): Uint8Array => {
  const imported = options?.importing === true ? 1 : 0
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(
      1,
      vector(functions.map((f) => [0x60, ...vector(f.params.map((p) => [p])), ...vector(f.results.map((r) => [r]))]))
    ),
    ...(imported === 1 ? section(2, vector([[...text("env"), ...text("log"), 0x00, 0x00]])) : []),
    ...section(3, vector(functions.map((_, i) => [i]))),
    ...section(6, vector([[I32, 0x01, 0x41, 0x00, 0x0b]])),
    ...section(
      7,
      vector([...functions.map((f, i) => [...text(f.name), 0x00, i + imported]), [...text("counter"), 0x03, 0x00]])
    ),
    ...section(10, vector(functions.map((f) => body([0x00, ...f.code, 0x0b]))))
  ])
}

const get = (i: number) => [0x20, i]

const math = wasm([
  { name: "add", params: [I32, I32], results: [I32], code: [...get(0), ...get(1), 0x6a] },
  { name: "div", params: [I32, I32], results: [I32], code: [...get(0), ...get(1), 0x6d] },
  { name: "fdiv", params: [F64, F64], results: [F64], code: [...get(0), ...get(1), 0xa3] },
  { name: "answer", params: [], results: [I64], code: [0x42, 42] },
  { name: "nothing", params: [], results: [], code: [] },
  { name: "pair", params: [], results: [I32, I32], code: [0x41, 1, 0x41, 2] },
  { name: "wide", params: [I64], results: [I64], code: [...get(0)] },
  // counter += 1; return counter
  { name: "bump", params: [], results: [I32], code: [0x23, 0, 0x41, 1, 0x6a, 0x24, 0, 0x23, 0] }
])

const spin = wasm([{ name: "forever", params: [], results: [], code: [0x03, 0x40, 0x0c, 0x00, 0x0b] }])

const trap = wasm([{ name: "crash", params: [], results: [], code: [0x00] }])

const importing = wasm([{ name: "add", params: [I32, I32], results: [I32], code: [...get(0), ...get(1), 0x6a] }], {
  importing: true
})

const open = (options?: Omit<Wasm.Options, "modules">) =>
  Effect.gen(function* () {
    const driver = yield* Wasm.driver({ modules: { math, spin, trap }, ...options })
    const handle = yield* driver.open({ pid: 1 })
    return (request: unknown) => Effect.map(handle.read(request, call), (result) => result.value)
  })

const failsWith = (effect: Effect.Effect<unknown, DeviceError>, reason: string) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(effect)
    assert.instanceOf(error, DeviceError)
    assert.strictEqual(error.reason, reason, error.message)
    return error
  })

describe("Wasm.driver", () => {
  it.live(
    "calls an exported function in a worker, costing one tool call",
    () =>
      Effect.gen(function* () {
        const driver = yield* Wasm.driver({ modules: { math } })
        assert.strictEqual(driver.name, "wasm")
        assert.deepStrictEqual(driver.meters, ["toolCalls"])
        const handle = yield* driver.open({ pid: 1 })
        const sum = yield* handle.read({ module: "math", export: "add", args: [2, 3] }, call)
        assert.deepStrictEqual(sum, { value: 5, cost: { toolCalls: 1 } })
        const run = (request: unknown) => Effect.map(handle.read(request, call), (result) => result.value)
        assert.strictEqual(yield* run({ module: "math", export: "add", args: [0x7fffffff, 1] }), -0x80000000)
        assert.strictEqual(yield* run({ module: "math", export: "div", args: [7, 2] }), 3)
        assert.strictEqual(yield* run({ module: "math", export: "fdiv", args: [1, 4] }), 0.25)
        assert.strictEqual(yield* run({ module: "math", export: "answer" }), 42, "an i64 result as a number")
        assert.strictEqual(yield* run({ module: "math", export: "nothing", args: [] }), null)
        assert.deepStrictEqual(yield* run({ module: "math", export: "pair" }), [1, 2], "a multi-value result")
      }),
    timeoutMs
  )

  it.live(
    "runs every call on a fresh instance",
    () =>
      Effect.gen(function* () {
        const run = yield* open({ poolSize: 1 })
        assert.strictEqual(yield* run({ module: "math", export: "bump" }), 1)
        assert.strictEqual(yield* run({ module: "math", export: "bump" }), 1, "the global starts from 0 again")
      }),
    timeoutMs
  )

  it.live(
    "reads a module from a file: URL",
    () =>
      Effect.gen(function* () {
        const path = join(mkdtempSync(join(tmpdir(), "wasm-driver-")), "math.wasm")
        writeFileSync(path, math)
        const driver = yield* Wasm.driver({ modules: { math: pathToFileURL(path) } })
        const handle = yield* driver.open({ pid: 1 })
        assert.strictEqual((yield* handle.read({ module: "math", export: "add", args: [20, 22] }, call)).value, 42)
        const missing = yield* Effect.flip(Wasm.driver({ modules: { gone: pathToFileURL(`${path}.missing`) } }))
        assert.strictEqual(missing.reason, "unreadable")
        assert.strictEqual(missing.module, "gone")
        const remote = yield* Effect.flip(Wasm.driver({ modules: { remote: new URL("https://example.com/m.wasm") } }))
        assert.strictEqual(remote.reason, "unreadable")
      }),
    timeoutMs
  )

  it.live(
    "interrupting a call stuck in a wasm loop terminates its worker; the next call runs",
    () =>
      Effect.gen(function* () {
        const run = yield* open({ poolSize: 1 })
        const looping = yield* Effect.forkChild(run({ module: "spin", export: "forever" }))
        yield* Effect.sleep(Duration.millis(200))
        assert.isUndefined(looping.pollUnsafe(), "still looping")
        const [interrupting] = yield* Effect.timed(Fiber.interrupt(looping))
        assert.isBelow(Duration.toMillis(interrupting), 1000)
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(looping)))
        const before = process.cpuUsage()
        yield* Effect.sleep(Duration.millis(300))
        const used = process.cpuUsage(before)
        assert.isBelow((used.user + used.system) / 1000, 150, "no thread is still looping")
        assert.strictEqual(yield* run({ module: "math", export: "add", args: [1, 2] }), 3)
      }),
    timeoutMs
  )

  it.live(
    "fails with timeout when a call runs past the time limit",
    () =>
      Effect.gen(function* () {
        const run = yield* open({ poolSize: 1, timeout: "200 millis" })
        const [elapsed, error] = yield* Effect.timed(failsWith(run({ module: "spin", export: "forever" }), "timeout"))
        assert.include(error.message, "200ms")
        assert.isBelow(Duration.toMillis(elapsed), 2000)
        assert.strictEqual(yield* run({ module: "math", export: "add", args: [1, 2] }), 3)
      }),
    timeoutMs
  )

  it.live(
    "fails with task-failed on a trap, a result JSON cannot carry, or an i64 parameter",
    () =>
      Effect.gen(function* () {
        const run = yield* open({ poolSize: 1 })
        const unreachable = yield* failsWith(run({ module: "trap", export: "crash" }), "task-failed")
        assert.strictEqual(unreachable.device, "wasm")
        assert.include(unreachable.message, "trap.crash failed: RuntimeError: unreachable")
        const divide = yield* failsWith(run({ module: "math", export: "div", args: [1, 0] }), "task-failed")
        assert.include(divide.message, "divide by zero")
        const infinite = yield* failsWith(run({ module: "math", export: "fdiv", args: [1, 0] }), "task-failed")
        assert.include(infinite.message, "Infinity is not a JSON number")
        const wide = yield* failsWith(run({ module: "math", export: "wide", args: [1] }), "task-failed")
        assert.include(wide.message, "BigInt", "an i64 parameter cannot take a JSON number")
        assert.strictEqual(yield* run({ module: "math", export: "add", args: [1, 2] }), 3)
      }),
    timeoutMs
  )

  it.live(
    "fails with not-found for an unknown module, an unknown export or one that is not a function",
    () =>
      Effect.gen(function* () {
        const run = yield* open()
        const module = yield* failsWith(run({ module: "physics", export: "add", args: [] }), "not-found")
        assert.include(module.message, "the modules are math, spin, trap")
        const missing = yield* failsWith(run({ module: "math", export: "sub", args: [1, 2] }), "not-found")
        assert.include(missing.message, "its functions: add, div, fdiv, answer, nothing, pair, wide, bump")
        yield* failsWith(run({ module: "math", export: "counter", args: [] }), "not-found")
        yield* failsWith(run({ module: "toString", export: "add", args: [] }), "not-found")
      }),
    timeoutMs
  )

  it.live(
    "fails with invalid-request when the request is malformed or the argument count is wrong",
    () =>
      Effect.gen(function* () {
        const run = yield* open()
        const requests = [
          undefined,
          { module: "math", args: [1, 2] },
          { module: "math", export: "add", args: [1, "2"] },
          { module: "math", export: "add", args: [1, Number.NaN] },
          { module: "math", export: "add", args: 3 }
        ]
        for (const request of requests) {
          const error = yield* failsWith(run(request), "invalid-request")
          assert.include(error.message, "not a wasm call")
        }
        const arity = yield* failsWith(run({ module: "math", export: "add", args: [1] }), "invalid-request")
        assert.include(arity.message, '"add" takes 2 arguments, got 1')
      }),
    timeoutMs
  )

  it.live(
    "fails to build with WasmError when a module has imports or does not compile",
    () =>
      Effect.gen(function* () {
        const imports = yield* Effect.flip(Wasm.driver({ modules: { math, importing } }))
        assert.strictEqual(imports._tag, "WasmError")
        assert.strictEqual(imports.reason, "has-imports")
        assert.strictEqual(imports.module, "importing")
        assert.include(imports.message, "env.log (function)")
        const garbage = yield* Effect.flip(Wasm.driver({ modules: { garbage: Uint8Array.from([0, 1, 2, 3]) } }))
        assert.strictEqual(garbage.reason, "invalid-module")
        assert.strictEqual(garbage.module, "garbage")
        for (const options of [{ modules: {} }, { modules: { math }, poolSize: 0 }]) {
          assert.strictEqual((yield* Effect.flip(Wasm.driver(options))).reason, "invalid-options")
        }
      }),
    timeoutMs
  )
})
