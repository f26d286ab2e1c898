import { assert, describe, it } from "@effect/vitest"
import { Duration, Effect } from "effect"
import { Manifest } from "effect-agent-os"

const example = `name: research-agent
model: gpt-4o-mini            # the LLM driver's model (optional; the daemon's default otherwise)
system_prompt: "You are a helpful research assistant."
capabilities:
  - "tool: echo"
  - "file_read: /data/project/*"
  - "file_write: /data/output/*"
  - "http_get: 127.0.0.1:*"
  - "spawn_agent: [summarizer]"
approval_required: [file_write]
budget: { tokens: 20000, usd: 0.5, tool_calls: 40, wall: 10 minutes, children: 2 }
restart: transient            # under the daemon's supervisor
`

const problemsOf = (text: string) => Effect.map(Effect.flip(Manifest.decode(text)), (error) => error.problems)

describe("Manifest.decode", () => {
  it.effect("decodes the issue's example: capabilities parsed, tools derived, budget in kernel units", () =>
    Effect.gen(function* () {
      const m = yield* Manifest.decode(example)
      assert.strictEqual(m.name, "research-agent")
      assert.strictEqual(m.model, "gpt-4o-mini")
      assert.strictEqual(m.systemPrompt, "You are a helpful research assistant.")
      assert.deepStrictEqual(m.capabilities, [
        { _tag: "Tool", name: "echo" },
        { _tag: "FileRead", glob: "/data/project/*" },
        { _tag: "FileWrite", glob: "/data/output/*" },
        { _tag: "HttpGet", pattern: "127.0.0.1:*" },
        { _tag: "SpawnAgent", names: ["summarizer"] }
      ])
      assert.deepStrictEqual(m.tools, ["echo", "file_read", "file_write", "http_get", "spawn_agent"])
      assert.deepStrictEqual(m.approvalRequired, ["file_write"])
      assert.deepStrictEqual(
        { ...m.budget, wall: Duration.toMillis(m.budget.wall!) },
        { tokens: 20000, usd: 0.5, toolCalls: 40, wall: 600_000, children: 2 }
      )
      assert.strictEqual(m.restart, "transient")
    })
  )

  it.effect("the same manifest as JSON decodes the same", () =>
    Effect.gen(function* () {
      const json = JSON.stringify({
        name: "research-agent",
        capabilities: ["tool: echo"],
        budget: { tokens: 5, wall: "1 minute" }
      })
      const m = yield* Manifest.decode(json)
      assert.deepStrictEqual(m.capabilities, [{ _tag: "Tool", name: "echo" }])
      assert.strictEqual(m.restart, "temporary")
      assert.strictEqual(Duration.toMillis(m.budget.wall!), 60_000)
    })
  )

  it.effect("every problem is reported at once, each with its path", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(`name: "bad name!"
capabilities:
  - "tool: echo"
  - "root: everything"
  - "file_read: data/*"
  - "file_write: /data/../etc/*"
  - "http_get: http://x/"
  - "spawn_agent: summarizer"
budget: { tokens: -5, usd: -1, tool_calls: 1.5, wall: soon }
budgett: { tokens: 1 }
restart: always
`)
      const paths = problems.map((p) => p.path).sort()
      assert.deepStrictEqual(paths, [
        "budget.tokens",
        "budget.tool_calls",
        "budget.usd",
        "budget.wall",
        "budgett",
        "capabilities[1]",
        "capabilities[2]",
        "capabilities[3]",
        "capabilities[4]",
        "capabilities[5]",
        "name",
        "restart"
      ])
      assert.match(problems.find((p) => p.path === "capabilities[1]")!.message, /unknown capability kind "root"/)
      assert.match(problems.find((p) => p.path === "capabilities[3]")!.message, /\.\. segments/)
    })
  )

  it.effect("at most listMax capabilities: one more is a typed problem at capabilities, nothing decoded", () =>
    Effect.gen(function* () {
      const caps = (n: number) =>
        JSON.stringify({ name: "many", capabilities: Array.from({ length: n }, (_, i) => `tool: t${i}`) })
      const fine = yield* Manifest.decode(caps(Manifest.listMax))
      assert.strictEqual(fine.tools.length, Manifest.listMax)
      const problems = yield* problemsOf(caps(Manifest.listMax + 1))
      assert.deepStrictEqual(
        problems.map((p) => p.path),
        ["capabilities"]
      )
    })
  )

  it.effect("approval_required names only tools the manifest grants", () =>
    Effect.gen(function* () {
      const problems = yield* problemsOf(`name: a
capabilities: ["tool: echo"]
approval_required: [echo, file_write]
`)
      assert.deepStrictEqual(problems, [
        { path: "approval_required[1]", message: '"file_write" is not a tool the manifest grants' }
      ])
    })
  )

  it.effect("a missing name, a text that is not YAML, and YAML that is not a mapping are typed errors", () =>
    Effect.gen(function* () {
      assert.deepStrictEqual(
        (yield* problemsOf("capabilities: []\n")).map((p) => p.path),
        ["name"]
      )
      const syntax = yield* problemsOf("name: [a, b\nx: :")
      assert.strictEqual(syntax.length, 1)
      assert.strictEqual(syntax[0]!.path, "")
      assert.match(syntax[0]!.message, /^not YAML/)
      const scalar = yield* problemsOf("just a string")
      assert.strictEqual(scalar.length, 1)
      const json = yield* problemsOf("{ not json")
      assert.match(json[0]!.message, /^not JSON/)
    })
  )

  it.effect("parseCapability: globs must be absolute with no . or .. segment; kinds are a closed list", () =>
    Effect.sync(() => {
      assert.deepStrictEqual(Manifest.parseCapability("file_read: /a/**/b.txt"), {
        _tag: "FileRead",
        glob: "/a/**/b.txt"
      })
      for (const bad of [
        "file_read: a/b",
        "file_read: /a/./b",
        "file_write: /a/..",
        "tool:",
        "tool: a b",
        "exec: ls",
        "nocolon"
      ]) {
        assert.isString(Manifest.parseCapability(bad), bad)
      }
    })
  )
})
