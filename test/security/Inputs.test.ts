/**
 * Issue 8, part 3: every syscall input is read once, copied and validated before use. An input the kernel cannot act
 * on is an `ArgumentError { call, message }` the process may catch; it goes on. Getters that change between reads,
 * proxies and custom iterators cannot make the kernel act on something other than what it checked, and an exit or
 * kill reason only the kernel may give cannot be forged.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Accounts, type Capability, Process, Sys } from "effect-agent-os"
import { assertArgumentError, assertCapabilityError, idle, isAlive, outcome, run, show, tagOf } from "./harness.ts"

/** A value read by getter: `first` on the first read, `later` on every read after it. */
const shifty = <A>(first: A, later: A) => {
  let reads = 0
  return {
    reads: () => reads,
    get: () => (reads++ === 0 ? first : later)
  }
}

/** The Charge events of `pid` in the trace. */
const chargesOf = (events: ReadonlyArray<{ readonly _tag: string; readonly pid: number }>, pid: number) =>
  events.filter((event) => event._tag === "Charge" && event.pid === pid) as unknown as ReadonlyArray<{
    readonly tokens: number
  }>

describe("Sys.charge reads its cost once", () => {
  it.effect("a plain cost is charged once, to the caller and its ancestors", () => {
    const spender = Process.make("spender", () => Sys.charge({ tokens: 5, toolCalls: 1 }))
    return run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(spender, { quota: { tokens: 100 } })
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
        const budget = yield* Sys.budget()
        assert.strictEqual(budget.used.tokens, 5)
        assert.strictEqual(budget.used.toolCalls, 1)
      })
    )
  })

  it.effect("a negative or NaN cost is an ArgumentError of charge, and the process goes on", () =>
    run(() =>
      Effect.gen(function* () {
        assertArgumentError(yield* outcome(Sys.charge({ tokens: -1 })), "charge")
        assertArgumentError(yield* outcome(Sys.charge({ tokens: Number.NaN })), "charge")
        assertArgumentError(yield* outcome(Sys.charge(null as any)), "charge")
        yield* Sys.charge({ tokens: 1 })
        assert.strictEqual((yield* Sys.budget()).used.tokens, 1)
      })
    )
  )

  it.effect("a cost whose tokens getter gives 1, then -1e9: usage never decreases, charged once", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        yield* Sys.charge({ tokens: 10 })
        const tokens = shifty(1, -1e9)
        const cost = {
          get tokens() {
            return tokens.get()
          }
        }
        const result = yield* outcome(Sys.charge(cost))
        const used = (yield* Sys.budget()).used.tokens
        assert.isAtMost(tokens.reads(), 1, "the cost was read more than once")
        if (result === "succeeded") assert.strictEqual(used, 11, "charged the value read, once")
        else {
          assertArgumentError(result, "charge")
          assert.strictEqual(used, 10)
        }
        const charges = chargesOf(yield* kernel.trace(), 1)
        for (const charge of charges) assert.isAtLeast(charge.tokens, 0, `a Charge event of ${charge.tokens}`)
        assert.strictEqual(
          charges.reduce((sum, charge) => sum + charge.tokens, 0),
          used,
          "the Charge events add up to the usage"
        )
      })
    )
  )

  it.effect("a Proxy cost that changes between reads is read once as well", () =>
    run(() =>
      Effect.gen(function* () {
        yield* Sys.charge({ tokens: 10 })
        const tokens = shifty(1, -1e9)
        const cost = new Proxy({ tokens: 1 } as { tokens?: number }, {
          get: (target, key, receiver) => (key === "tokens" ? tokens.get() : Reflect.get(target, key, receiver))
        })
        const result = yield* outcome(Sys.charge(cost))
        const used = (yield* Sys.budget()).used.tokens
        assert.isAtMost(tokens.reads(), 1, "the cost was read more than once")
        assert.isAtLeast(used, 10, "usage decreased")
        if (result === "succeeded") assert.strictEqual(used, 11)
        else {
          assertArgumentError(result, "charge")
          assert.strictEqual(used, 10)
        }
      })
    )
  )
})

describe("Sys.spawn reads its quota once", () => {
  it.effect("a quota within what the parent has left is granted", () => {
    const limits: Array<unknown> = []
    const child = Process.make("child", () => Effect.map(Sys.budget(), (budget) => void limits.push(budget.limits)))
    return run(
      () =>
        Effect.gen(function* () {
          const { cap } = yield* Sys.spawn(child, { quota: { tokens: 50, children: 1, mailbox: 8, mem: 500 } })
          yield* Sys.waitpid(cap)
          assert.deepInclude(limits[0] as object, { tokens: 50, children: 1, mailbox: 8, mem: 500 })
        }),
      { quota: { tokens: 100, children: 2, mailbox: 16, mem: 1000 } }
    )
  })

  it.effect("a quota whose getters change between reads cannot carve more than the parent has left", () => {
    const seen: Array<Accounts.Budget> = []
    const child = Process.make("child", () => Effect.map(Sys.budget(), (budget) => void seen.push(budget)))
    // one field at a time: a small value on the first read (the check), a huge one on every read after it
    const attacks: ReadonlyArray<readonly [string, unknown, unknown]> = [
      ["tokens", 50, 1e9],
      ["toolCalls", 5, 1e9],
      ["usd", 0.5, 1e9],
      ["children", 1, 1e9],
      ["mem", 500, 1e9],
      ["mailbox", 8, 1e9],
      ["wall", "1 minute", "1000 hours"]
    ]
    return run(
      () =>
        Effect.gen(function* () {
          const mine = yield* Sys.budget()
          for (const [field, first, later] of attacks) {
            const value = shifty(first, later)
            const quota = Object.defineProperty({}, field, { get: value.get, enumerable: true }) as Accounts.Quota
            seen.length = 0
            const result = yield* Effect.match(Sys.spawn(child, { quota }), {
              onFailure: (error) => ({ refused: error as unknown }),
              onSuccess: (spawned) => ({ spawned })
            })
            if ("refused" in result) {
              // refused outright: fine, as long as it is a typed refusal
              assert.include(["QuotaError", "ArgumentError"], tagOf(result.refused), `${field}: ${show(result)}`)
              continue
            }
            yield* Sys.waitpid(result.spawned.cap)
            const got = seen[0]
            assert.isDefined(got, `${field}: the child did not run`)
            const granted = field === "wall" ? got!.wallEndsAt : got!.limits[field as keyof Accounts.Budget["limits"]]
            const available =
              field === "wall"
                ? mine.wallEndsAt
                : field === "tokens" || field === "toolCalls" || field === "usd"
                  ? mine.remaining[field]
                  : mine.limits[field as "children" | "mem" | "mailbox"]
            assert.isAtMost(granted, available, `${field}: the child got ${granted}, the parent had ${available}`)
          }
        }),
      { quota: { tokens: 100, toolCalls: 10, usd: 1, children: 20, mem: 1000, mailbox: 16, wall: "1 hour" } }
    )
  })
})

describe("caps to move are read once", () => {
  /**
   * The root holds `good`; `stolen` is a ref it still knows but moved to the child `holder`. Whatever the caps
   * argument does, the root must not end up holding `stolen`, and no cap may arrive twice.
   */
  const setup = Effect.gen(function* () {
    const holder = yield* Sys.spawn(idle)
    const me = yield* Sys.selfCap()
    const stolen = yield* Sys.derive(me, ["send"])
    yield* Sys.send(holder.cap, "yours", { caps: [stolen] })
    const good = yield* Sys.derive(me, ["send"])
    return { me, good, stolen }
  })

  const attack = (me: Capability.CapRef, stolen: Capability.CapRef, caps: ReadonlyArray<Capability.CapRef>) =>
    Effect.gen(function* () {
      const result = yield* outcome(Sys.send(me, "attack", { caps }))
      if (result === "succeeded") {
        const message = yield* Sys.recv()
        assert.notInclude(message.caps, stolen, "a cap not held was moved")
        assert.strictEqual(new Set(message.caps).size, message.caps.length, "a cap was moved twice")
      } else {
        assert.include(["CapabilityError", "ArgumentError"], tagOf(result), show(result))
      }
      assertCapabilityError(yield* outcome(Sys.send(stolen, "mine?")), "not-held", "moved")
    })

  it.effect("baseline: held caps move once each; a cap not held refuses the whole send", () =>
    run(() =>
      Effect.gen(function* () {
        const { me, good, stolen } = yield* setup
        assertCapabilityError(yield* outcome(Sys.send(me, "x", { caps: [good, stolen] })), "not-held", "moved")
        assertArgumentError(yield* outcome(Sys.send(me, "x", { caps: [good, good] })), "send")
        yield* Sys.send(me, "ok", { caps: [good] })
        const message = yield* Sys.recv()
        assert.deepStrictEqual(message.caps, [good])
      })
    )
  )

  it.effect("a caps array with a custom Symbol.iterator moves nothing not held, nothing twice", () =>
    run(() =>
      Effect.gen(function* () {
        const { me, good, stolen } = yield* setup
        const sneaky = [good]
        Object.defineProperty(sneaky, Symbol.iterator, {
          value: function* () {
            yield good
            yield stolen
          }
        })
        yield* attack(me, stolen, sneaky)
        const twice = [good]
        Object.defineProperty(twice, Symbol.iterator, {
          value: function* () {
            yield good
            yield good
          }
        })
        yield* attack(me, stolen, twice)
      })
    )
  )

  it.effect("a caps array with index getters moves nothing not held, nothing twice", () =>
    run(() =>
      Effect.gen(function* () {
        const { me, good, stolen } = yield* setup
        const element = shifty(good, stolen)
        const sneaky: Array<Capability.CapRef> = []
        Object.defineProperty(sneaky, 0, { get: element.get, enumerable: true, configurable: true })
        yield* attack(me, stolen, sneaky)
      })
    )
  )

  it.effect("a caps Proxy moves nothing not held, nothing twice (send and spawn)", () =>
    run(() =>
      Effect.gen(function* () {
        const { me, good, stolen } = yield* setup
        const makeProxy = () => {
          const zero = shifty(good, stolen)
          const length = shifty(1, 2)
          return new Proxy([good] as Array<Capability.CapRef>, {
            get: (target, key, receiver) =>
              key === "0"
                ? zero.get()
                : key === "1"
                  ? stolen
                  : key === "length"
                    ? length.get()
                    : Reflect.get(target, key, receiver)
          })
        }
        yield* attack(me, stolen, makeProxy())
        const started: Array<ReadonlyArray<Capability.CapRef>> = []
        const child = Process.make("child", () => Effect.map(Sys.caps(), (caps) => void started.push(caps)))
        const spawned = yield* outcome(Sys.spawn(child, { caps: makeProxy() }))
        if (spawned !== "succeeded") assert.include(["CapabilityError", "ArgumentError"], tagOf(spawned))
        yield* Sys.yield()
        for (const caps of started) assert.notInclude(caps, stolen, "a cap not held was moved to the child")
        assertCapabilityError(yield* outcome(Sys.send(stolen, "mine?")), "not-held", "moved")
      })
    )
  )
})

describe("rights are names, read once", () => {
  it.effect("rights with a custom iterator, index getters or a Proxy cannot amplify", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const target = yield* Sys.spawn(idle)
        const sendOnly = yield* Sys.derive(target.cap, ["send"])
        const iterated: Array<Capability.Right> = ["send"]
        Object.defineProperty(iterated, Symbol.iterator, {
          value: function* () {
            yield "send"
            yield "kill"
          }
        })
        const indexed: Array<Capability.Right> = []
        Object.defineProperty(indexed, 0, { get: shifty<Capability.Right>("send", "kill").get, enumerable: true })
        const element = shifty<Capability.Right>("send", "kill")
        const proxied = new Proxy(["send"] as Array<Capability.Right>, {
          get: (t, key, receiver) => (key === "0" ? element.get() : Reflect.get(t, key, receiver))
        })
        for (const rights of [iterated, indexed, proxied]) {
          for (const derive of [
            Sys.derive(sendOnly, rights),
            Sys.attenuate(sendOnly, { rights }),
            Sys.attenuate(sendOnly, { rights, expiresIn: "1 hour" })
          ]) {
            const derived = yield* outcome(derive)
            if (derived === "succeeded") continue
            assert.include(["CapabilityError", "ArgumentError"], tagOf(derived), show(derived))
          }
          // whatever was derived, nothing the root derived from sendOnly can kill
          const copy = yield* Sys.derive(sendOnly, rights).pipe(Effect.orElseSucceed(() => sendOnly))
          assertCapabilityError(yield* outcome(Sys.kill(copy)), "missing-right")
        }
        assert.isTrue(yield* isAlive(kernel, target.pid))
      })
    )
  )

  it.effect("rights named constructor, __proto__, toString, hasOwnProperty are ArgumentErrors", () =>
    run(() =>
      Effect.gen(function* () {
        const target = yield* Sys.spawn(idle)
        for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf"]) {
          const rights = [name] as unknown as ReadonlyArray<Capability.Right>
          assertArgumentError(yield* outcome(Sys.derive(target.cap, rights)), "derive")
          assertArgumentError(yield* outcome(Sys.attenuate(target.cap, { rights })), "attenuate")
        }
        // the real names still work
        const sendOnly = yield* Sys.derive(target.cap, ["send"])
        yield* Sys.send(sendOnly, "hello")
      })
    )
  )
})

describe("names are strings", () => {
  it.effect("a name that is an object with toString is an ArgumentError (register, lookup, unregister)", () =>
    run(() =>
      Effect.gen(function* () {
        const name = { toString: () => "svc" } as unknown as string
        assertArgumentError(yield* outcome(Sys.register(name)), "register")
        assertArgumentError(yield* outcome(Sys.lookup(name)), "lookup")
        yield* Sys.register("svc")
        assertArgumentError(yield* outcome(Sys.unregister(name)), "unregister")
        // the string name is still held
        const found = yield* Sys.lookup("svc")
        assert.strictEqual(found._tag, "Some")
      })
    )
  )
})

describe("Sys.exit gives only the reasons a process may give", () => {
  it.effect("exit Normal, Shutdown and Fault { error } end the process with that reason", () =>
    run(() =>
      Effect.gen(function* () {
        for (const reason of [Process.normal, Process.shutdown, Process.fault("boom")]) {
          const { cap } = yield* Sys.spawn(Process.make("leaver", () => Sys.exit(reason)))
          assert.deepStrictEqual(yield* Sys.waitpid(cap), reason)
        }
        const { cap } = yield* Sys.spawn(Process.make("leaver", () => Sys.exit()))
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.normal)
      })
    )
  )

  it.effect("exit with Quota, Killed, Deadline or Policy is an ArgumentError; the process goes on, ends Normal", () => {
    const forged: ReadonlyArray<unknown> = [
      { _tag: "Quota", resource: "tokens" },
      { _tag: "Killed", by: 0 },
      { _tag: "Killed", by: 1 },
      { _tag: "Deadline" },
      { _tag: "Policy", rule: "x" },
      { _tag: "Fault", error: 42 },
      { _tag: "Bogus" },
      "Normal"
    ]
    const results: Array<unknown> = []
    const forger = Process.make("forger", () =>
      Effect.gen(function* () {
        for (const reason of forged) results.push(yield* outcome(Sys.exit(reason as Process.ExitReason)))
      })
    )
    return run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(forger)
        const reason = yield* Sys.waitpid(cap)
        assert.deepStrictEqual(reason, Process.normal, `the forger ended ${show(reason)}`)
        assert.strictEqual(results.length, forged.length)
        for (const result of results) assertArgumentError(result, "exit")
      })
    )
  })

  it.effect("a reason whose _tag getter throws is an ArgumentError; the process can still be killed properly", () => {
    const evil = {
      get _tag(): string {
        throw new Error("gotcha")
      }
    }
    const results: Array<unknown> = []
    const victim = Process.make("victim", () =>
      Effect.gen(function* () {
        const [back] = yield* Sys.caps()
        yield* Sys.register("victim")
        results.push(yield* outcome(Sys.exit(evil as unknown as Process.ExitReason)))
        yield* Sys.send(back!, "still here")
        yield* Effect.never
      })
    )
    return run((_, kernel) =>
      Effect.gen(function* () {
        const me = yield* Sys.selfCap()
        const capsBefore = (yield* kernel.metrics()).caps
        const back = yield* Sys.derive(me, ["send"])
        const { cap, pid } = yield* Sys.spawn(victim, { caps: [back] })
        const ref = yield* Sys.monitor(cap)
        const first = yield* Sys.recv()
        assert.strictEqual(first.body, "still here", `the victim sent ${show(first.body)}`)
        assertArgumentError(results[0], "exit")
        yield* Sys.kill(cap)
        const down = yield* Sys.recv()
        assert.deepStrictEqual(down.body, { _tag: "Down", pid, reason: Process.killed(1), ref })
        assert.strictEqual((yield* Sys.lookup("victim"))._tag, "None", "its name was not freed")
        yield* Sys.register("victim")
        // its caps were revoked: only the root's cap to it remains of what this test minted
        assert.strictEqual((yield* kernel.metrics()).caps, capsBefore + 1, "its caps were not revoked")
      })
    )
  })
})

describe("Sys.kill gives only the reasons a process may give", () => {
  it.effect("kill without a reason ends the target with Killed { by: caller }", () =>
    run(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(idle)
        yield* Sys.kill(cap)
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.killed(1))
      })
    )
  )

  it.effect("kill with a forged reason is an ArgumentError and the target is unharmed", () =>
    run((_, kernel) =>
      Effect.gen(function* () {
        const { cap, pid } = yield* Sys.spawn(idle)
        for (const reason of [
          { _tag: "Killed", by: 0 },
          { _tag: "Killed", by: 77 },
          { _tag: "Quota", resource: "tokens" },
          { _tag: "Deadline" },
          { _tag: "Policy", rule: "x" }
        ]) {
          assertArgumentError(yield* outcome(Sys.kill(cap, reason as Process.ExitReason)), "kill")
          assert.isTrue(yield* isAlive(kernel, pid), `killed by a forged ${reason._tag}`)
        }
        yield* Sys.kill(cap)
        assert.deepStrictEqual(yield* Sys.waitpid(cap), Process.killed(1))
      })
    )
  )
})
