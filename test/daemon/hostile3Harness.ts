/**
 * What the DaemonHostile3 tests share: agentd and agentctl as processes, bounded, and what they refuse.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { agentctlBin, agentdBin, nodeArgs, tmp } from "./processHarness.ts"

// the sources, as the other process tests run them (a concurrent `npm run build` empties dist/ for a while)
export const agentdJs = agentdBin
export const agentctlJs = agentctlBin

export const isRoot = process.getuid?.() === 0
/** A uid that is not ours (root may chown a file to it). */
export const otherUid = 4242

// -----------------------------------------------------------------------------------------------------------------
// processes
// -----------------------------------------------------------------------------------------------------------------

export interface Launched {
  readonly ready: boolean
  readonly code: number | null
  readonly child: ChildProcess
  readonly socket: string
  readonly stderr: () => string
  readonly ms: number
}

/** agentd with `args` in `cwd`: `ready` once it listens, or its exit code when it refused. Stopped with the scope. */
export const launch = (
  cwd: string,
  args: ReadonlyArray<string>,
  env: Record<string, string | undefined> = {},
  baseURL = "http://127.0.0.1:9/v1"
) =>
  Effect.acquireRelease(
    Effect.callback<Launched>((resume) => {
      assert.isAtLeast(Number(process.versions.node.split(".")[0]), 22, "agentd runs from its sources: Node >= 22.6")
      const started = Date.now()
      const environment: Record<string, string | undefined> = {
        ...process.env,
        OPENAI_BASE_URL: baseURL,
        OPENAI_MODEL: "test-model",
        OPENAI_API_KEY: "",
        ...env
      }
      for (const [k, v] of Object.entries(environment)) if (v === undefined) delete environment[k]
      const child = spawn(process.execPath, [...nodeArgs, agentdJs, ...args], {
        cwd,
        env: environment as NodeJS.ProcessEnv,
        stdio: ["ignore", "pipe", "pipe"]
      })
      let err = ""
      let done = false
      const socketOf = () => /listening on (\S+)/.exec(err)?.[1] ?? ""
      const settle = (ready: boolean, code: number | null) => {
        if (done) return
        done = true
        resume(Effect.succeed({ ready, code, child, socket: socketOf(), stderr: () => err, ms: Date.now() - started }))
      }
      child.stdout!.on("data", () => {})
      child.stderr!.on("data", (b) => {
        err += String(b)
        if (err.includes("state in")) settle(true, null)
      })
      child.on("close", (code) => settle(false, code))
      const timer = setTimeout(() => settle(false, null), 20_000)
      child.on("exit", () => clearTimeout(timer))
    }),
    (l) =>
      Effect.callback<void>((resume) => {
        if (l.child.exitCode !== null || l.child.signalCode !== null) return resume(Effect.void)
        l.child.on("exit", () => resume(Effect.void))
        l.child.kill("SIGTERM")
        setTimeout(() => l.child.kill("SIGKILL"), 5_000)
      })
  )

export interface Ran {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  readonly ms: number
  readonly killed: boolean
}

/** `agentctl args…` to its end, SIGKILLed after `timeoutMs` (then `killed`). */
export const ctl = (
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env?: Record<string, string | undefined>; readonly timeoutMs?: number }
) =>
  Effect.callback<Ran>((resume) => {
    const started = Date.now()
    const environment: Record<string, string | undefined> = { ...process.env, ...options.env }
    for (const [k, v] of Object.entries(environment)) if (v === undefined) delete environment[k]
    const child = spawn(process.execPath, [...nodeArgs, agentctlJs, ...args], {
      cwd: options.cwd,
      env: environment as NodeJS.ProcessEnv,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let stdout = ""
    let stderr = ""
    let killed = false
    child.stdout!.on("data", (b) => (stdout += String(b)))
    child.stderr!.on("data", (b) => (stderr += String(b)))
    const timer = setTimeout(() => {
      killed = true
      child.kill("SIGKILL")
    }, options.timeoutMs ?? 30_000)
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resume(Effect.succeed({ code, signal, stdout, stderr, ms: Date.now() - started, killed }))
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

export const stackTrace = /\n\s+at [^\n]+\([^)]*:\d+:\d+\)/

/** A fresh `<dir>/.agentos` (0700); `dir` too. */
export const fresh = () => {
  const dir = tmp()
  const state = path.join(dir, ".agentos")
  fs.mkdirSync(state, { mode: 0o700 })
  return { dir, state }
}

/** agentd on `state` must refuse to start (exit 2) within a bounded time, or at least not start. */
export const refuses = (what: string, l: Launched, problems: Array<string>, code: number | null = 2) => {
  if (l.ready) problems.push(`${what}: agentd started (${l.stderr().trim().replaceAll("\n", " / ")})`)
  else if (l.code === null) problems.push(`${what}: agentd neither started nor exited in 20 s (hung)`)
  else if (code !== null && l.code !== code)
    problems.push(`${what}: exit ${l.code}, not ${code}: ${l.stderr().trim().replaceAll("\n", " / ")}`)
}

export const hasMacs = (journal: string) => {
  const first = fs.readFileSync(journal, "utf8").split("\n")[0] ?? ""
  return first.includes('"mac"')
}

// -----------------------------------------------------------------------------------------------------------------
// 1. the state directory and its files
// -----------------------------------------------------------------------------------------------------------------
