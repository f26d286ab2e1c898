/**
 * Shared by the in-process daemon tests: the daemon's core (`Agentd.make`) over a scripted model, the built-in tools
 * and a journal store, called through its JSON-RPC handler with the exact lines a socket client sends.
 */
import { assert } from "@effect/vitest"
import { Effect, Layer, type Scope } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { Agentd, AgentdApi, BuiltinTools, Journal, JsonRpc, type Policy, Tools } from "effect-agent-os"
import { ScriptedLlm } from "effect-agent-os/testing"

export type Step = ScriptedLlm.Step
export type Response = { result?: any; error?: { code: number; message: string; data?: any } }
export type Rpc = (method: string, params?: unknown) => Effect.Effect<Response>

/** A daemon over `store` and `script`; `rpc` sends one request, `rpcStream` collects a stream method's items. */
export const daemon = (
  script: ReadonlyArray<Step | ((request: any) => Step)>,
  store: Journal.JournalStore = Journal.makeMemoryStore(),
  policies?: Policy.PolicySet
) =>
  Effect.gen(function* () {
    const llm = ScriptedLlm.make(script)
    const tools = yield* BuiltinTools.make()
    const d = yield* Agentd.make({
      llm,
      tools,
      definitions: Tools.definitions(BuiltinTools.toolkit),
      operator: "tester",
      policies
    })
    const handle = yield* JsonRpc.make(AgentdApi.Api, { errorCodes: AgentdApi.errorCodes }).pipe(
      Effect.provide(d.handlers)
    )
    let id = 0
    const request = (method: string, params?: unknown) =>
      JSON.stringify({ jsonrpc: "2.0", id: ++id, method, ...(params === undefined ? {} : { params }) })
    const rpc: Rpc = (method, params) =>
      Effect.map(handle(request(method, params)), (line) => JSON.parse(line!) as Response)
    const rpcStream: Rpc = (method, params) =>
      Effect.gen(function* () {
        const items: Array<unknown> = []
        const line = yield* handle(request(method, params), {
          emit: (l) => Effect.sync(() => void items.push(JSON.parse(l).params.item)),
          closed: Effect.never
        })
        const final = JSON.parse(line!) as Response
        return final.error === undefined ? { result: items } : { error: final.error }
      })
    return { ...d, rpc, rpcStream, llm }
  }).pipe(Effect.provide(Layer.succeed(Journal.JournalStoreService)(store)))

/** A fresh directory, its real path (macOS's /tmp is a symlink). */
export const tmp = (prefix = "agentd-core-") => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), prefix)))

export const lines = (ls: ReadonlyArray<string>) => ls.join("\n")

export const ok = <A = any>(response: Response): A => {
  assert.isUndefined(response.error, `error: ${JSON.stringify(response.error)}`)
  return response.result as A
}

export const reasonOf = (response: Response) => {
  assert.isDefined(response.error, `expected an error, got ${JSON.stringify(response.result)}`)
  return response.error!.data?.reason as string | undefined
}

/** Polls `approval.list` until a request is pending. */
export const pendingApproval = (rpc: Rpc) =>
  Effect.gen(function* () {
    for (let i = 0; i < 400; i++) {
      const list = (yield* rpc("approval.list")).result as ReadonlyArray<AgentdApi.ApprovalInfo>
      if (list.length > 0) return list
      yield* Effect.sleep("5 millis")
    }
    return assert.fail("no approval was requested")
  })

/** Runs `effect` scoped, failing the test if it takes longer than `ms`. */
export const bounded = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>, ms = 10_000) =>
  Effect.scoped(effect).pipe(
    Effect.timeoutOrElse({
      duration: ms,
      orElse: () => Effect.sync(() => assert.fail(`took more than ${ms} ms`))
    })
  )
