/**
 * Answers the jobs of one pool worker: `{ id, task, input }` in, `{ id, ok, value | error }` out, one at a time.
 *
 * Plain JavaScript on purpose: a worker runs its entry file as Node loads it, with no test-runner transform. The
 * sources start this file; the built package starts it as text (`eval: true`, inlined into `workerRunnerInline.js`
 * by `scripts/build.mjs`), so nothing here may depend on the file's own location. The parent (`workerPool.ts`)
 * passes `workerData`, one of:
 *
 * - `{ mode: "module", url }`: imports the ES module at `url`; a task is one of its exported functions, called with
 *   `input` (it may return a Promise);
 * - `{ mode: "wasm", modules }`: a record of compiled zero-import `WebAssembly.Module`s; a task names a module, its
 *   input is `{ export, args }`, and each job runs the export on a fresh instance, so no call sees another's memory.
 *
 * Once loaded, the runner posts `{ type: "ready", tasks }` (the module's function exports). A module that fails to
 * load is left as an uncaught error: the worker emits `error` and exits, and the parent reports it. Results travel as
 * JSON values (they are journaled): `undefined` becomes `null`, a `Date` its ISO string, and a result JSON cannot
 * carry (a cycle, a `BigInt`, a non-finite wasm number) fails the job. A failed job answers `{ id, ok: false,
 * error, reason }`, `reason` being `task-failed` unless the job itself was malformed.
 */
import { parentPort, workerData } from "node:worker_threads"

const describe = (error) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error))

class JobError extends Error {
  constructor(reason, message) {
    super(message)
    this.reason = reason
  }
}

const toJson = (value) => {
  let text
  try {
    text = JSON.stringify(value)
  } catch (error) {
    throw new JobError("task-failed", `the result is not JSON: ${describe(error)}`)
  }
  return text === undefined ? null : JSON.parse(text)
}

const loadModule = async (url) => {
  const module = await import(url)
  const tasks = Object.keys(module).filter((name) => typeof module[name] === "function")
  return { tasks, run: (task, input) => module[task](input) }
}

const wasmNumber = (value) => {
  if (typeof value === "bigint") {
    if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new JobError("task-failed", `the i64 result ${value} is beyond JSON's safe integers`)
    }
    return Number(value)
  }
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new JobError("task-failed", `the result ${value} is not a JSON number`)
  }
  return value
}

const loadWasm = async (modules) => ({
  tasks: [],
  run: (task, input) => {
    const module = Object.hasOwn(modules, task) ? modules[task] : undefined
    if (module === undefined) throw new JobError("not-found", `no wasm module "${task}"`)
    const instance = new WebAssembly.Instance(module, {})
    const exported = Object.hasOwn(instance.exports, input.export) ? instance.exports[input.export] : undefined
    if (typeof exported !== "function") {
      throw new JobError("not-found", `"${task}" exports no function "${input.export}"`)
    }
    if (exported.length !== input.args.length) {
      const message = `"${input.export}" takes ${exported.length} arguments, got ${input.args.length}`
      throw new JobError("invalid-request", message)
    }
    const result = exported(...input.args)
    return Array.isArray(result) ? result.map(wasmNumber) : result === undefined ? null : wasmNumber(result)
  }
})

const loaded = workerData.mode === "wasm" ? loadWasm(workerData.modules) : loadModule(workerData.url)

loaded.then(({ tasks }) => parentPort.postMessage({ type: "ready", tasks }))

parentPort.on("message", async ({ id, task, input }) => {
  const { run } = await loaded
  let reply
  try {
    reply = { id, ok: true, value: toJson(await run(task, input)) }
  } catch (error) {
    const reason = error instanceof JobError ? error.reason : "task-failed"
    reply = { id, ok: false, reason, error: error instanceof JobError ? error.message : describe(error) }
  }
  parentPort.postMessage(reply)
})
