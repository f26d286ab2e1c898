/**
 * Shared by the tests that run real `agentd` / `agentctl` processes: start a daemon in a directory, call it with a
 * raw JSON-RPC client (node:net, one JSON object a line), run `agentctl` and collect its output and status.
 */
import { Effect, type Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

export const root = path.resolve(import.meta.dirname, "../..")
export const agentdBin = path.join(root, "src/bin/agentd.ts")
export const nodeArgs = ["--conditions=@effect-agent-os/source", "--experimental-strip-types", "--no-warnings"]

export interface Daemon {
  readonly child: ChildProcess
  readonly socket: string
  readonly state: string
  readonly stderr: () => string
}

/** Starts agentd in `dir` and waits for its socket. */
export const startDaemon = (
  dir: string,
  baseURL: string,
  args: ReadonlyArray<string> = []
): Effect.Effect<Daemon, Error, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.callback<Daemon, Error>((resume) => {
      const state = path.join(dir, ".agentos")
      const socket = path.join(state, "agentd.sock")
      const child = spawn(process.execPath, [...nodeArgs, agentdBin, ...args], {
        cwd: dir,
        env: { ...process.env, OPENAI_BASE_URL: baseURL, OPENAI_MODEL: "test-model", OPENAI_API_KEY: "" },
        stdio: ["ignore", "pipe", "pipe"]
      })
      let err = ""
      child.stderr!.on("data", (b) => {
        err += String(b)
        if (err.includes("state in")) resume(Effect.succeed({ child, socket, state, stderr: () => err }))
      })
      child.on("exit", (code) => resume(Effect.fail(new Error(`agentd exited ${code}: ${err}`))))
    }).pipe(
      Effect.timeout("20 seconds"),
      Effect.mapError((e) => new Error(String(e)))
    ),
    (d) =>
      Effect.callback<void>((resume) => {
        if (d.child.exitCode !== null || d.child.signalCode !== null) return resume(Effect.void)
        d.child.on("exit", () => resume(Effect.void))
        d.child.kill("SIGTERM")
      })
  )

/** A raw JSON-RPC client: sends one line, reads lines until the response with that id. */
export const rawCall = (socket: string, request: unknown, timeoutMs = 15_000) =>
  Effect.callback<any, Error>((resume) => {
    const conn = net.createConnection(socket)
    let buffer = ""
    const timer = setTimeout(() => {
      conn.destroy()
      resume(Effect.fail(new Error(`no answer to ${JSON.stringify(request)}`)))
    }, timeoutMs)
    conn.on("connect", () => conn.write(`${typeof request === "string" ? request : JSON.stringify(request)}\n`))
    conn.on("data", (b) => {
      buffer += String(b)
      let nl: number
      while ((nl = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        const parsed = JSON.parse(line)
        if (parsed.method === "stream") continue
        clearTimeout(timer)
        conn.end()
        resume(Effect.succeed(parsed))
      }
    })
    conn.on("error", (e) => {
      clearTimeout(timer)
      resume(Effect.fail(e))
    })
  })

let ids = 0
export const call = (socket: string, method: string, params?: unknown) =>
  rawCall(socket, { jsonrpc: "2.0", id: ++ids, method, ...(params === undefined ? {} : { params }) })

export const waitFor = <A>(effect: Effect.Effect<A, Error>, until: (a: A) => boolean, what: string) =>
  Effect.gen(function* () {
    for (let i = 0; i < 300; i++) {
      const a = yield* effect
      if (until(a)) return a
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.fail(new Error(`timed out waiting for ${what}`))
  })

export const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "agentd-proc-"))

export const agentctlBin = path.join(root, "src/bin/agentctl.ts")

export interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs `agentctl args…` in `cwd` to its end (bounded), with `input` on stdin. */
export const agentctl = (
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly socket?: string; readonly timeoutMs?: number }
): Effect.Effect<Ran, Error> =>
  Effect.callback<Ran, Error>((resume) => {
    const child = spawn(
      process.execPath,
      [...nodeArgs, agentctlBin, ...(options.socket === undefined ? [] : ["--socket", options.socket]), ...args],
      { cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"] }
    )
    let stdout = ""
    let stderr = ""
    child.stdout!.on("data", (b) => (stdout += String(b)))
    child.stderr!.on("data", (b) => (stderr += String(b)))
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000)
    child.on("exit", (code) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, stdout, stderr }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })
