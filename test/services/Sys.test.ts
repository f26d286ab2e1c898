import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Option } from "effect"
import { TestClock } from "effect/testing"
import { Capability, Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const run = <A, E>(body: (grant: Kernel.BootGrant) => Effect.Effect<A, E, Sys.Sys>, options?: Kernel.BootOptions) =>
  TestKernel.runProcess(body, options).pipe(Effect.provide(TestKernel.layer()))

/** Fails with the syscall's error, as a value. */
const refused = <A, E>(effect: Effect.Effect<A, E, Sys.Sys>) => Effect.flip(effect)

/** Receives and ignores messages until killed. */
const idle = Process.make("idle", () => Effect.forever(Sys.recv()))
const forever = Process.make("forever", () => Effect.never)

/** Replies to every message with its body, on the cap it carries. */
const echo = Process.make("echo", () =>
  Effect.forever(
    Effect.gen(function* () {
      const m = yield* Sys.recv()
      if (m.caps[0] !== undefined) yield* Sys.send(m.caps[0], m.body)
    })
  )
)

const isCapError = (e: unknown, reason: Capability.CapabilityFailure) =>
  assert.deepInclude(e as object, { _tag: "CapabilityError", reason })

describe("Sys.self / selfCap / caps", () => {
  it.effect("self is the pid, selfCap has send+monitor, init's caps are the boot grant", () =>
    run((grant) =>
      Effect.gen(function* () {
        assert.strictEqual(yield* Sys.self(), 1)
        const me = yield* Sys.selfCap()
        assert.isTrue(Capability.isCapRef(me))
        assert.strictEqual(me, yield* Sys.selfCap(), "cached while held")
        const caps = yield* Sys.caps()
        assert.deepStrictEqual(caps, [grant.spawn])
        // selfCap cannot kill: missing right
        isCapError(yield* refused(Sys.kill(me)), "missing-right")
      })
    )
  )
})

describe("Sys.send / recv", () => {
  it.effect("FIFO round trip through a child, caps move with the message", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(echo)
        const me = yield* Sys.selfCap()
        const replies: Array<unknown> = []
        for (let i = 0; i < 5; i++) {
          yield* Sys.send(cap, i, { caps: [yield* Sys.derive(me, ["send"])] })
        }
        for (let i = 0; i < 5; i++) replies.push((yield* Sys.recv()).body)
        assert.deepStrictEqual(replies, [0, 1, 2, 3, 4])
      })
    )
  )

  it.effect("a moved cap belongs to the receiver: the sender can no longer use it", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(idle)
        const me = yield* Sys.selfCap()
        const given = yield* Sys.derive(me, ["send"])
        yield* Sys.send(cap, "take this", { caps: [given] })
        isCapError(yield* refused(Sys.send(given, "mine?")), "moved")
      })
    )
  )

  it.effect("corr and from reach the receiver", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        yield* Sys.send(me, "hi", { corr: "req-1" })
        const m = yield* Sys.recv()
        assert.deepInclude(m, { from: 1, body: "hi", corr: "req-1" })
      })
    )
  )

  it.effect("denied: forged ref, wrong right, revoked, expired, wrong resource", () =>
    run((grant) =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(idle)
        const forged = { id: cap.id } as unknown as Capability.CapRef
        isCapError(yield* refused(Sys.send(forged, 1)), "invalid")
        const monitorOnly = yield* Sys.derive(cap, ["monitor"])
        isCapError(yield* refused(Sys.send(monitorOnly, 1)), "missing-right")
        const revoked = yield* Sys.derive(cap, ["send"])
        yield* Sys.revoke(revoked)
        isCapError(yield* refused(Sys.send(revoked, 1)), "revoked")
        const expiring = yield* Sys.attenuate(cap, { expiresIn: "1 second" })
        yield* Sys.send(expiring, "in time")
        yield* TestClock.adjust("1 second")
        isCapError(yield* refused(Sys.send(expiring, "late")), "expired")
        // a spawn cap designates no process
        isCapError(yield* refused(Sys.send(grant.spawn, 1)), "missing-right")
        const error = yield* refused(Sys.send(grant.spawn, 1))
        assert.strictEqual(error._tag, "CapabilityError")
      })
    )
  )

  it.effect("a bad cap among the message's caps refuses the whole send and moves nothing", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(idle)
        const me = yield* Sys.selfCap()
        const good = yield* Sys.derive(me, ["send"])
        const bad = yield* Sys.derive(me, ["send"])
        yield* Sys.revoke(bad)
        isCapError(yield* refused(Sys.send(cap, "x", { caps: [good, bad] })), "revoked")
        // good is still ours
        yield* Sys.send(good, "still mine")
        assert.strictEqual((yield* Sys.recv()).body, "still mine")
        const twice = yield* refused(Sys.send(cap, "x", { caps: [good, good] }))
        assert.strictEqual(twice._tag, "ArgumentError")
      })
    )
  )

  it.effect("a full mailbox parks the sender until the receiver drains; nothing dropped, order kept", () =>
    run(() =>
      Effect.gen(function* () {
        const collected: Array<number> = []
        const slow = Process.make<{ readonly n: number }>("slow", ({ n }) =>
          Effect.gen(function* () {
            const back = (yield* Sys.recv()).caps[0]!
            yield* Effect.sleep("1 second")
            for (let i = 0; i < n; i++) collected.push((yield* Sys.recv<number>()).body)
            yield* Sys.send(back, "done")
          })
        )
        const { cap } = yield* Sys.spawn(slow, { args: { n: 20 }, quota: { mailbox: 2 } })
        yield* Sys.send(cap, "start", { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        const sender = yield* Effect.forkChild(
          Effect.gen(function* () {
            for (let i = 0; i < 20; i++) yield* Sys.send(cap, i)
          })
        )
        yield* Effect.yieldNow
        assert.isUndefined(sender.pollUnsafe(), "parked on the bound")
        const budget = yield* Sys.budget()
        assert.strictEqual(budget.used.children, 1)
        yield* TestClock.adjust("1 second")
        assert.strictEqual((yield* Sys.recv()).body, "done")
        assert.deepStrictEqual(
          collected,
          Array.from({ length: 20 }, (_, i) => i)
        )
      })
    )
  )

  it.effect("a message past its deadline is dropped at delivery", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        yield* Sys.send(me, "stale", { deadline: "1 second" })
        yield* Sys.send(me, "fresh", { deadline: "1 hour" })
        yield* TestClock.adjust("2 seconds")
        assert.strictEqual((yield* Sys.recv()).body, "fresh")
      })
    )
  )

  it.effect("a send to a dead process is dropped (no error); caps sent with it are revoked", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(Process.make("brief", () => Effect.void))
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
        const mine = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        yield* Sys.send(cap, "anyone?", { caps: [mine] })
        isCapError(yield* refused(Sys.send(mine, 1)), "revoked")
      })
    )
  )

  it.effect("recv interrupted by a timeout leaves no stale receiver behind", () =>
    run(() =>
      Effect.gen(function* () {
        const timedOut = yield* Effect.forkChild(Sys.recv().pipe(Effect.timeoutOption("1 second")))
        yield* TestClock.adjust("1 second")
        assert.isTrue(Option.isNone(yield* Fiber.join(timedOut)))
        const me = yield* Sys.selfCap()
        yield* Sys.send(me, "kept")
        assert.strictEqual((yield* Sys.recv()).body, "kept")
      })
    )
  )
})

describe("Sys.spawn", () => {
  it.effect("a child holds exactly the caps it was given, and they moved", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const forChild = yield* Sys.derive(me, ["send"])
        const reporter = Process.make("reporter", () =>
          Effect.gen(function* () {
            const caps = yield* Sys.caps()
            yield* Sys.send(caps[0]!, caps.length)
          })
        )
        yield* Sys.spawn(reporter, { caps: [forChild] })
        assert.strictEqual((yield* Sys.recv()).body, 1)
        isCapError(yield* refused(Sys.send(forChild, "gone")), "moved")
      })
    )
  )

  it.effect("denied without a spawn cap; a revoked or expired spawn cap is no cap", () =>
    run((grant) =>
      Effect.gen(function* () {
        const child = Process.make("child", () =>
          Effect.gen(function* () {
            const error = yield* refused(Sys.spawn(idle))
            const back = (yield* Sys.caps())[0]!
            yield* Sys.send(back, error)
          })
        )
        yield* Sys.spawn(child, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        isCapError((yield* Sys.recv()).body, "not-held")
        // attenuated spawn caps handed to a child: expired
        const expiring = yield* Sys.attenuate(grant.spawn, { expiresIn: "1 minute" })
        const spawner = Process.make("spawner", () =>
          Effect.gen(function* () {
            yield* Sys.recv()
            const back = (yield* Sys.caps())[1]!
            yield* Sys.send(back, yield* Effect.exit(Sys.spawn(idle)))
          })
        )
        const { cap } = yield* Sys.spawn(spawner, {
          caps: [expiring, yield* Sys.derive(yield* Sys.selfCap(), ["send"])]
        })
        yield* TestClock.adjust("2 minutes")
        yield* Sys.send(cap, "go")
        const exit = (yield* Sys.recv<Exit.Exit<unknown, unknown>>()).body
        assert.isTrue(Exit.isFailure(exit))
        // revoking the root spawn cap revokes the derived one too; init itself can no longer spawn
        yield* Sys.revoke(grant.spawn)
        isCapError(yield* refused(Sys.spawn(idle)), "not-held")
      })
    )
  )

  it.effect("any held spawn cap works, including one received on a message; one without the right does not", () =>
    run((grant) =>
      Effect.gen(function* () {
        const late = Process.make("late", () =>
          Effect.gen(function* () {
            const back = (yield* Sys.caps())[0]!
            const reasonOf = (e: { readonly _tag: string }) => ("reason" in e ? e.reason : e._tag)
            const before = yield* refused(Sys.spawn(idle))
            yield* Sys.recv()
            const noRight = yield* refused(Sys.spawn(idle))
            yield* Sys.recv()
            const after = yield* Effect.exit(Sys.spawn(idle))
            yield* Sys.send(back, [reasonOf(before), reasonOf(noRight), after._tag])
          })
        )
        const { cap } = yield* Sys.spawn(late, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        yield* Sys.send(cap, "useless", { caps: [yield* Sys.derive(grant.spawn, [])] })
        yield* Sys.send(cap, "useful", { caps: [yield* Sys.derive(grant.spawn, ["spawn"])] })
        assert.deepStrictEqual((yield* Sys.recv()).body, ["not-held", "missing-right", "Success"])
      })
    )
  )

  it.effect("children quota: exhaustion fails spawn with a typed error and frees up when a child exits", () =>
    run(
      () =>
        Effect.gen(function* () {
          const a = yield* Sys.spawn(forever)
          yield* Sys.spawn(forever)
          const error = yield* refused(Sys.spawn(forever))
          assert.deepInclude(error, { _tag: "SpawnError", reason: "children", limit: 2 })
          yield* Sys.kill(a.cap)
          yield* Sys.spawn(forever)
        }),
      { quota: { children: 2 } }
    )
  )

  it.effect("a child's quota is carved from the parent's remaining", () =>
    run(
      () =>
        Effect.gen(function* () {
          yield* Sys.charge({ tokens: 60 })
          const error = yield* refused(Sys.spawn(idle, { quota: { tokens: 50 } }))
          assert.deepInclude(error, { _tag: "QuotaError", resource: "tokens", reason: "exceeds-parent", available: 40 })
          const invalid = yield* refused(Sys.spawn(idle, { quota: { usd: -1 } }))
          assert.deepInclude(invalid, { _tag: "QuotaError", resource: "usd", reason: "invalid" })
          const nanWall = yield* refused(Sys.spawn(idle, { quota: { wall: Number.NaN } }))
          assert.deepInclude(nanWall, { _tag: "QuotaError", resource: "wall", reason: "invalid" })
          const nanDeadline = yield* refused(Sys.spawn(idle, { deadline: Number.NaN }))
          assert.strictEqual(nanDeadline._tag, "ArgumentError")
          const negative = yield* refused(Sys.attenuate(yield* Sys.selfCap(), { expiresIn: -5 }))
          assert.strictEqual(negative._tag, "ArgumentError")
          const wall = yield* refused(Sys.spawn(idle, { quota: { wall: "2 hours" } }))
          assert.deepInclude(wall, { _tag: "QuotaError", resource: "wall", reason: "exceeds-parent" })
          const { cap } = yield* Sys.spawn(idle, { quota: { tokens: 40 } })
          assert.isTrue(Capability.isCapRef(cap))
        }),
      { quota: { tokens: 100, wall: "1 hour" } }
    )
  )

  it.effect("not an image: a typed argument error", () =>
    run(() =>
      Effect.gen(function* () {
        const error = yield* refused(Sys.spawn({ name: "x" } as unknown as Process.Image<void>))
        assert.strictEqual(error._tag, "ArgumentError")
      })
    )
  )
})

describe("Sys.derive / attenuate / revoke", () => {
  it.effect("derive narrows; asking for more is amplification", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const sendOnly = yield* Sys.derive(me, ["send"])
        isCapError(yield* refused(Sys.derive(sendOnly, ["send", "monitor"])), "amplification")
        isCapError(yield* refused(Sys.derive(sendOnly, ["kill"])), "amplification")
        isCapError(yield* refused(Sys.attenuate(sendOnly, { rights: ["kill"] })), "amplification")
        const none = yield* Sys.derive(sendOnly, [])
        isCapError(yield* refused(Sys.send(none, 1)), "missing-right")
        const bad = yield* refused(Sys.derive(me, ["fly" as Capability.Right]))
        assert.strictEqual(bad._tag, "ArgumentError")
      })
    )
  )

  it.effect("caveats are inherited: a later expiry cannot extend an earlier one", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const short = yield* Sys.attenuate(me, { expiresIn: "1 minute" })
        const longer = yield* Sys.attenuate(short, { expiresIn: "1 hour" })
        const derived = yield* Sys.derive(longer, ["send"])
        yield* TestClock.adjust("61 seconds")
        isCapError(yield* refused(Sys.send(longer, 1)), "expired")
        isCapError(yield* refused(Sys.send(derived, 1)), "expired")
        isCapError(yield* refused(Sys.derive(derived, ["send"])), "expired")
        // revoking an expired cap is allowed (it is cleanup)
        yield* Sys.revoke(derived)
      })
    )
  )

  it.effect("revocation is transitive over derivations, including copies moved to other processes", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(echo)
        const me = yield* Sys.selfCap()
        const root = yield* Sys.derive(me, ["send"])
        const child = yield* Sys.derive(root, ["send"])
        const grandchild = yield* Sys.derive(child, ["send"])
        yield* Sys.send(cap, "ping", { caps: [grandchild] })
        assert.strictEqual((yield* Sys.recv()).body, "ping")
        yield* Sys.revoke(root)
        isCapError(yield* refused(Sys.send(child, 1)), "revoked")
        // the echo holds the revoked grandchild: its reply is refused, so it faults and nothing comes back
        yield* Sys.send(cap, "again", { caps: [yield* Sys.derive(me, ["send"])] })
        assert.strictEqual((yield* Sys.recv()).body, "again")
        isCapError(yield* refused(Sys.revoke(root)), "revoked")
      })
    )
  )

  it.effect("revoke denied for a cap the caller does not hold", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(idle)
        const given = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        yield* Sys.send(cap, "x", { caps: [given] })
        isCapError(yield* refused(Sys.revoke(given)), "moved")
      })
    )
  )
})

describe("Sys.monitor / waitpid / link", () => {
  it.effect("monitor delivers Down once the target ends; a dead target gives an immediate Down", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap, pid } = yield* Sys.spawn(forever)
        const ref = yield* Sys.monitor(cap)
        yield* Sys.kill(cap)
        const down = yield* Sys.recv()
        assert.isTrue(Process.isKernelMessage(down))
        assert.deepStrictEqual(down.body, { _tag: "Down", pid, reason: Process.killed(1), ref })
        const late = yield* Sys.monitor(cap)
        assert.notStrictEqual(late, ref)
        assert.deepStrictEqual((yield* Sys.recv()).body, { _tag: "Down", pid, reason: Process.killed(1), ref: late })
      })
    )
  )

  it.effect("monitor and waitpid need the monitor right", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(idle)
        const sendOnly = yield* Sys.derive(cap, ["send"])
        isCapError(yield* refused(Sys.monitor(sendOnly)), "missing-right")
        isCapError(yield* refused(Sys.waitpid(sendOnly)), "missing-right")
      })
    )
  )

  it.effect("waitpid waits, and works after death too", () =>
    run(() =>
      Effect.gen(function* () {
        const sleeper = Process.make("sleeper", () => Effect.sleep("10 seconds"))
        const { cap } = yield* Sys.spawn(sleeper)
        const waiting = yield* Effect.forkChild(Sys.waitpid(cap))
        yield* TestClock.adjust("10 seconds")
        assert.deepStrictEqual(yield* Fiber.join(waiting), Process.normal)
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
      })
    )
  )

  it.effect("link: a parent's abnormal exit ends its linked child with the same reason (OTP exit signal)", () =>
    run((grant) =>
      Effect.gen(function* () {
        const me = yield* Sys.self()
        const linkedChild = Process.make("linked", () => Effect.forever(Sys.recv()))
        // init spawns a middle process that links to a child, then exits: the child ends with the middle's reason
        const middle = Process.make("middle", () =>
          Effect.gen(function* () {
            yield* Sys.spawn(linkedChild, { link: true })
            yield* Sys.exit(Process.fault("done"))
          })
        )
        const spawnCap = yield* Sys.derive(grant.spawn, ["spawn"])
        yield* Sys.spawn(middle, { caps: [spawnCap] })
        // init adopts the orphaned child first, with a cap to it; the exit signal then ends it
        const adopted = yield* Sys.recv()
        assert.isTrue(Process.isKernelMessage(adopted))
        assert.strictEqual((adopted.body as Process.KernelMessage)._tag, "Adopted")
        assert.strictEqual(adopted.caps.length, 1)
        assert.deepStrictEqual(yield* Sys.waitpid(adopted.caps[0]!), Process.fault("done"))
        assert.strictEqual(me, 1)
      })
    )
  )
})

describe("Sys.kill / suspend / resume / term", () => {
  it.effect("kill ends the target with Killed; needs the kill right", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(forever)
        const noKill = yield* Sys.derive(cap, ["send", "monitor"])
        isCapError(yield* refused(Sys.kill(noKill)), "missing-right")
        isCapError(yield* refused(Sys.suspend(noKill)), "missing-right")
        isCapError(yield* refused(Sys.resume(noKill)), "missing-right")
        isCapError(yield* refused(Sys.term(noKill)), "missing-right")
        yield* Sys.kill(cap, Process.fault("test"))
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.fault("test"))
        // killing the dead is a no-op
        yield* Sys.kill(cap)
      })
    )
  )

  it.effect("suspend: the target makes no progress through syscalls until resume", () =>
    run(() =>
      Effect.gen(function* () {
        const counter = Process.make("counter", () =>
          Effect.gen(function* () {
            const out = (yield* Sys.caps())[0]!
            for (let i = 0; ; i++) {
              yield* Sys.send(out, i)
              yield* Effect.sleep("1 second")
            }
          })
        )
        const { cap } = yield* Sys.spawn(counter, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        assert.strictEqual((yield* Sys.recv()).body, 0)
        yield* Sys.suspend(cap)
        yield* TestClock.adjust("10 seconds")
        const during = yield* Sys.recv().pipe(Effect.timeoutOption("1 millis"), Effect.forkChild)
        yield* TestClock.adjust("1 millis")
        assert.isTrue(Option.isNone(yield* Fiber.join(during)), "nothing sent while suspended")
        const ps = yield* Sys.resume(cap).pipe(Effect.as("resumed"))
        assert.strictEqual(ps, "resumed")
        assert.strictEqual((yield* Sys.recv()).body, 1)
      })
    )
  )

  it.effect("a suspended receiver does not complete its recv until resumed", () =>
    run(() =>
      Effect.gen(function* () {
        const relay = Process.make("relay", () =>
          Effect.gen(function* () {
            const m = yield* Sys.recv()
            yield* Sys.send(m.caps[0]!, "got it")
          })
        )
        const { cap } = yield* Sys.spawn(relay)
        yield* Sys.suspend(cap)
        yield* Sys.send(cap, "hello", { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        const early = yield* Sys.recv().pipe(Effect.timeoutOption("1 second"), Effect.forkChild)
        yield* TestClock.adjust("1 second")
        assert.isTrue(Option.isNone(yield* Fiber.join(early)))
        yield* Sys.resume(cap)
        assert.strictEqual((yield* Sys.recv()).body, "got it")
      })
    )
  )

  it.effect("term delivers a Term message the process handles itself", () =>
    run(() =>
      Effect.gen(function* () {
        const graceful = Process.make("graceful", () =>
          Effect.gen(function* () {
            const m = yield* Sys.recv()
            if (Process.isKernelMessage(m) && m.body._tag === "Term") yield* Sys.exit(Process.fault("terminated"))
          })
        )
        const { cap } = yield* Sys.spawn(graceful)
        yield* Sys.term(cap)
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.fault("terminated"))
      })
    )
  )

  it.effect("a forged Down body is not a kernel message", () =>
    run(() =>
      Effect.gen(function* () {
        yield* Sys.send(yield* Sys.selfCap(), { _tag: "Down", pid: 9, reason: Process.normal })
        assert.isFalse(Process.isKernelMessage(yield* Sys.recv()))
      })
    )
  )
})

describe("Sys.register / unregister / lookup", () => {
  it.effect("lookup gives a send-only cap; names clear when the holder dies", () =>
    run(() =>
      Effect.gen(function* () {
        const named = Process.make("named", () =>
          Effect.gen(function* () {
            yield* Sys.register("svc")
            const m = yield* Sys.recv()
            yield* Sys.send(m.caps[0]!, "served")
            yield* Sys.recv()
          })
        )
        const { cap } = yield* Sys.spawn(named)
        yield* Effect.yieldNow
        const found = yield* Sys.lookup("svc")
        assert.isTrue(Option.isSome(found))
        const svc = Option.getOrThrow(found)
        yield* Sys.send(svc, "req", { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        assert.strictEqual((yield* Sys.recv()).body, "served")
        isCapError(yield* refused(Sys.kill(svc)), "missing-right")
        isCapError(yield* refused(Sys.derive(svc, ["send", "kill"])), "amplification")
        yield* Sys.kill(cap)
        assert.isTrue(Option.isNone(yield* Sys.lookup("svc")))
      })
    )
  )

  it.effect("register denied when taken; unregister denied for a non-holder; invalid names", () =>
    run(() =>
      Effect.gen(function* () {
        yield* Sys.register("mine")
        yield* Sys.register("mine")
        const holder = Process.make("other", () =>
          Effect.gen(function* () {
            const back = (yield* Sys.caps())[0]!
            yield* Sys.send(back, [yield* refused(Sys.register("mine")), yield* refused(Sys.unregister("mine"))])
          })
        )
        yield* Sys.spawn(holder, { caps: [yield* Sys.derive(yield* Sys.selfCap(), ["send"])] })
        const [taken, notHolder] = (yield* Sys.recv<ReadonlyArray<{ readonly reason: string }>>()).body
        assert.strictEqual(taken!.reason, "taken")
        assert.strictEqual(notHolder!.reason, "not-holder")
        assert.strictEqual(((yield* refused(Sys.register(""))) as { reason?: string }).reason, "invalid")
        yield* Sys.unregister("mine")
        assert.isTrue(Option.isNone(yield* Sys.lookup("mine")))
      })
    )
  )
})

describe("Sys.budget / charge / sched / log / yield / exit", () => {
  it.effect("charge is visible in budget; invalid costs are refused", () =>
    run(
      () =>
        Effect.gen(function* () {
          yield* Sys.charge({ tokens: 10, usd: 0.5 })
          const budget = yield* Sys.budget()
          assert.deepInclude(budget.used, { tokens: 10, toolCalls: 0, usd: 0.5 })
          assert.strictEqual(budget.remaining.tokens, 90)
          assert.strictEqual((yield* refused(Sys.charge({ tokens: -1 })))._tag, "ArgumentError")
          assert.strictEqual((yield* refused(Sys.charge({ usd: Number.NaN })))._tag, "ArgumentError")
        }),
      { quota: { tokens: 100 } }
    )
  )

  it.effect("sched changes priority (visible in ps) and rejects non-integers", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const body = Process.make<Kernel.BootGrant>("sched", () =>
        Effect.gen(function* () {
          yield* Sys.sched({ priority: 5 })
          assert.strictEqual((yield* refused(Sys.sched({ priority: 1.5 })))._tag, "ArgumentError")
          yield* Sys.recv()
        })
      )
      const pid = yield* kernel.boot(body)
      yield* Effect.yieldNow
      const row = (yield* kernel.ps()).find((p) => p.pid === pid)!
      assert.strictEqual(row.priority, 5)
    }).pipe(Effect.provide(TestKernel.layer()))
  )

  it.effect("log writes a Log event; yield lets others run; exit ends with the reason", () =>
    Effect.gen(function* () {
      const kernel = yield* Kernel.Kernel
      const pid = yield* kernel.boot(
        Process.make("logger", () =>
          Effect.gen(function* () {
            yield* Sys.log("info", "hello", { step: 1 })
            yield* Sys.yield()
            yield* Sys.exit(Process.fault("bye"))
          })
        )
      )
      assert.deepStrictEqual(yield* kernel.waitExit(pid), Process.fault("bye"))
      const log = (yield* kernel.trace()).find((e) => e._tag === "Log")
      assert.deepInclude(log, { pid, level: "info", message: "hello", fields: { step: 1 } })
    }).pipe(Effect.provide(TestKernel.layer()))
  )
})
