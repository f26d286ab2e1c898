/**
 * `agentctl mcp FILE...`: agents as an MCP server, driven by the MCP SDK's own client over stdio against a real
 * agentd. A call runs the agent on the daemon (its manifest's caps and budget) and stops it once it has answered;
 * bad arguments, an unknown tool, an agent that runs out of budget and a daemon that is gone are `isError`
 * results; invalid manifests stop the server before it serves.
 */
import { assert, describe, it } from "@effect/vitest"
import { Client } from "@modelcontextprotocol/sdk/client/index.js"
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js"
import * as fs from "node:fs"
import * as path from "node:path"
import { Effect } from "effect"
import { OpenAiServer } from "effect-agent-os/testing"
import { agentctl, agentctlBin, call, nodeArgs, startDaemon, tmp } from "./processHarness.ts"

const connect = (socket: string, files: ReadonlyArray<string>, cwd: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const client = new Client({ name: "test", version: "1.0.0" })
      await client.connect(
        new StdioClientTransport({
          command: process.execPath,
          args: [...nodeArgs, agentctlBin, "--socket", socket, "mcp", ...files],
          cwd,
          stderr: "ignore"
        })
      )
      return client
    }),
    (client) => Effect.promise(() => client.close())
  )

const textOf = (result: unknown) =>
  ((result as { content: Array<{ type: string; text: string }> }).content[0] ?? { text: "" }).text

describe("agentctl mcp", () => {
  it.live(
    "each manifest is a tool; a call runs the agent and stops it; bad calls and budgets are isError",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const server = yield* OpenAiServer.make([
            OpenAiServer.toolCalls([{ name: "echo", arguments: { text: "hello" } }]),
            OpenAiServer.text("The tool said hello")
          ])
          const dir = tmp()
          const d = yield* startDaemon(dir, server.baseURL)
          const helper = path.join(dir, "helper.yaml")
          fs.writeFileSync(
            helper,
            'name: helper\nsystem_prompt: "You help."\ncapabilities: ["tool: echo"]\nbudget: { tokens: 20000 }\n'
          )
          const tiny = path.join(dir, "tiny.yaml")
          fs.writeFileSync(tiny, 'name: tiny\ncapabilities: ["tool: echo"]\nbudget: { tokens: 1 }\n')
          const client = yield* connect(d.socket, [helper, tiny], dir)
          const { tools } = yield* Effect.promise(() => client.listTools())
          assert.deepStrictEqual(
            tools.map((t) => t.name),
            ["helper", "tiny"]
          )
          assert.include(tools[0]!.description, "You help.")
          assert.deepStrictEqual(tools[0]!.inputSchema.required, ["message"])

          const ran = yield* Effect.promise(() =>
            client.callTool({ name: "helper", arguments: { message: "say hello" } })
          )
          assert.notStrictEqual(ran.isError, true, JSON.stringify(ran))
          assert.strictEqual(textOf(ran), "The tool said hello")
          const structured = ran.structuredContent as { pid: number; steps: number; spend: { toolCalls: number } }
          assert.strictEqual(structured.spend.toolCalls, 1)
          // stopped once it answered
          const status = yield* call(d.socket, "agent.status", { pid: structured.pid })
          assert.strictEqual(status.result?.status, "exited", JSON.stringify(status))

          // arguments other than { message: string }: refused before anything runs
          for (const args of [{ message: 5 }, {}, { message: "x", manifest: "name: evil" }]) {
            const bad = yield* Effect.promise(() => client.callTool({ name: "helper", arguments: args }))
            assert.isTrue(bad.isError, JSON.stringify(bad))
          }
          const unknown = yield* Effect.promise(() => client.callTool({ name: "nobody", arguments: { message: "x" } }))
          assert.isTrue(unknown.isError)
          // over budget: the daemon's kernel ends the agent, the tool says why
          const broke = yield* Effect.promise(() => client.callTool({ name: "tiny", arguments: { message: "x" } }))
          assert.isTrue(broke.isError, JSON.stringify(broke))
          assert.include(textOf(broke), "run-failed")
          // two model calls for helper; none for the bad calls, nor for tiny (its reservation did not fit)
          assert.strictEqual((yield* server.received).length, 2)
        })
      ),
    90_000
  )

  it.live("invalid manifests or two with one name: exit 1 with every problem, nothing served", () =>
    Effect.gen(function* () {
      const dir = tmp()
      const good = path.join(dir, "good.yaml")
      fs.writeFileSync(good, "name: good\n")
      const bad = path.join(dir, "bad.yaml")
      fs.writeFileSync(bad, "name: 5\nbudget: { tokens: -1 }\n")
      const r = yield* agentctl(["mcp", good, bad, good], { cwd: dir, socket: path.join(dir, "none.sock") })
      assert.strictEqual(r.code, 1)
      assert.include(r.stderr, "bad.yaml")
      assert.include(r.stderr, "a second agent named good")
    })
  )

  it.live("a daemon that is not there: the call is isError naming it; the server goes on", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const dir = tmp()
        const file = path.join(dir, "a.yaml")
        fs.writeFileSync(file, "name: a\n")
        const client = yield* connect(path.join(dir, "none.sock"), [file], dir)
        for (let i = 0; i < 2; i++) {
          const r = yield* Effect.promise(() => client.callTool({ name: "a", arguments: { message: "x" } }))
          assert.isTrue(r.isError)
          assert.include(textOf(r), "a:")
        }
      })
    )
  )
})
