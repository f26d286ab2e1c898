import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Schema } from "effect"
import { Tool, Toolkit } from "effect/ai"
import type { FunctionDefinition } from "openai/resources/shared"
import { Device, Kernel, Process, Sys, Tools } from "effect-agent-os"

const { DeviceError } = Device

const call = { pid: 1, op: 1, priority: 0, deadline: undefined }

const Add = Tool.make("add", {
  description: "Adds two numbers",
  parameters: Schema.Struct({ a: Schema.Finite, b: Schema.Finite, note: Schema.optional(Schema.String) }),
  success: Schema.Finite
})

const Later = Tool.make("later", {
  description: "Adds days to a date",
  parameters: Schema.Struct({ from: Schema.Date, days: Schema.Int }),
  success: Schema.Date
})

const Divide = Tool.make("divide", {
  parameters: Schema.Struct({ a: Schema.Finite, b: Schema.Finite }),
  success: Schema.Finite,
  failure: Schema.Struct({ code: Schema.Literal("division-by-zero"), detail: Schema.String })
})

const Lookup = Tool.make("lookup", {
  parameters: Schema.Struct({ city: Schema.String }),
  success: Schema.Struct({ celsius: Schema.Finite })
})

const Crash = Tool.make("crash", {
  parameters: Schema.Struct({ how: Schema.Literals(["die", "throw", "bad-result"]) }),
  success: Schema.Finite
})

const toolkit = Toolkit.make(Add, Later, Divide, Lookup, Crash)

/** Builds the test tool set, counting the implementation runs per tool. */
const makeToolset = Effect.gen(function* () {
  const runs: Record<string, number> = { add: 0, later: 0, divide: 0, lookup: 0, crash: 0 }
  // Each implementation counts its runs before it looks at its parameters.
  const driver = yield* Tools.make(toolkit, {
    add: (params) => {
      runs.add++
      return Effect.succeed(params.a + params.b)
    },
    later: (params) => {
      runs.later++
      return Effect.sync(() => new Date(params.from.getTime() + params.days * 86_400_000))
    },
    divide: (params) => {
      runs.divide++
      return params.b === 0
        ? Effect.fail({ code: "division-by-zero", detail: `${params.a} / 0` } as const)
        : Effect.succeed(params.a / params.b)
    },
    lookup: (params) => {
      runs.lookup++
      return params.city === "Paris"
        ? Effect.succeed({ celsius: 21 })
        : Effect.fail(new Tools.ToolFailure({ message: `no weather for ${params.city}` }))
    },
    crash: (params) => {
      runs.crash++
      if (params.how === "throw") throw new Error("thrown outside the effect")
      return params.how === "die" ? Effect.die(new Error("boom")) : Effect.succeed(Number.NaN)
    }
  })
  const handle = yield* driver.open({ pid: 1 })
  return { driver, handle, runs }
})

const isToolError = (value: unknown, tool: string, reason: Tools.ToolError["reason"]): Tools.ToolError => {
  assert.isTrue(Tools.isToolError(value), `expected a ToolError, got ${JSON.stringify(value)}`)
  const error = value as Tools.ToolError
  assert.strictEqual(error.tool, tool)
  assert.strictEqual(error.reason, reason)
  return error
}

describe("Tools.make", () => {
  it.effect("is a driver named tools, metering toolCalls, that keeps its declarations", () =>
    Effect.gen(function* () {
      const { driver } = yield* makeToolset
      assert.strictEqual(driver.name, "tools")
      assert.deepStrictEqual(driver.meters, ["toolCalls"])
      assert.deepStrictEqual(Object.keys(driver.tools), ["add", "later", "divide", "lookup", "crash"])
      const renamed = yield* Tools.make(
        Toolkit.make(Add),
        { add: ({ a, b }) => Effect.succeed(a + b) },
        {
          name: "math"
        }
      )
      assert.strictEqual(renamed.name, "math")
    })
  )

  it.effect("fails with a ToolsetError when declared and implemented names differ", () =>
    Effect.gen(function* () {
      const A = Tool.make("a", { success: Schema.String })
      const B = Tool.make("b", { success: Schema.String })
      const C = Tool.make("c", { success: Schema.String })
      const error = yield* Effect.flip(
        // The type checker refuses this record; the run-time check covers records assembled at run time.
        // @ts-expect-error missing "b", unexpected "c"
        Tools.make(Toolkit.make(A, B), { a: () => Effect.succeed("a"), c: () => Effect.succeed("c") })
      )
      assert.strictEqual(error._tag, "ToolsetError")
      assert.deepStrictEqual(error.missing, ["b"])
      assert.deepStrictEqual(error.unexpected, ["c"])
      assert.deepStrictEqual(error.unsupported, [])
      assert.include(error.message, "declared but not implemented: b")
      assert.include(error.message, "implemented but not declared: c")

      // assembled at run time: the types cannot see that "c" is missing
      const assembled: Record<string, unknown> = Object.fromEntries([["a", () => Effect.succeed("a")]])
      const partial = yield* Effect.flip(Tools.make(Toolkit.make(A, C), assembled as never))
      assert.deepStrictEqual(partial.missing, ["c"])

      const ok = yield* Tools.make(Toolkit.make(A, C), { a: () => Effect.succeed("a"), c: () => Effect.succeed("c") })
      assert.deepStrictEqual(Object.keys(ok.tools), ["a", "c"])
    })
  )

  it.effect("refuses tools that need approval", () =>
    Effect.gen(function* () {
      const Delete = Tool.make("delete", { needsApproval: true })
      const error = yield* Effect.flip(Tools.make(Toolkit.make(Delete), { delete: () => Effect.void }))
      assert.deepStrictEqual(error.unsupported, ["delete"])
    })
  )

  it.effect("captures the services implementations require and provides them to every call", () =>
    Effect.gen(function* () {
      class Greeting extends Context.Service<Greeting, { readonly word: string }>()("test/Greeting") {}
      const Greet = Tool.make("greet", { parameters: Schema.Struct({ name: Schema.String }), success: Schema.String })
      const build = Tools.make(Toolkit.make(Greet), {
        greet: ({ name }) =>
          Effect.gen(function* () {
            const greeting = yield* Greeting
            return `${greeting.word}, ${name}`
          })
      })
      const driver = yield* build.pipe(Effect.provideService(Greeting, { word: "hello" }))
      const handle = yield* driver.open({ pid: 3 })
      const result = yield* handle.read({ tool: "greet", input: { name: "Ada" } }, { ...call, pid: 3 })
      assert.strictEqual(result.value, "hello, Ada")
    })
  )
})

describe("Tools reservation", () => {
  it.effect("every call reserves one tool call, what any call that reaches the tool set is charged", () =>
    Effect.gen(function* () {
      const { driver, handle } = yield* makeToolset
      assert.strictEqual(driver.reserve, Tools.reserve)
      const requests: ReadonlyArray<unknown> = [
        { tool: "add", input: { a: 1, b: 2 } },
        { tool: "add", input: { a: "x" } },
        { tool: "nope", input: {} },
        { tool: "divide", input: { a: 1, b: 0 } }
      ]
      for (const request of requests) {
        const reserved = driver.reserve!(request)
        assert.deepStrictEqual(reserved, { toolCalls: 1 })
        const { cost } = yield* handle.read(request, call)
        assert.deepStrictEqual(cost, reserved, JSON.stringify(request))
      }
      // not even a tool call: charged nothing, so the reservation of one is an upper bound
      assert.deepStrictEqual(Tools.reserve("garbage"), { toolCalls: 1 })
    })
  )
})

describe("Tools handle read", () => {
  it.effect("runs a valid call and returns the encoded result, costing one tool call", () =>
    Effect.gen(function* () {
      const { handle, runs } = yield* makeToolset
      const sum = yield* handle.read({ tool: "add", input: { a: 2, b: 3 } }, call)
      assert.deepStrictEqual(sum, { value: 5, cost: { toolCalls: 1 } })
      // Schema.Date travels as its JSON form both ways: an ISO string in, an ISO string out.
      const date = yield* handle.read({ tool: "later", input: { from: "2024-01-01T00:00:00.000Z", days: 2 } }, call)
      assert.strictEqual(date.value, "2024-01-03T00:00:00.000Z")
      assert.deepStrictEqual(date.cost, { toolCalls: 1 })
      assert.deepStrictEqual(runs, { add: 1, later: 1, divide: 0, lookup: 0, crash: 0 })
    })
  )

  it.effect("accepts the arguments as the JSON text a model returns", () =>
    Effect.gen(function* () {
      const { handle, runs } = yield* makeToolset
      const sum = yield* handle.read({ tool: "add", arguments: '{"a":1,"b":41}' }, call)
      assert.strictEqual(sum.value, 42)
      const broken = yield* handle.read({ tool: "add", arguments: '{"a":1,' }, call)
      const error = isToolError(broken.value, "add", "invalid-input")
      assert.include(error.message, 'invalid input for "add"')
      assert.deepStrictEqual(broken.cost, { toolCalls: 1 })
      assert.strictEqual(runs.add, 1)
    })
  )

  it.effect("returns a readable ToolError for input failing the parameters Schema, without running the tool", () =>
    Effect.gen(function* () {
      const { handle, runs } = yield* makeToolset
      const result = yield* handle.read({ tool: "add", input: { a: 1, b: "two" } }, call)
      const error = isToolError(result.value, "add", "invalid-input")
      assert.include(error.message, "Expected number")
      assert.include(error.message, '["b"]')
      assert.deepStrictEqual(result.cost, { toolCalls: 1 })
      // every issue at once, so the agent can fix them in one retry
      const both = yield* handle.read({ tool: "add", input: { note: 7 } }, call)
      const message = isToolError(both.value, "add", "invalid-input").message
      for (const path of ['["a"]', '["b"]', '["note"]']) assert.include(message, path)
      const notAnObject = yield* handle.read({ tool: "add", input: "2 + 3" }, call)
      isToolError(notAnObject.value, "add", "invalid-input")
      assert.strictEqual(runs.add, 0, "the implementation never ran")
      // a ToolError is JSON, as the journal needs
      assert.deepStrictEqual(JSON.parse(JSON.stringify(result.value)), result.value)
    })
  )

  it.effect("returns a ToolError for an unknown tool", () =>
    Effect.gen(function* () {
      const { handle, runs } = yield* makeToolset
      const result = yield* handle.read({ tool: "multiply", input: { a: 1, b: 2 } }, call)
      const error = isToolError(result.value, "multiply", "unknown-tool")
      assert.include(error.message, 'unknown tool "multiply"')
      assert.include(error.message, "add, later, divide, lookup, crash")
      assert.deepStrictEqual(result.cost, { toolCalls: 1 })
      const inherited = yield* handle.read({ tool: "toString", input: {} }, call)
      isToolError(inherited.value, "toString", "unknown-tool")
      assert.deepStrictEqual(runs, { add: 0, later: 0, divide: 0, lookup: 0, crash: 0 })
    })
  )

  it.effect("returns a ToolError when the implementation fails", () =>
    Effect.gen(function* () {
      const { handle, runs } = yield* makeToolset
      const weather = yield* handle.read({ tool: "lookup", input: { city: "Atlantis" } }, call)
      const failure = isToolError(weather.value, "lookup", "failed")
      assert.strictEqual(failure.message, "no weather for Atlantis")
      assert.isFalse("error" in failure, "lookup declares no failure Schema")
      assert.deepStrictEqual(weather.cost, { toolCalls: 1 })

      const division = yield* handle.read({ tool: "divide", input: { a: 1, b: 0 } }, call)
      const declared = isToolError(division.value, "divide", "failed")
      assert.deepStrictEqual(declared.error, { code: "division-by-zero", detail: "1 / 0" })
      assert.strictEqual(declared.message, 'the tool failed: {"code":"division-by-zero","detail":"1 / 0"}')
      assert.deepStrictEqual(runs, { add: 0, later: 0, divide: 1, lookup: 1, crash: 0 })

      const paris = yield* handle.read({ tool: "lookup", input: { city: "Paris" } }, call)
      assert.deepStrictEqual(paris.value, { celsius: 21 })
    })
  )

  it.effect("fails with DeviceError tool-defect when the implementation dies or breaks its result Schema", () =>
    Effect.gen(function* () {
      const { handle, runs } = yield* makeToolset
      for (const how of ["die", "throw", "bad-result"] as const) {
        const error = yield* Effect.flip(handle.read({ tool: "crash", input: { how } }, call))
        assert.instanceOf(error, DeviceError)
        assert.strictEqual(error.device, "tools")
        assert.strictEqual(error.reason, "tool-defect")
        assert.include(error.message, 'tool "crash"')
      }
      const died = yield* Effect.flip(handle.read({ tool: "crash", input: { how: "die" } }, call))
      assert.include(died.message, "boom")
      assert.strictEqual(runs.crash, 4)
    })
  )

  it.effect("fails with DeviceError invalid-request when the request is not a tool call", () =>
    Effect.gen(function* () {
      const { handle, runs } = yield* makeToolset
      for (const request of [undefined, "add", { input: { a: 1, b: 2 } }, { tool: 7, input: {} }, { tool: "add" }]) {
        const error = yield* Effect.flip(handle.read(request, call))
        assert.strictEqual(error.reason, "invalid-request", JSON.stringify(request))
      }
      assert.strictEqual(runs.add, 0)
    })
  )
})

describe("Tools.definitions", () => {
  it("describes every tool with the JSON Schema of its parameters", () => {
    const definitions = Tools.definitions(toolkit)
    // the openai SDK accepts them as they are
    const functions: ReadonlyArray<FunctionDefinition> = definitions
    const names = functions.map((definition) => definition.name)
    assert.deepStrictEqual(names, ["add", "later", "divide", "lookup", "crash"])

    const add = definitions[0]
    assert.strictEqual(add.description, "Adds two numbers")
    assert.strictEqual(add.parameters.type, "object")
    assert.deepStrictEqual(add.parameters.required, ["a", "b"])
    const properties = add.parameters.properties as Record<string, Record<string, unknown>>
    assert.deepStrictEqual(Object.keys(properties), ["a", "b", "note"])
    assert.strictEqual(properties.a.type, "number")
    assert.strictEqual(properties.b.type, "number")

    const later = definitions[1]
    const laterProperties = later.parameters.properties as Record<string, Record<string, unknown>>
    assert.strictEqual(laterProperties.from.type, "string", "a Date is an ISO string in JSON")
    assert.strictEqual(laterProperties.days.type, "integer")

    assert.isFalse("description" in definitions[2], "divide has no description")
    const crash = definitions[4].parameters.properties as Record<string, Record<string, unknown>>
    assert.deepStrictEqual(crash.how.enum, ["die", "throw", "bad-result"])
  })

  it.effect("describes a built tool set like its toolkit", () =>
    Effect.gen(function* () {
      const { driver } = yield* makeToolset
      assert.deepStrictEqual(Tools.definitions(driver), Tools.definitions(toolkit))
    })
  )
})

describe("Tools through the kernel", () => {
  it.effect(
    "parallel calls with readAll, each metered as one tool call; invalid calls are readable; quota ends it",
    () =>
      Effect.gen(function* () {
        const { driver, runs } = yield* makeToolset
        const body = Effect.gen(function* () {
          const kernel = yield* Kernel.Kernel
          const results: Array<unknown> = []
          const pid = yield* kernel.boot(
            Process.make<Kernel.BootGrant>("agent", (grant) =>
              Effect.gen(function* () {
                const tools = yield* Sys.open(grant.devices.tools!)
                results.push(
                  ...(yield* Sys.readAll(tools, [
                    { tool: "add", input: { a: 1, b: 2 } },
                    { tool: "add", input: { a: "one", b: 2 } },
                    { tool: "lookup", arguments: '{"city":"Paris"}' }
                  ]))
                )
                results.push((yield* Sys.budget()).used.toolCalls)
                // the quota is 4 tool calls: the fourth is allowed, the fifth cannot start
                yield* Sys.read(tools, { tool: "add", input: { a: 2, b: 2 } })
                yield* Sys.read(tools, { tool: "add", input: { a: 3, b: 3 } })
              })
            ),
            { grant: ["tools"], quota: { toolCalls: 4 } }
          )
          assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.quota("toolCalls"))
          return results
        })
        const results = yield* body.pipe(Effect.provide(Kernel.layer({ drivers: [driver] })))
        assert.strictEqual(results[0], 3)
        assert.isTrue(Tools.isToolError(results[1]))
        assert.deepInclude(results[1] as object, { tool: "add", reason: "invalid-input" })
        assert.deepStrictEqual(results[2], { celsius: 21 })
        assert.strictEqual(results[3], 3)
        assert.strictEqual(runs.add, 2, "the invalid call never reached the implementation; the fifth never started")
      })
  )
})
