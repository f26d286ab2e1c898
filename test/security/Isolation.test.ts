/**
 * Issue 8, parts 1 and 2: a process's fiber holds `Sys` and Effect's own runtime references, nothing else, and nothing
 * reachable from what the kernel hands a process (its `Sys`, caps, messages, spawn results, budgets) leads to kernel
 * state — not even through built-ins the image patched.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Context, Effect, Fiber, Layer, Option, Scope } from "effect"
import { TestClock } from "effect/testing"
import { Capability, Device, Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import {
  assertCapabilityError,
  idle,
  isAlive,
  kernelRecords,
  outcome,
  patchBuiltins,
  reachable,
  run,
  runOn,
  show,
  tagOf
} from "./harness.ts"

/** A host service the application owns: a driver is built from it; processes must never see it. */
class Secret extends Context.Service<Secret, { readonly password: string }>()("test/security/Secret") {}

const vaultDriver = Effect.gen(function* () {
  const secret = yield* Secret
  return Device.make({
    name: "vault",
    meters: [],
    open: () => Effect.succeed({ read: () => Effect.succeed({ value: secret.password.length }) })
  })
})

const kernelWithSecret = TestKernel.layer({ drivers: [vaultDriver] }).pipe(
  Layer.provide(Layer.succeed(Secret)({ password: "hunter2" }))
)

/** Context keys that are not Effect's own runtime references (Scope and the layer memo map are not). */
const notRuntime = new Set(["effect/Scope", "effect/Layer/CurrentMemoMap"])

interface Survey {
  readonly keys: ReadonlyArray<string>
  readonly sys: boolean
  readonly secret: boolean
  readonly kernel: boolean
  readonly scope: boolean
  readonly memoMap: boolean
  readonly tokenInert: boolean
}

/** What the running fiber can find in its context. */
const survey: Effect.Effect<Survey> = Effect.gen(function* () {
  const context = yield* Effect.context<never>()
  return {
    keys: Array.from(context.mapUnsafe.keys()),
    sys: Option.isSome(yield* Effect.serviceOption(Sys.Sys)),
    secret: Option.isSome(yield* Effect.serviceOption(Secret)),
    kernel: Option.isSome(yield* Effect.serviceOption(Kernel.Kernel)),
    scope: Option.isSome(yield* Effect.serviceOption(Scope.Scope)),
    memoMap: Option.isSome(yield* Effect.serviceOption(Layer.CurrentMemoMap)),
    tokenInert: ((token: unknown) =>
      typeof token === "object" &&
      token !== null &&
      Object.isFrozen(token) &&
      Reflect.ownKeys(token).length === 0 &&
      Object.getPrototypeOf(token) === Object.prototype)(context.mapUnsafe.get(processTokenKey))
  }
})

const processTokenKey = "effect-agent-os/Sys/ProcessToken"

const assertIsolated = (found: Survey, where: string) => {
  assert.isTrue(found.sys, `${where}: Sys is there`)
  assert.isFalse(found.secret, `${where}: the host's Secret service is reachable`)
  assert.isFalse(found.kernel, `${where}: the Kernel service is reachable`)
  assert.isFalse(found.scope, `${where}: a Scope is reachable`)
  assert.isFalse(found.memoMap, `${where}: the layer memo map is reachable`)
  // besides Sys, the kernel puts one marker in a process's context: its process token, an empty frozen object that
  // tells the kernel which fibers belong to the process (a Sys leaked to another process acts for nobody there)
  const foreign = found.keys.filter(
    (key) => key !== Sys.Sys.key && key !== processTokenKey && !(key.startsWith("effect/") && !notRuntime.has(key))
  )
  assert.isTrue(found.tokenInert, `${where}: the process token is an empty frozen object`)
  assert.deepStrictEqual(
    foreign,
    [],
    `${where}: context keys beyond Sys and Effect's references: ${foreign.join(", ")}`
  )
  assert.include(found.keys, Sys.Sys.key)
}

describe("context isolation", () => {
  it.effect("a process's context holds Sys and Effect's runtime references only", () =>
    runOn(() => survey).pipe(
      Effect.map((found) => assertIsolated(found, "process")),
      Effect.provide(kernelWithSecret)
    )
  )

  it.effect("the host service a driver was built from stays out of the process; the driver works through its cap", () =>
    runOn(
      (grant) =>
        Effect.gen(function* () {
          assert.isTrue(Option.isNone(yield* Effect.serviceOption(Secret)), "Secret reachable from the process")
          const handle = yield* Sys.open(grant.devices.vault!)
          // the legitimate path: the device, behind a cap
          assert.strictEqual(yield* Sys.read<number>(handle, {}), "hunter2".length)
        }),
      { grant: ["vault"] }
    ).pipe(Effect.provide(kernelWithSecret))
  )

  it.effect("fibers the process forks (forkChild, forkDetach) see the same context", () =>
    runOn(() =>
      Effect.gen(function* () {
        const child = yield* Effect.forkChild(survey)
        const detached = yield* Effect.forkDetach(survey)
        const nested = yield* Effect.forkChild(Effect.flatMap(Effect.forkDetach(survey), Fiber.join))
        return [yield* Fiber.join(child), yield* Fiber.join(detached), yield* Fiber.join(nested)] as const
      })
    ).pipe(
      Effect.map(([child, detached, nested]) => {
        assertIsolated(child, "forkChild")
        assertIsolated(detached, "forkDetach")
        assertIsolated(nested, "forkDetach inside forkChild")
      }),
      Effect.provide(kernelWithSecret)
    )
  )

  it.effect("a spawned child's context is the same", () => {
    const seen: Array<Survey> = []
    const child = Process.make("surveyor", () => Effect.map(survey, (found) => void seen.push(found)))
    return runOn(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(child)
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
      })
    ).pipe(
      Effect.map(() => {
        assert.strictEqual(seen.length, 1)
        assertIsolated(seen[0]!, "spawned child")
      }),
      Effect.provide(kernelWithSecret)
    )
  })

  it.effect("Effect's own services still work in a process: the clock, sleeping, logging", () =>
    run(() =>
      Effect.gen(function* () {
        const before = yield* Clock.currentTimeMillis
        const sleeper = yield* Effect.forkChild(Effect.sleep("1 second"))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(sleeper)
        assert.strictEqual((yield* Clock.currentTimeMillis) - before, 1000)
        yield* Effect.logDebug("still logging")
      })
    )
  )
})

describe("nothing reachable leads to kernel state", () => {
  it.effect("the Sys object has no proc or kernel property", () =>
    run(() =>
      Effect.gen(function* () {
        const sys = yield* Sys.Sys
        assert.isUndefined((sys as any).proc, "sys.proc")
        assert.isUndefined((sys as any).kernel, "sys.kernel")
        // the syscalls are still there
        assert.strictEqual(typeof sys.send, "function")
        assert.strictEqual(yield* sys.self(), 1)
      })
    )
  )

  it.effect("walking Sys, a CapRef, a Message, a Spawned and a Budget finds no kernel record", () =>
    run(() =>
      Effect.gen(function* () {
        const sys = yield* Sys.Sys
        const spawned = yield* Sys.spawn(idle)
        const me = yield* Sys.selfCap()
        const passed = yield* Sys.derive(me, ["send"])
        yield* Sys.send(me, { hello: ["world"] }, { caps: [passed], corr: "c1" })
        const message = yield* Sys.recv()
        const budget = yield* Sys.budget()
        const objects = reachable([sys, me, spawned, spawned.cap, message, budget])
        assert.isAbove(objects.length, 5, "the walk saw something")
        const records = kernelRecords(objects)
        assert.deepStrictEqual(records, [], `kernel records reachable: ${records.join("; ")}`)
      })
    )
  )

  it.effect("patched built-ins see no kernel record, and tampering with what they saw grants nothing", () => {
    const echo = Device.make({
      name: "echo",
      meters: [],
      open: () => Effect.succeed({ read: (request) => Effect.succeed({ value: request }) })
    })
    interface Report {
      leaked: ReadonlyArray<string>
      seen: number
      killSibling: unknown
      useSentAway: unknown
      useRevoked: unknown
      ops: ReadonlyArray<unknown>
    }
    const report: Partial<Report> = {}
    const attacker = Process.make("attacker", () =>
      Effect.gen(function* () {
        const [spawnCap, toSibling, toSiblingKept, toRoot, device] = yield* Sys.caps()
        const me = yield* Sys.self()
        const recorder = patchBuiltins()
        const ops: Array<unknown> = []
        let sentAway: Capability.CapRef | undefined
        let revoked: Capability.CapRef | undefined
        yield* Effect.gen(function* () {
          // spawn with caps, send with caps, derive, revoke, monitor, kill, recv, open and read
          const gift = yield* Sys.derive(toRoot!, ["send"])
          const { cap: kid } = yield* Sys.spawn(idle, { caps: [gift] })
          sentAway = yield* Sys.derive(toRoot!, ["send"])
          const extra = yield* Sys.derive(toRoot!, ["send"])
          yield* Sys.send(toSibling!, "take these", { caps: [sentAway, extra] })
          revoked = yield* Sys.derive(toSiblingKept!, ["send"])
          yield* Sys.revoke(revoked)
          yield* Sys.monitor(kid)
          yield* Sys.kill(kid)
          // a self-send carrying the kept send-only cap: it comes back to the attacker
          const self = yield* Sys.selfCap()
          yield* Sys.send(self, "note", { caps: [toSiblingKept!, yield* Sys.derive(toRoot!, ["send"])] })
          ops.push((yield* Sys.recv()).body, (yield* Sys.recv()).body) // the kid's Down and the note, in some order
          const handle = yield* Sys.open(device!)
          ops.push(yield* Sys.read(handle, "ping"))
          void spawnCap
        }).pipe(Effect.ensuring(Effect.sync(() => recorder.restore())))
        const seen = recorder.seen()
        report.seen = seen.length
        report.leaked = kernelRecords(seen)
        report.ops = JSON.parse(JSON.stringify(ops)) // a copy: the tampering below reaches these objects too
        // whatever it saw, the attacker now rewrites as if it were a cap record it owns with every right
        for (const o of seen) {
          try {
            ;(o as any).owner = me
            ;(o as any).rights = 127
            ;(o as any).revoked = false
          } catch {
            // frozen
          }
        }
        report.killSibling = yield* outcome(Sys.kill(toSiblingKept!))
        report.useSentAway = yield* outcome(Sys.send(sentAway!, "mine again?"))
        report.useRevoked = yield* outcome(Sys.send(revoked!, "alive again?"))
      })
    )
    return runOn(
      (grant, kernel) =>
        Effect.gen(function* () {
          const sibling = yield* Sys.spawn(idle)
          const toSibling = yield* Sys.derive(sibling.cap, ["send"])
          const toSiblingKept = yield* Sys.derive(sibling.cap, ["send"])
          const toRoot = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
          const spawnCap = yield* Sys.derive(grant.spawn, ["spawn"])
          const { pid } = yield* Sys.spawn(attacker, {
            caps: [spawnCap, toSibling, toSiblingKept, toRoot, grant.devices.echo!]
          })
          // waited on from the host side: the attack may have rewritten this process's own cap records
          const reason = yield* kernel.waitExit(pid)
          assert.deepStrictEqual(reason, Process.normal, `the attacker ended ${show(reason)}`)
          assert.sameDeepMembers(report.ops!.slice(0, 2), [
            "note",
            { _tag: "Down", pid: 4, reason: Process.killed(3), ref: 1 }
          ])
          assert.strictEqual(report.ops![2], "ping")
          assert.isAbove(report.seen!, 0, "the patched built-ins saw something")
          // all at once, so that a failure shows every way the attack got through
          const refusal = (u: unknown) =>
            tagOf(u) === "CapabilityError" ? `refused: ${(u as { reason: string }).reason}` : show(u)
          assert.deepStrictEqual(
            {
              leaked: report.leaked,
              killSibling: refusal(report.killSibling),
              siblingAlive: yield* isAlive(kernel, sibling.pid),
              useSentAway: refusal(report.useSentAway).replace("refused: moved", "refused: not-held"),
              useRevoked: refusal(report.useRevoked)
            },
            {
              leaked: [],
              killSibling: "refused: missing-right",
              siblingAlive: true,
              useSentAway: "refused: not-held",
              useRevoked: "refused: revoked"
            }
          )
        }),
      { grant: ["echo"] }
    ).pipe(Effect.provide(TestKernel.layer({ drivers: [echo] })))
  })

  it.effect("baseline: a cap sent away is refused to the sender, a send-only cap cannot kill", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const sibling = yield* Sys.spawn(idle)
        const sendOnly = yield* Sys.derive(sibling.cap, ["send"])
        assertCapabilityError(yield* outcome(Sys.kill(sendOnly)), "missing-right")
        const away = yield* Sys.derive(yield* Sys.selfCap(), ["send"])
        yield* Sys.send(sibling.cap, "yours", { caps: [away] })
        assertCapabilityError(yield* outcome(Sys.send(away, "mine?")), "not-held", "moved")
        assert.isTrue(yield* isAlive(kernel, sibling.pid))
      })
    )
  )
})
