import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { type Accounts, type Capability, Kernel, Process, Sandbox, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

/** These tests run real threads: one that hangs fails after 15 s rather than vitest's 60 s. */
const timeoutMs = 15_000
const wall = { wall: "10 seconds" } as const

/** Boots `body` as a root process on a fresh kernel, returns what it returns, then checks the kernel still works. */
const onKernel = <A, E>(body: (grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>) =>
  Effect.gen(function* () {
    const result = yield* TestKernel.runProcess(body)
    // the kernel stays healthy: a fresh sandbox and a plain process run to a normal end
    const kernel = yield* Kernel.Kernel
    const again = yield* kernel.boot(
      Process.make<Kernel.BootGrant>("after", () =>
        Effect.gen(function* () {
          const child = yield* Sys.spawn(Sandbox.make(`return 1`), { quota: wall })
          const reason = yield* Sys.waitpid(child.cap)
          if (reason._tag !== "Normal") return yield* Effect.die(`a sandbox after the test ended ${reason._tag}`)
        })
      )
    )
    assert.deepStrictEqual(yield* kernel.waitExit(again), Process.normal)
    yield* waitForThreads(0)
    return result
  }).pipe(Effect.provide(TestKernel.layer()))

/** Waits (up to 2 s) until exactly `n` sandbox threads run; fails the test otherwise. */
const waitForThreads = (n: number) =>
  Effect.gen(function* () {
    const until = Date.now() + 2000
    while (Sandbox.runningThreads() !== n) {
      if (Date.now() > until) assert.fail(`${Sandbox.runningThreads()} sandbox threads still run, expected ${n}`)
      yield* Effect.sleep(Duration.millis(10))
    }
  })

/** Spawns `image` with a send-only cap back to the caller (handle 1) plus `caps`; returns the child. */
const spawnWithReply = (
  image: Process.Image<unknown>,
  options?: { caps?: ReadonlyArray<Capability.CapRef>; quota?: Accounts.Quota; args?: unknown }
) =>
  Effect.gen(function* () {
    const replyTo = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
    return yield* Sys.spawn(image, {
      args: options?.args,
      caps: [replyTo, ...(options?.caps ?? [])],
      quota: options?.quota ?? wall
    })
  })

describe("Sandbox", () => {
  it.live(
    "runs code in a worker thread that sends to a cap it was given and returns: Normal",
    () =>
      Effect.gen(function* () {
        const [body, reason, from, childPid] = yield* onKernel(() =>
          Effect.gen(function* () {
            const image = Sandbox.make(
              `const [reply] = await sys.caps()
               await sys.send(reply, { greeting: "hello " + args.name, pid: await sys.self(), thread: typeof reply })
               return "done"`,
              { allow: ["caps", "send", "self"], limits: { heap: 32 } }
            )
            const child = yield* spawnWithReply(image, { args: { name: "kernel" } })
            const message = yield* Sys.recv()
            return [message.body, yield* Sys.waitpid(child.cap), message.from, child.pid] as const
          })
        )
        assert.deepStrictEqual(body, { greeting: "hello kernel", pid: childPid, thread: "number" })
        assert.strictEqual(from, childPid)
        assert.deepStrictEqual(reason, Process.normal)
      }),
    timeoutMs
  )

  it.live(
    "refuses a call not in allow without performing it; the code catches the refusal",
    () =>
      Effect.gen(function* () {
        const [body, victimReason, reason] = yield* onKernel(() =>
          Effect.gen(function* () {
            const victim = yield* Sys.spawn(
              Process.make("victim", () => Effect.forever(Sys.recv())),
              { quota: wall }
            )
            const image = Sandbox.make(
              `const [reply, victim] = await sys.caps()
               const seen = []
               for (const attempt of [() => sys.kill(victim), () => sys.budget()]) {
                 try { await attempt(); seen.push("performed") }
                 catch (e) { seen.push({ tag: e._tag, call: e.call, isError: e instanceof Error }) }
               }
               await sys.send(reply, seen)`,
              { allow: ["caps", "send"], limits: { heap: 32 } }
            )
            const child = yield* spawnWithReply(image, { caps: [yield* Sys.derive(victim.cap, ["kill"])] })
            const message = yield* Sys.recv()
            const reason = yield* Sys.waitpid(child.cap)
            // the victim is alive: our kill is what ends it
            yield* Sys.kill(victim.cap)
            const victimReason = yield* Sys.waitpid(victim.cap)
            return [message.body, victimReason, reason] as const
          })
        )
        assert.deepStrictEqual(body, [
          { tag: "Denied", call: "kill", isError: true },
          { tag: "Denied", call: "budget", isError: true }
        ])
        assert.strictEqual(victimReason._tag, "Killed")
        assert.deepStrictEqual(reason, Process.normal)
      }),
    timeoutMs
  )

  it.live(
    "gives the code no reach into the kernel: no Node globals, no eval, forged handles refused by the cap checks",
    () =>
      Effect.gen(function* () {
        const [report, reason] = yield* onKernel(() =>
          Effect.gen(function* () {
            const image = Sandbox.make(
              `const [reply] = await sys.caps()
               const attempt = async (f) => { try { return ["ok", await f()] } catch (e) { return [e._tag ?? e.name, e.reason ?? null] } }
               const report = {
                 globals: [typeof process, typeof require, typeof globalThis.process, typeof setTimeout,
                           typeof fetch, typeof Buffer, typeof globalThis.WebAssembly],
                 eval: await attempt(() => eval("1 + 1")),
                 functionCtor: await attempt(() => Function("return process")()),
                 escape: await attempt(() => globalThis.constructor.constructor("return process")()),
                 sysEscape: await attempt(() => sys.send.constructor("return process")()),
                 forged: await attempt(() => sys.send(4242, "forged")),
                 forgedCap: await attempt(() => sys.send(1, "x", { caps: [77] })),
                 sendOnlyKill: await attempt(() => sys.kill(reply)),
               }
               await sys.send(reply, report)`,
              { allow: ["caps", "send", "kill"], limits: { heap: 32 } }
            )
            const child = yield* spawnWithReply(image)
            const message = yield* Sys.recv()
            return [message.body, yield* Sys.waitpid(child.cap)] as const
          })
        )
        assert.deepStrictEqual(report, {
          globals: ["undefined", "undefined", "undefined", "undefined", "undefined", "undefined", "undefined"],
          eval: ["EvalError", null],
          functionCtor: ["EvalError", null],
          escape: ["EvalError", null],
          sysEscape: ["EvalError", null],
          forged: ["CapabilityError", "invalid"],
          forgedCap: ["CapabilityError", "invalid"],
          sendOnlyKill: ["CapabilityError", "missing-right"]
        })
        assert.deepStrictEqual(reason, Process.normal)
      }),
    timeoutMs
  )

  it.live(
    "ends with a Fault when the code imports, sends a message that does not decode, or throws",
    () =>
      Effect.gen(function* () {
        const reasons = yield* onKernel(() =>
          Effect.forEach(
            [
              `const m = await import("../../src/index.ts"); return m`,
              `await sys.send("not a handle", 1)`,
              `await sys.nope?.(); throw new TypeError("boom")`,
              `this is not javascript`
            ],
            (code) =>
              Effect.flatMap(
                Sys.spawn(Sandbox.make(code, { allow: ["send"], limits: { heap: 32 } }), { quota: wall }),
                (child) => Sys.waitpid(child.cap)
              )
          )
        )
        const errors = reasons.map((reason) => (reason._tag === "Fault" ? reason.error : reason._tag))
        assert.include(errors[0], "SandboxError: the code uses `import`")
        assert.include(errors[1], "SandboxError: a bad message from the sandbox")
        assert.strictEqual(errors[2], "SandboxError: the code threw: TypeError: boom")
        assert.include(errors[3], "SandboxError: the code threw: the code does not compile")
      }),
    timeoutMs
  )

  it.live(
    "ends an infinite loop with its wall quota: Quota { wall }, promptly, and the thread is gone",
    () =>
      Effect.gen(function* () {
        const [reason, elapsed] = yield* onKernel(() =>
          Effect.gen(function* () {
            const child = yield* Sys.spawn(Sandbox.make(`while (true) {}`, { limits: { heap: 32 } }), {
              quota: { wall: "400 millis" }
            })
            const started = Date.now()
            const reason = yield* Sys.waitpid(child.cap)
            return [reason, Date.now() - started] as const
          })
        )
        assert.deepStrictEqual(reason, Process.quota("wall"))
        assert.isBelow(elapsed, 1500)
      }),
    timeoutMs
  )

  it.live(
    "a killed sandbox's thread is terminated",
    () =>
      Effect.gen(function* () {
        const [reason, self] = yield* onKernel(() =>
          Effect.gen(function* () {
            const child = yield* spawnWithReply(
              Sandbox.make(`const [r] = await sys.caps(); await sys.send(r, "spinning"); for (;;) {}`, {
                allow: ["caps", "send"],
                limits: { heap: 32 }
              })
            )
            yield* Sys.recv()
            assert.strictEqual(Sandbox.runningThreads(), 1)
            yield* Sys.kill(child.cap)
            return [yield* Sys.waitpid(child.cap), yield* Sys.self()] as const
          })
        )
        assert.deepStrictEqual(reason, Process.killed(self))
      }),
    timeoutMs
  )

  it.live(
    "ends a heap bomb with the heap limit: Fault, and the thread is gone",
    () =>
      Effect.gen(function* () {
        const reason = yield* onKernel(() =>
          Effect.gen(function* () {
            const bomb = Sandbox.make(`const hoard = []; for (;;) hoard.push(new Array(100000).fill(hoard.length))`, {
              limits: { heap: 32 }
            })
            const child = yield* Sys.spawn(bomb, { quota: wall })
            return yield* Sys.waitpid(child.cap)
          })
        )
        assert.strictEqual(reason._tag, "Fault")
        assert.include((reason as { error: string }).error, "SandboxError: the sandbox ran out of memory (heap 32 MB)")
      }),
    timeoutMs
  )

  // ── the attacks of issue 8, item 9: the heap limit covers every byte, the code is strict, nothing runs first ──

  it.live(
    "bounds ArrayBuffer and typed-array memory by limits.heap: each way to allocate ends Fault heap",
    () =>
      Effect.gen(function* () {
        // each tries to hoard 256 MB through one way of allocating, under a 32 MB limit
        const mb16 = 16 * 1024 * 1024
        const paths = [
          `new Uint8Array(${mb16})`,
          `new ArrayBuffer(${mb16})`,
          `new Float64Array(${mb16 / 8})`,
          `new DataView(new ArrayBuffer(${mb16}))`,
          `new SharedArrayBuffer(${mb16})`,
          `new ArrayBuffer(1).transfer(${mb16})`,
          `((buffer) => (buffer.resize(${mb16}), buffer))(new ArrayBuffer(0, { maxByteLength: ${mb16} }))`,
          `seed.slice()`,
          `new Uint8Array(seed)`,
          `seed.buffer.slice(0)`,
          `seed.toReversed()`,
          `seed.with(0, 1)`,
          `"x".repeat(${mb16}) + i`
        ]
        // one at a time, so an implementation that lets them through holds at most 256 MB at once
        const reasons = yield* onKernel(() =>
          Effect.forEach(paths, (step) =>
            Effect.flatMap(
              Sys.spawn(
                Sandbox.make(
                  `const seed = new Uint8Array(${mb16 / 4}); const hoard = []
                   for (let i = 0; i < 16; i++) hoard.push(${step})
                   return hoard.length`,
                  { limits: { heap: 32 } }
                ),
                { quota: wall }
              ),
              (child) => Sys.waitpid(child.cap)
            )
          )
        )
        reasons.forEach((reason, index) => {
          assert.strictEqual(reason._tag, "Fault", `${paths[index]} ended ${reason._tag}`)
          assert.include(
            (reason as { error: string }).error,
            "SandboxError: the sandbox ran out of memory (heap 32 MB)",
            paths[index]
          )
        })
      }),
    timeoutMs
  )

  it.live(
    "ends the process at the heap limit even when the code catches the refusal and goes on (a call, or a loop)",
    () =>
      Effect.gen(function* () {
        const [reasons, received] = yield* onKernel(() =>
          Effect.gen(function* () {
            const reasons = yield* Effect.forEach(
              [`await sys.send(reply, { held: hoard.length })`, `for (;;) {}`],
              (then) =>
                Effect.flatMap(
                  spawnWithReply(
                    Sandbox.make(
                      `const [reply] = await sys.caps(); const hoard = []
                     for (let i = 0; i < 16; i++) {
                       try { hoard.push(new Uint8Array(16 * 1024 * 1024)) } catch (e) { /* refused: carry on */ }
                     }
                     ${then}`,
                      { allow: ["caps", "send"], limits: { heap: 32 } }
                    )
                  ),
                  (child) => Sys.waitpid(child.cap)
                )
            )
            const received = yield* Sys.recv().pipe(Effect.timeoutOption(Duration.millis(100)))
            return [reasons, received] as const
          })
        )
        for (const reason of reasons) {
          assert.strictEqual(reason._tag, "Fault")
          assert.include(
            (reason as { error: string }).error,
            "SandboxError: the sandbox ran out of memory (heap 32 MB)"
          )
        }
        assert.strictEqual(received._tag, "None")
      }),
    timeoutMs
  )

  it.live(
    "runs the code in strict mode: undeclared assignment, arguments.callee and sloppy syntax fail; this is undefined",
    () =>
      Effect.gen(function* () {
        const [report, compileErrors] = yield* onKernel(() =>
          Effect.gen(function* () {
            const child = yield* spawnWithReply(
              Sandbox.make(
                `const [reply] = await sys.caps()
                 const attempt = (f) => { try { f(); return "ok" } catch (e) { return e.name } }
                 const report = {
                   undeclared: attempt(() => { undeclared = 1 }),
                   callee: attempt(function () { return arguments.callee }),
                   frozenWrite: attempt(() => { Object.freeze({ a: 1 }).a = 2 }),
                   deletePrototype: attempt(() => { delete Object.prototype }),
                   topThis: typeof this,
                   functionThis: (function () { return typeof this })(),
                   leaked: typeof undeclared
                 }
                 await sys.send(reply, report)`,
                { allow: ["caps", "send"], limits: { heap: 32 } }
              )
            )
            const message = yield* Sys.recv()
            yield* Sys.waitpid(child.cap)
            // syntax that only sloppy mode accepts does not compile
            const compileErrors = yield* Effect.forEach(
              [`with ({}) {}`, `return 010`, `let x = 1; delete x`, `function f(a, a) {}`, `var eval = 1`],
              (code) =>
                Effect.flatMap(Sys.spawn(Sandbox.make(code, { limits: { heap: 32 } }), { quota: wall }), (c) =>
                  Sys.waitpid(c.cap)
                )
            )
            return [message.body, compileErrors] as const
          })
        )
        assert.deepStrictEqual(report, {
          undeclared: "ReferenceError",
          callee: "TypeError",
          frozenWrite: "TypeError",
          deletePrototype: "TypeError",
          topThis: "undefined",
          functionThis: "undefined",
          leaked: "undefined"
        })
        for (const reason of compileErrors) {
          assert.strictEqual(reason._tag, "Fault")
          assert.include((reason as { error: string }).error, "SandboxError: the code threw: the code does not compile")
        }
      }),
    timeoutMs
  )

  it.live(
    "cannot break out of the function body: source text that closes the wrapper does not compile and runs nothing",
    () =>
      Effect.gen(function* () {
        // each would run `escape()` outside the body (before the bridge, sloppy) if the code were pasted into a wrapper
        const escape = `(globalThis.escaped = (function () { return this })() !== undefined ? "sloppy" : "strict")`
        const injections = [
          `}); ${escape}; (async function () {`,
          `})\n${escape};\n(function () {`,
          `}, ${escape}, async function () {`,
          `} + ${escape} + function () {`,
          `}/1, ${escape}, x/g, function () {`,
          `}\n${escape}\nasync function again(sys, args) {`,
          `} } ${escape}; { {`,
          `*/ }); ${escape}; (function () { /*`
        ]
        const [reasons, after] = yield* onKernel(() =>
          Effect.gen(function* () {
            const reasons = yield* Effect.forEach(injections, (code) =>
              Effect.flatMap(
                spawnWithReply(Sandbox.make(code, { allow: ["caps", "send"], limits: { heap: 32 } })),
                (child) => Sys.waitpid(child.cap)
              )
            )
            // text that only looks like a way out is ordinary code
            const legit = yield* spawnWithReply(
              Sandbox.make(
                `const [reply] = await sys.caps()
                 const parts = ["})", /\\}\\)/.source, \`\${"})"}\`] // }); (function () {
                 /* }); (function () { */
                 await sys.send(reply, { parts, escaped: typeof globalThis.escaped })
                 <!-- }); ${escape}; (function () {
                 --> }); ${escape}; (function () {`,
                { allow: ["caps", "send"], limits: { heap: 32 } }
              )
            )
            const message = yield* Sys.recv()
            yield* Sys.waitpid(legit.cap)
            return [reasons, message.body] as const
          })
        )
        reasons.forEach((reason, index) => {
          assert.strictEqual(reason._tag, "Fault", `injection ${index} ended ${reason._tag}`)
          assert.include(
            (reason as { error: string }).error,
            "SandboxError: the code threw: the code does not compile",
            `injection ${index}`
          )
        })
        assert.deepStrictEqual(after, { parts: ["})", "\\}\\)", "})"], escaped: "undefined" })
      }),
    timeoutMs
  )

  it.live(
    "runs nothing of the code before the bridge: built-ins replaced at the top of the body do not reach sys",
    () =>
      Effect.gen(function* () {
        const [body, reason] = yield* onKernel(() =>
          Effect.gen(function* () {
            const child = yield* spawnWithReply(
              Sandbox.make(
                `const caps = sys.caps
                 const hooked = []
                 const hook = (name) => function () { hooked.push(name); throw new Error("hooked " + name) }
                 JSON.stringify = hook("JSON.stringify"); JSON.parse = hook("JSON.parse")
                 Map.prototype.get = hook("Map.get"); Map.prototype.set = hook("Map.set")
                 Object.defineProperty(Object.prototype, "id", { get: hook("get id"), set: hook("set id") })
                 Object.defineProperty(Object.prototype, "type", { get: hook("get type"), set: hook("set type") })
                 Array.prototype[Symbol.iterator] = hook("Array iterator")
                 Object.prototype.toString = hook("toString"); Object.prototype.valueOf = hook("valueOf")
                 Object.defineProperty(Symbol.prototype, Symbol.toPrimitive, { value: hook("toPrimitive") })
                 Function.prototype.call = hook("call"); Function.prototype.apply = hook("apply")
                 Reflect.apply = hook("Reflect.apply")
                 const handles = await caps()
                 await sys.send(handles[0], { hooked: hooked.length })
                 return "done"`,
                { allow: ["caps", "send"], limits: { heap: 32 } }
              )
            )
            const message = yield* Sys.recv()
            return [message.body, yield* Sys.waitpid(child.cap)] as const
          })
        )
        assert.deepStrictEqual(body, { hooked: 0 })
        assert.deepStrictEqual(reason, Process.normal)
      }),
    timeoutMs
  )

  it.live(
    "refuses code that is not a string, without calling its toString or Symbol.toPrimitive",
    () =>
      Effect.gen(function* () {
        const touched: Array<string> = []
        const tricks: ReadonlyArray<unknown> = [
          { toString: () => (touched.push("toString"), "return 1") },
          { [Symbol.toPrimitive]: () => (touched.push("toPrimitive"), "return 1") },
          new String("return 1")
        ]
        const reasons = yield* onKernel(() =>
          Effect.forEach(tricks, (code) =>
            Effect.flatMap(Sys.spawn(Sandbox.make(code as unknown as string), { quota: wall }), (child) =>
              Sys.waitpid(child.cap)
            )
          )
        )
        for (const reason of reasons) {
          assert.strictEqual(reason._tag, "Fault")
          assert.include((reason as { error: string }).error, "SandboxError: the code is not a string")
        }
        assert.deepStrictEqual(touched, [])
      }),
    timeoutMs
  )
})
