/**
 * Policy rules on call rates, spend fractions and messages sent, each beside the run it does not stop: a rate that
 * denies the call one too many in its window and admits calls again once the window has passed (on virtual time);
 * a spend threshold that kills before the call that crosses it; messages by type and receiver (allowed types only,
 * a kill on an exfiltration type); sets with no message rules do not judge messages; a bad rule's every problem.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { Device, Kernel, Policy, Process, Sys } from "effect-agent-os"

/** A device whose every read costs `tokens` and answers its request. */
const echo = (tokens: number) =>
  Device.make({
    name: "echo",
    meters: ["tokens", "toolCalls"],
    open: () =>
      Effect.succeed({
        read: (request: unknown) => Effect.succeed({ value: request, cost: { tokens, toolCalls: 1 } })
      })
  })

const run = <A>(
  policies: string,
  body: (grant: Kernel.BootGrant) => Effect.Effect<A, unknown, Sys.Sys>,
  options: { readonly tokens?: number; readonly cost?: number } = {}
) =>
  Effect.gen(function* () {
    const set = yield* Policy.decode(policies)
    const kernel = yield* Kernel.Kernel
    let out: A | undefined
    const pid = yield* kernel.boot(
      Process.make<Kernel.BootGrant>("agent", (grant) =>
        Effect.map(body(grant), (a) => {
          out = a
        })
      ),
      {
        grant: ["echo"],
        policies: [set],
        ...(options.tokens === undefined ? {} : { quota: { tokens: options.tokens } })
      }
    )
    const reason = yield* kernel.waitExit(pid)
    const events = (yield* kernel.trace()).filter((e) => e._tag === "Policy")
    return { out, reason, events }
  }).pipe(Effect.provide(Kernel.layer({ drivers: [echo(options.cost ?? 1)], virtualTime: true })))

/** `run`, with the process's log lines. */
const runLogged = (policies: string, body: (grant: Kernel.BootGrant) => Effect.Effect<void, unknown, Sys.Sys>) =>
  Effect.gen(function* () {
    const set = yield* Policy.decode(policies)
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(Process.make<Kernel.BootGrant>("agent", body), { grant: ["echo"], policies: [set] })
    const reason = yield* kernel.waitExit(pid)
    const trace = yield* kernel.trace()
    return {
      reason,
      events: trace.filter((e) => e._tag === "Policy"),
      logs: trace.flatMap((e) => (e._tag === "Log" && e.pid === pid ? [e.message] : []))
    }
  }).pipe(Effect.provide(Kernel.layer({ drivers: [echo(1)], virtualTime: true })))

const denied = (exit: Exit.Exit<unknown, unknown>) => Exit.isFailure(exit) && JSON.stringify(exit).includes("denied")

describe("policy rules: rate", () => {
  it.effect("over 2 per minute: the third call in the minute is denied; a minute later calls pass again", () =>
    Effect.gen(function* () {
      const { out, reason, events } = yield* run(
        `
- { name: throttle, match: { device: echo, rate: { over: 2, per: "1 minute" } }, decision: deny }
- { name: rest, decision: allow }
`,
        (grant) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(grant.devices.echo!)
            const at = (n: number) => Effect.exit(Sys.read(h, { n }))
            const first = [yield* at(1), yield* at(2), yield* at(3)]
            yield* Effect.sleep("30 seconds")
            const stillIn = yield* at(4)
            yield* Effect.sleep("61 seconds")
            const later = [yield* at(5), yield* at(6), yield* at(7)]
            return { first, stillIn, later }
          })
      )
      assert.deepStrictEqual(reason, Process.normal)
      assert.deepStrictEqual(
        out!.first.map((e) => Exit.isSuccess(e)),
        [true, true, false]
      )
      assert.isTrue(denied(out!.first[2]!))
      // a denied call counts too: the window is of attempts
      assert.isFalse(Exit.isSuccess(out!.stillIn))
      assert.deepStrictEqual(
        out!.later.map((e) => Exit.isSuccess(e)),
        [true, true, false]
      )
      assert.isTrue(events.every((e) => e._tag === "Policy" && e.rule === "throttle"))
      assert.strictEqual(events.length, 3)
    })
  )

  it.effect("over: 0 matches every call; without the rule the same calls all pass", () =>
    Effect.gen(function* () {
      const body = (grant: Kernel.BootGrant) =>
        Effect.gen(function* () {
          const h = yield* Sys.open(grant.devices.echo!)
          return [yield* Effect.exit(Sys.read(h, 1)), yield* Effect.exit(Sys.read(h, 2))].map(Exit.isSuccess)
        })
      const none = yield* run(
        `[{ "name": "never", "match": { "rate": { "over": 0, "per": 1000 } }, "decision": "deny" }]`,
        body
      )
      assert.deepStrictEqual(none.out, [false, false])
      const free = yield* run(`[{ "name": "all", "decision": "allow" }]`, body)
      assert.deepStrictEqual(free.out, [true, true])
    })
  )
})

describe("policy rules: spend", () => {
  it.effect("kill at half the token budget: the call that would start past it ends the agent with Policy", () =>
    Effect.gen(function* () {
      const { out, reason, events } = yield* run(
        `
- { name: frugal, match: { spend: { tokens: 0.5 } }, decision: kill }
- { name: rest, decision: allow }
`,
        (grant) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(grant.devices.echo!)
            for (let i = 0; i < 10; i++) yield* Sys.read(h, i)
          }),
        { tokens: 200, cost: 50 }
      )
      assert.isUndefined(out)
      assert.deepStrictEqual(reason, Process.policy("frugal"))
      assert.deepInclude(events[0] as object, { rule: "frugal", decision: "kill" })
      // without the rule: the same agent runs to its quota instead
      const unbound = yield* run(
        `- { name: rest, decision: allow }`,
        (grant) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(grant.devices.echo!)
            for (let i = 0; i < 10; i++) yield* Sys.read(h, i)
          }),
        { tokens: 200, cost: 50 }
      )
      assert.deepStrictEqual(unbound.reason, Process.quota("tokens"))
    })
  )
})

describe("policy rules: messages sent", () => {
  const body = (grant: Kernel.BootGrant) =>
    Effect.gen(function* () {
      void grant
      const sink = yield* Sys.spawn(
        Process.make<void>("summarizer", () => Effect.forever(Sys.recv())),
        {}
      )
      const send = (message: unknown) => Effect.exit(Sys.send(sink.cap, message))
      return {
        result: yield* send({ _tag: "ResearchResult", text: "findings" }),
        other: yield* send({ _tag: "Chatter" }),
        untyped: yield* send("a string"),
        exfil: yield* send({ _tag: "ExfilSecrets" })
      }
    })

  it.effect("only the listed types pass; other types and untyped bodies are denied; an exfil type kills", () =>
    Effect.gen(function* () {
      const { reason, events, logs } = yield* runLogged(
        `
- { name: exfil, match: { message: { type: "Exfil*" } }, decision: kill }
- { name: results, match: { call: send, message: { type: ResearchResult, to: summarizer } }, decision: allow }
- { name: calls, match: { device: "*" }, decision: allow }
`,
        () =>
          Effect.gen(function* () {
            const sink = yield* Sys.spawn(
              Process.make<void>("summarizer", () => Effect.forever(Sys.recv())),
              {}
            )
            const other = yield* Sys.spawn(
              Process.make<void>("other", () => Effect.forever(Sys.recv())),
              {}
            )
            const send = (to: typeof sink.cap, message: unknown) =>
              Effect.map(Effect.exit(Sys.send(to, message)), (e) => e._tag)
            const seen = [
              yield* send(sink.cap, { _tag: "ResearchResult", text: "findings" }),
              yield* send(other.cap, { _tag: "ResearchResult", text: "to another receiver" }),
              yield* send(sink.cap, { _tag: "Chatter" }),
              yield* send(sink.cap, "a string")
            ]
            yield* Sys.log("info", JSON.stringify(seen))
            yield* Effect.exit(Sys.send(sink.cap, { _tag: "ExfilSecrets" }))
            yield* Sys.log("info", "after the kill")
          })
      )
      assert.deepStrictEqual(reason, Process.policy("exfil"))
      assert.deepStrictEqual(logs, [JSON.stringify(["Success", "Failure", "Failure", "Failure"])])
      assert.deepStrictEqual(
        events.map((e) => (e as { rule: string }).rule),
        ["default-deny", "default-deny", "default-deny", "exfil"]
      )
      assert.isTrue(events.every((e) => (e as { on: string }).on === "send"))
    })
  )

  it.effect("a set without message rules does not judge messages (the same sends all pass)", () =>
    Effect.gen(function* () {
      const { out, reason } = yield* run(`- { name: calls, match: { device: echo }, decision: allow }`, body)
      assert.deepStrictEqual(reason, Process.normal)
      assert.isTrue(Object.values(out!).every(Exit.isSuccess))
    })
  )

  it.effect("a denied send is a CapabilityError naming the rule; the receiver never gets it", () =>
    Effect.gen(function* () {
      const { out } = yield* run(
        `- { name: results, match: { call: send, message: { type: ResearchResult } }, decision: allow }`,
        (grant) =>
          Effect.gen(function* () {
            void grant
            const me = yield* Sys.selfCap()
            const sent = yield* Effect.flip(Sys.send(me, { _tag: "Other" }))
            yield* Sys.send(me, { _tag: "ResearchResult" })
            const got = yield* Sys.recv()
            return { sent, got: got.body }
          })
      )
      assert.strictEqual(out!.sent._tag, "CapabilityError")
      assert.deepInclude(out!.sent as object, { reason: "policy", rule: "default-deny" })
      assert.deepStrictEqual(out!.got, { _tag: "ResearchResult" })
    })
  )
})

describe("policy rules: problems", () => {
  it.effect("message keys on driver calls, driver keys on sends, a bad duration, approve on a send: all at once", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(
        Policy.decode(`
- { name: a, match: { call: read, message: { type: X } }, decision: deny }
- { name: b, match: { call: send, tool: sql }, decision: deny }
- { name: c, match: { rate: { over: 1, per: soon } }, decision: deny }
- { name: d, match: { message: { type: X } }, decision: approve }
`)
      )
      assert.deepStrictEqual(
        error.problems.map((p) => p.path),
        ["[0].match.message", "[1].match.tool", "[2].match.rate.per", "[3].decision"]
      )
      // the Schema's own bounds: a fraction past 1, a negative or fractional rate
      const bounds = yield* Effect.flip(
        Policy.decode(`
- { name: e, match: { spend: { tokens: 1.5 } }, decision: deny }
- { name: f, match: { rate: { over: -1, per: 1000 } }, decision: deny }
- { name: g, match: { rate: { over: 1.5, per: 0 } }, decision: deny }
`)
      )
      assert.includeMembers(
        bounds.problems.map((p) => p.path),
        ["[0].match.spend.tokens", "[1].match.rate.over", "[2].match.rate.over"]
      )
    })
  )
})

describe("policy rules: what a judged request may hold", () => {
  it.effect(
    "plain data, dates, bytes, caps and own getters (read once, by the copy) pass; a class instance or a Map is an ArgumentError",
    () =>
      Effect.gen(function* () {
        class Request {
          readonly tool = "echo"
          get input() {
            return { path: "/etc/passwd" }
          }
        }
        const withGetter = { tool: "echo" }
        Object.defineProperty(withGetter, "input", { enumerable: true, get: () => ({ path: "/etc/passwd" }) })
        const { out } = yield* run(`- { name: rest, decision: allow }`, (grant) =>
          Effect.gen(function* () {
            const h = yield* Sys.open(grant.devices.echo!)
            const me = yield* Sys.selfCap()
            const tag = (request: unknown) => Effect.map(Effect.exit(Sys.read(h, request)), (e) => e._tag)
            return {
              plain: yield* tag({ tool: "echo", input: { a: [1, "x", null, { b: true }] } }),
              leaves: yield* tag({ tool: "echo", input: { at: new Date(0), bytes: new Uint8Array([1, 2]), cap: me } }),
              instance: yield* tag(new Request()),
              accessor: yield* tag(withGetter),
              map: yield* tag({ tool: "echo", input: new Map([["path", "/etc/passwd"]]) })
            }
          })
        )
        assert.deepStrictEqual(out, {
          plain: "Success",
          leaves: "Success",
          instance: "Failure",
          accessor: "Success",
          map: "Failure"
        })
      })
  )
})
