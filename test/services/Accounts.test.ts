import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Accounts } from "effect-agent-os"

const MAILBOX = 16

const ok = (result: Accounts.Account | Accounts.QuotaError): Accounts.Account => {
  if (result instanceof Accounts.QuotaError) assert.fail(`unexpected ${result.message}`)
  return result as Accounts.Account
}
const refused = (result: Accounts.Account | Accounts.QuotaError): Accounts.QuotaError => {
  assert.instanceOf(result, Accounts.QuotaError)
  return result as Accounts.QuotaError
}

const root = (quota?: Accounts.Quota, now = 0) => ok(Accounts.carve(undefined, quota, now, MAILBOX))
const child = (parent: Accounts.Account, quota?: Accounts.Quota, now = 0) =>
  ok(Accounts.carve(parent, quota, now, MAILBOX))

const used = (a: Accounts.Account) => ({ tokens: a.tokens, toolCalls: a.toolCalls, usd: a.usd })

describe("Accounts.carve without a quota", () => {
  it("a root gets unlimited meters, no wall, no mem bound and the default mailbox", () => {
    const account = root()
    assert.isUndefined(account.parent)
    assert.deepStrictEqual(
      { ...account.limits },
      {
        tokensMax: Infinity,
        toolCallsMax: Infinity,
        usdMax: Infinity,
        childrenMax: Infinity,
        memMax: Infinity,
        mailboxMax: MAILBOX,
        wallEndsAt: Infinity
      }
    )
    assert.deepStrictEqual(used(account), { tokens: 0, toolCalls: 0, usd: 0 })
    assert.strictEqual(account.children, 0)
  })

  it("children without a quota (undefined or {}) share the parent's inherited limits object", () => {
    const parent = root({ tokens: 100, mem: 500, wall: 1000 }, 10)
    const a = child(parent)
    const b = child(parent, {})
    const c = child(parent, undefined, 700)
    assert.strictEqual(a.parent, parent)
    assert.strictEqual(a.limits, b.limits)
    assert.strictEqual(a.limits, c.limits)
    assert.strictEqual(a.limits, parent.inherited)
    assert.notStrictEqual(a.limits, parent.limits)
    assert.isTrue(Object.isFrozen(a.limits))
    assert.deepStrictEqual(
      { ...a.limits },
      {
        tokensMax: Infinity,
        toolCallsMax: Infinity,
        usdMax: Infinity,
        childrenMax: Infinity,
        memMax: 500,
        mailboxMax: MAILBOX,
        wallEndsAt: 1010
      }
    )
  })

  it("inherited limits are per parent", () => {
    const p1 = root({ mem: 10 })
    const p2 = root({ mem: 20 })
    const a = child(p1)
    const b = child(p2)
    assert.notStrictEqual(a.limits, b.limits)
    assert.strictEqual(a.memMax, 10)
    assert.strictEqual(b.memMax, 20)
  })

  it("a child with a quota gets its own limits, inheriting what the quota leaves out", () => {
    const parent = root({ mem: 500, wall: 1000 })
    const a = child(parent, { tokens: 5 })
    assert.notStrictEqual(a.limits, parent.inherited)
    assert.deepStrictEqual(
      { ...a.limits },
      {
        tokensMax: 5,
        toolCallsMax: Infinity,
        usdMax: Infinity,
        childrenMax: Infinity,
        memMax: 500,
        mailboxMax: MAILBOX,
        wallEndsAt: 1000
      }
    )
    const b = child(parent, { children: 0, mailbox: 3 })
    assert.strictEqual(b.childrenMax, 0)
    assert.strictEqual(b.mailboxMax, 3)
  })
})

describe("Accounts.carve: QuotaError", () => {
  it("invalid children and mailbox: -1, NaN, 1.5 (and 0 for mailbox)", () => {
    for (const resource of ["children", "mailbox"] as const) {
      for (const value of [-1, NaN, 1.5, Infinity]) {
        const error = refused(Accounts.carve(undefined, { [resource]: value }, 0, MAILBOX))
        assert.strictEqual(error.resource, resource)
        assert.strictEqual(error.reason, "invalid")
      }
    }
    assert.strictEqual(refused(Accounts.carve(undefined, { mailbox: 0 }, 0, MAILBOX)).resource, "mailbox")
  })

  it("invalid meters and mem: negative, NaN, Infinity", () => {
    for (const resource of ["tokens", "toolCalls", "usd", "mem"] as const) {
      for (const value of [-1, NaN, Infinity, -0.5]) {
        const error = refused(Accounts.carve(undefined, { [resource]: value }, 0, MAILBOX))
        assert.strictEqual(error.resource, resource)
        assert.strictEqual(error.reason, "invalid")
      }
    }
  })

  it("invalid wall: a negative duration, NaN or an unparsable input", () => {
    const negative = refused(Accounts.carve(undefined, { wall: -1 }, 0, MAILBOX))
    assert.deepStrictEqual([negative.resource, negative.reason], ["wall", "invalid"])
    const nan = refused(Accounts.carve(undefined, { wall: Number.NaN }, 0, MAILBOX))
    assert.deepStrictEqual([nan.resource, nan.reason], ["wall", "invalid"])
    const garbage = refused(Accounts.carve(undefined, { wall: "soon" as never }, 0, MAILBOX))
    assert.deepStrictEqual([garbage.resource, garbage.reason], ["wall", "invalid"])
  })

  it("meters exceeding the parent's remaining (not its limit)", () => {
    const parent = root({ tokens: 100, toolCalls: 10, usd: 2 })
    Accounts.charge(parent, { tokens: 30, toolCalls: 4, usd: 0.5 })
    const cases = [
      { resource: "tokens", requested: 71, available: 70 },
      { resource: "toolCalls", requested: 7, available: 6 },
      { resource: "usd", requested: 1.75, available: 1.5 }
    ] as const
    for (const { available, requested, resource } of cases) {
      const error = refused(Accounts.carve(parent, { [resource]: requested }, 0, MAILBOX))
      assert.strictEqual(error.resource, resource)
      assert.strictEqual(error.reason, "exceeds-parent")
      assert.strictEqual(error.requested, requested)
      assert.strictEqual(error.available, available)
      const exact = child(parent, { [resource]: available })
      assert.strictEqual(Accounts.budget(exact).limits[resource], available)
    }
  })

  it("exceeds-parent counts the tightest ancestor, not only the direct parent", () => {
    const top = root({ tokens: 100 })
    const mid = child(top)
    Accounts.charge(mid, { tokens: 40 })
    const error = refused(Accounts.carve(mid, { tokens: 61 }, 0, MAILBOX))
    assert.deepStrictEqual(
      [error.resource, error.reason, error.requested, error.available],
      ["tokens", "exceeds-parent", 61, 60]
    )
    assert.strictEqual(child(mid, { tokens: 60 }).tokensMax, 60)
  })

  it("mem above the parent's mem exceeds it; equal is fine", () => {
    const parent = root({ mem: 1000 })
    const error = refused(Accounts.carve(parent, { mem: 1001 }, 0, MAILBOX))
    assert.deepStrictEqual(
      [error.resource, error.reason, error.requested, error.available],
      ["mem", "exceeds-parent", 1001, 1000]
    )
    assert.strictEqual(child(parent, { mem: 1000 }).memMax, 1000)
    assert.strictEqual(child(parent, { mem: 0 }).memMax, 0)
  })

  it("a wall ending after the parent's exceeds it; ending with it is fine", () => {
    const parent = root({ wall: "1 second" }, 0)
    assert.strictEqual(parent.wallEndsAt, 1000)
    const error = refused(Accounts.carve(parent, { wall: 601 }, 400, MAILBOX))
    assert.deepStrictEqual(
      [error.resource, error.reason, error.requested, error.available],
      ["wall", "exceeds-parent", 601, 600]
    )
    assert.strictEqual(child(parent, { wall: 600 }, 400).wallEndsAt, 1000)
    assert.strictEqual(child(parent, { wall: "100 millis" }, 400).wallEndsAt, 500)
    assert.strictEqual(child(parent, { tokens: 1 }, 400).wallEndsAt, 1000)
  })

  it("the first invalid field, in order tokens, toolCalls, usd, children, mailbox, mem, wall, is reported", () => {
    const error = refused(Accounts.carve(undefined, { usd: -1, tokens: -1, mem: -1 }, 0, MAILBOX))
    assert.strictEqual(error.resource, "tokens")
    assert.strictEqual(refused(Accounts.carve(undefined, { mem: -1, mailbox: 0 }, 0, MAILBOX)).resource, "mailbox")
  })
})

describe("Accounts.charge", () => {
  it("applies the cost to the account and every ancestor, not to siblings", () => {
    const top = root()
    const mid = child(top)
    const leaf = child(mid)
    const sibling = child(mid)
    assert.isUndefined(Accounts.charge(leaf, { tokens: 5, toolCalls: 1, usd: 0.25 }))
    assert.isUndefined(Accounts.charge(mid, { tokens: 2 }))
    assert.deepStrictEqual(used(leaf), { tokens: 5, toolCalls: 1, usd: 0.25 })
    assert.deepStrictEqual(used(mid), { tokens: 7, toolCalls: 1, usd: 0.25 })
    assert.deepStrictEqual(used(top), { tokens: 7, toolCalls: 1, usd: 0.25 })
    assert.deepStrictEqual(used(sibling), { tokens: 0, toolCalls: 0, usd: 0 })
  })

  it("reaching a limit exactly is not a breach; going past it is, and the charge is still applied everywhere", () => {
    const top = root({ tokens: 10 })
    const leaf = child(child(top))
    assert.isUndefined(Accounts.charge(leaf, { tokens: 10 }))
    assert.strictEqual(Accounts.charge(leaf, { tokens: 1 }), "tokens")
    assert.strictEqual(leaf.tokens, 11)
    assert.strictEqual(leaf.parent!.tokens, 11)
    assert.strictEqual(top.tokens, 11)
  })

  it("reports each meter", () => {
    assert.strictEqual(Accounts.charge(root({ toolCalls: 1 }), { toolCalls: 2 }), "toolCalls")
    assert.strictEqual(Accounts.charge(root({ usd: 1 }), { usd: 1.01 }), "usd")
    assert.strictEqual(Accounts.charge(root({ tokens: 1 }), { tokens: 2 }), "tokens")
    assert.isUndefined(Accounts.charge(root({ tokens: 1 }), { toolCalls: 2, usd: 3 }))
  })

  it("returns the first breach: the nearest level, then tokens, toolCalls, usd", () => {
    const top = root({ tokens: 10 })
    const leaf = child(top, { toolCalls: 1 })
    assert.strictEqual(Accounts.charge(leaf, { tokens: 20, toolCalls: 2 }), "toolCalls")
    assert.strictEqual(top.tokens, 20)
    const both = root({ usd: 1, toolCalls: 1, tokens: 1 })
    assert.strictEqual(Accounts.charge(both, { usd: 2, toolCalls: 2 }), "toolCalls")
    assert.strictEqual(Accounts.charge(both, { tokens: 2 }), "tokens")
  })

  it("a breach at an ancestor is reported when the account itself is within its limits", () => {
    const top = root({ usd: 1 })
    const a = child(top, { usd: 1 })
    const b = child(top, { usd: 1 })
    assert.isUndefined(Accounts.charge(a, { usd: 0.75 }))
    assert.strictEqual(Accounts.charge(b, { usd: 0.5 }), "usd")
    assert.strictEqual(b.usd, 0.5)
    assert.strictEqual(top.usd, 1.25)
  })
})

describe("Accounts.remaining, exhausted, isValidCost, budget", () => {
  it("remaining is Infinity without limits and takes the tightest level of the chain", () => {
    const top = root({ tokens: 100 })
    const leaf = child(top, { tokens: 50 })
    assert.strictEqual(Accounts.remaining(root(), "tokens"), Infinity)
    assert.strictEqual(Accounts.remaining(leaf, "toolCalls"), Infinity)
    Accounts.charge(leaf, { tokens: 10 })
    assert.strictEqual(Accounts.remaining(leaf, "tokens"), 40)
    assert.strictEqual(Accounts.remaining(top, "tokens"), 90)
    Accounts.charge(top, { tokens: 55 })
    assert.strictEqual(Accounts.remaining(top, "tokens"), 35)
    assert.strictEqual(Accounts.remaining(leaf, "tokens"), 35)
    Accounts.charge(leaf, { tokens: 40 })
    assert.strictEqual(Accounts.remaining(leaf, "tokens"), -5)
  })

  it("exhausted returns the first listed meter with nothing left at some level", () => {
    const top = root({ usd: 1, toolCalls: 3 })
    const leaf = child(top, { tokens: 10 })
    assert.isUndefined(Accounts.exhausted(leaf, ["tokens", "toolCalls", "usd"]))
    Accounts.charge(leaf, { tokens: 9, usd: 1 })
    assert.strictEqual(Accounts.exhausted(leaf, ["tokens", "toolCalls", "usd"]), "usd")
    assert.isUndefined(Accounts.exhausted(leaf, ["tokens", "toolCalls"]))
    Accounts.charge(leaf, { tokens: 1 })
    assert.strictEqual(Accounts.exhausted(leaf, ["tokens", "usd"]), "tokens")
    assert.strictEqual(Accounts.exhausted(leaf, ["usd", "tokens"]), "usd")
    assert.isUndefined(Accounts.exhausted(leaf, []))
    assert.isUndefined(Accounts.exhausted(root(), ["tokens", "toolCalls", "usd"]))
  })

  it("isValidCost accepts finite amounts ≥ 0 and rejects the rest", () => {
    for (const cost of [{}, { tokens: 0 }, { usd: 0.25 }, { tokens: 3, toolCalls: 1, usd: 0 }, { tokens: undefined }]) {
      assert.isTrue(Accounts.isValidCost(cost), JSON.stringify(cost))
    }
    const bad: ReadonlyArray<Accounts.Cost> = [
      { tokens: -1 },
      { toolCalls: NaN },
      { usd: Infinity },
      { usd: -0.01 },
      { tokens: 1, toolCalls: -Infinity },
      { tokens: "3" as unknown as number }
    ]
    for (const cost of bad) assert.isFalse(Accounts.isValidCost(cost), String(Object.values(cost)))
  })

  it("budget snapshots limits, usage and remaining", () => {
    const top = root({ tokens: 100, mem: 64, wall: 5000 }, 1000)
    const leaf = child(top, { usd: 2, children: 3, mailbox: 4 }, 2000)
    Accounts.charge(leaf, { tokens: 30, toolCalls: 2, usd: 0.5 })
    leaf.children = 1
    assert.deepStrictEqual(Accounts.budget(leaf), {
      limits: { tokens: Infinity, toolCalls: Infinity, usd: 2, children: 3, mem: 64, mailbox: 4 },
      used: { tokens: 30, toolCalls: 2, usd: 0.5, children: 1 },
      remaining: { tokens: 70, toolCalls: Infinity, usd: 1.5 },
      wallEndsAt: 6000
    })
    assert.deepStrictEqual(Accounts.budget(top).remaining, { tokens: 70, toolCalls: Infinity, usd: Infinity })
  })
})

const Index = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 11 }))
const Amount = Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 1000 }))

describe("Accounts: conservation", () => {
  it.effect.prop(
    "used(node) = own charges + sum of used(child), for every node and meter",
    {
      parents: Schema.Array(Index).check(Schema.isMaxLength(11)),
      charges: Schema.Array(Schema.Struct({ node: Index, tokens: Amount, toolCalls: Amount, cents: Amount })),
      limited: Schema.Boolean
    },
    ({ charges, limited, parents }) =>
      Effect.sync(() => {
        // node 0 is the root; node i + 1 hangs under one of the nodes before it
        const accounts = [root(limited ? { tokens: 500, toolCalls: 50, usd: 5 } : undefined)]
        const parentOf = [-1]
        parents.forEach((raw, i) => {
          const parent = raw % (i + 1)
          parentOf.push(parent)
          accounts.push(
            child(
              accounts[parent]!,
              raw % 3 === 0 ? undefined : { mailbox: Math.min(raw + 1, accounts[parent]!.mailboxMax) }
            )
          )
        })
        const n = accounts.length
        const own = accounts.map(() => ({ tokens: 0, toolCalls: 0, usd: 0 }))
        for (const { cents, node, tokens, toolCalls } of charges) {
          const i = node % n
          const cost = { tokens, toolCalls, usd: cents / 100 }
          Accounts.charge(accounts[i]!, cost)
          own[i]!.tokens += cost.tokens
          own[i]!.toolCalls += cost.toolCalls
          own[i]!.usd += cost.usd
        }
        for (let i = 0; i < n; i++) {
          const kids = accounts.filter((_, j) => parentOf[j] === i)
          const sum = (meter: Accounts.Meter) => own[i]![meter] + kids.reduce((acc, kid) => acc + kid[meter], 0)
          const account = accounts[i]!
          assert.strictEqual(account.tokens, sum("tokens"), `tokens at node ${i}`)
          assert.strictEqual(account.toolCalls, sum("toolCalls"), `toolCalls at node ${i}`)
          assert.closeTo(account.usd, sum("usd"), 1e-6, `usd at node ${i}`)
        }
        const total = own.reduce((acc, o) => acc + o.tokens, 0)
        assert.strictEqual(accounts[0]!.tokens, total)
      }),
    { arbitrary: { seed: 42, runs: 100 } }
  )
})
