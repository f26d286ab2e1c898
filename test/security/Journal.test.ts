/**
 * Attacks on the journal and replay, from the public API: an attacker who controls the journal file (its header, its
 * lines, its bytes, what sits at its path), the environment (the integrity key), or a process image whose driver
 * results are journaled. Every attack must end in the secure outcome — a typed `JournalError` (the layer refuses the
 * journal, or the run ends with it), a typed error at record time, or a replay identical to the recording — within a
 * real-time bound, under virtual time and on the real clock.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Cause, ConfigProvider, Effect, Exit, FileSystem, Path } from "effect"
import * as NodeFs from "node:fs/promises"
import { Device, Journal, JournalFileStore, Kernel, Process, Sys } from "effect-agent-os"
import { outcome, within } from "./harness.ts"

type Event = { readonly _tag: string }
interface Ran {
  readonly reason: Process.ExitReason
  readonly trace: ReadonlyArray<Event>
}
interface Setting {
  readonly virtualTime: boolean
  readonly key?: string | undefined
  readonly program?: string | undefined
}

const KEY = "journal-attack-key"
const program = "attacked"

// ---------------------------------------------------------------------------------------------------------------------
// The program: two workers read a network device with real latency (so results complete out of order and carry a
// seq) and report to init, which logs what it collected.

/** How many driver calls the network device has served, to tell that a replay touched no driver. */
const served = { net: 0 }

const net = Device.make({
  name: "net",
  open: () =>
    Effect.succeed({
      read: (request: unknown) => {
        const { id, ms } = request as { readonly id: string; readonly ms: number }
        served.net++
        return Effect.promise(() => new Promise<void>((resolve) => setTimeout(resolve, ms))).pipe(
          Effect.as({
            // values JSON would change: each must come back as it was
            value: { reply: id, special: [NaN, -0, BigInt(ms), new Date(ms), undefined, Infinity] },
            cost: { tokens: ms }
          })
        )
      }
    })
})

const describeSpecial = (special: ReadonlyArray<unknown>): string =>
  [
    Number.isNaN(special[0]),
    Object.is(special[1], -0),
    typeof special[2] === "bigint" ? `${special[2]}n` : "not a bigint",
    special[3] instanceof Date ? special[3].getTime() : "not a date",
    special.length === 6 && 4 in special && special[4] === undefined,
    special[5] === Infinity
  ].join("/")

const worker = Process.make<{ readonly name: string; readonly delays: ReadonlyArray<number> }>(
  "worker",
  ({ name, delays }) =>
    Effect.gen(function* () {
      const [netCap, report] = yield* Sys.caps()
      const handle = yield* Sys.open(netCap!)
      for (const [i, ms] of delays.entries()) {
        const reply = yield* Sys.read<{ readonly reply: string; readonly special: ReadonlyArray<unknown> }>(handle, {
          id: `${name}-${i}`,
          ms
        })
        yield* Sys.send(report!, `${reply.reply}:${describeSpecial(reply.special)}`)
        yield* Effect.sleep("2 millis")
      }
    })
)

const init = Process.make<Kernel.BootGrant>("init", (grant) =>
  Effect.gen(function* () {
    const me = yield* Sys.selfCap()
    const plan = { a: [6, 1], b: [3, 8] }
    for (const [name, delays] of Object.entries(plan)) {
      const caps = [yield* Sys.derive(grant.devices.net!, ["open"]), yield* Sys.derive(me, ["send"])]
      yield* Sys.spawn(worker, { args: { name, delays }, caps })
    }
    const got: Array<unknown> = []
    for (let i = 0; i < 4; i++) got.push((yield* Sys.recv()).body)
    yield* Sys.log("info", JSON.stringify(got))
  })
)

/** Runs `image` as the root over the journal file in `mode`, within a real-time bound (layer build included). */
const runImage = (
  mode: Journal.Mode,
  file: string,
  setting: Setting,
  image: Process.Image<Kernel.BootGrant> = init as never,
  drivers: ReadonlyArray<Device.Driver> = [net],
  grant: ReadonlyArray<string> = ["net"]
) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    const pid = yield* kernel.boot(image, { grant })
    const reason = yield* kernel.waitExit(pid)
    return { reason, trace: (yield* kernel.trace()) as ReadonlyArray<Event> } satisfies Ran
  }).pipe(
    Effect.provide(
      Kernel.layer({
        drivers: drivers as Array<Device.Driver>,
        journal: mode,
        virtualTime: setting.virtualTime ? true : undefined
      })
    ),
    Effect.provide(JournalFileStore.layer({ path: file, integrityKey: setting.key, program: setting.program })),
    (effect) => within(effect, "6 seconds")
  )

/** What a run computed, whatever the clock: init's log and every charge, sorted (real-clock interleavings differ). */
const computed = (trace: ReadonlyArray<Event>) => ({
  logs: trace
    .filter((e) => e._tag === "Log")
    .map((e) => (e as unknown as { readonly message: string }).message)
    .sort(),
  charges: trace
    .filter((e) => e._tag === "Charge")
    .map((e) => {
      const { pid, tokens, toolCalls, usd } = e as unknown as Record<string, number>
      return JSON.stringify({ pid, tokens, toolCalls, usd })
    })
    .sort()
})

/** Compares on virtual time the whole trace (times included), on the real clock what was computed. */
const sameRun = (setting: Setting, a: Ran, b: Ran) =>
  setting.virtualTime
    ? JSON.stringify(a.trace) === JSON.stringify(b.trace)
    : JSON.stringify(computed(a.trace)) === JSON.stringify(computed(b.trace))

type Verdict =
  | { readonly _tag: "Refused"; readonly reason: string; readonly line: number | undefined; readonly message: string }
  | { readonly _tag: "Fault"; readonly error: string }
  | { readonly _tag: "Ran"; readonly ran: Ran }

/** A replay's verdict: refused by the layer (a JournalError), ended with a JournalError, or ran. */
const verdictOf = (exit: Exit.Exit<Ran, unknown>): Verdict => {
  if (Exit.isFailure(exit)) {
    assert.isFalse(Cause.hasDies(exit.cause), `the replay died: ${String(Cause.squash(exit.cause))}`)
    const error = Cause.squash(exit.cause)
    assert.instanceOf(error, Journal.JournalError, `the replay failed with something else: ${String(error)}`)
    const e = error as Journal.JournalError
    return { _tag: "Refused", reason: e.reason, line: e.line, message: e.message }
  }
  const { reason } = exit.value
  if (reason._tag === "Fault") {
    assert.match(reason.error, /^JournalError/, `the replay ended with a Fault that is not a JournalError`)
    return { _tag: "Fault", error: reason.error }
  }
  return { _tag: "Ran", ran: exit.value }
}

const replay = (file: string, setting: Setting, mode: Journal.Mode = "replay") =>
  Effect.map(Effect.exit(runImage(mode, file, setting)), verdictOf)

const assertRefused = (verdict: Verdict, reasons: ReadonlyArray<string>, what: string, line?: number) => {
  assert.strictEqual(verdict._tag, "Refused", `${what}: expected the journal refused, got ${JSON.stringify(verdict)}`)
  const refused = verdict as Extract<Verdict, { _tag: "Refused" }>
  assert.include(reasons, refused.reason, `${what}: ${refused.message}`)
  if (line !== undefined) assert.strictEqual(refused.line, line, `${what}: the line named`)
}

/** Typed (refused, or ended with a JournalError) or the same run as `recorded`: never a different run. */
const assertTypedOrSame = (verdict: Verdict, setting: Setting, recorded: Ran, what: string) => {
  if (verdict._tag !== "Ran") return verdict._tag
  assert.deepStrictEqual(verdict.ran.reason, Process.normal, `${what}: ended ${JSON.stringify(verdict.ran.reason)}`)
  assert.isTrue(sameRun(setting, verdict.ran, recorded), `${what}: replayed a different run without a JournalError`)
  return "same"
}

const tempDir = Effect.gen(function* () {
  const fs = yield* FileSystem.FileSystem
  const path = yield* Path.Path
  const dir = yield* fs.makeTempDirectoryScoped({ prefix: "journal-attack-" })
  return { fs, path, dir, file: path.join(dir, "journal.jsonl") }
})

/** Records the program into a fresh journal; returns its lines (header first) and the recorded run. */
const recorded = (setting: Setting) =>
  Effect.gen(function* () {
    const { fs, path, dir, file } = yield* tempDir
    const ran = yield* runImage("record", file, setting)
    assert.deepStrictEqual(ran.reason, Process.normal)
    const text = yield* fs.readFileString(file)
    assert.isTrue(text.endsWith("\n"))
    const lines = text.slice(0, -1).split("\n")
    return { fs, path, dir, file, ran, text, lines }
  })

const parse = (line: string) => JSON.parse(line) as Record<string, any>
const joined = (lines: ReadonlyArray<string>) => `${lines.join("\n")}\n`
/** The lines (header first) of result records, by index. */
const resultLines = (lines: ReadonlyArray<string>) =>
  lines.map((l, i) => [i, l] as const).filter(([i, l]) => i > 0 && parse(l).result._tag !== "Started")

const live = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  effect.pipe(Effect.scoped, Effect.provide(NodeServices.layer)) as Effect.Effect<A, E, never>

// ---------------------------------------------------------------------------------------------------------------------

describe("the header", () => {
  it.live("another program, kernel ABI or format version, a missing header, a BOM: refused before anything runs", () =>
    live(
      Effect.gen(function* () {
        const setting = { virtualTime: true, program }
        const { fs, file, lines } = yield* recorded(setting)
        const header = parse(lines[0]!)
        const variants: ReadonlyArray<readonly [string, string, ReadonlyArray<string>, number | undefined]> = [
          [
            "abi",
            joined([JSON.stringify({ ...header, abi: header.abi + 1 }), ...lines.slice(1)]),
            ["incompatible"],
            undefined
          ],
          [
            "version",
            joined([JSON.stringify({ ...header, version: 1 }), ...lines.slice(1)]),
            ["incompatible"],
            undefined
          ],
          [
            "version as a string",
            joined([JSON.stringify({ ...header, version: "2" }), ...lines.slice(1)]),
            ["corrupt"],
            1
          ],
          [
            "program",
            joined([JSON.stringify({ ...header, program: "other" }), ...lines.slice(1)]),
            ["incompatible"],
            undefined
          ],
          ["no header", joined(lines.slice(1)), ["incompatible"], 1],
          ["an empty header", joined(["{}", ...lines.slice(1)]), ["corrupt"], 1],
          ["a BOM", `\uFEFF${joined(lines)}`, ["corrupt"], 1],
          ["a header that is an array", joined([JSON.stringify([header]), ...lines.slice(1)]), ["corrupt"], 1]
        ]
        served.net = 0
        for (const [name, text, reasons, line] of variants) {
          yield* fs.writeFileString(file, text)
          assertRefused(yield* replay(file, setting), reasons, name, line)
          // read as bytes: a UTF-8 decoder would drop the BOM
          const bytes = yield* Effect.promise(() => NodeFs.readFile(file))
          assert.strictEqual(bytes.toString("utf8"), text, `${name}: the journal was not written`)
        }
        // the same journal read by a program of another name
        yield* fs.writeFileString(file, joined(lines))
        assertRefused(yield* replay(file, { ...setting, program: "impostor" }), ["incompatible"], "reader's program")
        assert.strictEqual(served.net, 0, "no driver was touched")
      })
    )
  )

  it.live("a header line repeated in the middle of the file is corrupt, with or without a key", () =>
    live(
      Effect.gen(function* () {
        for (const key of [undefined, KEY]) {
          const setting = { virtualTime: true, key }
          const { fs, file, lines } = yield* recorded(setting)
          const text = joined([...lines.slice(0, 3), lines[0]!, ...lines.slice(3)])
          yield* fs.writeFileString(file, text)
          // with a key its MAC verifies (it is the journal's own header): it is still not a record
          assertRefused(yield* replay(file, setting), ["corrupt", "tampered"], `repeated header, key ${key}`, 4)
          assert.strictEqual(yield* fs.readFileString(file), text)
        }
      })
    )
  )

  it.live("with a key, an edited header (nonce, program, a stripped MAC) or another journal's header is tampered", () =>
    live(
      Effect.gen(function* () {
        const setting = { virtualTime: true, key: KEY }
        const { fs, file, lines } = yield* recorded(setting)
        const other = yield* recorded(setting)
        const header = parse(lines[0]!)
        const { mac: _mac, ...unsigned } = header
        const variants: ReadonlyArray<readonly [string, string]> = [
          ["nonce", JSON.stringify({ ...header, nonce: "chosen" })],
          ["program", JSON.stringify({ ...header, program: "x" })],
          ["no mac", JSON.stringify(unsigned)],
          ["another journal's header", other.lines[0]!]
        ]
        for (const [name, head] of variants) {
          const text = joined([head, ...lines.slice(1)])
          yield* fs.writeFileString(file, text)
          assertRefused(yield* replay(file, setting), ["tampered"], name)
          assert.strictEqual(yield* fs.readFileString(file), text)
        }
      })
    )
  )
})

describe("integrity", () => {
  it.live("records moved to other positions replay identically; copied, or taken from another journal: refused", () =>
    live(
      Effect.gen(function* () {
        for (const key of [undefined, KEY]) {
          const setting = { virtualTime: true, key }
          const { fs, file, lines, ran } = yield* recorded(setting)
          const other = yield* recorded(setting)
          const [header, ...records] = lines
          // reversed: every MAC still verifies (it covers pid, op and seq, not the position), and the run is the same
          yield* fs.writeFileString(file, joined([header!, ...[...records].reverse()]))
          const reversed = yield* replay(file, setting)
          assert.strictEqual(assertTypedOrSame(reversed, setting, ran, "reversed"), "same")
          // a record copied (a later one repeated earlier)
          const [at, last] = resultLines(lines).at(-1)!
          yield* fs.writeFileString(file, joined([header!, last, ...lines.slice(1)]))
          assertRefused(yield* replay(file, setting), ["corrupt"], `copied, key ${key}`)
          // a record of another recording of the same program under the same key, in its place
          const swapped = lines.map((l, i) => (i === at ? other.lines[at]! : l))
          yield* fs.writeFileString(file, joined(swapped))
          const foreign = yield* replay(file, setting)
          if (key !== undefined) assertRefused(foreign, ["tampered"], "a record of another journal")
          else assertTypedOrSame(foreign, setting, ran, "a record of another journal, no key")
        }
      })
    )
  )

  it.live("a key given for a journal without MACs, MACs stripped, another key: tampered; env and option alike", () =>
    live(
      Effect.gen(function* () {
        const unkeyed = yield* recorded({ virtualTime: true })
        assertRefused(yield* replay(unkeyed.file, { virtualTime: true, key: KEY }), ["tampered"], "key for unkeyed")
        const env = (key: string) =>
          Effect.provideService(
            ConfigProvider.ConfigProvider,
            ConfigProvider.fromUnknown({ [JournalFileStore.integrityKeyVariable]: key })
          )
        assertRefused(
          verdictOf(yield* Effect.exit(runImage("replay", unkeyed.file, { virtualTime: true }).pipe(env(KEY)))),
          ["tampered"],
          "env key for unkeyed"
        )
        // recorded under the environment's key
        const { fs, path, dir } = yield* tempDir
        const file = path.join(dir, "env.jsonl")
        const ran = yield* runImage("record", file, { virtualTime: true }).pipe(env(KEY))
        assert.deepStrictEqual(ran.reason, Process.normal)
        const lines = (yield* fs.readFileString(file)).slice(0, -1).split("\n")
        for (const l of lines) assert.isString(parse(l).mac, "every line carries a MAC")
        // read with the same key as an option: the same run
        const same = yield* replay(file, { virtualTime: true, key: KEY })
        assert.strictEqual(assertTypedOrSame(same, { virtualTime: true }, ran, "option key"), "same")
        // the option wins over the environment
        assertRefused(
          verdictOf(yield* Effect.exit(runImage("replay", file, { virtualTime: true, key: "other" }).pipe(env(KEY)))),
          ["tampered"],
          "option other than env"
        )
        assertRefused(
          verdictOf(yield* Effect.exit(runImage("replay", file, { virtualTime: true }).pipe(env("other")))),
          ["tampered"],
          "env other"
        )
        assertRefused(yield* replay(file, { virtualTime: true }), ["tampered"], "no key for keyed")
        // every MAC stripped: without a key it is an unkeyed journal (README: not detected), with one it is tampered
        const stripped = lines.map((l) => {
          const { mac: _mac, ...rest } = parse(l)
          return JSON.stringify(rest)
        })
        yield* fs.writeFileString(file, joined(stripped))
        assertRefused(yield* replay(file, { virtualTime: true, key: KEY }), ["tampered"], "stripped, with key")
        assertRefused(
          verdictOf(yield* Effect.exit(runImage("replay", file, { virtualTime: true }).pipe(env(KEY)))),
          ["tampered"],
          "stripped, env key"
        )
      })
    )
  )

  const nested = (depth: number, leaf: unknown): unknown => {
    let value = leaf
    for (let i = 0; i < depth; i++) value = [value]
    return value
  }

  it.live("a MAC covers every level of a deeply nested value: an edit at the bottom is never accepted", () =>
    live(
      Effect.gen(function* () {
        const { fs, file } = yield* tempDir
        const record = (depth: number, op: number): Journal.JournalRecord => ({
          pid: 1,
          op,
          seq: op,
          device: "dev",
          call: "read",
          digest: "0000000000000000",
          result: { _tag: "Success", value: { deep: nested(depth, "LEAF-ORIGINAL") }, cost: {} }
        })
        for (const depth of [100, 509, 510, 511, 512, 513]) {
          yield* fs.remove(file, { force: true })
          const appended = yield* Effect.exit(
            Effect.scoped(
              Effect.flatMap(JournalFileStore.make({ path: file, integrityKey: KEY }), (s) =>
                s.append(record(depth, 1))
              )
            )
          )
          if (Exit.isFailure(appended)) {
            // refused at record time is a secure outcome too
            const error = Cause.squash(appended.cause)
            assert.instanceOf(error, Journal.JournalError, `depth ${depth}: ${String(error)}`)
            assert.strictEqual((error as Journal.JournalError).reason, "unencodable", `depth ${depth}`)
            continue
          }
          const text = yield* fs.readFileString(file)
          const loaded = yield* Effect.scoped(
            Effect.flatMap(JournalFileStore.make({ path: file, integrityKey: KEY }), (s) => s.load)
          )
          assert.deepStrictEqual(loaded, [record(depth, 1)], `depth ${depth} loads back as it was`)
          const edited = text.replace("LEAF-ORIGINAL", "LEAF-FORGED")
          assert.notStrictEqual(edited, text)
          yield* fs.writeFileString(file, edited)
          const exit = yield* Effect.exit(
            Effect.scoped(Effect.flatMap(JournalFileStore.make({ path: file, integrityKey: KEY }), (s) => s.load))
          )
          assert.isTrue(
            Exit.isFailure(exit),
            `depth ${depth}: an edit at the bottom of the value was accepted under the key`
          )
          const error = Cause.squash((exit as Exit.Failure<unknown, unknown>).cause)
          assert.instanceOf(error, Journal.JournalError, `depth ${depth}: ${String(error)}`)
          assert.include(["tampered", "corrupt"], (error as Journal.JournalError).reason)
        }
      })
    )
  )

  for (const virtualTime of [true, false]) {
    it.live(
      `a keyed journal cut at a line boundary: a typed error, not a hang or another run (virtualTime ${virtualTime})`,
      () =>
        live(
          Effect.gen(function* () {
            const setting = { virtualTime, key: KEY }
            const { fs, file, lines, ran } = yield* recorded(setting)
            served.net = 0
            for (const keep of [1, 2, Math.floor(lines.length / 2), lines.length - 1]) {
              yield* fs.writeFileString(file, joined(lines.slice(0, keep)))
              const verdict = yield* replay(file, setting)
              assert.notStrictEqual(
                assertTypedOrSame(verdict, setting, ran, `cut to ${keep}`),
                "same",
                `cut to ${keep} lines`
              )
            }
            assert.strictEqual(served.net, 0, "a replay touches no driver")
          })
        )
    )
  }
})

describe("lines", () => {
  it.live("CRLF line endings replay the same run, with and without a key (JSON whitespace), and are not written", () =>
    live(
      Effect.gen(function* () {
        for (const key of [undefined, KEY]) {
          const setting = { virtualTime: true, key }
          const { fs, file, lines, ran } = yield* recorded(setting)
          const text = `${lines.join("\r\n")}\r\n`
          yield* fs.writeFileString(file, text)
          assert.strictEqual(assertTypedOrSame(yield* replay(file, setting), setting, ran, "CRLF"), "same")
          assert.strictEqual(yield* fs.readFileString(file), text)
        }
      })
    )
  )

  it.live("bytes appended after a torn line make a complete line that does not decode: corrupt, file kept", () =>
    live(
      Effect.gen(function* () {
        for (const key of [undefined, KEY]) {
          const setting = { virtualTime: true, key }
          const { fs, file, lines, ran } = yield* recorded(setting)
          const last = lines.at(-1)!
          // a torn last line alone is dropped: the run is the same as the recording without it
          const torn = joined(lines.slice(0, -1)) + last.slice(0, 20)
          yield* fs.writeFileString(file, torn)
          assertTypedOrSame(yield* replay(file, setting), setting, ran, "torn")
          assert.strictEqual(yield* fs.readFileString(file), torn, "a replay does not cut the torn tail")
          // a writer that appended after the torn line without repairing it
          const glued = torn + `${last}\n`
          yield* fs.writeFileString(file, glued)
          assertRefused(yield* replay(file, setting), ["corrupt", "tampered"], "glued", lines.length)
          for (const mode of ["replay", "recover"] as const) {
            assertRefused(yield* replay(file, setting, mode), ["corrupt", "tampered"], `glued, ${mode}`)
            assert.strictEqual(yield* fs.readFileString(file), glued, `${mode} wrote nothing`)
          }
          // a complete last line that is garbage is corrupt too, not torn
          const garbage = joined([...lines, '{"pid":1,'])
          yield* fs.writeFileString(file, garbage)
          assertRefused(yield* replay(file, setting), ["corrupt", "tampered"], "garbage last line", lines.length + 1)
        }
      })
    )
  )

  it.live("__proto__ and constructor keys in a hostile line pollute nothing and come back as own data", () =>
    live(
      Effect.gen(function* () {
        const { fs, file } = yield* tempDir
        const header = JSON.stringify({ journal: "effect-agent-os", version: 2, abi: 1, program: "", nonce: "n" })
        // one process reads once: its answer is this line's value
        const reader = Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.net!)
            const value = yield* Sys.read<Record<string, any>>(handle, { id: "x", ms: 1 })
            yield* Sys.log(
              "info",
              JSON.stringify({
                keys: Object.getOwnPropertyNames(value),
                proto: Object.getPrototypeOf(value) === Object.prototype,
                inner: Object.getOwnPropertyNames(value.__proto__),
                ctor: typeof value.constructor,
                wrapped: Object.getOwnPropertyNames(value.w)
              })
            )
          })
        )
        const digest = Journal.requestDigest("net", "read", { id: "x", ms: 1 })
        const line =
          `{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":2}},"pid":1,"op":1,"seq":1,` +
          `"device":"net","call":"read","digest":"${digest}","result":{"__proto__":{"polluted":3},"_tag":"Success",` +
          `"value":{"__proto__":{"polluted":4},"constructor":{"prototype":{"polluted":5}},` +
          `"w":{"$agentos":"object","entries":{"__proto__":{"polluted":6},"$agentos":1}}},` +
          `"cost":{"__proto__":{"tokens":-5},"tokens":1}}}`
        yield* fs.writeFileString(file, `${header}\n${line}\n`)
        const ran = yield* runImage("replay", file, { virtualTime: true }, reader)
        assert.deepStrictEqual(ran.reason, Process.normal)
        assert.isUndefined(({} as Record<string, unknown>).polluted, "Object.prototype is untouched")
        const log = ran.trace.find((e) => e._tag === "Log") as unknown as { readonly message: string }
        assert.deepStrictEqual(JSON.parse(log.message), {
          keys: ["__proto__", "constructor", "w"],
          proto: true,
          inner: ["polluted"],
          ctor: "object",
          wrapped: ["__proto__", "$agentos"]
        })
        const charge = ran.trace.find((e) => e._tag === "Charge") as unknown as { readonly tokens: number }
        assert.strictEqual(charge.tokens, 1, "the own cost is charged, not one under __proto__")
      })
    )
  )

  it.live("a value with own __proto__ and constructor keys is recorded and replayed as the same own data", () =>
    live(
      Effect.gen(function* () {
        const { fs, path, dir } = yield* tempDir
        const hostile = Device.make({
          name: "json",
          open: () =>
            Effect.succeed({
              read: () =>
                Effect.succeed({
                  value: JSON.parse(
                    '{"__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}},"list":[{"__proto__":null}]}'
                  )
                })
            })
        })
        const reader = Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.json!)
            const value = yield* Sys.read<Record<string, any>>(handle, {})
            yield* Sys.log(
              "info",
              JSON.stringify({
                keys: Object.getOwnPropertyNames(value),
                admin: value.admin === true,
                proto: Object.getPrototypeOf(value) === Object.prototype,
                inner: value.__proto__,
                item: Object.getOwnPropertyNames(value.list[0])
              })
            )
          })
        )
        const file = path.join(dir, "proto.jsonl")
        for (const key of [undefined, KEY]) {
          yield* fs.remove(file, { force: true })
          const setting = { virtualTime: true, key }
          const rec = yield* runImage("record", file, setting, reader, [hostile], ["json"])
          const rep = yield* runImage("replay", file, setting, reader, [hostile], ["json"])
          assert.deepStrictEqual(rep.reason, Process.normal)
          assert.strictEqual(JSON.stringify(rep.trace), JSON.stringify(rec.trace))
          const log = rep.trace.find((e) => e._tag === "Log") as unknown as { readonly message: string }
          assert.deepStrictEqual(JSON.parse(log.message), {
            keys: ["__proto__", "constructor", "list"],
            admin: false,
            proto: true,
            inner: { admin: true },
            item: ["__proto__"]
          })
          assert.isUndefined(({} as Record<string, unknown>).admin)
        }
      })
    )
  )

  it.live("a line nested 200 000 deep is corrupt (or tampered under a key), not a stack overflow", () =>
    live(
      Effect.gen(function* () {
        const { fs, file } = yield* tempDir
        const header = JSON.stringify({ journal: "effect-agent-os", version: 2, abi: 1, program: "", nonce: "n" })
        const deep = "[".repeat(200_000) + "]".repeat(200_000)
        const wrapped = `{"$agentos":"object","entries":{"a":`.repeat(20_000) + "1" + "}}".repeat(20_000)
        const digest = Journal.requestDigest("net", "read", { id: "a-0", ms: 6 })
        for (const value of [deep, wrapped]) {
          const line = `{"pid":2,"op":1,"seq":1,"device":"net","call":"read","digest":"${digest}","result":{"_tag":"Success","value":${value},"cost":{}}}`
          yield* fs.writeFileString(file, `${header}\n${line}\n`)
          assertRefused(yield* replay(file, { virtualTime: true }), ["corrupt"], "deep value, no key", 2)
          assertRefused(yield* replay(file, { virtualTime: true, key: KEY }), ["tampered"], "deep value, key")
        }
        // a deep header or a deep field
        for (const text of [`${deep}\n`, `${header}\n{"pid":${deep},"op":1}\n`]) {
          yield* fs.writeFileString(file, text)
          assertRefused(yield* replay(file, { virtualTime: true }), ["corrupt"], "deep line")
        }
      })
    )
  )

  it.live("seq, pid, op and costs beyond what a record holds (huge, exponent, string, fractional, -1): corrupt", () =>
    live(
      Effect.gen(function* () {
        const setting = { virtualTime: true }
        const { fs, file, lines } = yield* recorded(setting)
        const [at] = resultLines(lines)[1]!
        const raw = lines[at]!
        const edits: ReadonlyArray<readonly [string, string]> = [
          ["seq 1e308", raw.replace(/"seq":\d+/, '"seq":1e308')],
          ["seq 2^53", raw.replace(/"seq":\d+/, '"seq":9007199254740992')],
          ["seq 1e999", raw.replace(/"seq":\d+/, '"seq":1e999')],
          ["seq string", raw.replace(/"seq":(\d+)/, '"seq":"$1"')],
          ["seq 1.5", raw.replace(/"seq":\d+/, '"seq":1.5')],
          ["seq -1", raw.replace(/"seq":\d+/, '"seq":-1')],
          ["seq 0", raw.replace(/"seq":\d+/, '"seq":0')],
          ["pid 2^60", raw.replace(/"pid":\d+/, '"pid":1152921504606846976')],
          ["op -0.5", raw.replace(/"op":\d+/, '"op":-0.5')],
          ["op null", raw.replace(/"op":\d+/, '"op":null')],
          ["tokens 1e999", raw.replace(/"tokens":\d+/, '"tokens":1e999')],
          ["tokens -1e-300", raw.replace(/"tokens":\d+/, '"tokens":-1e-300')],
          ["tokens string", raw.replace(/"tokens":(\d+)/, '"tokens":"$1"')],
          ["usd NaN tag", raw.replace(/"tokens":\d+/, '"usd":{"$agentos":"NaN"}')],
          ["cost null", raw.replace(/"cost":\{[^}]*\}/, '"cost":null')]
        ]
        for (const [name, edited] of edits) {
          assert.notStrictEqual(edited, raw, name)
          yield* fs.writeFileString(file, joined(lines.map((l, i) => (i === at ? edited : l))))
          const verdict = yield* replay(file, setting)
          // decoded at load; `seq 0` loads as a record with seq 0 and leaves a hole at the top (corrupt as well)
          assertRefused(verdict, ["corrupt"], name)
        }
      })
    )
  )

  it.live("user values shaped like the journal's own tags come back as the user's values, not as what they mimic", () =>
    live(
      Effect.gen(function* () {
        const { fs, path, dir } = yield* tempDir
        const forged: ReadonlyArray<unknown> = [
          { $agentos: "NaN" },
          { $agentos: "Date", iso: "2020-01-01T00:00:00.000Z" },
          { $agentos: "bigint", digits: "12" },
          { $agentos: "undefined" },
          { $agentos: "object", entries: { a: 1 } },
          { $agentos: "object", entries: { $agentos: "-0" } },
          [{ $agentos: "Infinity" }, { $agentos: "object" }],
          { nested: { $agentos: { $agentos: "NaN" } } },
          { $agentos: null },
          { $agentos: "Nope" },
          { $agentos: "cycle" },
          "$agentos",
          { "\u0000$agentos": "NaN", "$agentos ": "NaN" },
          { a: "\ud800 lone surrogate", b: "\u2028\u2029" },
          // the tags' own values, next to what they mimic
          [NaN, { $agentos: "NaN" }, -0, { $agentos: "-0" }, undefined, { $agentos: "undefined" }]
        ]
        const echo = Device.make({
          name: "echo",
          open: () =>
            Effect.succeed({
              read: (request: unknown) => Effect.succeed({ value: forged[(request as { readonly i: number }).i] })
            })
        })
        const fingerprint = (value: unknown): unknown => {
          if (typeof value === "number") return Object.is(value, -0) ? "-0" : Number.isNaN(value) ? "NaN" : value
          if (value === undefined) return "undefined"
          if (typeof value !== "object" || value === null) return value
          if (Array.isArray(value)) return ["array", value.length, ...value.map(fingerprint)]
          return [
            Object.getPrototypeOf(value) === Object.prototype ? "object" : "other",
            Object.keys(value).map((k) => [k, fingerprint((value as Record<string, unknown>)[k])])
          ]
        }
        const reader = Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.echo!)
            for (let i = 0; i < forged.length; i++) {
              const value = yield* Sys.read(handle, { i })
              yield* Sys.log("info", JSON.stringify(fingerprint(value)))
            }
          })
        )
        const file = path.join(dir, "tags.jsonl")
        for (const key of [undefined, KEY]) {
          yield* fs.remove(file, { force: true })
          const setting = { virtualTime: true, key }
          const rec = yield* runImage("record", file, setting, reader, [echo], ["echo"])
          assert.deepStrictEqual(rec.reason, Process.normal)
          const logs = rec.trace
            .filter((e) => e._tag === "Log")
            .map((e) => (e as unknown as { message: string }).message)
          assert.deepStrictEqual(
            logs,
            forged.map((v) => JSON.stringify(fingerprint(v))),
            "the recording saw them as they are"
          )
          const rep = yield* runImage("replay", file, setting, reader, [echo], ["echo"])
          assert.deepStrictEqual(rep.reason, Process.normal)
          assert.strictEqual(JSON.stringify(rep.trace), JSON.stringify(rec.trace), "replayed as the user's values")
        }
      })
    )
  )
})

describe("values a driver hands back", () => {
  const revoked = Proxy.revocable({}, {})
  revoked.revoke()
  const throwing: Record<string, () => unknown> = {
    "a getter that throws": () => ({
      get boom(): unknown {
        throw new Error("boom")
      }
    }),
    "a revoked proxy": () => ({ inside: revoked.proxy }),
    "a proxy whose ownKeys trap throws": () =>
      new Proxy(
        {},
        {
          ownKeys: () => {
            throw new Error("no keys")
          }
        }
      ),
    "a cycle": () => {
      const o: Record<string, unknown> = {}
      o.self = o
      return o
    },
    "a function": () => ({ f: () => 1 }),
    "a Map": () => new Map([[1, 2]]),
    "a sparse array": () => [1, , 3]
  }
  const names = Object.keys(throwing)

  it.live(
    "a value the journal cannot store: a typed unencodable error at record time, the journal stays loadable",
    () =>
      live(
        Effect.gen(function* () {
          const { fs, file } = yield* tempDir
          const odd = Device.make({
            name: "odd",
            open: () =>
              Effect.succeed({
                read: (request: unknown) =>
                  Effect.sync(() => {
                    const name = (request as { readonly name: string }).name
                    return { value: name === "fine" ? "fine" : throwing[name]!() }
                  })
              })
          })
          const prober = Process.make<Kernel.BootGrant>("init", (grant) =>
            Effect.gen(function* () {
              const handle = yield* Sys.open(grant.devices.odd!)
              const seen: Array<unknown> = []
              for (const name of names) {
                const got = yield* outcome(Sys.read(handle, { name }))
                seen.push(
                  got instanceof Journal.JournalError
                    ? `${got.reason} pid ${got.pid} op ${got.op}`
                    : `not refused: ${String(got)}`
                )
              }
              seen.push(yield* Sys.read(handle, { name: "fine" }))
              yield* Sys.log("info", JSON.stringify(seen))
            })
          )
          const ran = yield* runImage("record", file, { virtualTime: true, key: KEY }, prober, [odd], ["odd"])
          assert.deepStrictEqual(ran.reason, Process.normal, "the process survives, a typed error in hand")
          const log = ran.trace.find((e) => e._tag === "Log") as unknown as { readonly message: string }
          assert.deepStrictEqual(JSON.parse(log.message), [
            ...names.map((_, i) => `unencodable pid 1 op ${i + 1}`),
            "fine"
          ])
          // what was written loads under the key (nothing half-written, nothing changed)
          const loaded = yield* Effect.scoped(
            Effect.flatMap(JournalFileStore.make({ path: file, integrityKey: KEY }), (s) => s.load)
          )
          assert.isTrue(loaded.some((r) => r.result._tag === "Success" && r.result.value === "fine"))
          const text = yield* fs.readFileString(file)
          assert.isTrue(text.endsWith("\n"))
        })
      )
  )

  it.live("a getter or a proxy is read once, at record time: the replay hands back that snapshot as plain data", () =>
    live(
      Effect.gen(function* () {
        const { file } = yield* tempDir
        let reads = 0
        const shifty = Device.make({
          name: "shifty",
          open: () =>
            Effect.succeed({
              read: () =>
                Effect.sync(() => ({
                  value: {
                    get counter() {
                      return ++reads
                    },
                    proxied: new Proxy({ a: 1 }, { get: (t, k) => (k === "a" ? "seen" : Reflect.get(t, k)) })
                  }
                }))
            })
        })
        const reader = Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const value = yield* Sys.read<Record<string, any>>(yield* Sys.open(grant.devices.shifty!), {})
            const descriptor = Object.getOwnPropertyDescriptor(value, "counter")!
            yield* Sys.log("info", JSON.stringify({ data: "value" in descriptor, a: value.proxied.a }))
          })
        )
        const setting = { virtualTime: true, key: KEY }
        yield* runImage("record", file, setting, reader, [shifty], ["shifty"])
        const loaded = yield* Effect.scoped(
          Effect.flatMap(JournalFileStore.make({ path: file, integrityKey: KEY }), (s) => s.load)
        )
        const stored = loaded.find((r) => r.result._tag === "Success")!.result as {
          readonly value: Record<string, any>
        }
        assert.strictEqual(typeof stored.value.counter, "number")
        assert.deepStrictEqual(stored.value.proxied, { a: "seen" })
        const rep = yield* runImage("replay", file, setting, reader, [shifty], ["shifty"])
        assert.deepStrictEqual(rep.reason, Process.normal)
        const log = rep.trace.find((e) => e._tag === "Log") as unknown as { readonly message: string }
        assert.deepStrictEqual(JSON.parse(log.message), { data: true, a: "seen" })
      })
    )
  )
})

describe("replay reads, never writes", () => {
  it.live("through a symlink to a 0444 journal: the same run, the link and the bytes untouched", () =>
    live(
      Effect.gen(function* () {
        const setting = { virtualTime: true, key: KEY }
        const { fs, path, dir, file, ran, text } = yield* recorded(setting)
        const link = path.join(dir, "link.jsonl")
        yield* Effect.promise(() => NodeFs.symlink(file, link))
        yield* fs.chmod(file, 0o444)
        const before = yield* Effect.promise(() => NodeFs.stat(file))
        served.net = 0
        const verdict = yield* replay(link, setting)
        assert.strictEqual(assertTypedOrSame(verdict, setting, ran, "through a link"), "same")
        assert.strictEqual(served.net, 0)
        assert.strictEqual(yield* fs.readFileString(file), text)
        const after = yield* Effect.promise(() => NodeFs.stat(file))
        assert.strictEqual(after.mtimeMs, before.mtimeMs)
        assert.strictEqual(after.size, before.size)
        assert.isTrue((yield* Effect.promise(() => NodeFs.lstat(link))).isSymbolicLink())
      })
    )
  )

  it.live(
    "a link to a device or a FIFO, a link loop, a directory: io at once; a missing path: missing, not created",
    () =>
      live(
        Effect.gen(function* () {
          const { fs, path, dir } = yield* tempDir
          const fifo = path.join(dir, "fifo")
          yield* Effect.promise(() =>
            import("node:child_process").then(
              (m) =>
                new Promise<void>((resolve, reject) => m.execFile("mkfifo", [fifo], (e) => (e ? reject(e) : resolve())))
            )
          )
          const links: Record<string, string> = { "/dev/zero": "zero", [fifo]: "to-fifo" }
          for (const [target, name] of Object.entries(links)) {
            yield* Effect.promise(() => NodeFs.symlink(target, path.join(dir, name)))
          }
          yield* Effect.promise(() => NodeFs.symlink(path.join(dir, "loop-b"), path.join(dir, "loop-a")))
          yield* Effect.promise(() => NodeFs.symlink(path.join(dir, "loop-a"), path.join(dir, "loop-b")))
          for (const name of ["zero", "to-fifo", "loop-a", "."]) {
            for (const mode of ["replay", "recover"] as const) {
              assertRefused(yield* replay(path.join(dir, name), { virtualTime: true }, mode), ["io"], `${name} ${mode}`)
            }
          }
          const missing = path.join(dir, "nowhere", "journal.jsonl")
          const verdict = yield* replay(missing, { virtualTime: false })
          assert.strictEqual(verdict._tag, "Fault")
          assert.match((verdict as { readonly error: string }).error, /no journal entry/)
          assert.isFalse(yield* fs.exists(path.join(dir, "nowhere")), "replay creates nothing")
        })
      )
  )
})

describe("recover", () => {
  it.live("over a keyed journal whose last record was edited: tampered, no driver call, nothing written", () =>
    live(
      Effect.gen(function* () {
        const setting = { virtualTime: true, key: KEY }
        const { fs, file, lines } = yield* recorded(setting)
        const [at, last] = resultLines(lines).at(-1)!
        const json = parse(last)
        const edits = [
          { ...json, result: { ...json.result, cost: { tokens: 0 } } },
          { ...json, result: { _tag: "Started" } },
          { ...json, op: json.op + 100 }
        ]
        served.net = 0
        for (const edit of edits) {
          const text = joined(lines.map((l, i) => (i === at ? JSON.stringify(edit) : l)))
          yield* fs.writeFileString(file, text)
          assertRefused(yield* replay(file, setting, "recover"), ["tampered"], "recover over an edited tail", at + 1)
          assert.strictEqual(yield* fs.readFileString(file), text)
        }
        assert.strictEqual(served.net, 0)
      })
    )
  )

  it.live(
    "over a torn keyed tail: one Recover event for the calls in flight, rerun with their keys, the file clean",
    () =>
      live(
        Effect.gen(function* () {
          const { fs, path, dir } = yield* tempDir
          const file = path.join(dir, "recover.jsonl")
          const keys: Array<string | undefined> = []
          const side = Device.make({
            name: "side",
            open: () =>
              Effect.succeed({
                read: (request: unknown, context: Device.CallContext) =>
                  Effect.sync(() => {
                    keys.push(context.idempotencyKey)
                    return { value: request, cost: { toolCalls: 1 } }
                  })
              })
          })
          const caller = Process.make<Kernel.BootGrant>("init", (grant) =>
            Effect.gen(function* () {
              const handle = yield* Sys.open(grant.devices.side!)
              for (let i = 0; i < 3; i++) yield* Sys.read(handle, { i })
            })
          )
          const setting = { virtualTime: true, key: KEY }
          yield* runImage("record", file, setting, caller, [side], ["side"])
          assert.deepStrictEqual(keys, ["1:1", "1:2", "1:3"])
          const lines = (yield* fs.readFileString(file)).slice(0, -1).split("\n")
          // the crash: op 3's result torn half-way (its Started record is whole)
          const last = lines.at(-1)!
          assert.strictEqual(parse(last).result._tag, "Success")
          yield* fs.writeFileString(file, joined(lines.slice(0, -1)) + last.slice(0, last.length >> 1))
          keys.length = 0
          const recovered = yield* runImage("recover", file, setting, caller, [side], ["side"])
          assert.deepStrictEqual(recovered.reason, Process.normal)
          assert.deepStrictEqual(keys, ["1:3"], "only the call in flight ran again, with its original key")
          const events = recovered.trace.filter((e) => e._tag === "Recover")
          assert.deepStrictEqual(
            events.map((e) => (e as unknown as { readonly calls: unknown }).calls),
            [[{ pid: 1, op: 3, device: "side", call: "read" }]]
          )
          assert.strictEqual(recovered.trace[0]!._tag, "Recover")
          // the file is whole again and verifies under the key; a replay of it touches nothing and ends normally
          const text = yield* fs.readFileString(file)
          assert.isTrue(text.endsWith("\n"))
          const loaded = yield* Effect.scoped(
            Effect.flatMap(JournalFileStore.make({ path: file, integrityKey: KEY }), (s) => s.load)
          )
          assert.strictEqual(loaded.filter((r) => r.result._tag === "Success").length, 3)
          keys.length = 0
          const replayed = yield* runImage("replay", file, setting, caller, [side], ["side"])
          assert.deepStrictEqual(replayed.reason, Process.normal)
          assert.deepStrictEqual(keys, [])
        })
      )
  )
})

describe("the program against its journal", () => {
  it.live("a fiber forked by a process that reads after the process exited: no driver call, the same replay", () =>
    live(
      Effect.gen(function* () {
        const { file } = yield* tempDir
        const calls = { after: 0, total: 0 }
        let exited = false
        const counting = Device.make({
          name: "count",
          open: () =>
            Effect.succeed({
              read: () =>
                Effect.sync(() => {
                  calls.total++
                  if (exited) calls.after++
                  return { value: calls.total, cost: { tokens: 1 } }
                })
            })
        })
        const leaver = Process.make<void>("leaver", () =>
          Effect.gen(function* () {
            const [cap] = yield* Sys.caps()
            const handle = yield* Sys.open(cap!)
            yield* Sys.read(handle, { first: true })
            // a detached fiber that keeps reading after its process is gone
            yield* Effect.forkDetach(
              Effect.forever(Effect.andThen(Effect.sleep("1 millis"), Effect.ignore(Sys.read(handle, { late: true }))))
            )
          })
        )
        const root = Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const child = yield* Sys.spawn(leaver, { caps: [yield* Sys.derive(grant.devices.count!, ["open"])] })
            yield* Sys.monitor(child.cap)
            yield* Sys.recv()
            exited = true
            yield* Effect.sleep("50 millis")
          })
        )
        const setting = { virtualTime: true }
        const rec = yield* runImage("record", file, setting, root, [counting], ["count"])
        assert.deepStrictEqual(rec.reason, Process.normal)
        assert.strictEqual(calls.after, 0, "no driver call after the process ended")
        exited = false
        const total = calls.total
        const rep = yield* runImage("replay", file, setting, root, [counting], ["count"])
        assert.deepStrictEqual(rep.reason, Process.normal)
        assert.strictEqual(calls.total, total, "the replay touched no driver")
        assert.strictEqual(JSON.stringify(rep.trace), JSON.stringify(rec.trace))
      })
    )
  )

  for (const key of [undefined, KEY]) {
    it.live(`records nobody asks for, appended at the end: the same run or typed, never a hang (key ${key})`, () =>
      live(
        Effect.gen(function* () {
          for (const virtualTime of [true, false]) {
            const setting = { virtualTime, key }
            const { fs, file, lines, ran } = yield* recorded(setting)
            const template = parse(resultLines(lines).at(-1)![1])
            const seqs = lines.slice(1).map((l) => parse(l).seq ?? 0)
            const extra = { ...template, pid: 77, op: 1, seq: Math.max(...seqs) + 1 }
            const forgedStarted = { ...template, pid: 78, op: 1, result: { _tag: "Started" } }
            for (const added of [extra, forgedStarted]) {
              yield* fs.writeFileString(file, joined([...lines, JSON.stringify(added)]))
              const verdict = yield* replay(file, setting)
              if (key !== undefined) assertRefused(verdict, ["tampered"], "forged extra record")
              else assertTypedOrSame(verdict, setting, ran, "extra record")
            }
          }
        })
      )
    )
  }

  it.live(
    "on the real clock without a key: every structural edit is typed or the same run, never a hang",
    () =>
      live(
        Effect.gen(function* () {
          const setting = { virtualTime: false }
          const { fs, file, lines, ran } = yield* recorded(setting)
          const [header, ...records] = lines
          const results = resultLines(lines).map(([i]) => i - 1)
          const edit = (at: number, f: (r: Record<string, any>) => Record<string, any>) => [
            header!,
            ...records.map((l, i) => (i === at ? JSON.stringify(f(parse(l))) : l))
          ]
          const mutations: Array<readonly [string, ReadonlyArray<string>, boolean]> = []
          for (const at of [results[0]!, results[Math.floor(results.length / 2)]!, results.at(-1)!]) {
            mutations.push(
              ["delete", [header!, ...records.filter((_, i) => i !== at)], true],
              ["duplicate", [header!, ...records.slice(0, at + 1), records[at]!, ...records.slice(at + 1)], true],
              ["pid", edit(at, (r) => ({ ...r, pid: r.pid + 1 })), true],
              ["op", edit(at, (r) => ({ ...r, op: r.op + 1 })), true],
              ["seq", edit(at, (r) => ({ ...r, seq: r.seq + 1 })), true],
              ["device", edit(at, (r) => ({ ...r, device: "other" })), true],
              ["call", edit(at, (r) => ({ ...r, call: "write" })), true],
              ["digest", edit(at, (r) => ({ ...r, digest: "0123456789abcdef" })), true],
              ["no digest", edit(at, ({ digest: _d, ...r }) => r), true],
              [
                "swap",
                [
                  header!,
                  ...records.map((l, i) => (i === at ? records[results[0]!]! : i === results[0]! ? records[at]! : l))
                ],
                false
              ]
            )
          }
          served.net = 0
          const counts: Record<string, number> = {}
          for (const [name, mutated, mustBeTyped] of mutations) {
            const text = joined(mutated)
            yield* fs.writeFileString(file, text)
            const verdict = yield* replay(file, setting)
            const result = assertTypedOrSame(verdict, setting, ran, name)
            if (mustBeTyped && text !== joined(lines)) assert.notStrictEqual(result, "same", `${name} was not detected`)
            counts[`${name} ${result}`] = (counts[`${name} ${result}`] ?? 0) + 1
            assert.strictEqual(yield* fs.readFileString(file), text)
          }
          assert.strictEqual(served.net, 0, "no replay touched a driver")
        })
      ),
    60_000
  )

  it.live("a driver that sleeps inside its call, recorded under virtual time over a file, replays the same run", () =>
    live(
      Effect.gen(function* () {
        const { file } = yield* tempDir
        let slept = 0
        const sleepy = Device.make({
          name: "sleepy",
          open: () =>
            Effect.succeed({
              read: () =>
                Effect.gen(function* () {
                  const started = performance.now()
                  yield* Effect.sleep("40 millis")
                  slept = performance.now() - started
                  return { value: "rested", cost: { tokens: 1 } }
                })
            })
        })
        const sleeper = Process.make<Kernel.BootGrant>("init", (grant) =>
          Effect.gen(function* () {
            const handle = yield* Sys.open(grant.devices.sleepy!)
            yield* Effect.sleep("1 hour")
            yield* Sys.log("info", yield* Sys.read<string>(handle, {}))
          })
        )
        const setting = { virtualTime: true, key: KEY }
        const rec = yield* runImage("record", file, setting, sleeper, [sleepy], ["sleepy"])
        assert.deepStrictEqual(rec.reason, Process.normal)
        assert.isAtLeast(slept, 30, "the driver slept on the real clock")
        slept = 0
        const rep = yield* runImage("replay", file, setting, sleeper, [sleepy], ["sleepy"])
        assert.strictEqual(slept, 0)
        assert.strictEqual(JSON.stringify(rep.trace), JSON.stringify(rec.trace))
      })
    )
  )
})
