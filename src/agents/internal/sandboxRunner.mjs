/**
 * Runs one sandbox's untrusted code in a QuickJS engine (WebAssembly) inside this worker thread; its only way out is
 * `sys`.
 *
 * Plain JavaScript on purpose: a worker runs its entry file as Node loads it, with no test-runner transform. The
 * sources start this file; the built package starts it as text (`eval: true`), bundled by `scripts/build.mjs` with
 * the QuickJS glue it imports into `sandboxInline.js`, so nothing here may depend on the file's own location. The
 * parent (`Sandbox.ts`) passes `workerData` `{ code, args, wasm, heapPages, stackBytes }`: the code, the spawn
 * argument as JSON text, the compiled QuickJS module, the most pages (64 KiB) the engine's memory may grow to, and
 * the engine's stack limit. The protocol, every message a string of JSON so no object of either side is handed over:
 *
 * - to the parent: `{ type: "call", id, call, args }` for each `sys` call, then one of `{ type: "return", value }`,
 *   `{ type: "throw", error }` (the code threw or did not compile), `{ type: "heap", error }` (the engine's memory is
 *   full) or `{ type: "crash", error }` (the engine failed);
 * - from the parent: `{ id, ok: true, value }` or `{ id, ok: false, error: { _tag, message, ... } }`, made by the
 *   kernel side and parsed by the bridge inside the engine (this thread imports no `effect`: it would double the
 *   start time).
 *
 * **The engine is the boundary.** QuickJS runs as a WebAssembly instance whose linear memory is a
 * `WebAssembly.Memory` made here with a `maximum`: every byte the code can make — objects, strings, `ArrayBuffer`s,
 * typed arrays, the engine's own heap and stack — lives in it, and V8 refuses to grow it past the maximum, so
 * `malloc` fails, QuickJS throws `InternalError: out of memory`, and this runner (which sees the refused `grow`)
 * ends the sandbox with `heap` at the next step, whether or not the code caught the error: the interrupt handler
 * stops code that catches it and keeps running. (QuickJS's own `setMemoryLimit` is not used: built for Emscripten it
 * counts allocations, not their sizes.) The context has the ECMAScript built-ins only — no `process`, `require`,
 * timers, `fetch`, `WebAssembly`, `Atomics` — and no module loader. The only object of this thread it
 * can call is `post`, a QuickJS function that takes a string and returns `undefined`.
 *
 * **Nothing of the code runs first.** The bridge (below) is evaluated first: it captures the built-ins it uses,
 * makes `sys`, and replaces `eval` and the `Function` constructors with functions that throw `EvalError`. Only then
 * is the code compiled, strictly (`JS_EVAL_FLAG_STRICT`), as the body of a function declared in a block whose first
 * statement throws that function: a declaration is created without running anything, so nothing of the source text
 * — even text that closes the function early and appends statements — is executed while compiling. The bridge then
 * checks that the declared function's source is exactly the wrapper around the whole code; if the code closed the
 * function early, it does not compile (`throw`).
 */
import { parentPort, workerData } from "node:worker_threads"
import variant from "@jitl/quickjs-wasmfile-release-sync"
import { newQuickJSWASMModuleFromVariant, newVariant } from "quickjs-emscripten-core"

const callNames = [
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
]

/** The body's name inside the compiled block (visible to the code only as its own function's name). */
const bodyName = "sandboxBody"

// Runs inside QuickJS before any of the code: everything it makes belongs to the engine's realm. It returns
// `{ deliver, start }`; `start(fn, code)` checks `fn` is the body compiled from exactly `code`, then runs it.
const bridge = `(function (post, names, argsText) {
  "use strict";
  const parse = JSON.parse, stringify = JSON.stringify, freeze = Object.freeze, keys = Object.keys;
  const defineProperty = Object.defineProperty, create = Object.create, apply = Reflect.apply;
  const Err = Error, EvalErr = EvalError, P = Promise, then = Promise.prototype.then;
  const functionToString = Function.prototype.toString, split = String.prototype.split;
  const pending = create(null);
  let next = 0;
  const describe = (e) => {
    try { return e instanceof Err ? e.name + ": " + e.message : "" + e } catch (_) { return "an unprintable value" }
  };

  // code generation from strings stays off: eval and every Function constructor throw EvalError
  const refuse = function () { throw new EvalErr("code generation from strings is disabled in the sandbox") };
  const lock = (target, key, value) =>
    defineProperty(target, key, { value, writable: false, enumerable: false, configurable: false });
  const protos = [
    Function.prototype,
    Object.getPrototypeOf(async function () {}),
    Object.getPrototypeOf(function* () {}),
    Object.getPrototypeOf(async function* () {})
  ];
  lock(refuse, "prototype", Function.prototype);
  for (let i = 0; i < protos.length; i++) lock(protos[i], "constructor", refuse);
  lock(globalThis, "Function", refuse);
  lock(globalThis, "eval", refuse);

  const sys = create(null);
  const list = apply(split, names, [","]);
  for (let i = 0; i < list.length; i++) {
    const name = list[i];
    lock(sys, name, (...args) => new P((resolve, reject) => {
      const id = ++next;
      const text = stringify({ type: "call", id, call: name, args });
      pending[id] = { resolve, reject };
      post(text);
    }));
  }
  freeze(sys);

  const deliver = (text) => {
    const reply = parse(text);
    const waiter = pending[reply.id];
    if (waiter === undefined) return;
    delete pending[reply.id];
    if (reply.ok) { waiter.resolve(reply.value); return; }
    const error = new Err(reply.error.message);
    const fields = keys(reply.error);
    for (let i = 0; i < fields.length; i++) {
      defineProperty(error, fields[i], { value: reply.error[fields[i]], writable: true, enumerable: true, configurable: true });
    }
    waiter.reject(error);
  };
  const finish = (value) => {
    let text;
    try { text = stringify({ type: "return", value: value === undefined ? null : value }) }
    catch (e) { text = stringify({ type: "throw", error: "the return value is not JSON: " + describe(e) }) }
    post(text);
  };
  const fail = (e) => post(stringify({ type: "throw", error: describe(e) }));
  const start = (fn, code) => {
    const expected = "async function ${bodyName}(sys, args) {\\n" + code + "\\n}";
    if (typeof fn !== "function" || apply(functionToString, fn, []) !== expected) {
      post(stringify({ type: "throw", error: "the code does not compile: it is not one function body (it closes the function early)" }));
      return;
    }
    let result;
    try { result = fn(sys, parse(argsText)) } catch (e) { fail(e); return; }
    apply(then, result, [finish, fail]);
  };
  return { deliver, start };
})`

const send = (message) => parentPort.postMessage(JSON.stringify(message))
const describe = (error) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error))
/** An engine error as `vm.dump` gives it (a plain `{ name, message }` object), as text. */
const describeDumped = (error) =>
  typeof error === "object" && error !== null && typeof error.message === "string"
    ? `${typeof error.name === "string" ? error.name : "Error"}: ${error.message}`
    : String(error)

// The engine's whole memory: V8 refuses to grow it past `maximum`; a refused grow means the sandbox is full.
const memory = new WebAssembly.Memory({ initial: 256, maximum: workerData.heapPages })
let full = false
const grow = memory.grow
memory.grow = function (delta) {
  try {
    return grow.call(this, delta)
  } catch (error) {
    full = true
    throw error
  }
}

let ended = false
const end = (message) => {
  if (ended) return
  ended = true
  send(message)
}
const heapFull = () => end({ type: "heap", error: "the engine's memory is full" })

/**
 * Runs one entry into the engine; a full memory or a failure of the engine itself ends the sandbox. An error result
 * ends it too (the code's own errors reject its promise: only an uncatchable one gets here), unless `thrown` is set.
 */
const enter = (vm, step, thrown = false) => {
  if (ended) return
  let result
  try {
    result = step()
  } catch (error) {
    // an exception of this thread out of the engine: V8's own stack ran out, or the WebAssembly trapped
    if (full) return heapFull()
    const stack = error instanceof RangeError
    return end(
      stack
        ? { type: "throw", error: `RangeError: the stack ran out (${error.message})` }
        : { type: "crash", error: describe(error) }
    )
  }
  if (full) {
    result?.dispose?.()
    return heapFull()
  }
  if (result?.error && !thrown) {
    // only an uncatchable error reaches here (the code's own errors reject its promise)
    const error = vm.dump(result.error)
    result.error.dispose()
    end({ type: "crash", error: `the engine stopped: ${describeDumped(error)}` })
    return
  }
  return result
}

const QuickJS = await newQuickJSWASMModuleFromVariant(
  newVariant(variant, { wasmModule: workerData.wasm, wasmMemory: memory })
)
const runtime = QuickJS.newRuntime()
runtime.setMaxStackSize(workerData.stackBytes)
// QuickJS asks this every few thousand steps: once the memory is full, code that caught the error stops too
runtime.setInterruptHandler(() => full)
const vm = runtime.newContext()

const post = vm.newFunction("post", (textHandle) => {
  if (full) {
    heapFull()
    return
  }
  if (vm.typeof(textHandle) !== "string" || ended) return
  const text = vm.getString(textHandle)
  try {
    parentPort.postMessage(text)
  } catch {
    // nothing to tell the code: the parent decides what a lost call means
  }
})

const runJobs = () => {
  enter(vm, () => runtime.executePendingJobs(-1))?.dispose()
}

/** Evaluates the bridge, then compiles the code without running any of it, then starts it; returns `deliver`. */
const boot = () => {
  const booted = enter(vm, () => vm.evalCode(bridge, "sandbox-bridge.js", { strict: true }))
  if (booted === undefined) return undefined
  const makeBridge = booted.value
  const bridgeArgs = [post, vm.newString(callNames.join(",")), vm.newString(workerData.args)]
  const made = enter(vm, () => vm.callFunction(makeBridge, vm.undefined, ...bridgeArgs))
  makeBridge.dispose()
  for (const handle of bridgeArgs) handle.dispose()
  if (made === undefined) return undefined
  const api = made.value
  const deliver = vm.getProp(api, "deliver")
  const start = vm.getProp(api, "start")
  api.dispose()
  // compiled strictly; the block's first statement throws the body, so no statement of the text runs
  const compiled = enter(
    vm,
    () =>
      vm.evalCode(
        `{ throw ${bodyName}; async function ${bodyName}(sys, args) {\n${workerData.code}\n} }`,
        "sandbox.js",
        { strict: true }
      ),
    true
  )
  if (compiled === undefined) return undefined
  if (compiled.error === undefined) {
    compiled.value.dispose()
    end({ type: "throw", error: "the code does not compile: it is not one function body" })
    return undefined
  }
  const fn = compiled.error
  if (vm.typeof(fn) !== "function") {
    const error = vm.dump(fn)
    fn.dispose()
    end({ type: "throw", error: `the code does not compile: ${describeDumped(error)}` })
    return undefined
  }
  const code = vm.newString(workerData.code)
  enter(vm, () => vm.callFunction(start, vm.undefined, fn, code))?.dispose()
  fn.dispose()
  code.dispose()
  start.dispose()
  runJobs()
  return deliver
}

const deliver = boot()

parentPort.on("message", (message) => {
  // replies are JSON text made by the kernel side (Sandbox.ts); the bridge parses them inside the engine
  if (ended || deliver === undefined || typeof message !== "string") return
  const text = vm.newString(message)
  enter(vm, () => vm.callFunction(deliver, vm.undefined, text))?.dispose()
  text.dispose()
  runJobs()
})
