/**
 * The real `agentctl` process against a real `agentd` process, on a real socket, with the test kit's loopback
 * OpenAI-compatible server and real YAML files: every command, its `--json`, its progress on stderr, its exit status
 * on failure; `trace -f` following live; `replay` of the daemon's journal, identical, and not once it is changed;
 * `--http` with its bearer token.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { spawn } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { OpenAiServer } from "effect-agent-os/testing"
import { agentctl, agentctlBin, call, nodeArgs, root, startDaemon, tmp, waitFor } from "./processHarness.ts"

const echoYaml = path.join(root, "test/daemon/fixtures/echo-agent.yaml")

describe("agentctl", () => {
  it.live("validate: a good manifest exits 0; a bad one exits 1 with every problem and its path; --json", () =>
    Effect.gen(function* () {
      const dir = tmp()
      const good = yield* agentctl(["validate", echoYaml], { cwd: dir })
      assert.strictEqual(good.code, 0, good.stderr)
      assert.include(good.stdout, "valid (echo-agent)")
      const bad = path.join(dir, "bad.yaml")
      fs.writeFileSync(bad, "name: 3\ncapabilities: ['teleport: everywhere']\nbudget: { tokens: -5 }\n")
      const refused = yield* agentctl(["validate", bad], { cwd: dir })
      assert.strictEqual(refused.code, 1)
      assert.include(refused.stderr, "invalid")
      assert.include(refused.stderr, "name")
      assert.include(refused.stderr, "capabilities")
      assert.include(refused.stderr, "budget")
      const json = yield* agentctl(["validate", bad, "--json"], { cwd: dir })
      assert.strictEqual(json.code, 1)
      const report = JSON.parse(json.stdout)
      assert.isFalse(report.valid)
      assert.isAtLeast(report.problems.length, 3)
      const missing = yield* agentctl(["validate", path.join(dir, "nope.yaml")], { cwd: dir })
      assert.strictEqual(missing.code, 1)
      assert.include(missing.stderr, "cannot read")
    })
  )

  it.live("no daemon: every command that needs one exits 1 saying it cannot reach agentd", () =>
    Effect.gen(function* () {
      const dir = tmp()
      for (const args of [["ps"], ["approvals"], ["kill", "3"], ["trace"]]) {
        const r = yield* agentctl(args, { cwd: dir })
        assert.strictEqual(r.code, 1, `${args.join(" ")}: ${r.stdout}`)
        assert.include(r.stderr, "cannot reach agentd", args.join(" "))
      }
      const usage = yield* agentctl(["kill", "not-a-pid"], { cwd: dir })
      assert.notStrictEqual(usage.code, 0)
    })
  )

  it.live(
    "run with progress on stderr and the answer on stdout; ps, trace, stop, kill; failures exit 1; replay identical, then changed",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const server = yield* OpenAiServer.make([
            OpenAiServer.toolCalls([{ name: "echo", arguments: { text: "hello from a tool" } }]),
            OpenAiServer.text("The tool said: hello from a tool"),
            OpenAiServer.text("second answer")
          ])
          const journal = path.join(dir, ".agentos", "journal.jsonl")
          yield* Effect.scoped(
            Effect.gen(function* () {
              const d = yield* startDaemon(dir, server.baseURL)
              const ran = yield* agentctl(["run", echoYaml, "use the echo tool"], { cwd: dir })
              assert.strictEqual(ran.code, 0, ran.stderr)
              assert.strictEqual(ran.stdout.trim(), "The tool said: hello from a tool")
              assert.match(ran.stderr, /started echo-agent as pid \d+/)
              assert.include(ran.stderr, "model call 1")
              assert.include(ran.stderr, "tool call 1")
              assert.include(ran.stderr, "done in")
              const pid = Number(/as pid (\d+)/.exec(ran.stderr)![1])

              const json = yield* agentctl(["run", echoYaml, "again", "--json"], { cwd: dir })
              assert.strictEqual(json.code, 0, json.stderr)
              const answer = JSON.parse(json.stdout)
              assert.strictEqual(answer.answer, "second answer")
              assert.isAbove(answer.spend.tokens, 0)

              const ps = yield* agentctl(["ps", "--json"], { cwd: dir })
              assert.strictEqual(ps.code, 0, ps.stderr)
              const rows = JSON.parse(ps.stdout) as Array<{ pid: number; name: string }>
              assert.isTrue(rows.some((r) => r.pid === pid && r.name === "echo-agent"))
              const table = yield* agentctl(["ps"], { cwd: dir })
              assert.match(table.stdout, /^PID\s+NAME\s+PARENT\s+STATUS/)
              assert.include(table.stdout, "echo-agent")

              const trace = yield* agentctl(["trace", "--json", "--pid", String(pid)], { cwd: dir })
              assert.strictEqual(trace.code, 0, trace.stderr)
              const events = trace.stdout
                .trim()
                .split("\n")
                .map((l) => JSON.parse(l))
              assert.isTrue(events.length > 0 && events.every((e) => e.pid === pid))
              assert.strictEqual(events[0]._tag, "Spawn")

              // trace -f: a follower sees an agent spawned after it started
              const follower = spawn(process.execPath, [...nodeArgs, agentctlBin, "trace", "-f", "--json"], {
                cwd: dir,
                stdio: ["ignore", "pipe", "pipe"]
              })
              let followed = ""
              follower.stdout!.on("data", (b) => (followed += String(b)))
              const spawned = yield* agentctl(["spawn", echoYaml, "--json"], { cwd: dir })
              assert.strictEqual(spawned.code, 0, spawned.stderr)
              const second = JSON.parse(spawned.stdout).pid as number
              yield* waitFor(
                Effect.sync(() => followed),
                (text) => text.split("\n").some((l) => l.includes(`"Spawn"`) && l.includes(`"pid":${second}`)),
                "the follower to see the spawn"
              )
              follower.kill("SIGINT")

              const stopped = yield* agentctl(["stop", String(second)], { cwd: dir })
              assert.strictEqual(stopped.code, 0, stopped.stderr)
              assert.strictEqual(stopped.stdout.trim(), `stopped ${second}`)
              const again = yield* agentctl(["stop", String(second)], { cwd: dir })
              assert.strictEqual(again.code, 1)
              assert.include(again.stderr, "not-running")
              const foreign = yield* agentctl(["kill", "1"], { cwd: dir })
              assert.strictEqual(foreign.code, 1)
              assert.include(foreign.stderr, "not-allowed")
              const unknown = yield* agentctl(["deny", "no-such-id", "--reason", "x"], { cwd: dir })
              assert.strictEqual(unknown.code, 1)
              assert.include(unknown.stderr, "unknown-approval")
              const badFile = path.join(dir, "bad.yaml")
              fs.writeFileSync(badFile, "name: [\n")
              const badSpawn = yield* agentctl(["spawn", badFile], { cwd: dir })
              assert.strictEqual(badSpawn.code, 1)
              assert.include(badSpawn.stderr, "agentctl:")
              // the daemon's answers after all of that
              const list = yield* call(d.socket, "agent.list")
              assert.isAtLeast(list.result.length, 2)
            })
          )
          // the daemon is stopped: its journal replays offline, identical to the audit trail
          const calls = (yield* server.received).length
          const replay = yield* agentctl(["replay", journal], { cwd: dir, timeoutMs: 60_000 })
          assert.strictEqual(replay.code, 0, `${replay.stdout}\n${replay.stderr}`)
          assert.include(replay.stdout, "identical to the recorded run")
          assert.strictEqual((yield* server.received).length, calls, "the replay asked no model")
          const report = JSON.parse((yield* agentctl(["replay", journal, "--json"], { cwd: dir })).stdout)
          assert.isTrue(report.identical)
          assert.isAbove(report.events, 10)
          assert.isTrue(report.authenticated, "agentd made the journal's integrity key")
          // a model answer changed in the journal: refused (its MAC), or not identical (a divergence or a difference)
          const text = fs.readFileSync(journal, "utf8")
          assert.include(text, "The tool said")
          fs.writeFileSync(journal, text.replace("The tool said: hello from a tool", "The tool said: something else"))
          const changed = yield* agentctl(["replay", journal], { cwd: dir, timeoutMs: 60_000 })
          assert.strictEqual(changed.code, 1, changed.stdout)
          assert.match(changed.stdout + changed.stderr, /MAC does not verify|differs|diverged|not identical/)
        })
      ),
    120_000
  )

  it.live(
    "approvals: run waits and says so on stderr; approvals lists it; deny --reason ends the wait",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const out = path.join(dir, "out")
          fs.mkdirSync(out)
          const target = path.join(out, "report.txt")
          const server = yield* OpenAiServer.make([
            OpenAiServer.toolCalls([{ name: "file_write", arguments: { path: target, content: "text" } }]),
            OpenAiServer.text("could not write it")
          ])
          const manifest = path.join(dir, "writer.yaml")
          fs.writeFileSync(
            manifest,
            [
              "name: writer",
              `capabilities: ["file_write: ${out}/*"]`,
              "approval_required: [file_write]",
              "budget: { tokens: 100000, tool_calls: 5 }"
            ].join("\n")
          )
          yield* startDaemon(dir, server.baseURL)
          const running = yield* Effect.forkChild(agentctl(["run", manifest, "write the report"], { cwd: dir }))
          const listed = yield* waitFor(
            agentctl(["approvals", "--json"], { cwd: dir }),
            (r) => r.code === 0 && JSON.parse(r.stdout).length === 1,
            "a pending approval"
          )
          const approval = JSON.parse(listed.stdout)[0]
          assert.strictEqual(approval.tool, "file_write")
          assert.strictEqual(approval.agent, "writer")
          const human = yield* agentctl(["approvals"], { cwd: dir })
          assert.include(human.stdout, approval.id)
          const denied = yield* agentctl(["deny", approval.id, "--reason", "not today"], { cwd: dir })
          assert.strictEqual(denied.code, 0, denied.stderr)
          const ran = yield* Fiber.join(running)
          assert.strictEqual(ran.code, 0, ran.stderr)
          assert.strictEqual(ran.stdout.trim(), "could not write it")
          assert.include(ran.stderr, `waits for approval ${approval.id}`)
          assert.include(ran.stderr, "denied")
          assert.isFalse(fs.existsSync(target))
          // the model read who denied it and why
          const received = yield* server.received
          assert.include(JSON.stringify(received[1].messages), "not today")
        })
      ),
    90_000
  )

  it.live(
    "--http: POST /rpc with the token from agentd.token (0600); without it 401, nothing runs",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const dir = tmp()
          const server = yield* OpenAiServer.make([])
          const d = yield* startDaemon(dir, server.baseURL, ["--http", "0"])
          const url = /http on (\S+)/.exec(d.stderr())![1]!
          const tokenFile = path.join(d.state, "agentd.token")
          assert.strictEqual(fs.statSync(tokenFile).mode & 0o777, 0o600)
          const token = fs.readFileSync(tokenFile, "utf8").trim()
          const post = (headers: Record<string, string>, body: unknown) =>
            Effect.promise(() =>
              fetch(url, {
                method: "POST",
                headers: { "Content-Type": "application/json", ...headers },
                body: JSON.stringify(body)
              }).then(async (r) => ({ status: r.status, text: await r.text() }))
            )
          const spawnRequest = { jsonrpc: "2.0", id: 1, method: "agent.spawn", params: { manifest: "name: via-http" } }
          const refused = yield* post({}, spawnRequest)
          assert.strictEqual(refused.status, 401)
          const wrong = yield* post({ Authorization: "Bearer wrong" }, spawnRequest)
          assert.strictEqual(wrong.status, 401)
          assert.strictEqual((yield* call(d.socket, "agent.list")).result.length, 0, "nothing ran")
          const ok = yield* post({ Authorization: `Bearer ${token}` }, spawnRequest)
          assert.strictEqual(ok.status, 200)
          assert.strictEqual(JSON.parse(ok.text).result.name, "via-http")
          // a stream over HTTP: ndjson, items then the final response
          const traced = yield* post(
            { Authorization: `Bearer ${token}` },
            { jsonrpc: "2.0", id: 2, method: "kernel.trace", params: { pid: JSON.parse(ok.text).result.pid } }
          )
          const lines = traced.text
            .trim()
            .split("\n")
            .map((l) => JSON.parse(l))
          assert.strictEqual(lines.at(-1).result, null)
          assert.isTrue(lines.slice(0, -1).every((l) => l.method === "stream"))
        })
      ),
    60_000
  )
})
