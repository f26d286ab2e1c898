#!/usr/bin/env node
/**
 * `agentd`: the kernel as a daemon. One kernel with the LLM driver (`OPENAI_BASE_URL` / `OPENAI_API_KEY` /
 * `OPENAI_MODEL`), the built-in tools and a journal, serving the `agentd` API as JSON-RPC 2.0 on a Unix socket
.
 *
 * ```sh
 * agentd [--state DIR] [--config FILE] [--socket PATH] [--http PORT] [--audit-file-bytes N] [--audit-files N]
 * ```
 *
 * - `--state DIR` (default `.agentos` in the working directory, mode 0700): the journal (`journal.jsonl`), the
 *   audit trail (`audit.jsonl`, rotated), the socket, the HTTP bearer token (`agentd.token`, 0600) and a lock
 *   (`agentd.pid`: a second daemon on the same state refuses to start; a stale lock from a killed one is taken over);
 * - `--config FILE` (default `<state>/agentd.yaml` when it exists): the LLM server, model and key variable, the
 *   socket, the HTTP port and the audit bound (`AgentdConfig`); a file that does not decode stops agentd with every
 *   problem and its path. Flags win over the file, the file over the environment;
 * - `--socket PATH` (default `<state>/agentd.sock`, mode 0600);
 * - `--http PORT`: also serve `POST /rpc` on 127.0.0.1:PORT (`0` picks a free port; the URL is printed), every
 *   request with `Authorization: Bearer <token>`, the token in `<state>/agentd.token` (0600, created on first start);
 * - `--audit-file-bytes N` (default 16 MiB), `--audit-files N` (default 5): the audit trail's rotation bound.
 *
 * The state directory and its files are checked before anything is opened (`StateFiles`: this user's, nobody else
 * may write them, no symbolic link written through); the journal's records carry MACs under `<state>/journal.key`
 * (0600, made with a new journal; `AGENTOS_JOURNAL_KEY` instead when set). A refusal exits 2; a fatal error later is
 * printed on stderr and exits 1.
 *
 * Started again after it was killed, it recovers every agent from the journal (see `Agentd`). SIGINT/SIGTERM stop it.
 *
 * @since 0.1.0
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Cause, Effect, Exit, Layer } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"
import * as Llm from "../drivers/Llm.ts"
import * as Tools from "../drivers/Tools.ts"
import * as JournalFileStore from "../services/JournalFileStore.ts"
import * as Agentd from "../daemon/Agentd.ts"
import * as AgentdConfig from "../daemon/AgentdConfig.ts"
import { Api, errorCodes } from "../daemon/Api.ts"
import * as BuiltinTools from "../daemon/BuiltinTools.ts"
import * as HttpRpc from "../daemon/HttpRpc.ts"
import * as JsonRpc from "../daemon/JsonRpc.ts"
import * as LineServer from "../daemon/LineServer.ts"
import * as StateFiles from "../daemon/StateFiles.ts"

const usage = "usage: agentd [--state DIR] [--socket PATH] [--http PORT] [--audit-file-bytes N] [--audit-files N]"

const fail = (message: string): never => {
  process.stderr.write(`agentd: ${message}\n${usage}\n`)
  process.exit(2)
}

const args = (() => {
  try {
    return parseArgs({
      options: {
        state: { type: "string" },
        socket: { type: "string" },
        http: { type: "string" },
        config: { type: "string" },
        "audit-file-bytes": { type: "string" },
        "audit-files": { type: "string" },
        help: { type: "boolean", short: "h" }
      },
      strict: true,
      allowPositionals: false
    }).values
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error))
  }
})()
if (args.help === true) {
  process.stdout.write(`${usage}\n`)
  process.exit(0)
}
const state = path.resolve(args.state ?? ".agentos")
/** A refusal of the state directory or one of its files: exit 2 with what to do. */
const checked = <A>(f: () => A): A => {
  try {
    return f()
  } catch (error) {
    return fail(error instanceof Error ? error.message : String(error))
  }
}
// before anything is read from it or written to it (see `StateFiles`)
checked(() => {
  StateFiles.prepareDir(state)
  StateFiles.checkFile(path.join(state, StateFiles.names.lock))
  for (const name of fs.readdirSync(state)) {
    if (/^audit(\.\d+)?\.jsonl$/.test(name)) StateFiles.checkFile(path.join(state, name))
  }
})
const journalFile = path.join(state, StateFiles.names.journal)
// an empty file (`touch`ed, or made by a start that died before its header) holds no journal yet
const journalExists = checked(() => StateFiles.checkFile(journalFile) && fs.statSync(journalFile).size > 0)
/**
 * The journal's integrity key: `AGENTOS_JOURNAL_KEY` when it is set (read by the store), else `<state>/journal.key`,
 * made with a new journal. A journal written before keys (it exists, the key file does not) goes on without MACs.
 */
const integrityKey = ((): string | undefined => {
  const fromEnv = process.env[JournalFileStore.integrityKeyVariable]
  if (fromEnv !== undefined) {
    return fromEnv.length > 0
      ? undefined
      : fail(`${JournalFileStore.integrityKeyVariable} is set but empty: give the key, or unset it`)
  }
  const file = path.join(state, StateFiles.names.journalKey)
  const existing = checked(() => StateFiles.readSecret(file))
  if (existing !== undefined) return existing
  if (journalExists) {
    process.stderr.write(
      `agentd: ${journalFile} has no integrity key (${file}): its records are not authenticated; ` +
        `a new state directory gets one\n`
    )
    return undefined
  }
  return checked(() => StateFiles.ensureSecret(file, state))
})()
const config = ((): AgentdConfig.AgentdConfig | undefined => {
  const file = args.config ?? path.join(state, StateFiles.names.config)
  // an operator's --config may be a link; the default one in the state directory is never followed
  const text = checked(() => StateFiles.readConfig(file, { followLinks: args.config !== undefined }))
  if (text === undefined) {
    return args.config === undefined ? undefined : fail(`cannot read the config ${file}: no such file`)
  }
  const decoded = Effect.runSyncExit(AgentdConfig.decode(text))
  if (Exit.isSuccess(decoded)) return decoded.value
  const error = Cause.squash(decoded.cause)
  const problems = error instanceof AgentdConfig.AgentdConfigError ? error.problems : []
  return fail(
    [
      `${file} is not a valid config:`,
      ...problems.map((p) => `  ${p.path === "" ? "(root)" : p.path}: ${p.message}`)
    ].join("\n")
  )
})()
const socket = path.resolve(args.socket ?? config?.socket ?? path.join(state, StateFiles.names.socket))
/** A flag that must be a non-negative integer (at least `min`). */
const integer = (name: string, text: string | undefined, min: number): number | undefined => {
  if (text === undefined) return undefined
  const n = /^\d+$/.test(text) ? Number(text) : NaN
  return Number.isSafeInteger(n) && n >= min
    ? n
    : fail(`--${name} must be an integer >= ${min}, not ${JSON.stringify(text)}`)
}
const httpPort = integer("http", args.http, 0) ?? config?.http
if (httpPort !== undefined && httpPort > 65535) fail(`--http must be a port (0-65535), not ${httpPort}`)
const auditFileBytes = integer("audit-file-bytes", args["audit-file-bytes"], 4096) ?? config?.audit.fileBytes
const auditFiles = integer("audit-files", args["audit-files"], 1) ?? config?.audit.files

/** The state directory (0700) and its lock: one daemon per state directory. */
const lock = Effect.acquireRelease(
  Effect.sync(() => {
    const file = path.join(state, StateFiles.names.lock)
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, `${process.pid}\n`, { flag: "wx", mode: 0o600 })
        return file
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error
        const holder = Number(fs.readFileSync(file, "utf8").trim())
        let alive = false
        try {
          if (Number.isInteger(holder) && holder > 0) {
            process.kill(holder, 0)
            alive = true
          }
        } catch {
          alive = false
        }
        if (alive) fail(`another agentd (pid ${holder}) runs on ${state}`)
        fs.rmSync(file, { force: true }) // stale: its daemon was killed
      }
    }
    return fail(`cannot take the lock ${file}`)
  }),
  (file) => Effect.sync(() => fs.rmSync(file, { force: true }))
)

const main = Effect.gen(function* () {
  yield* lock
  const llmConfig = config?.llm
  const apiKey = llmConfig?.apiKeyEnv === undefined ? undefined : process.env[llmConfig.apiKeyEnv]
  if (llmConfig?.apiKeyEnv !== undefined && apiKey === undefined) {
    return fail(`the config names the key variable ${llmConfig.apiKeyEnv}, which is not set`)
  }
  const llm = yield* Llm.make({
    ...(llmConfig?.baseURL === undefined ? {} : { baseURL: llmConfig.baseURL }),
    ...(llmConfig?.model === undefined ? {} : { model: llmConfig.model }),
    ...(llmConfig?.timeout === undefined ? {} : { timeout: llmConfig.timeout }),
    ...(apiKey === undefined ? {} : { apiKey })
  })
  const tools = yield* BuiltinTools.make()
  const daemon = yield* Agentd.make({
    llm,
    tools,
    definitions: Tools.definitions(BuiltinTools.toolkit),
    operator: `operator:${os.userInfo().username}`,
    audit: { dir: state, fileBytesMax: auditFileBytes, files: auditFiles },
    policies: config?.policies
  })
  const handle = yield* JsonRpc.make(Api, { errorCodes }).pipe(Effect.provide(daemon.handlers))
  yield* LineServer.serve({ path: socket }, handle)
  const lines = [`agentd: listening on ${socket}`]
  if (httpPort !== undefined) {
    const token = yield* HttpRpc.ensureToken(path.join(state, StateFiles.names.token))
    const http = yield* HttpRpc.serve({ host: "127.0.0.1", port: httpPort, token }, handle)
    lines.push(`agentd: http on ${http.url} (bearer token in ${path.join(state, StateFiles.names.token)})`)
  }
  lines.push(`agentd: state in ${state}`)
  process.stderr.write(`${lines.join("\n")}\n`)
  return yield* Effect.never
}).pipe(
  Effect.scoped,
  Effect.provide(
    JournalFileStore.layer({
      path: journalFile,
      program: "agentd",
      ...(integrityKey === undefined ? {} : { integrityKey })
    }).pipe(Layer.provideMerge(NodeServices.layer))
  )
)

NodeRuntime.runMain(
  main.pipe(
    // a fatal error is the operator's to read on stderr (stdout stays clean), then agentd exits 1
    Effect.tapCause((cause) =>
      Effect.sync(() => {
        if (Cause.hasInterruptsOnly(cause)) return
        const error = Cause.squash(cause)
        process.stderr.write(`agentd: ${error instanceof Error ? error.message : Cause.pretty(cause)}\n`)
      })
    )
  ),
  { disableErrorReporting: true }
)
