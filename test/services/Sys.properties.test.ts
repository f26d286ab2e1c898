import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Schema } from "effect"
import { Capability, Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const int = (maximum: number) => Schema.Int.check(Schema.isBetween({ minimum: 0, maximum }))

const guarded: ReadonlyArray<Capability.Right> = ["send", "monitor", "kill"]
const rightsFrom = (bits: number): Array<Capability.Right> => guarded.filter((_, i) => (bits & (1 << i)) !== 0)

const Op = Schema.Struct({ actor: int(2), op: int(5), a: int(7), b: int(7) })
type Op = typeof Op.Type

/** What an adversary is told to do; caps travel in the message's caps. */
type Command = { readonly _tag: "Op"; readonly op: Op } | { readonly _tag: "Peers" } | { readonly _tag: "Cap" }

const idle = Process.make("target", () => Effect.forever(Sys.recv()))

/**
 * An adversary: keeps every target cap it ever saw (including ones it revoked or gave away) and tries to use them all
 * for rights the root cap never had. It reports each success that exceeds the root as a violation.
 */
const adversary = Process.make<{ readonly rootRights: ReadonlyArray<Capability.Right> }>(
  "adversary",
  ({ rootRights }) =>
    Effect.gen(function* () {
      const [report] = yield* Sys.caps()
      const held: Array<Capability.CapRef> = []
      let peers: ReadonlyArray<Capability.CapRef> = []
      const violations: Array<string> = []
      const succeeded = <A, E>(effect: Effect.Effect<A, E, Sys.Sys>) =>
        Effect.match(effect, { onFailure: () => false, onSuccess: () => true })
      const exceeds = (right: Capability.Right, what: string) => {
        if (!rootRights.includes(right)) violations.push(`${what} succeeded without ${right} in the root`)
      }
      for (;;) {
        const m = yield* Sys.recv<Command>()
        const command = m.body
        if (command._tag === "Peers") {
          peers = m.caps
          continue
        }
        if (command._tag === "Cap") {
          held.push(...m.caps)
          continue
        }
        const { op, a, b } = command.op
        const pick = held.length === 0 ? undefined : held[a % held.length]!
        switch (op) {
          case 0: {
            if (pick === undefined) break
            const derived = yield* Effect.option(Sys.derive(pick, rightsFrom(b)))
            if (derived._tag === "Some") held.push(derived.value)
            break
          }
          case 1: {
            if (pick === undefined) break
            const attenuated = yield* Effect.option(
              Sys.attenuate(pick, { rights: rightsFrom(b), expiresIn: b % 2 === 0 ? 0 : "1 hour" })
            )
            if (attenuated._tag === "Some") held.push(attenuated.value)
            break
          }
          case 2: {
            if (pick !== undefined) yield* Effect.ignore(Sys.revoke(pick))
            break
          }
          case 3: {
            const peer = peers[b % peers.length]
            if (pick !== undefined && peer !== undefined) {
              yield* Effect.ignore(Sys.send(peer, { _tag: "Cap" }, { caps: [pick] }))
            }
            break
          }
          case 4: {
            const forged = [{ id: a }, Object.create(pick ?? {}), { ...(pick ?? {}) }] as Array<Capability.CapRef>
            for (const fake of forged) {
              if (Capability.isCapRef(fake)) violations.push("a forged object passed isCapRef")
              if (yield* succeeded(Sys.send(fake, "forged"))) violations.push("a forged ref was accepted")
            }
            break
          }
          case 5: {
            for (const cap of held) {
              if (yield* succeeded(Sys.send(cap, "probe"))) exceeds("send", "send")
              if (yield* succeeded(Sys.monitor(cap))) exceeds("monitor", "monitor")
              if (yield* succeeded(Sys.suspend(cap))) {
                exceeds("kill", "suspend")
                yield* Effect.ignore(Sys.resume(cap))
              }
            }
            break
          }
        }
        yield* Sys.send(report!, violations.splice(0))
      }
    })
)

describe("capability properties", () => {
  it.effect.prop(
    "derive/attenuate/revoke/move/forge sequences never give a holder a right its root lacked",
    { rootBits: int(7), ops: Schema.Array(Op).check(Schema.isMaxLength(30)) },
    ({ rootBits, ops }) =>
      TestKernel.runProcess(() =>
        Effect.gen(function* () {
          const rootRights = rightsFrom(rootBits)
          const target = yield* Sys.spawn(idle)
          const root = yield* Sys.derive(target.cap, rootRights)
          const me = yield* Sys.selfCap()
          const actors = []
          for (let i = 0; i < 3; i++) {
            actors.push(yield* Sys.spawn(adversary, { args: { rootRights }, caps: [yield* Sys.derive(me, ["send"])] }))
          }
          for (const actor of actors) {
            const peers = []
            for (const other of actors) peers.push(yield* Sys.derive(other.cap, ["send"]))
            yield* Sys.send(actor.cap, { _tag: "Peers" }, { caps: peers })
          }
          yield* Sys.send(actors[0]!.cap, { _tag: "Cap" }, { caps: [root] })
          const violations: Array<string> = []
          for (const op of [...ops, { actor: 0, op: 5, a: 0, b: 0 }, { actor: 1, op: 5, a: 0, b: 0 }]) {
            yield* Sys.send(actors[op.actor]!.cap, { _tag: "Op", op })
            violations.push(...(yield* Sys.recv<ReadonlyArray<string>>()).body)
          }
          assert.deepStrictEqual(violations, [])
          // the root was moved to an adversary: init no longer holds it
          assert.isFalse(yield* Effect.isSuccess(Sys.send(root, "x")))
        })
      ).pipe(Effect.provide(TestKernel.layer())),
    { arbitrary: { seed: 42, runs: 60 } }
  )
})

describe("accounting properties", () => {
  const Charge = Schema.Struct({ node: int(7), tokens: int(20), toolCalls: int(3), cents: int(50) })
  type Charge = typeof Charge.Type
  const zero = () => ({ tokens: 0, toolCalls: 0, usd: 0 })

  it.effect.prop(
    "a parent's usage equals its own charges plus its subtree's, under concurrent charges and quota kills",
    {
      parents: Schema.Array(int(7)).check(Schema.isMaxLength(7)),
      charges: Schema.Array(Charge).check(Schema.isMaxLength(60)),
      tightLeaf: int(7)
    },
    ({ parents, charges, tightLeaf }) =>
      Effect.gen(function* () {
        const kernel = yield* Kernel.Kernel
        // node i > 0 hangs under node parents[i-1] % i: a random tree rooted at node 0, a child of init
        const count = parents.length + 1
        const parentOf = (i: number) => (i === 0 ? -1 : parents[i - 1]! % i)
        const isLeaf = (i: number) => !Array.from({ length: count }, (_, j) => parentOf(j) === i).some(Boolean)
        const dones = yield* Effect.forEach(Array.from({ length: count }), () => Deferred.make<void>())
        // each node spawns its children (one leaf with a tight token quota), then charges from two fibers at once
        const treeNode: Process.Image<{ readonly i: number }> = Process.make("node", ({ i }) =>
          Effect.gen(function* () {
            const [spawnCap] = yield* Sys.caps()
            for (let j = 1; j < count; j++) {
              if (parentOf(j) !== i) continue
              const quota = j === tightLeaf % count && isLeaf(j) ? { tokens: 15 } : undefined
              const caps = [yield* Sys.derive(spawnCap!, ["spawn"])]
              yield* Sys.spawn(treeNode, { args: { i: j }, caps, quota })
            }
            const mine = charges.filter((c) => c.node % count === i)
            const half = Math.ceil(mine.length / 2)
            const run = (part: ReadonlyArray<Charge>) =>
              Effect.forEach(part, (c) =>
                Effect.andThen(
                  Sys.yield(),
                  Sys.charge({ tokens: c.tokens, toolCalls: c.toolCalls, usd: c.cents / 100 })
                )
              )
            yield* Effect.ensuring(
              Effect.all([run(mine.slice(0, half)), run(mine.slice(half))], { concurrency: "unbounded" }),
              Deferred.succeed(dones[i]!, undefined)
            )
            yield* Effect.never
          })
        )
        yield* kernel.boot(
          Process.make<Kernel.BootGrant>("init", (grant) =>
            Effect.gen(function* () {
              yield* Sys.spawn(treeNode, { args: { i: 0 }, caps: [yield* Sys.derive(grant.spawn, ["spawn"])] })
              yield* Effect.never
            })
          )
        )
        yield* Effect.forEach(dones, Deferred.await, { discard: true })
        // expected usage from the trace: every applied charge is a Charge event; the tree from Spawn events
        const trace = yield* kernel.trace()
        const parentPid = new Map<number, number>()
        const own = new Map<number, ReturnType<typeof zero>>()
        for (const e of trace) {
          if (e._tag === "Spawn") parentPid.set(e.pid, e.parent)
          if (e._tag === "Charge") {
            const o = own.get(e.pid) ?? zero()
            own.set(e.pid, { tokens: o.tokens + e.tokens, toolCalls: o.toolCalls + e.toolCalls, usd: o.usd + e.usd })
          }
        }
        const subtree = (pid: number): ReturnType<typeof zero> => {
          const total = { ...(own.get(pid) ?? zero()) }
          for (const [child, parent] of parentPid) {
            if (parent !== pid) continue
            const t = subtree(child)
            total.tokens += t.tokens
            total.toolCalls += t.toolCalls
            total.usd += t.usd
          }
          return total
        }
        const rows = yield* kernel.ps()
        assert.isAtLeast(rows.length, count, "only a leaf may have died")
        for (const row of rows) {
          const expected = subtree(row.pid)
          assert.strictEqual(row.budget.used.tokens, expected.tokens, `tokens of pid ${row.pid}`)
          assert.strictEqual(row.budget.used.toolCalls, expected.toolCalls, `toolCalls of pid ${row.pid}`)
          assert.closeTo(row.budget.used.usd, expected.usd, 1e-9, `usd of pid ${row.pid}`)
        }
        for (const e of trace) if (e._tag === "Exit") assert.deepStrictEqual(e.reason, Process.quota("tokens"))
      }).pipe(Effect.provide(TestKernel.layer())),
    { arbitrary: { seed: 7, runs: 60 } }
  )
})
