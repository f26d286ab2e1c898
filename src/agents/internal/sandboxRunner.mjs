/**
 * Runs one sandbox's untrusted code in a fresh V8 context of this worker thread; its only way out is `sys`.
 *
 * Plain JavaScript on purpose: a worker runs its entry file as Node loads it, with no test-runner transform. The
 * parent (`Sandbox.ts`) passes `workerData` `{ code, args }` (`args` as JSON text). The protocol, every message a
 * string of JSON so no object of this realm is handed to the parent or to the code:
 *
 * - to the parent: `{ type: "call", id, call, args }` for each `sys` call, then one of `{ type: "return", value }` or
 *   `{ type: "throw", error }` (the code threw, did not compile, or a reply was invalid);
 * - from the parent: `{ id, ok: true, value }` or `{ id, ok: false, error: { _tag, message, ... } }`, decoded with a
 *   Schema before the code sees it.
 *
 * The code runs in a context made with `vm.constants.DONT_CONTEXTIFY` and no code generation from strings or wasm:
 * its globals are the ECMAScript built-ins only (no `process`, `require`, `import()`, timers, `Buffer`, `fetch`).
 * Nothing of this realm is given to it but one function, `post`, kept in a closure of the bootstrap (which captures
 * the built-ins it uses before the code runs): `post` takes a string, returns `undefined` and never throws, so the
 * code never holds an object whose constructor is this realm's `Function`. Replies enter the context as strings,
 * parsed there. `import()` would reject with an error of this realm, so the parent refuses code that contains the
 * word `import` before this runner starts.
 */
import { parentPort, workerData } from "node:worker_threads"
import vm from "node:vm"
import * as Schema from "effect/Schema"

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

const Reply = Schema.Union([
  Schema.Struct({ id: Schema.Int, ok: Schema.Literal(true), value: Schema.Json }),
  Schema.Struct({
    id: Schema.Int,
    ok: Schema.Literal(false),
    error: Schema.StructWithRest(Schema.Struct({ _tag: Schema.String, message: Schema.String }), [
      Schema.Record(Schema.String, Schema.Json)
    ])
  })
])
const decodeReply = Schema.decodeUnknownExit(Reply)

// Runs inside the context: everything it makes belongs to the context's realm.
const bootstrap = `(function (post, names, argsText) {
  "use strict";
  const parse = JSON.parse, stringify = JSON.stringify, assign = Object.assign, freeze = Object.freeze;
  const Err = Error, P = Promise, Str = String, pending = new Map();
  let next = 0;
  const describe = (e) => {
    try { return e instanceof Err ? e.name + ": " + e.message : Str(e) } catch (_) { return "an unprintable value" }
  };
  const sys = {};
  for (const name of names.split(",")) {
    sys[name] = (...args) => new P((resolve, reject) => {
      const id = ++next;
      const text = stringify({ type: "call", id, call: name, args });
      pending.set(id, { resolve, reject });
      post(text);
    });
  }
  freeze(sys);
  const deliver = (text) => {
    const reply = parse(text);
    const waiter = pending.get(reply.id);
    if (waiter === undefined) return;
    pending.delete(reply.id);
    if (reply.ok) waiter.resolve(reply.value);
    else waiter.reject(assign(new Err(reply.error.message), reply.error));
  };
  const run = (fn) => {
    P.resolve()
      .then(() => fn(sys, parse(argsText)))
      .then(
        (value) => {
          let text;
          try { text = stringify({ type: "return", value: value === undefined ? null : value }) }
          catch (e) { text = stringify({ type: "throw", error: "the return value is not JSON: " + describe(e) }) }
          post(text);
        },
        (e) => post(stringify({ type: "throw", error: describe(e) }))
      );
  };
  return { deliver, run };
})`

const send = (message) => parentPort.postMessage(JSON.stringify(message))

const post = (text) => {
  if (typeof text === "string") {
    try {
      parentPort.postMessage(text)
    } catch {
      // nothing to tell the code: the parent decides what a lost call means
    }
  }
  return undefined
}

const context = vm.createContext(vm.constants.DONT_CONTEXTIFY, {
  name: "sandbox",
  codeGeneration: { strings: false, wasm: false }
})

let fn
try {
  fn = new vm.Script(`(async function (sys, args) {\n"use strict";\n${workerData.code}\n})`, {
    filename: "sandbox.js"
  }).runInContext(context)
} catch (error) {
  send({ type: "throw", error: `the code does not compile: ${error instanceof Error ? error.message : String(error)}` })
}

if (typeof fn === "function") {
  const bridge = new vm.Script(bootstrap, { filename: "sandbox-bootstrap.js" }).runInContext(context)
  const { deliver, run } = bridge(post, callNames.join(","), workerData.args)
  // the code may have tampered with the built-ins the bridge uses: whatever it throws is not looked at
  const guarded = (effect) => {
    try {
      effect()
    } catch {
      send({ type: "throw", error: "the code broke the sys bridge" })
    }
  }
  parentPort.on("message", (message) => {
    const reply = decodeReply(typeof message === "string" ? safeParse(message) : message)
    if (reply._tag === "Failure") {
      send({ type: "throw", error: `the kernel sent an invalid reply: ${String(reply.cause)}` })
      return
    }
    guarded(() => deliver(JSON.stringify(reply.value)))
  })
  guarded(() => run(fn))
}

function safeParse(text) {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
