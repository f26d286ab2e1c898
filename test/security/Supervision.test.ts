/**
 * Attacks on supervision (issue 10): links, exit signals, monitors, selective receive and the OTP `Supervisor`, from
 * the public API only, every process hostile. Each test asserts the SECURE outcome: it fails when the attack works.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Kernel, Process, Supervisor, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import { assertCapabilityError, attempt, deaf, idle, isAlive, outcome, range, runOn, show, tagOf } from "./harness.ts"

const vt = TestKernel.layer({ virtualTime: true })
const test = <A, E>(body: (grant: Kernel.BootGrant, kernel: Kernel.KernelShape) => Effect.Effect<A, E, Sys.Sys>) =>
  runOn(body).pipe(Effect.provide(vt))
const spawnCap = (grant: Kernel.BootGrant) => Sys.derive(grant.spawn, ["spawn"])
const replyCap = Effect.flatMap(Sys.selfCap(), (me) => Sys.derive(me, ["send"]))
const liveNames = (kernel: Kernel.KernelShape) =>
  Effect.map(kernel.ps(), (ps) =>
    ps
      .filter((p) => p.pid !== 1)
      .map((p) => `${p.name}#${p.pid}`)
      .sort()
  )

describe("links and exit signals", () => {
  it.effect("exitSignal cannot state a kernel-only reason (Killed, Quota, Policy, Deadline)", () =>
    test(() =>
      Effect.gen(function* () {
        for (const reason of [Process.killed(99), Process.quota("tokens"), Process.policy("x"), Process.deadline]) {
          const victim = yield* Sys.spawn(idle)
          const result = yield* outcome(Sys.exitSignal(victim.cap, reason))
          yield* Effect.sleep("10 millis")
          const got = yield* Sys.waitpid(victim.cap).pipe(Effect.timeoutOption("1 millis"))
          assert.isTrue(
            got._tag === "None",
            `${reason._tag}: exitSignal ${show(result)}, the victim ended with ${show(got)}`
          )
          yield* Sys.kill(victim.cap)
        }
      })
    )
  )

  it.effect("a getter reason read twice cannot turn into Killed", () =>
    test(() =>
      Effect.gen(function* () {
        const victim = yield* Sys.spawn(idle)
        let reads = 0
        const reason = {
          get _tag() {
            return ++reads === 1 ? "Fault" : "Killed"
          },
          error: "x",
          by: 1
        } as unknown as Process.ExitReason
        yield* outcome(Sys.exitSignal(victim.cap, reason))
        const got = yield* Sys.waitpid(victim.cap).pipe(Effect.timeoutOption("1 second"))
        if (got._tag === "Some") assert.notStrictEqual(got.value._tag, "Killed", show(got.value))
      })
    )
  )

  it.effect("link needs monitor+kill: a send-only, an expired or a revoked cap is refused", () =>
    test((_, kernel) =>
      Effect.gen(function* () {
        const victim = yield* Sys.spawn(idle)
        const sendOnly = yield* Sys.derive(victim.cap, ["send"])
        assertCapabilityError(yield* outcome(Sys.link(sendOnly)), "missing-right")
        const expiring = yield* Sys.attenuate(victim.cap, { expiresIn: "1 second" })
        yield* Effect.sleep("2 seconds")
        assertCapabilityError(yield* outcome(Sys.link(expiring)), "expired", "revoked", "invalid")
        const revoked = yield* Sys.derive(victim.cap, ["monitor", "kill"])
        yield* Sys.revoke(revoked)
        assertCapabilityError(yield* outcome(Sys.link(revoked)), "revoked", "invalid", "not-held")
        // a linker with only those caps faults: the victim must not end with it
        const linker = Process.make("linker", () =>
          Effect.gen(function* () {
            for (const c of yield* Sys.caps()) yield* Effect.ignore(Sys.link(c))
            return yield* Sys.exit(Process.fault("chosen by the attacker"))
          })
        )
        const l = yield* Sys.spawn(linker, {
          caps: [yield* Sys.derive(victim.cap, ["send"]), yield* Sys.derive(victim.cap, ["monitor"])]
        })
        yield* Sys.waitpid(l.cap)
        yield* Effect.sleep("10 millis")
        assert.isTrue(yield* isAlive(kernel, victim.pid))
      })
    )
  )

  it.effect("a Down forged by a process with the right ref is not taken by recvMatch({ ref })", () =>
    test(() =>
      Effect.gen(function* () {
        const target = yield* Sys.spawn(idle)
        const ref = yield* Sys.monitor(target.cap)
        const forger = Process.make<number>("forger", (r) =>
          Effect.gen(function* () {
            const [to] = yield* Sys.caps()
            for (const guess of [r, r - 1, r + 1]) {
              yield* Sys.send(
                to!,
                { _tag: "Down", pid: target.pid, reason: Process.killed(1), ref: guess },
                {
                  corr: guess
                }
              )
            }
          })
        )
        const f = yield* Sys.spawn(forger, { args: ref, caps: [yield* replyCap] })
        yield* Sys.waitpid(f.cap)
        yield* Sys.kill(target.cap, Process.fault("real"))
        const m = yield* Sys.recvMatch<Process.Down>({ ref })
        assert.isTrue(Process.isKernelMessage(m), `took a forged Down from ${m.from}`)
        assert.strictEqual(m.body.reason._tag, "Fault")
      })
    )
  )

  it.effect("a link storm to one process stays bounded and all links die with their holders", () =>
    test((_, kernel) =>
      Effect.gen(function* () {
        const victim = yield* Sys.spawn(idle)
        const stormer = Process.make("stormer", () =>
          Effect.gen(function* () {
            const [c] = yield* Sys.caps()
            for (let i = 0; i < 1000; i++) yield* Sys.link(c!)
            yield* Sys.unlink(c!)
            return yield* Sys.exit(Process.fault("after unlink"))
          })
        )
        const s = yield* Sys.spawn(stormer, { caps: [yield* Sys.derive(victim.cap, ["monitor", "kill"])] })
        yield* Sys.waitpid(s.cap)
        yield* Effect.sleep("10 millis")
        assert.isTrue(yield* isAlive(kernel, victim.pid), "a link survived unlink")
      })
    )
  )
})

describe("supervisor calls", () => {
  it.effect("startChild cannot start an image through a prototype key of `images`", () =>
    test((grant) =>
      Effect.gen(function* () {
        const sup = yield* Sys.spawn(Supervisor.make({ images: { worker: idle }, children: [] }), {
          caps: [yield* spawnCap(grant)]
        })
        const send = yield* Sys.derive(sup.cap, ["send"])
        for (const image of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
          const r = yield* attempt(Supervisor.startChild(send, { id: image, image }))
          assert.strictEqual(tagOf(r), "SupervisorError", `${image}: ${show(r)}`)
          assert.strictEqual((r as { reason: string }).reason, "invalid", `${image}: ${show(r)}`)
        }
      })
    )
  )

  it.effect("a malformed reply (null body) fails the call with a SupervisorError, not a defect in the caller", () =>
    test(() =>
      Effect.gen(function* () {
        const liar = Process.make("liar", () =>
          Effect.forever(
            Effect.gen(function* () {
              const m = yield* Sys.recv()
              if (m.caps[0] !== undefined) yield* Sys.send(m.caps[0], null, { corr: m.corr! })
            })
          )
        )
        const l = yield* Sys.spawn(liar)
        const r = yield* attempt(Supervisor.whichChildren(yield* Sys.derive(l.cap, ["send"])))
        assert.strictEqual(tagOf(r), "SupervisorError", `the caller got ${show(r)}`)
      })
    )
  )

  it.effect("a reply of the wrong shape is not returned as whichChildren's array", () =>
    test(() =>
      Effect.gen(function* () {
        const liar = Process.make("liar2", () =>
          Effect.forever(
            Effect.gen(function* () {
              const m = yield* Sys.recv()
              if (m.caps[0] !== undefined) yield* Sys.send(m.caps[0], { ok: true, value: 42 }, { corr: m.corr! })
            })
          )
        )
        const l = yield* Sys.spawn(liar)
        const r = yield* Effect.result(Supervisor.whichChildren(yield* Sys.derive(l.cap, ["send"])))
        if (r._tag === "Success") assert.isTrue(Array.isArray(r.success), `whichChildren returned ${show(r.success)}`)
      })
    )
  )

  it.effect("a third process cannot inject the reply of a call to a real supervisor (predictable corr)", () =>
    test((grant) =>
      Effect.gen(function* () {
        const sup = yield* Sys.spawn(Supervisor.make({ children: [{ id: "w", image: idle }] }), {
          caps: [yield* spawnCap(grant)]
        })
        const supSend = yield* Sys.derive(sup.cap, ["send"]) // a send-only cap, as NameService hands out
        const me = yield* Sys.self()
        const attacker = Process.make<number>("attacker", (victimPid) =>
          Effect.gen(function* () {
            const [victim, spawn] = yield* Sys.caps()
            // learn the (process-global) call counter through a call to a sniffer of its own
            const sniffer = Process.make("sniffer", () =>
              Effect.gen(function* () {
                const [back] = yield* Sys.caps()
                const m = yield* Sys.recv()
                yield* Sys.send(back!, String(m.corr))
              })
            )
            void spawn
            const s = yield* Sys.spawn(sniffer, { caps: [yield* replyCap] })
            yield* Effect.ignore(Supervisor.countChildren(yield* Sys.derive(s.cap, ["send"]), { timeout: "1 second" }))
            const corr = (yield* Sys.recv<string>()).body
            const n = Number(corr.slice(corr.lastIndexOf(":") + 1))
            const fake = [{ id: "planted-by-attacker", pid: 4242, type: "worker" }]
            yield* Sys.send(victim!, { ok: true, value: fake }, { corr: `supervisor-call:${victimPid}:${n + 1}` })
            yield* Sys.send(victim!, "done", { corr: "attack-done" })
          })
        )
        yield* Sys.spawn(attacker, { args: me, caps: [yield* replyCap, yield* spawnCap(grant)] })
        yield* Sys.recvMatch({ corr: "attack-done" })
        const children = yield* Supervisor.whichChildren(supSend)
        assert.deepStrictEqual(
          children.map((c) => c.id),
          ["w"],
          `the victim's call returned ${show(children)}`
        )
      })
    )
  )
})

describe("supervisor availability", () => {
  it.effect(
    "a call whose reply cap points at a full mailbox does not wedge the supervisor: its parent's death still ends the subtree",
    () =>
      test((grant, kernel) =>
        Effect.gen(function* () {
          const parent = Process.make("parent", () =>
            Effect.gen(function* () {
              const [spawn, back] = yield* Sys.caps()
              const sup = yield* Sys.spawn(Supervisor.make({ name: "sup", children: [{ id: "w", image: idle }] }), {
                caps: [spawn!],
                link: true
              })
              yield* Sys.send(back!, "sup", { caps: [yield* Sys.derive(sup.cap, ["send"])] })
              yield* Effect.never
            })
          )
          const p = yield* Sys.spawn(parent, { caps: [yield* spawnCap(grant), yield* replyCap] })
          const supSend = (yield* Sys.recv()).caps[0]!
          // the jam: a process that never reads, its mailbox bound 1 and full
          const sink = yield* Sys.spawn(deaf, { quota: { mailbox: 1 } })
          yield* Sys.send(sink.cap, "fill")
          const sinkSend = yield* Sys.derive(sink.cap, ["send"])
          yield* Sys.send(supSend, { _tag: "SupervisorCall", op: "countChildren" }, { caps: [sinkSend], corr: "jam" })
          yield* Effect.sleep("10 millis")
          // the parent dies abnormally: OTP says the supervisor stops its children and ends
          yield* Sys.kill(p.cap)
          yield* Effect.sleep("1 minute")
          const left = (yield* liveNames(kernel)).filter((n) => !n.startsWith("deaf"))
          assert.deepStrictEqual(left, [], `still running after their parent was killed: ${left.join(", ")}`)
        })
      )
  )

  it.effect(
    "a supervisor waiting for a startTimeout child does not take an unbounded flood past its mailbox bound",
    () =>
      test((grant, kernel) =>
        Effect.gen(function* () {
          const slow = Process.make("slow", () => Effect.never) // never calls Sys.started()
          const sup = yield* Sys.spawn(
            Supervisor.make({ children: [{ id: "slow", image: slow, startTimeout: "1 hour" }] }),
            { caps: [yield* spawnCap(grant)], quota: { mailbox: 8 } }
          )
          const send = yield* Sys.derive(sup.cap, ["send"])
          let sent = 0
          yield* Effect.forkChild(
            Effect.forEach(
              range(5000),
              () =>
                Effect.map(Sys.send(send, "junk"), () => {
                  sent++
                }),
              { discard: true }
            )
          )
          yield* Effect.sleep("1 second")
          const row = (yield* kernel.ps()).find((r) => r.pid === sup.pid)
          assert.isAtMost(
            sent,
            16,
            `${sent} messages accepted by a supervisor with a mailbox bound of 8 (its mailbox row: ${row?.mailbox})`
          )
          yield* Sys.kill(sup.cap)
        })
      )
  )

  it.effect("killing a supervisor while it waits for a startTimeout child leaks no child", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        const silent = Process.make("silent", () => Effect.never)
        const sup = yield* Sys.spawn(
          Supervisor.make({ children: [{ id: "t", image: silent, startTimeout: "1 hour" }] }),
          { caps: [yield* spawnCap(grant)] }
        )
        yield* Effect.sleep("10 millis")
        yield* Sys.kill(sup.cap)
        yield* Effect.sleep("1 second")
        const left = yield* liveNames(kernel)
        // (a child that traps exits gets Exit { Killed } as a message and stays, adopted by init: OTP's semantics)
        assert.deepStrictEqual(left, [], `a child outlived its killed supervisor: ${left.join(", ")}`)
      })
    )
  )

  it.effect("a deep chain of nested supervisors killed at once ends entirely", () =>
    test((grant, kernel) =>
      Effect.gen(function* () {
        let image: Process.Image<void> = idle as Process.Image<void>
        for (let i = 0; i < 40; i++) {
          image = Supervisor.make({
            name: `s${i}`,
            children: [
              { id: `c${i}`, image, type: i === 0 ? "worker" : "supervisor", caps: [{ from: 0, rights: ["spawn"] }] }
            ]
          })
        }
        const top = yield* Sys.spawn(image, { caps: [yield* spawnCap(grant)] })
        yield* Effect.sleep("1 second")
        const before = (yield* liveNames(kernel)).length
        assert.isAtLeast(before, 41)
        yield* Sys.kill(top.cap)
        yield* Effect.sleep("1 minute")
        assert.deepStrictEqual(yield* liveNames(kernel), [])
      })
    )
  )
})
