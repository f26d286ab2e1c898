/**
 * Policies in the daemon: a manifest's `policies:` and the daemon's own (its config) bind the agent's calls in the
 * kernel — each beside the same agent without them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type AgentdApi, Manifest, Policy } from "effect-agent-os"
import { daemon, lines, ok } from "./coreHarness.ts"

const echoOf = (text: string) => ({ toolCalls: [{ name: "echo", arguments: { text } }] })

const guarded = lines([
  "name: guarded",
  'capabilities: ["tool: echo"]',
  "policies:",
  '  - { name: no-launch, match: { tool: echo, arguments: { text: { regex: "(?i)launch" } } }, decision: kill }',
  "  - { name: rest, decision: allow }"
])

describe("agentd policies", () => {
  it.live("a manifest's policies: a forbidden tool call ends the agent with Policy; without them it runs", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const d = yield* daemon([echoOf("LAUNCH the rockets"), { text: "done" }])
        const r = yield* d.rpc("agent.spawn_and_run", { manifest: guarded, message: "go" })
        assert.strictEqual(r.error?.data.reason, "run-failed")
        assert.include(r.error!.message, "Policy")
        const list = ok(yield* d.rpc("agent.list")) as ReadonlyArray<AgentdApi.AgentInfo>
        assert.deepStrictEqual(list[0]!.exit, { _tag: "Policy", rule: "no-launch" })
        const events = ok(yield* d.rpcStream("kernel.trace", {})) as ReadonlyArray<any>
        assert.isTrue(events.some((e) => e._tag === "Policy" && e.rule === "no-launch" && e.decision === "kill"))

        const free = yield* daemon([echoOf("LAUNCH the rockets"), { text: "launched" }])
        const ran = ok(
          yield* free.rpc("agent.spawn_and_run", {
            manifest: lines(["name: free", 'capabilities: ["tool: echo"]']),
            message: "go"
          })
        )
        assert.strictEqual(ran.answer, "launched")
      })
    )
  )

  it.live("the daemon's policies bind every agent before its manifest's; a manifest cannot loosen them", () =>
    Effect.scoped(
      Effect.gen(function* () {
        const daemonPolicy = yield* Policy.decode(`
- { name: model, match: { device: llm }, decision: allow }
- { name: quiet, match: { tool: echo, arguments: { text: { glob: "*secret*" } } }, decision: deny }
- { name: rest, decision: allow }
`)
        const d = yield* daemon([echoOf("the secret plan"), { text: "could not say it" }], undefined, daemonPolicy)
        const ran = ok(
          yield* d.rpc("agent.spawn_and_run", {
            // its own policy allows everything: the daemon's still denies
            manifest: lines([
              "name: loud",
              'capabilities: ["tool: echo"]',
              "policies: [{ name: anything, decision: allow }]"
            ]),
            message: "say it"
          })
        )
        assert.strictEqual(ran.answer, "could not say it")
        const toolResult = JSON.stringify(d.llm.requests[1]!.messages.filter((m) => m.role === "tool"))
        assert.include(toolResult, "policy:quiet")
      })
    )
  )

  it.effect("a manifest's bad policies: every problem under policies, with the manifest's other problems", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Manifest.decode(
          lines(["name: x", "budget: { tokens: -1 }", "policies: [{ name: a, match: { tool: 3 }, decision: nope }]"])
        )
      )
      const paths = error.problems.map((p) => p.path).sort()
      assert.deepStrictEqual(paths, ["budget.tokens", "policies[0].decision", "policies[0].match.tool"])
    })
  )
})
