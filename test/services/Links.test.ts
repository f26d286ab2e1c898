/**
 * Links, exit signals, trapping and monitors, OTP's way (the processes chapter of the Erlang reference manual):
 *
 * - a process that ends sends an exit signal to every linked process; one that does not trap exits ends with the same
 *   reason, except that it ignores `Normal`; one that traps them gets an `Exit { pid, reason }` kernel message;
 * - `Sys.kill` is never trapped; `Sys.exitSignal` (OTP's `exit/2`) is;
 * - every `Sys.monitor` is a monitor of its own, with its own ref and `Down`; `Sys.demonitor` ends one.
 *
 * Each success test has its denial beside it (no right, a forged message, someone else's ref, a flood).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Capability, Process, Sys } from "effect-agent-os"
import {
  assertArgumentError,
  assertCapabilityError,
  attempt,
  deaf,
  idle,
  isAlive,
  outcome,
  range,
  run
} from "../security/harness.ts"

/** A process that traps exits, tells its parent it is ready, and forwards every message body to it. */
const trapper = Process.make("trapper", () =>
  Effect.gen(function* () {
    const [parent] = yield* Sys.caps()
    yield* Sys.trapExit(true)
    yield* Sys.send(parent!, "ready")
    while (true) {
      const m = yield* Sys.recv()
      yield* Sys.send(parent!, { body: m.body, kernel: Process.isKernelMessage(m) })
    }
  })
)

const replyCap = Effect.flatMap(Sys.selfCap(), (me) => Sys.derive(me, ["send"]))

describe("exit signals through links", () => {
  it.effect("an abnormal exit ends a linked process that does not trap exits, with the same reason", () =>
    run(() =>
      Effect.gen(function* () {
        const a = yield* Sys.spawn(idle)
        const b = yield* Sys.spawn(idle)
        // a helper links to both, then faults: both end with its reason
        const linker = Process.make("linker", () =>
          Effect.gen(function* () {
            const [toA, toB] = yield* Sys.caps()
            yield* Sys.link(toA!)
            yield* Sys.link(toB!)
            yield* Sys.exit(Process.fault("boom"))
          })
        )
        const l = yield* Sys.spawn(linker, {
          caps: [yield* Sys.derive(a.cap, ["monitor", "kill"]), yield* Sys.derive(b.cap, ["monitor", "kill"])]
        })
        assert.deepStrictEqual(yield* Sys.waitpid(l.cap), Process.fault("boom"))
        assert.deepStrictEqual(yield* Sys.waitpid(a.cap), Process.fault("boom"))
        assert.deepStrictEqual(yield* Sys.waitpid(b.cap), Process.fault("boom"))
      })
    )
  )

  it.effect("a Normal exit signal is ignored by a process that does not trap exits", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const survivor = yield* Sys.spawn(idle)
        const quitter = Process.make("quitter", () =>
          Effect.gen(function* () {
            const [to] = yield* Sys.caps()
            yield* Sys.link(to!)
          })
        )
        const q = yield* Sys.spawn(quitter, { caps: [yield* Sys.derive(survivor.cap, ["monitor", "kill"])] })
        assert.deepStrictEqual(yield* Sys.waitpid(q.cap), Process.normal)
        assert.isTrue(yield* isAlive(kernel, survivor.pid))
      })
    )
  )

  it.effect("Shutdown is an exit signal like any abnormal one: it ends a non-trapping linked process", () =>
    run(() =>
      Effect.gen(function* () {
        const linked = yield* Sys.spawn(idle)
        const leaver = Process.make("leaver", () =>
          Effect.gen(function* () {
            yield* Sys.link((yield* Sys.caps())[0]!)
            yield* Sys.exit(Process.shutdownWith("done here"))
          })
        )
        yield* Sys.spawn(leaver, { caps: [yield* Sys.derive(linked.cap, ["monitor", "kill"])] })
        assert.deepStrictEqual(yield* Sys.waitpid(linked.cap), Process.shutdownWith("done here"))
      })
    )
  )

  it.effect("a process that traps exits gets each exit signal as an Exit kernel message, Normal included", () =>
    run(() =>
      Effect.gen(function* () {
        const t = yield* Sys.spawn(trapper, { caps: [yield* replyCap] })
        assert.strictEqual((yield* Sys.recv()).body, "ready")
        const normalOne = Process.make("normal-one", () => Effect.flatMap(Sys.caps(), ([to]) => Sys.link(to!)))
        const faulty = Process.make("faulty", () =>
          Effect.gen(function* () {
            yield* Sys.link((yield* Sys.caps())[0]!)
            return yield* Effect.die("broken")
          })
        )
        const n = yield* Sys.spawn(normalOne, { caps: [yield* Sys.derive(t.cap, ["monitor", "kill"])] })
        const got1 = (yield* Sys.recv()).body
        assert.deepStrictEqual(got1, { body: { _tag: "Exit", pid: n.pid, reason: Process.normal }, kernel: true })
        const f = yield* Sys.spawn(faulty, { caps: [yield* Sys.derive(t.cap, ["monitor", "kill"])] })
        const got2 = (yield* Sys.recv()).body as { body: Process.Exit; kernel: boolean }
        assert.strictEqual(got2.body.pid, f.pid)
        assert.strictEqual(got2.body.reason._tag, "Fault")
        assert.isTrue(got2.kernel)
      })
    )
  )

  it.effect("a forged Exit body from a process is not a kernel message", () =>
    run(() =>
      Effect.gen(function* () {
        const t = yield* Sys.spawn(trapper, { caps: [yield* replyCap] })
        assert.strictEqual((yield* Sys.recv()).body, "ready")
        yield* Sys.send(t.cap, { _tag: "Exit", pid: 1, reason: Process.killed(0) })
        const got = (yield* Sys.recv()).body as { kernel: boolean }
        assert.isFalse(got.kernel)
      })
    )
  )

  it.effect("Sys.kill is never trapped: a trapping process ends Killed, and its links see Killed", () =>
    run(() =>
      Effect.gen(function* () {
        const t = yield* Sys.spawn(trapper, { caps: [yield* replyCap] })
        assert.strictEqual((yield* Sys.recv()).body, "ready")
        const watcher = yield* Sys.spawn(idle)
        const linker = Process.make("linker", () =>
          Effect.gen(function* () {
            const [a, b] = yield* Sys.caps()
            yield* Sys.link(a!)
            yield* Sys.link(b!)
            yield* Effect.never
          })
        )
        const l = yield* Sys.spawn(linker, {
          caps: [yield* Sys.derive(t.cap, ["monitor", "kill"]), yield* Sys.derive(watcher.cap, ["monitor", "kill"])]
        })
        yield* Sys.yield()
        yield* Sys.kill(t.cap)
        assert.deepStrictEqual(yield* Sys.waitpid(t.cap), Process.killed(1))
        // the linker does not trap: the Killed signal ends it, and it passes the same reason on
        assert.deepStrictEqual(yield* Sys.waitpid(l.cap), Process.killed(1))
        assert.deepStrictEqual(yield* Sys.waitpid(watcher.cap), Process.killed(1))
      })
    )
  )

  it.effect("a chain of 5000 linked processes unwinds in one step when its head is killed (no recursion)", () =>
    run((grant) =>
      Effect.gen(function* () {
        const link = Process.make("link", () =>
          Effect.gen(function* () {
            const [next] = yield* Sys.caps()
            if (next !== undefined) yield* Sys.link(next)
            yield* Effect.never
          })
        )
        let previous: Capability.CapRef | undefined
        const all: Array<Capability.CapRef> = []
        for (const _ of range(5000)) {
          const p = yield* Sys.spawn(link, {
            caps: previous === undefined ? [] : [yield* Sys.derive(previous, ["monitor", "kill"])]
          })
          all.push(p.cap)
          previous = p.cap
        }
        yield* Sys.yield()
        yield* Sys.kill(all[0]!)
        const last = yield* Sys.waitpid(all[all.length - 1]!)
        assert.deepStrictEqual(last, Process.killed(1))
        void grant
      })
    )
  )
})

describe("Sys.link / Sys.unlink", () => {
  it.effect("link needs monitor and kill on the cap; a send-only cap is refused and links nothing", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const target = yield* Sys.spawn(idle)
        const sendOnly = yield* Sys.derive(target.cap, ["send"])
        assertCapabilityError(yield* outcome(Sys.link(sendOnly)), "missing-right")
        const monitorOnly = yield* Sys.derive(target.cap, ["monitor"])
        assertCapabilityError(yield* outcome(Sys.link(monitorOnly)), "missing-right")
        // nothing linked: a fault of a helper holding the send-only cap leaves the target alive
        const helper = Process.make("helper", () =>
          Effect.gen(function* () {
            yield* Effect.ignore(Sys.link((yield* Sys.caps())[0]!))
            return yield* Effect.die("x")
          })
        )
        const h = yield* Sys.spawn(helper, { caps: [yield* Sys.derive(target.cap, ["send"])] })
        yield* Sys.waitpid(h.cap)
        assert.isTrue(yield* isAlive(kernel, target.pid))
      })
    )
  )

  it.effect("unlink removes the link both ways: no exit signal afterwards; a second unlink says false", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const target = yield* Sys.spawn(idle)
        const breaker = Process.make("breaker", () =>
          Effect.gen(function* () {
            const [to, parent] = yield* Sys.caps()
            yield* Sys.link(to!)
            const first = yield* Sys.unlink(to!)
            const second = yield* Sys.unlink(to!)
            yield* Sys.send(parent!, [first, second])
            return yield* Effect.die("after unlink")
          })
        )
        const b = yield* Sys.spawn(breaker, { caps: [target.cap, yield* replyCap] })
        assert.deepStrictEqual((yield* Sys.recv()).body, [true, false])
        assert.strictEqual((yield* Sys.waitpid(b.cap))._tag, "Fault")
        assert.isTrue(yield* isAlive(kernel, target.pid))
      })
    )
  )

  it.effect("linking to a process that has ended sends its exit signal at once (its recorded reason)", () =>
    run(() =>
      Effect.gen(function* () {
        const dead = yield* Sys.spawn(idle)
        yield* Sys.kill(dead.cap, Process.fault("gone"))
        yield* Sys.waitpid(dead.cap)
        yield* Sys.trapExit(true)
        yield* Sys.link(dead.cap)
        const m = yield* Sys.recv()
        assert.isTrue(Process.isKernelMessage(m))
        assert.deepStrictEqual(m.body, { _tag: "Exit", pid: dead.pid, reason: Process.fault("gone") })
        // not trapping: the same link ends the caller
        const late = Process.make("late", () => Effect.flatMap(Sys.caps(), ([to]) => Sys.link(to!)))
        const l = yield* Sys.spawn(late, { caps: [yield* Sys.derive(dead.cap, ["monitor", "kill"])] })
        assert.deepStrictEqual(yield* Sys.waitpid(l.cap), Process.fault("gone"))
      })
    )
  )

  it.effect("linking to oneself does nothing; linking twice is one link", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const full = yield* Sys.spawn(idle)
        yield* Sys.trapExit(true)
        yield* Sys.link(full.cap)
        yield* Sys.link(full.cap)
        yield* Sys.kill(full.cap, Process.fault("once"))
        const m = yield* Sys.recv()
        assert.deepStrictEqual(m.body, { _tag: "Exit", pid: full.pid, reason: Process.fault("once") })
        const self = yield* Sys.derive(me, ["send"])
        yield* Sys.send(self, "next")
        assert.strictEqual((yield* Sys.recv()).body, "next", "a second Exit came for a second link")
      })
    )
  )

  it.effect("trapExit returns the previous setting and refuses a non-boolean", () =>
    run(() =>
      Effect.gen(function* () {
        assert.isFalse(yield* Sys.trapExit(true))
        assert.isTrue(yield* Sys.trapExit(false))
        assertArgumentError(yield* outcome(Sys.trapExit("yes" as never)), "trapExit")
        assert.isFalse(yield* Sys.trapExit(false))
      })
    )
  )
})

describe("Sys.exitSignal (OTP exit/2)", () => {
  it.effect("ends a process that does not trap exits with the reason; Normal is ignored", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const a = yield* Sys.spawn(idle)
        yield* Sys.exitSignal(a.cap, Process.normal)
        yield* Sys.yield()
        assert.isTrue(yield* isAlive(kernel, a.pid))
        yield* Sys.exitSignal(a.cap, Process.shutdown)
        assert.deepStrictEqual(yield* Sys.waitpid(a.cap), Process.shutdown)
      })
    )
  )

  it.effect("a trapping process gets it as an Exit message from the sender", () =>
    run(() =>
      Effect.gen(function* () {
        const t = yield* Sys.spawn(trapper, { caps: [yield* replyCap] })
        assert.strictEqual((yield* Sys.recv()).body, "ready")
        yield* Sys.exitSignal(t.cap, Process.shutdownWith("please"))
        assert.deepStrictEqual((yield* Sys.recv()).body, {
          body: { _tag: "Exit", pid: 1, reason: Process.shutdownWith("please") },
          kernel: true
        })
      })
    )
  )

  it.effect("needs the kill right; a kernel reason (Killed, Quota) is an ArgumentError; the target is unharmed", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const a = yield* Sys.spawn(idle)
        const monitorOnly = yield* Sys.derive(a.cap, ["monitor", "send"])
        assertCapabilityError(yield* outcome(Sys.exitSignal(monitorOnly, Process.fault("x"))), "missing-right")
        assertArgumentError(yield* outcome(Sys.exitSignal(a.cap, Process.killed(0))), "exitSignal")
        assertArgumentError(yield* outcome(Sys.exitSignal(a.cap, Process.quota("tokens"))), "exitSignal")
        assertArgumentError(
          yield* outcome(Sys.exitSignal(a.cap, { _tag: "Shutdown", reason: 7 } as never)),
          "exitSignal"
        )
        yield* Sys.yield()
        assert.isTrue(yield* isAlive(kernel, a.pid))
      })
    )
  )

  it.effect("a flood of exit signals to a trapping process that does not read stays within its mailbox bound", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const sleeper = Process.make("sleeper", () =>
          Effect.gen(function* () {
            yield* Sys.trapExit(true)
            yield* Sys.send((yield* Sys.caps())[0]!, "ready")
            yield* Effect.never
          })
        )
        const s = yield* Sys.spawn(sleeper, { caps: [yield* replyCap], quota: { mailbox: 16 } })
        assert.strictEqual((yield* Sys.recv()).body, "ready")
        for (const _ of range(2000)) yield* Sys.exitSignal(s.cap, Process.fault("spam"))
        const row = (yield* kernel.ps()).find((p) => p.pid === s.pid)
        assert.isAtMost(row!.mailbox, 16)
      })
    )
  )
})

describe("Sys.monitor / Sys.demonitor", () => {
  it.effect("each monitor call is a monitor of its own: two refs, two Downs, each with its ref", () =>
    run(() =>
      Effect.gen(function* () {
        const a = yield* Sys.spawn(idle)
        const r1 = yield* Sys.monitor(a.cap)
        const r2 = yield* Sys.monitor(a.cap)
        assert.notStrictEqual(r1, r2)
        yield* Sys.kill(a.cap)
        const d1 = (yield* Sys.recv()).body as Process.Down
        const d2 = (yield* Sys.recv()).body as Process.Down
        assert.sameMembers([d1.ref, d2.ref], [r1, r2])
        assert.deepStrictEqual([d1.pid, d2.pid], [a.pid, a.pid])
      })
    )
  )

  it.effect("demonitor ends one monitor: no Down for it; the other still comes", () =>
    run(() =>
      Effect.gen(function* () {
        const a = yield* Sys.spawn(idle)
        const r1 = yield* Sys.monitor(a.cap)
        const r2 = yield* Sys.monitor(a.cap)
        assert.isTrue(yield* Sys.demonitor(r1))
        assert.isFalse(yield* Sys.demonitor(r1))
        yield* Sys.kill(a.cap)
        const d = (yield* Sys.recv()).body as Process.Down
        assert.strictEqual(d.ref, r2)
        const me = yield* replyCap
        yield* Sys.send(me, "after")
        assert.strictEqual((yield* Sys.recv()).body, "after", "a Down came for a demonitored ref")
      })
    )
  )

  it.effect("demonitor of another process's ref does nothing to it; a malformed ref is an ArgumentError", () =>
    run(() =>
      Effect.gen(function* () {
        const a = yield* Sys.spawn(idle)
        const spy = Process.make("spy", () =>
          Effect.gen(function* () {
            const [parent] = yield* Sys.caps()
            const ref = (yield* Sys.recv<number>()).body
            yield* Sys.send(parent!, yield* Sys.demonitor(ref))
          })
        )
        const ref = yield* Sys.monitor(a.cap)
        const s = yield* Sys.spawn(spy, { caps: [yield* replyCap] })
        yield* Sys.send(s.cap, ref)
        assert.isFalse((yield* Sys.recv<boolean>()).body)
        for (const bad of [0, -1, 1.5, "1", NaN]) {
          assertArgumentError(yield* outcome(Sys.demonitor(bad as never)), "demonitor")
        }
        yield* Sys.kill(a.cap)
        assert.strictEqual(((yield* Sys.recv()).body as Process.Down).ref, ref)
      })
    )
  )

  it.effect("a monitor without the monitor right is refused", () =>
    run(() =>
      Effect.gen(function* () {
        const a = yield* Sys.spawn(deaf)
        const sendOnly = yield* Sys.derive(a.cap, ["send"])
        assertCapabilityError(yield* outcome(Sys.monitor(sendOnly)), "missing-right")
        void attempt
      })
    )
  )
})

describe("Sys.started", () => {
  it.effect("sends Started { pid } to the parent once", () =>
    run(() =>
      Effect.gen(function* () {
        const starter = Process.make("starter", () =>
          Effect.gen(function* () {
            yield* Sys.started()
            yield* Sys.started()
            yield* Sys.send((yield* Sys.caps())[0]!, "after")
          })
        )
        const s = yield* Sys.spawn(starter, { caps: [yield* replyCap] })
        const first = yield* Sys.recv()
        assert.isTrue(Process.isKernelMessage(first))
        assert.deepStrictEqual(first.body, { _tag: "Started", pid: s.pid })
        assert.strictEqual((yield* Sys.recv()).body, "after")
      })
    )
  )
})

describe("Sys.recvMatch (selective receive)", () => {
  it.effect("takes the oldest message with the corr, leaving the others in order; parks until one comes", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* replyCap
        yield* Sys.send(me, "a")
        yield* Sys.send(me, "reply-1", { corr: "k1" })
        yield* Sys.send(me, "b")
        yield* Sys.send(me, "reply-2", { corr: "k1" })
        assert.strictEqual((yield* Sys.recvMatch({ corr: "k1" })).body, "reply-1")
        assert.strictEqual((yield* Sys.recv()).body, "a")
        assert.strictEqual((yield* Sys.recvMatch({ corr: "k1" })).body, "reply-2")
        assert.strictEqual((yield* Sys.recv()).body, "b")
        // parked: a later message with the corr wakes it, one without stays for recv
        const later = Process.make("later", () =>
          Effect.gen(function* () {
            const [to] = yield* Sys.caps()
            yield* Sys.send(to!, "noise")
            yield* Sys.send(to!, "answer", { corr: 7 })
          })
        )
        yield* Sys.spawn(later, { caps: [yield* replyCap] })
        assert.strictEqual((yield* Sys.recvMatch({ corr: 7 })).body, "answer")
        assert.strictEqual((yield* Sys.recv()).body, "noise")
      })
    )
  )

  it.effect("matches a kernel Down by its ref; a process's forged Down with that ref does not match", () =>
    run(() =>
      Effect.gen(function* () {
        const target = yield* Sys.spawn(idle)
        const ref = yield* Sys.monitor(target.cap)
        const me = yield* replyCap
        yield* Sys.send(me, { _tag: "Down", pid: target.pid, reason: Process.normal, ref })
        yield* Sys.kill(target.cap)
        const m = yield* Sys.recvMatch({ ref })
        assert.isTrue(Process.isKernelMessage(m))
        assert.strictEqual((m.body as Process.Down).reason._tag, "Killed")
        const forged = yield* Sys.recv()
        assert.isFalse(Process.isKernelMessage(forged))
      })
    )
  )

  it.effect("from narrows a corr match to one sender", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* replyCap
        const other = Process.make("other", () =>
          Effect.flatMap(Sys.caps(), ([to]) => Sys.send(to!, "theirs", { corr: "c" }))
        )
        const o = yield* Sys.spawn(other, { caps: [yield* replyCap] })
        yield* Sys.waitpid(o.cap)
        yield* Sys.send(me, "mine", { corr: "c" })
        assert.strictEqual((yield* Sys.recvMatch({ corr: "c", from: 1 })).body, "mine")
        assert.strictEqual((yield* Sys.recv()).body, "theirs")
      })
    )
  )

  it.effect("a match naming none of corr, from, sender and ref, or with malformed fields, is an ArgumentError", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* replyCap
        for (const bad of [
          undefined,
          {},
          { from: -1 },
          { from: 1, sender: me },
          { corr: {} },
          { ref: -1 },
          { ref: 1.5 },
          { corr: "x", from: "1" },
          []
        ]) {
          assertArgumentError(yield* outcome(Sys.recvMatch(bad as never)), "recvMatch")
        }
        // a getter on the match is read at most once and its value checked like any other
        let reads = 0
        const tricky = Object.defineProperty({}, "corr", {
          enumerable: true,
          get: () => (reads++ === 0 ? "ok" : {})
        })
        yield* Sys.send(me, "hit", { corr: "ok" })
        assert.strictEqual((yield* Sys.recvMatch(tricky)).body, "hit")
        assert.isAtMost(reads, 1)
      })
    )
  )

  it.effect("from alone takes the oldest message of that sender; from: 0 takes kernel messages only", () =>
    run(() =>
      Effect.gen(function* () {
        const me = yield* replyCap
        const other = Process.make("other", () => Effect.flatMap(Sys.caps(), ([to]) => Sys.send(to!, "theirs")))
        const o = yield* Sys.spawn(other, { caps: [yield* replyCap] })
        yield* Sys.waitpid(o.cap)
        yield* Sys.send(me, "mine-1")
        yield* Sys.send(me, "mine-2", { corr: "x" })
        assert.strictEqual((yield* Sys.recvMatch({ from: 1 })).body, "mine-1")
        assert.strictEqual((yield* Sys.recvMatch({ from: o.pid })).body, "theirs")
        // a process's message shaped like a kernel one is not the kernel's
        yield* Sys.send(me, { _tag: "Down", pid: o.pid, reason: Process.normal, ref: 1 })
        const t = yield* Sys.spawn(idle)
        yield* Sys.monitor(t.cap)
        yield* Sys.kill(t.cap)
        const kernelOne = yield* Sys.recvMatch({ from: 0 })
        assert.isTrue(Process.isKernelMessage(kernelOne))
        assert.strictEqual(kernelOne.from, 0)
        assert.strictEqual((yield* Sys.recv()).body, "mine-2")
        assert.isFalse(Process.isKernelMessage(yield* Sys.recv()))
      })
    )
  )
})

describe("Sys.recvMatch sender (a reply from the process a cap designates)", () => {
  /** Takes a request, waits for "go", then answers it with the request's corr. */
  const server = Process.make("server", () =>
    Effect.gen(function* () {
      const m = yield* Sys.recv()
      yield* Sys.recv()
      yield* Sys.send(m.caps[0]!, "genuine", { corr: m.corr! })
    })
  )
  /** Sends a reply of its own with the corr it guessed. */
  const forger = Process.make("forger", () =>
    Effect.flatMap(Sys.caps(), ([to]) => Sys.send(to!, "forged", { corr: "c-1" }))
  )

  it.effect("only the designated process's reply matches, whatever corr a third process sends", () =>
    run(() =>
      Effect.gen(function* () {
        const s = yield* Sys.spawn(server)
        const toServer = yield* Sys.derive(s.cap, ["send"]) // send-only: no monitor, no pid learned
        yield* Sys.send(toServer, "request", { caps: [yield* replyCap], corr: "c-1" })
        const f = yield* Sys.spawn(forger, { caps: [yield* replyCap] })
        yield* Sys.waitpid(f.cap) // the forged reply is in the mailbox first
        yield* Sys.send(toServer, "go")
        const reply = yield* Sys.recvMatch({ corr: "c-1", sender: toServer })
        assert.strictEqual(reply.body, "genuine")
        assert.strictEqual(reply.from, s.pid)
        // the forged one is still there, for recv (a corr match alone would have taken it)
        const forged = yield* Sys.recv()
        assert.strictEqual(forged.body, "forged")
        assert.strictEqual(forged.from, f.pid)
      })
    )
  )

  it.effect("sender needs a live cap the caller holds: revoked, forged or not a process is a CapabilityError", () =>
    run(() =>
      Effect.gen(function* () {
        const t = yield* Sys.spawn(idle)
        const cap = yield* Sys.derive(t.cap, ["send"])
        yield* Sys.revoke(cap)
        assertCapabilityError(yield* outcome(Sys.recvMatch({ corr: 1, sender: cap })), "revoked")
        assertCapabilityError(yield* outcome(Sys.recvMatch({ corr: 1, sender: { id: 1 } as never })), "invalid")
        assertCapabilityError(yield* outcome(Sys.recvMatch({ sender: 5 as never })), "invalid")
      })
    )
  )
})

describe("Sys.send nosuspend", () => {
  it.effect("a full mailbox drops the message (Drop full, its caps revoked) instead of parking the sender", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const sink = yield* Sys.spawn(deaf, { quota: { mailbox: 1 } })
        yield* Sys.send(sink.cap, "fill")
        const carried = yield* replyCap
        const kept = yield* Sys.derive(carried, ["send"]) // revoked with the cap it was derived from
        // returns at once (a parked send would never return: the sink never reads)
        yield* Sys.send(sink.cap, "dropped", { nosuspend: true, caps: [carried] })
        assertCapabilityError(yield* outcome(Sys.send(kept, "x")), "revoked")
        const trace = yield* kernel.trace()
        const drop = trace.find((e) => e._tag === "Drop" && e.target === sink.pid)
        assert.strictEqual((drop as { readonly reason?: unknown } | undefined)?.reason, "full")
        // with room, nosuspend delivers as any send
        const open = yield* Sys.spawn(idle, { quota: { mailbox: 4 } })
        yield* Sys.send(open.cap, "kept", { nosuspend: true })
        assertArgumentError(yield* outcome(Sys.send(open.cap, "x", { nosuspend: "yes" as never })), "send")
      })
    )
  )
})
