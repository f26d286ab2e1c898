/**
 * A third hostile review of the daemon, on what changed last: the state directory's checks (`StateFiles`), the
 * journal's MACs and `journal.key`, `agentctl replay`'s verdict (`AgentdReplay`), `agentctl --timeout`, and the
 * helper model check of `spawn_agent`. Every test is an attack from the public surface (the agentd and agentctl
 * processes, files in the state directory, the exported modules) that ASSERTS THE SECURE OUTCOME: a failing test is an
 * attack that worked. Every test is bounded in time.
 *
 * This file: the state directory; DaemonHostile3Replay.test.ts: replay, --timeout and spawn_agent.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as path from "node:path"
import { call, tmp } from "./processHarness.ts"
import { isRoot, otherUid, launch, fresh, refuses, hasMacs } from "./hostile3Harness.ts"

describe("agentd's state directory", () => {
  it.live(
    "a state directory named through a symlink to a directory others may write (0777, or 0775): exit 2",
    () =>
      Effect.gen(function* () {
        const problems: Array<string> = []
        for (const mode of [0o777, 0o775, 0o1777]) {
          const dir = tmp()
          const target = path.join(dir, "shared")
          fs.mkdirSync(target)
          fs.chmodSync(target, mode)
          fs.symlinkSync(target, path.join(dir, "state"))
          const l = yield* Effect.scoped(launch(dir, ["--state", path.join(dir, "state")]))
          refuses(`a link to a ${mode.toString(8)} directory`, l, problems)
          const planted = fs.readdirSync(target)
          if (planted.length > 0 && l.ready) problems.push(`wrote ${planted.join(",")} into the shared directory`)
        }
        assert.deepStrictEqual(problems, [])
      }),
    60_000
  )

  it.live(
    "a state directory whose parent others may write (0777, no sticky bit): anyone can rename it away and put their own in its place — refused",
    () =>
      Effect.gen(function* () {
        const dir = tmp()
        const parent = path.join(dir, "shared")
        fs.mkdirSync(parent)
        fs.chmodSync(parent, 0o777)
        const state = path.join(parent, "state")
        fs.mkdirSync(state, { mode: 0o700 })
        const problems: Array<string> = []
        const l = yield* Effect.scoped(launch(dir, ["--state", state]))
        refuses("a state directory in a world-writable, non-sticky parent", l, problems)
        assert.deepStrictEqual(problems, [])
      }),
    30_000
  )

  it.live(
    "a state directory (or its symlink's target) owned by another user: exit 2",
    () =>
      Effect.gen(function* () {
        if (!isRoot) return
        const problems: Array<string> = []
        const a = fresh()
        fs.chownSync(a.state, otherUid, otherUid)
        refuses("another user's directory", yield* Effect.scoped(launch(a.dir, ["--state", a.state])), problems)
        const b = tmp()
        const target = path.join(b, "theirs")
        fs.mkdirSync(target, { mode: 0o700 })
        fs.chownSync(target, otherUid, otherUid)
        fs.symlinkSync(target, path.join(b, "state"))
        refuses(
          "a link to another user's directory",
          yield* Effect.scoped(launch(b, ["--state", path.join(b, "state")])),
          problems
        )
        assert.deepStrictEqual(problems, [])
      }),
    30_000
  )

  it.live(
    "a rotated audit file (audit.1.jsonl, audit.7.jsonl) planted as a symlink, a FIFO, a directory, another user's file, a 0666 file: exit 2 in bounded time, the victim untouched",
    () =>
      Effect.gen(function* () {
        const problems: Array<string> = []
        const plants: ReadonlyArray<readonly [string, (file: string, victim: string) => void]> = [
          ["audit.1.jsonl a symlink", (file, victim) => fs.symlinkSync(victim, file)],
          ["audit.7.jsonl a symlink", (file, victim) => fs.symlinkSync(victim, file.replace(".1.", ".7."))],
          ["audit.1.jsonl a dangling symlink", (file, victim) => fs.symlinkSync(victim + ".nope", file)],
          ["audit.1.jsonl a FIFO", (file) => execFileSync("mkfifo", [file])],
          ["audit.1.jsonl a directory", (file) => fs.mkdirSync(file)],
          ["audit.jsonl a FIFO", (file) => execFileSync("mkfifo", [file.replace(".1.", ".")])],
          [
            "audit.1.jsonl another user's file",
            (file) => {
              fs.writeFileSync(file, "")
              if (isRoot) fs.chownSync(file, otherUid, otherUid)
              else fs.chmodSync(file, 0o666)
            }
          ],
          [
            "audit.1.jsonl a 0666 file",
            (file) => {
              fs.writeFileSync(file, "")
              fs.chmodSync(file, 0o666)
            }
          ]
        ]
        yield* Effect.forEach(
          plants,
          ([what, plant]) =>
            Effect.gen(function* () {
              const { dir, state } = fresh()
              const victim = path.join(dir, "victim.txt")
              fs.writeFileSync(victim, "precious\n")
              plant(path.join(state, "audit.1.jsonl"), victim)
              const l = yield* Effect.scoped(launch(dir, ["--state", state, "--audit-file-bytes", "4096"]))
              refuses(what, l, problems)
              if (fs.readFileSync(victim, "utf8") !== "precious\n") problems.push(`${what}: the victim was written`)
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    90_000
  )

  it.live(
    "journal.key planted as a symlink (to a good key), 0644, 0640, 0400+group, a directory, a FIFO, empty, 31 characters, not ASCII, another user's: exit 2, nothing written",
    () =>
      Effect.gen(function* () {
        const problems: Array<string> = []
        const goodKey = "a".repeat(64)
        const plants: ReadonlyArray<readonly [string, (key: string, dir: string) => void]> = [
          [
            "a symlink to a 0600 key",
            (key, dir) => {
              const real = path.join(dir, "real.key")
              fs.writeFileSync(real, goodKey + "\n", { mode: 0o600 })
              fs.symlinkSync(real, key)
            }
          ],
          ["0644", (key) => fs.writeFileSync(key, goodKey + "\n", { mode: 0o644 })],
          [
            "0640",
            (key) => {
              fs.writeFileSync(key, goodKey + "\n")
              fs.chmodSync(key, 0o640)
            }
          ],
          [
            "0604",
            (key) => {
              fs.writeFileSync(key, goodKey + "\n")
              fs.chmodSync(key, 0o604)
            }
          ],
          ["a directory", (key) => fs.mkdirSync(key, { mode: 0o700 })],
          ["a FIFO", (key) => execFileSync("mkfifo", ["-m", "600", key])],
          ["empty", (key) => fs.writeFileSync(key, "", { mode: 0o600 })],
          ["whitespace only", (key) => fs.writeFileSync(key, "   \n\n", { mode: 0o600 })],
          ["31 characters", (key) => fs.writeFileSync(key, "b".repeat(31) + "\n", { mode: 0o600 })],
          [
            "32 characters with a space inside",
            (key) => fs.writeFileSync(key, "c".repeat(16) + " " + "c".repeat(16), { mode: 0o600 })
          ],
          [
            "another user's 0600 key",
            (key) => {
              fs.writeFileSync(key, goodKey + "\n", { mode: 0o600 })
              if (isRoot) fs.chownSync(key, otherUid, otherUid)
              else fs.chmodSync(key, 0o644)
            }
          ]
        ]
        yield* Effect.forEach(
          plants,
          ([what, plant]) =>
            Effect.gen(function* () {
              const { dir, state } = fresh()
              plant(path.join(state, "journal.key"), dir)
              const l = yield* Effect.scoped(launch(dir, ["--state", state]))
              refuses(`journal.key ${what}`, l, problems)
              if (fs.existsSync(path.join(state, "journal.jsonl")))
                problems.push(`journal.key ${what}: a journal was written`)
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    120_000
  )

  it.live(
    "journal.key deleted while the journal carries MACs: agentd does not go on unauthenticated",
    () =>
      Effect.gen(function* () {
        const { dir, state } = fresh()
        const first = yield* Effect.scoped(
          Effect.gen(function* () {
            const l = yield* launch(dir, ["--state", state])
            if (l.ready) yield* call(l.socket, "agent.spawn", { manifest: "name: a" })
            return l
          })
        )
        assert.isTrue(first.ready, first.stderr())
        assert.isTrue(hasMacs(path.join(state, "journal.jsonl")), "the first run's journal carries no MACs")
        fs.rmSync(path.join(state, "journal.key"))
        const before = fs.readFileSync(path.join(state, "journal.jsonl"), "utf8")
        const problems: Array<string> = []
        const l = yield* Effect.scoped(launch(dir, ["--state", state]))
        refuses("the key deleted", l, problems, null)
        if (fs.readFileSync(path.join(state, "journal.jsonl"), "utf8") !== before)
          problems.push("the journal was appended to without its key")
        if (fs.existsSync(path.join(state, "journal.key"))) problems.push("a new key was made for the old journal")
        assert.deepStrictEqual(problems, [])
      }),
    60_000
  )

  it.live(
    "an empty journal.jsonl (0 bytes, e.g. `touch`ed) and no key: agentd makes a key and MACs the new journal (not 'a journal written before keys')",
    () =>
      Effect.gen(function* () {
        const { dir, state } = fresh()
        fs.writeFileSync(path.join(state, "journal.jsonl"), "", { mode: 0o600 })
        const l = yield* Effect.scoped(
          Effect.gen(function* () {
            const l = yield* launch(dir, ["--state", state])
            if (l.ready) yield* call(l.socket, "agent.spawn", { manifest: "name: a" })
            return l
          })
        )
        assert.isTrue(l.ready, l.stderr())
        const journal = path.join(state, "journal.jsonl")
        assert.isTrue(
          hasMacs(journal) && fs.existsSync(path.join(state, "journal.key")),
          `a journal with no record got no key; its records are written unauthenticated for good:\n${l.stderr()}\n` +
            fs.readFileSync(journal, "utf8").split("\n")[0]
        )
      }),
    30_000
  )

  it.live(
    "AGENTOS_JOURNAL_KEY set but empty: agentd never writes a journal without MACs (and without journal.key)",
    () =>
      Effect.gen(function* () {
        const { dir, state } = fresh()
        const l = yield* Effect.scoped(
          Effect.gen(function* () {
            const l = yield* launch(dir, ["--state", state], { AGENTOS_JOURNAL_KEY: "" })
            if (l.ready) yield* call(l.socket, "agent.spawn", { manifest: "name: a" })
            return l
          })
        )
        const journal = path.join(state, "journal.jsonl")
        if (!l.ready) return // refused: secure
        assert.isTrue(
          fs.existsSync(journal) && hasMacs(journal),
          `AGENTOS_JOURNAL_KEY="" turned authentication off: ` +
            `key file ${fs.existsSync(path.join(state, "journal.key")) ? "present" : "absent"}, header ` +
            (fs.existsSync(journal) ? fs.readFileSync(journal, "utf8").split("\n")[0] : "(no journal)")
        )
      }),
    30_000
  )

  it.live(
    "AGENTOS_JOURNAL_KEY set to another key than the journal's journal.key: agentd refuses the journal",
    () =>
      Effect.gen(function* () {
        const { dir, state } = fresh()
        const first = yield* Effect.scoped(
          Effect.gen(function* () {
            const l = yield* launch(dir, ["--state", state])
            if (l.ready) yield* call(l.socket, "agent.spawn", { manifest: "name: a" })
            return l
          })
        )
        assert.isTrue(first.ready, first.stderr())
        const journal = path.join(state, "journal.jsonl")
        const before = fs.readFileSync(journal, "utf8")
        const problems: Array<string> = []
        const l = yield* Effect.scoped(launch(dir, ["--state", state], { AGENTOS_JOURNAL_KEY: "z".repeat(64) }))
        refuses("another key in the environment", l, problems, null)
        if (fs.readFileSync(journal, "utf8") !== before) problems.push("the journal was appended to under another key")
        assert.deepStrictEqual(problems, [])
      }),
    60_000
  )

  it.live(
    "--config /dev/stdin, /dev/zero, a FIFO, a directory, a symlink to a 0666 file, another user's file; the default agentd.yaml as a symlink: exit 2, never hangs",
    () =>
      Effect.gen(function* () {
        const problems: Array<string> = []
        const variants: ReadonlyArray<readonly [string, (dir: string, state: string) => ReadonlyArray<string>]> = [
          ["/dev/stdin", () => ["--config", "/dev/stdin"]],
          ["/dev/zero", () => ["--config", "/dev/zero"]],
          [
            "a FIFO",
            (dir) => {
              execFileSync("mkfifo", [path.join(dir, "c.yaml")])
              return ["--config", path.join(dir, "c.yaml")]
            }
          ],
          [
            "a directory",
            (dir) => {
              fs.mkdirSync(path.join(dir, "c.yaml"))
              return ["--config", path.join(dir, "c.yaml")]
            }
          ],
          [
            "a symlink to a 0666 file",
            (dir) => {
              fs.writeFileSync(path.join(dir, "real.yaml"), "llm: { base_url: http://127.0.0.1:1/v1 }\n")
              fs.chmodSync(path.join(dir, "real.yaml"), 0o666)
              fs.symlinkSync(path.join(dir, "real.yaml"), path.join(dir, "c.yaml"))
              return ["--config", path.join(dir, "c.yaml")]
            }
          ],
          [
            "a hard link to another user's file",
            (dir) => {
              fs.writeFileSync(path.join(dir, "theirs.yaml"), "llm: { base_url: http://127.0.0.1:1/v1 }\n")
              if (isRoot) fs.chownSync(path.join(dir, "theirs.yaml"), otherUid, otherUid)
              else fs.chmodSync(path.join(dir, "theirs.yaml"), 0o666)
              fs.linkSync(path.join(dir, "theirs.yaml"), path.join(dir, "c.yaml"))
              return ["--config", path.join(dir, "c.yaml")]
            }
          ],
          [
            "the default agentd.yaml a symlink to a good file",
            (dir, state) => {
              fs.writeFileSync(path.join(dir, "real.yaml"), "llm: { base_url: http://127.0.0.1:1/v1 }\n")
              fs.symlinkSync(path.join(dir, "real.yaml"), path.join(state, "agentd.yaml"))
              return []
            }
          ],
          [
            "the default agentd.yaml a FIFO",
            (_dir, state) => {
              execFileSync("mkfifo", [path.join(state, "agentd.yaml")])
              return []
            }
          ]
        ]
        yield* Effect.forEach(
          variants,
          ([what, make]) =>
            Effect.gen(function* () {
              const { dir, state } = fresh()
              const args = make(dir, state)
              const l = yield* Effect.scoped(launch(dir, ["--state", state, ...args]))
              refuses(`--config ${what}`, l, problems)
              if (!l.ready && l.ms > 15_000) problems.push(`--config ${what}: took ${l.ms} ms`)
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    90_000
  )

  it.live(
    "agentd.pid or journal.jsonl planted as a FIFO, a symlink, a directory: exit 2, never hangs",
    () =>
      Effect.gen(function* () {
        const problems: Array<string> = []
        const variants: ReadonlyArray<readonly [string, string, (file: string, dir: string) => void]> = [
          ["agentd.pid", "a FIFO", (file) => execFileSync("mkfifo", [file])],
          ["agentd.pid", "a symlink", (file, dir) => fs.symlinkSync(path.join(dir, "victim.txt"), file)],
          ["journal.jsonl", "a FIFO", (file) => execFileSync("mkfifo", [file])],
          ["journal.jsonl", "a directory", (file) => fs.mkdirSync(file)],
          ["journal.jsonl", "a dangling symlink", (file, dir) => fs.symlinkSync(path.join(dir, "nope"), file)]
        ]
        yield* Effect.forEach(
          variants,
          ([name, what, plant]) =>
            Effect.gen(function* () {
              const { dir, state } = fresh()
              fs.writeFileSync(path.join(dir, "victim.txt"), "precious\n")
              plant(path.join(state, name), dir)
              const l = yield* Effect.scoped(launch(dir, ["--state", state]))
              refuses(`${name} ${what}`, l, problems)
              if (fs.readFileSync(path.join(dir, "victim.txt"), "utf8") !== "precious\n")
                problems.push(`${name} ${what}: the victim was written`)
              if (fs.existsSync(path.join(dir, "nope"))) problems.push(`${name} ${what}: created the link's target`)
            }),
          { concurrency: 2 }
        )
        assert.deepStrictEqual(problems, [])
      }),
    60_000
  )

  it.live(
    "a new journal is made 0600 like the audit trail and the key (not 0644 under the usual umask)",
    () =>
      Effect.gen(function* () {
        const { dir, state } = fresh()
        const previous = process.umask(0o022)
        const l = yield* Effect.scoped(
          Effect.gen(function* () {
            const l = yield* launch(dir, ["--state", state])
            if (l.ready) yield* call(l.socket, "agent.spawn", { manifest: "name: a" })
            return l
          })
        ).pipe(Effect.ensuring(Effect.sync(() => process.umask(previous))))
        assert.isTrue(l.ready, l.stderr())
        const modes = Object.fromEntries(
          ["journal.jsonl", "journal.key", "audit.jsonl"].map((n) => [
            n,
            (fs.statSync(path.join(state, n)).mode & 0o777).toString(8)
          ])
        )
        assert.deepStrictEqual(modes, { "journal.jsonl": "600", "journal.key": "600", "audit.jsonl": "600" })
      }),
    30_000
  )
})

// -----------------------------------------------------------------------------------------------------------------
// 2. agentctl replay
// -----------------------------------------------------------------------------------------------------------------
