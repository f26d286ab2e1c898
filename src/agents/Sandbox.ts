/**
 * Runs untrusted agent logic, given as JavaScript source, as a kernel process whose code runs in a QuickJS engine
 * (WebAssembly) on its own worker thread and reaches the world only through an allow-listed, mediated `sys` RPC.
 *
 * `Sandbox.make(code, { allow, limits, name })` returns a `Process.Image`. Its process starts a `node:worker_threads`
 * worker that runs `code`, in strict mode, as the body of `async (sys, args) => { … }` in a QuickJS context:
 *
 * - `args` is the spawn argument, copied as JSON (`undefined` is `null`);
 * - `sys` has one async method per syscall in {@link CallName} (`self`, `selfCap`, `caps`, `recv`, `send`, `derive`,
 *   `revoke`, `monitor`, `waitpid`, `kill`, `lookup`, `register`, `budget`, `charge`, `open`, `read`, `write`,
 *   `log`, `yield`), with `Sys`'s arguments, caps being numbers (handles);
 * - `this` is `undefined`; returning ends the process `Normal` (the value is dropped: send results on a cap); throwing
 *   (or rejecting) ends it with `Fault { error: "SandboxError: the code threw: …" }`.
 *
 * **The code is one function body.** It is compiled as exactly that, never pasted into a wrapper that its text could
 * close: the engine compiles it, strictly, as a function declared in a block whose first statement throws that
 * function, so no statement of the text runs while compiling, and the compiled function must span the whole text.
 * Source that closes the function early (`}); evil(); (function () {`) does not compile (`threw`) and runs nothing.
 * And nothing of the code runs before the bridge: `sys` and the bridge's copies of the built-ins it uses are made
 * first, so code that replaces `JSON`, `Map`, `Object.prototype` accessors, `Function.prototype.call`… does not
 * change what `sys` sends.
 *
 * **A call.** Each `sys` call is posted to the sandbox process as a JSON message and decoded there with a Schema
 * ({@link Call}); a message that does not decode — an unknown call, a handle that is not an integer, an argument of
 * the wrong type — ends the process with a `Fault` (`protocol`). Arguments are copied as JSON in the engine
 * (`undefined` and functions become `null`; a `BigInt` or a cycle rejects the call there). A call whose name is not
 * in `allow` is refused without being performed: the promise rejects with an `Error` carrying `{ _tag: "Denied",
 * call }`. An allowed call is made by the sandbox process through its own `Sys`, so every capability check, quota and
 * trace event applies as to any process; a syscall error rejects the promise with an `Error` carrying the error's
 * `_tag`, `message` and fields (`CapabilityError { call, reason }`…). Calls are performed one at a time, in the order
 * the code makes them (a pending `recv` holds back the calls after it). Replies are JSON text made here, parsed by
 * the bridge inside the engine.
 *
 * **Caps as handles.** Caps never cross the boundary: the process keeps a table from small integers to its `CapRef`s
 * (its start caps are `sys.caps()`, in order; caps that arrive with a message, or that `selfCap`, `derive`, `open` and
 * `lookup` return, get the next numbers). A number not in the table fails the call with `CapabilityError { reason:
 * "invalid" }`; a number in the table is checked by the kernel like any cap (held, rights, expiry, revocation).
 * Message bodies travel as JSON (a body that is not JSON arrives as `null`); `budget()` has `null` for unlimited.
 *
 * **Limits.** `limits.heap` is the engine's whole memory: QuickJS runs in a WebAssembly linear memory whose maximum
 * is `heap` MB, and everything the code can make lives there — objects, strings, `ArrayBuffer`s, typed arrays,
 * `SharedArrayBuffer`s, resized and transferred buffers, compiled code — as do the engine's own heap and stack
 * (about 5 MB). V8 refuses to grow that memory past the maximum, so an allocation that does not fit fails
 * (`InternalError: out of memory` in the code) and the process ends with `Fault` (`SandboxError: the sandbox ran out
 * of memory…`), whether or not the code catches the error: the runner sees the refused growth and stops the engine
 * at its next step. (QuickJS's own `setMemoryLimit` is not relied on: built for Emscripten it counts allocations,
 * not their bytes.) The worker's V8 heap, which holds only the runner and copies of one message at a time, is
 * bounded too (`heap` × 2 + 32 MB; past it, also `heap`). `limits.stack` is the thread's stack; the engine's own
 * check stops recursion at an eighth of it (a catchable `InternalError: stack overflow`), and recursion that still
 * exhausts the thread's stack ends the process (`threw`). CPU and time are bounded by the process itself: its `wall`
 * quota, a deadline or `Sys.kill` end it, and ending the process interrupts it, which terminates the worker
 * (`Worker.terminate`, which stops even `while (true) {}` inside the engine) before the interruption completes. A
 * worker or engine that fails for another reason ends the process with `Fault` (`crashed`).
 *
 * **Threat model.** The code is hostile. Two boundaries stand between it and the kernel. The first is the engine:
 * the code runs in a QuickJS interpreter compiled to WebAssembly, in its own linear memory, so it holds no object of
 * Node or V8 at all — it has the ECMAScript built-ins (no `process`, `require`, `import()`, timers, `Buffer`, `fetch`,
 * `WebAssembly`), `eval` and every `Function` constructor throw `EvalError`, and its only way out is one QuickJS
 * function of the runner that takes a string. A bug in QuickJS lets the code corrupt at most that linear memory and
 * call the instance's imports — the clock, timers, growing its memory (up to the maximum), printing (the worker's
 * stdout and stderr go nowhere) and that one function; WebAssembly's isolation holds it there.
 * The second is the thread: the engine runs in a worker with its own V8 heap, so no object of the kernel — process
 * table, `CapRef`s, accounts, the parent's memory — is reachable even from the runner; the only channel is a
 * `MessagePort` carrying strings that the kernel side decodes with a Schema and checks against `allow` and then the
 * kernel's capability checks. The worker's `process.env` is empty. Code containing the word `import` is refused
 * (`invalid`): the engine has no modules. Hostile code in production still wants an OS-level sandbox or Node's
 * permission model for the whole host, against bugs in V8 or Node themselves. Not bounded here: the bytes of
 * messages the code sends beyond the engine's memory (each message fits in it and is decoded whole; a receiver's
 * mailbox bounds their number).
 *
 * Options and defaults:
 *
 * - `allow`: the calls the code may make. Default: none (every call is `Denied`).
 * - `limits.heap`: the engine's memory in MB, from 16 (its WebAssembly module starts at 16) to 2048. Default 64.
 * - `limits.stack`: the thread's stack in MB. Default 4 (Node's).
 * - `name`: the image name. Default `"sandbox"`.
 *
 * Ways the process ends: `Normal` (the code returned); `Fault` with a `SandboxError` of reason `threw` (the code
 * threw, did not compile, closed its function body early, ran out of stack, or returned a value that is not JSON),
 * `protocol` (a message that does not decode), `heap`, `crashed`, `invalid` (bad options, code that is not a string
 * or contains `import`, non-JSON `args`, a worker or engine that cannot start); and whatever the kernel decides
 * (`Quota`, `Killed`, `Deadline`…), which terminates the worker.
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { Worker as ThreadWorker } from "node:worker_threads"
import { Cause, Effect, Exit, Option, Queue, Schema } from "effect"
import { CapabilityError, type CapRef, Right } from "../services/Capability.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"

/** The one part of the WebAssembly API used here (the project's `lib` has no WebAssembly types). */
declare const WebAssembly: { readonly Module: new (bytes: Uint8Array) => object }

interface Engine {
  /** What the worker runs: the runner's code (`eval: true`) in the built package, its file in the sources. */
  readonly runner: { readonly code: string } | { readonly url: URL }
  /** The compiled QuickJS module, handed to every worker (no recompiling). */
  readonly wasm: object
}

/**
 * The runner and the QuickJS engine, loaded once per Node process on first use: inlined in the built package (so a
 * bundle of an app needs no file of the package beside it; see `internal/sandboxInline.ts`), files in the sources.
 */
let engine: Promise<Engine> | undefined
const loadEngine = (): Promise<Engine> =>
  (engine ??= import("./internal/sandboxInline.ts").then((inline): Engine => {
    const bytes =
      inline.wasm === undefined
        ? readFileSync(createRequire(import.meta.url).resolve("@jitl/quickjs-wasmfile-release-sync/wasm"))
        : Buffer.from(inline.wasm, "base64")
    return {
      runner:
        inline.runner === undefined
          ? { url: new URL("./internal/sandboxRunner.mjs", import.meta.url) }
          : { code: inline.runner },
      wasm: new WebAssembly.Module(bytes)
    }
  })).catch((error: unknown) => {
    engine = undefined
    throw error
  })

/**
 * The calls `sys` offers the code, each the `Sys` syscall of that name.
 *
 * @category models
 */
export const CallName = Schema.Literals([
  "self",
  "selfCap",
  "caps",
  "recv",
  "send",
  "derive",
  "revoke",
  "monitor",
  "waitpid",
  "kill",
  "lookup",
  "register",
  "budget",
  "charge",
  "open",
  "read",
  "write",
  "log",
  "yield"
])

/** @category models */
export type CallName = typeof CallName.Type

/** @category models */
export interface Limits {
  /** The engine's whole memory in MB, every `ArrayBuffer` included (16 to 2048). Default 64. */
  readonly heap?: number | undefined
  /** The thread's stack in MB; the engine stops recursion at an eighth of it. Default 4. */
  readonly stack?: number | undefined
}

/** @category models */
export interface Options {
  /** The calls the code may make. Default: none. */
  readonly allow?: ReadonlyArray<CallName> | undefined
  readonly limits?: Limits | undefined
  /** The image name. Default `"sandbox"`. */
  readonly name?: string | undefined
}

/**
 * Why a sandbox ended with a `Fault` (the `error` of the `Fault` is this error's `_tag` and message).
 *
 * @category errors
 */
export class SandboxError extends Schema.TaggedError<SandboxError>()("SandboxError", {
  reason: Schema.Literals(["threw", "protocol", "heap", "crashed", "invalid"]),
  message: Schema.String
}) {}

const Handle = Schema.Int
const Json = Schema.Json
const none = Schema.Tuple([])
const one = Schema.Tuple([Handle])

const call = <const N extends CallName, A extends Schema.Top>(name: N, args: A) =>
  Schema.Struct({ type: Schema.Literal("call"), id: Schema.Int, call: Schema.Literal(name), args })

/**
 * A `sys` call as the worker posts it (JSON text): `{ type: "call", id, call, args }`, `args` the call's arguments
 * with handles for caps.
 *
 * @category models
 */
export const Call = Schema.Union([
  call("self", none),
  call("selfCap", none),
  call("caps", none),
  call("recv", none),
  call(
    "send",
    Schema.Tuple([
      Handle,
      Schema.optionalKey(Json),
      Schema.optionalKey(
        Schema.Struct({
          caps: Schema.optionalKey(Schema.Array(Handle)),
          corr: Schema.optionalKey(Schema.Union([Schema.String, Schema.Number]))
        })
      )
    ])
  ),
  call("derive", Schema.Tuple([Handle, Schema.Array(Right)])),
  call("revoke", one),
  call("monitor", one),
  call("waitpid", one),
  call("kill", one),
  call("lookup", Schema.Tuple([Schema.String])),
  call("register", Schema.Tuple([Schema.String])),
  call("budget", none),
  call(
    "charge",
    Schema.Tuple([
      Schema.Struct({
        tokens: Schema.optionalKey(Schema.Number),
        toolCalls: Schema.optionalKey(Schema.Number),
        usd: Schema.optionalKey(Schema.Number)
      })
    ])
  ),
  call("open", one),
  call("read", Schema.Tuple([Handle, Schema.optionalKey(Json)])),
  call("write", Schema.Tuple([Handle, Schema.optionalKey(Json)])),
  call(
    "log",
    Schema.Tuple([
      Schema.Literals(["debug", "info", "warn", "error"]),
      Schema.String,
      Schema.optionalKey(Schema.Record(Schema.String, Json))
    ])
  ),
  call("yield", none)
])

/** @category models */
export type Call = typeof Call.Type

/**
 * Everything the worker may post: a call, the code's result, or its failure.
 *
 * @category models
 */
export const Outgoing = Schema.Union([
  Call,
  Schema.Struct({ type: Schema.Literal("return"), value: Json }),
  Schema.Struct({ type: Schema.Literal("throw"), error: Schema.String }),
  Schema.Struct({ type: Schema.Literal("heap"), error: Schema.String }),
  Schema.Struct({ type: Schema.Literal("crash"), error: Schema.String })
])

const decodeOutgoing = Schema.decodeUnknownExit(Schema.fromJsonString(Outgoing))

type WorkerEvent =
  | { readonly _tag: "Message"; readonly data: unknown }
  | { readonly _tag: "Error"; readonly error: Error }
  | { readonly _tag: "Exit"; readonly code: number }

let threads = 0

/**
 * How many sandbox worker threads are running now, in this Node process (a thread counts until it has exited).
 *
 * @category observability
 */
export const runningThreads = (): number => threads

const defaultHeap = 64
/** The engine's memory starts at 16 MB (its WebAssembly module asks for 256 pages) and may not exceed 2 GB. */
const minHeap = 16
const maxHeap = 2048
const defaultStack = 4
const megabyte = 1024 * 1024
/** QuickJS's own stack check, as a share of the thread's stack: its frames also use V8's stack, several times more. */
const engineStackShare = 8
/** The engine's stack lives in its memory (5 MB of it); its own check must stop recursion well before that. */
const engineStackMaxBytes = 4 * megabyte
/** What the runner needs of V8's heap besides copies of one message (its JavaScript uses about 8 MB). */
const runnerHeap = 32

/** Refuses code containing `import`: the engine has no module loader, so say so before starting a thread. */
const importPattern = /\bimport\b/

/** What QuickJS throws when an allocation is refused. */
const outOfMemory = "InternalError: out of memory"

const invalid = (message: string) => new SandboxError({ reason: "invalid", message })

/** JSON-safe copy (`undefined` when the value is not JSON). */
const toJson = (value: unknown): unknown => {
  try {
    const text = JSON.stringify(value)
    return text === undefined ? undefined : JSON.parse(text)
  } catch {
    return undefined
  }
}

/** A syscall error as the code sees it: its `_tag`, `message` and primitive fields. */
const encodeError = (error: unknown): { readonly _tag: string; readonly message: string } => {
  const out: Record<string, unknown> = { _tag: "Error", message: Process.describeError(error) }
  if (typeof error === "object" && error !== null) {
    for (const [key, value] of Object.entries(error)) {
      if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") out[key] = value
    }
    const tag = (error as { readonly _tag?: unknown })._tag
    if (typeof tag === "string") out._tag = tag
    if (error instanceof Error) out.message = error.message
  }
  return out as { readonly _tag: string; readonly message: string }
}

/**
 * Makes an image that runs `code` (the body of `async (sys, args) => { … }`) in a QuickJS engine on a worker thread;
 * see the module documentation.
 *
 * @example
 * ```ts
 * const echo = Sandbox.make(
 *   `const m = await sys.recv(); await sys.send(m.caps[0], m.body); return "done"`,
 *   { allow: ["recv", "send"], limits: { heap: 32 } }
 * )
 * const { cap } = yield* Sys.spawn(echo, { quota: { wall: "5 seconds" } })
 * ```
 *
 * @category constructors
 */
export const make = <A = unknown>(code: string, options?: Options): Process.Image<A> => {
  const allow = new Set<string>(options?.allow ?? [])
  const heap = options?.limits?.heap ?? defaultHeap
  const stack = options?.limits?.stack ?? defaultStack
  return Process.make<A>(options?.name ?? "sandbox", (args) =>
    Effect.scoped(
      Effect.gen(function* () {
        if (typeof code !== "string") return yield* invalid("the code is not a string")
        if (importPattern.test(code)) return yield* invalid("the code uses `import`, which the sandbox refuses")
        if (!(Number.isFinite(heap) && heap >= minHeap && heap <= maxHeap)) {
          return yield* invalid(`limits.heap must be a number of MB from ${minHeap} to ${maxHeap}, got ${heap}`)
        }
        if (!(Number.isFinite(stack) && stack > 0)) return yield* invalid(`limits.stack must be positive, got ${stack}`)
        const argsText = JSON.stringify(toJson(args ?? null) ?? null)
        if (args !== undefined && toJson(args) === undefined) return yield* invalid("the args are not JSON")

        // the handle table: the only mapping between the numbers the code holds and this process's caps
        const refs = new Map<number, CapRef>()
        const handles = new Map<CapRef, number>()
        const handleOf = (ref: CapRef): number => {
          const known = handles.get(ref)
          if (known !== undefined) return known
          const handle = refs.size + 1
          refs.set(handle, ref)
          handles.set(ref, handle)
          return handle
        }
        for (const ref of yield* Sys.caps()) handleOf(ref)
        const refOf = (name: string, handle: number): Effect.Effect<CapRef, CapabilityError> => {
          const ref = refs.get(handle)
          return ref === undefined
            ? Effect.fail(new CapabilityError({ call: name, reason: "invalid" }))
            : Effect.succeed(ref)
        }

        const { runner, wasm } = yield* Effect.tryPromise({
          try: loadEngine,
          catch: (error) => invalid(`could not load the QuickJS engine: ${Process.describeError(error)}`)
        })
        const events = yield* Queue.unbounded<WorkerEvent>()
        const worker = yield* Effect.acquireRelease(
          Effect.try({
            try: () => {
              const thread = new ThreadWorker("code" in runner ? runner.code : runner.url, {
                eval: "code" in runner,
                name: `effect-agent-os/sandbox`,
                workerData: {
                  code,
                  args: argsText,
                  wasm,
                  heapPages: Math.floor((heap * megabyte) / 65536),
                  stackBytes: Math.floor(Math.min((stack * megabyte) / engineStackShare, engineStackMaxBytes))
                },
                // the runner's heap holds at most a copy or two of one message, and a message fits in the engine's
                resourceLimits: { maxOldGenerationSizeMb: runnerHeap + 2 * heap, stackSizeMb: stack },
                env: {},
                // the runner never prints: whatever the engine writes is read here and dropped
                stdout: true,
                stderr: true
              })
              thread.stdout.resume()
              thread.stderr.resume()
              threads++
              thread.on("message", (data: unknown) => Queue.offerUnsafe(events, { _tag: "Message", data }))
              thread.on("error", (error: Error) => Queue.offerUnsafe(events, { _tag: "Error", error }))
              thread.on("messageerror", (error: Error) => Queue.offerUnsafe(events, { _tag: "Error", error }))
              thread.once("exit", (code: number) => {
                threads--
                Queue.offerUnsafe(events, { _tag: "Exit", code })
              })
              return thread
            },
            catch: (error) => invalid(`could not start the worker: ${Process.describeError(error)}`)
          }),
          // resolves once the thread has stopped, so no code of it still holds a core
          (thread) =>
            Effect.promise(() =>
              thread.terminate().then(
                () => undefined,
                () => undefined
              )
            )
        )

        const perform = (request: Call): Effect.Effect<unknown, unknown, Sys.Sys> => {
          switch (request.call) {
            case "self":
              return Sys.self()
            case "selfCap":
              return Effect.map(Sys.selfCap(), handleOf)
            case "caps":
              return Effect.map(Sys.caps(), (caps) => caps.map(handleOf))
            case "recv":
              return Effect.map(Sys.recv(), (message) => ({
                from: message.from,
                body: toJson(message.body) ?? null,
                caps: message.caps.map(handleOf),
                ...(message.corr === undefined ? {} : { corr: message.corr })
              }))
            case "send": {
              const [to, body, sendOptions] = request.args
              return Effect.gen(function* () {
                const target = yield* refOf("send", to)
                const caps: Array<CapRef> = []
                for (const handle of sendOptions?.caps ?? []) caps.push(yield* refOf("send", handle))
                yield* Sys.send(target, body ?? null, {
                  caps,
                  ...(sendOptions?.corr === undefined ? {} : { corr: sendOptions.corr })
                })
                return null
              })
            }
            case "derive":
              return Effect.flatMap(refOf("derive", request.args[0]), (ref) =>
                Effect.map(Sys.derive(ref, request.args[1]), handleOf)
              )
            case "revoke":
              return Effect.flatMap(refOf("revoke", request.args[0]), Sys.revoke)
            case "monitor":
              return Effect.flatMap(refOf("monitor", request.args[0]), Sys.monitor)
            case "waitpid":
              return Effect.flatMap(refOf("waitpid", request.args[0]), Sys.waitpid)
            case "kill":
              return Effect.flatMap(refOf("kill", request.args[0]), (ref) => Sys.kill(ref))
            case "lookup":
              return Effect.map(Sys.lookup(request.args[0]), (found) =>
                Option.isSome(found) ? handleOf(found.value) : null
              )
            case "register":
              return Sys.register(request.args[0])
            case "budget":
              // JSON has no Infinity: unlimited reads as null
              return Effect.map(Sys.budget(), (budget) =>
                JSON.parse(JSON.stringify(budget, (_, v) => (v === Infinity ? null : v)))
              )
            case "charge":
              return Sys.charge(request.args[0])
            case "open":
              return Effect.flatMap(refOf("open", request.args[0]), (ref) => Effect.map(Sys.open(ref), handleOf))
            case "read":
              return Effect.flatMap(refOf("read", request.args[0]), (ref) => Sys.read(ref, request.args[1] ?? null))
            case "write":
              return Effect.flatMap(refOf("write", request.args[0]), (ref) => Sys.write(ref, request.args[1] ?? null))
            case "log":
              return Sys.log(request.args[0], request.args[1], request.args[2])
            case "yield":
              return Sys.yield()
          }
        }

        const reply = (message: unknown) => {
          try {
            worker.postMessage(JSON.stringify(message))
          } catch {
            // the worker is gone: its exit event ends the loop
          }
        }

        while (true) {
          const event = yield* Queue.take(events)
          if (event._tag === "Error") {
            const outOfMemory = (event.error as { readonly code?: unknown }).code === "ERR_WORKER_OUT_OF_MEMORY"
            return yield* new SandboxError({
              reason: outOfMemory ? "heap" : "crashed",
              message: outOfMemory
                ? `the sandbox ran out of memory (heap ${heap} MB): ${event.error.message}`
                : `the sandbox crashed: ${event.error.message}`
            })
          }
          if (event._tag === "Exit") {
            return yield* new SandboxError({ reason: "crashed", message: `the worker exited with code ${event.code}` })
          }
          const decoded = decodeOutgoing(event.data)
          if (Exit.isFailure(decoded)) {
            return yield* new SandboxError({
              reason: "protocol",
              message: `a bad message from the sandbox: ${decoded.cause}`
            })
          }
          const message = decoded.value
          if (message.type === "return") return
          if (message.type === "heap" || (message.type === "throw" && message.error === outOfMemory)) {
            return yield* new SandboxError({
              reason: "heap",
              message: `the sandbox ran out of memory (heap ${heap} MB): ${message.error}`
            })
          }
          if (message.type === "crash") {
            return yield* new SandboxError({ reason: "crashed", message: `the sandbox crashed: ${message.error}` })
          }
          if (message.type === "throw") {
            return yield* new SandboxError({ reason: "threw", message: `the code threw: ${message.error}` })
          }
          if (!allow.has(message.call)) {
            reply({
              id: message.id,
              ok: false,
              error: { _tag: "Denied", call: message.call, message: `sandbox: "${message.call}" is not allowed` }
            })
            continue
          }
          const result = yield* Effect.exit(perform(message))
          reply(
            Exit.isSuccess(result)
              ? { id: message.id, ok: true, value: toJson(result.value) ?? null }
              : {
                  id: message.id,
                  ok: false,
                  error: encodeError(Cause.squash(result.cause))
                }
          )
        }
      })
    )
  )
}
