/**
 * StateFiles: what a daemon trusts in its state directory. Each accepted case beside its refusals: a directory
 * others may write, a link where the daemon appends, a file others may write, a config others may write or a link
 * to one, a secret others may read.
 */
import { assert, describe, it } from "@effect/vitest"
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { StateFiles } from "effect-agent-os"

const tmp = () => mkdtempSync(join(tmpdir(), "statefiles-"))

const refusal = (f: () => unknown): StateFiles.StateFilesError => {
  try {
    f()
  } catch (error) {
    assert.instanceOf(error, StateFiles.StateFilesError)
    return error as StateFiles.StateFilesError
  }
  return assert.fail("not refused")
}

const modeOf = (path: string) => statSync(path).mode & 0o777

describe("StateFiles.prepareDir", () => {
  it("makes a missing directory 0700; narrows one others may read; refuses one others may write, or a file", () => {
    const root = tmp()
    const made = join(root, "a", ".agentos")
    StateFiles.prepareDir(made)
    assert.strictEqual(modeOf(made), 0o700)
    const readable = join(root, "readable")
    mkdirSync(readable)
    chmodSync(readable, 0o755)
    StateFiles.prepareDir(readable)
    assert.strictEqual(modeOf(readable), 0o700)
    for (const bits of [0o777, 0o770, 0o702]) {
      const writable = join(root, `w${bits.toString(8)}`)
      mkdirSync(writable)
      chmodSync(writable, bits)
      const error = refusal(() => StateFiles.prepareDir(writable))
      assert.strictEqual(error.reason, "unsafe")
      assert.include(error.message, "others may write")
      assert.strictEqual(modeOf(writable), bits, "left as it was")
    }
    const file = join(root, "file")
    writeFileSync(file, "")
    assert.include(refusal(() => StateFiles.prepareDir(file)).message, "not a directory")
  })

  it("a link to a directory is the directory it names, checked as such", () => {
    const root = tmp()
    const real = join(root, "real")
    mkdirSync(real, { mode: 0o700 })
    symlinkSync(real, join(root, "link"))
    StateFiles.prepareDir(join(root, "link"))
    chmodSync(real, 0o777)
    assert.strictEqual(refusal(() => StateFiles.prepareDir(join(root, "link"))).reason, "unsafe")
  })
})

describe("StateFiles.checkFile", () => {
  it("missing is false; a 0600 file true; one others may read is made 0600; a link, a directory, 0666 refused", () => {
    const root = tmp()
    assert.isFalse(StateFiles.checkFile(join(root, "journal.jsonl")))
    const ok = join(root, "ok")
    writeFileSync(ok, "x", { mode: 0o600 })
    assert.isTrue(StateFiles.checkFile(ok))
    const readable = join(root, "readable")
    writeFileSync(readable, "x")
    chmodSync(readable, 0o644)
    assert.isTrue(StateFiles.checkFile(readable))
    assert.strictEqual(modeOf(readable), 0o600)
    const victim = join(root, "victim")
    writeFileSync(victim, "precious", { mode: 0o600 })
    symlinkSync(victim, join(root, "audit.jsonl"))
    const link = refusal(() => StateFiles.checkFile(join(root, "audit.jsonl")))
    assert.strictEqual(link.reason, "unsafe")
    assert.include(link.message, "symbolic link")
    assert.strictEqual(readFileSync(victim, "utf8"), "precious")
    mkdirSync(join(root, "dir"))
    assert.strictEqual(refusal(() => StateFiles.checkFile(join(root, "dir"))).reason, "unsafe")
    const writable = join(root, "writable")
    writeFileSync(writable, "x")
    chmodSync(writable, 0o666)
    assert.strictEqual(refusal(() => StateFiles.checkFile(writable)).reason, "unsafe")
    assert.strictEqual(modeOf(writable), 0o666, "a refused file is left as it was")
  })
})

describe("StateFiles.readConfig", () => {
  it("a 0644 file is read; 0666 or 0620 refused; a link only with followLinks, and then its target is checked", () => {
    const root = tmp()
    assert.isUndefined(StateFiles.readConfig(join(root, "none.yaml"), { followLinks: false }))
    const config = join(root, "agentd.yaml")
    writeFileSync(config, "http: 0\n")
    chmodSync(config, 0o644)
    assert.strictEqual(StateFiles.readConfig(config, { followLinks: false }), "http: 0\n")
    const link = join(root, "link.yaml")
    symlinkSync(config, link)
    assert.strictEqual(refusal(() => StateFiles.readConfig(link, { followLinks: false })).reason, "unsafe")
    assert.strictEqual(StateFiles.readConfig(link, { followLinks: true }), "http: 0\n")
    for (const bits of [0o666, 0o620]) {
      chmodSync(config, bits)
      assert.strictEqual(refusal(() => StateFiles.readConfig(config, { followLinks: false })).reason, "unsafe")
      assert.strictEqual(refusal(() => StateFiles.readConfig(link, { followLinks: true })).reason, "unsafe")
    }
    const big = join(root, "big.yaml")
    writeFileSync(big, "x".repeat(StateFiles.configBytesMax + 1), { mode: 0o600 })
    assert.strictEqual(refusal(() => StateFiles.readConfig(big, { followLinks: false })).reason, "invalid")
  })
})

describe("StateFiles.ensureSecret", () => {
  it("made once (0600, 64 hex), then read back; 0640, a link or no secret refused, never replaced", () => {
    const root = tmp()
    const dir = join(root, "state")
    const file = join(dir, StateFiles.names.journalKey)
    const made = StateFiles.ensureSecret(file, dir)
    assert.match(made, /^[0-9a-f]{64}$/)
    assert.strictEqual(modeOf(file), 0o600)
    assert.strictEqual(modeOf(dir), 0o700)
    assert.strictEqual(StateFiles.ensureSecret(file, dir), made)
    assert.strictEqual(StateFiles.readSecret(file), made)
    chmodSync(file, 0o640)
    assert.strictEqual(refusal(() => StateFiles.ensureSecret(file, dir)).reason, "unsafe")
    assert.strictEqual(readFileSync(file, "utf8").trim(), made, "kept, for the operator to decide")
    chmodSync(file, 0o600)
    const other = join(root, "other.key")
    writeFileSync(other, "b".repeat(64), { mode: 0o600 })
    const link = join(dir, "linked.key")
    symlinkSync(other, link)
    assert.strictEqual(refusal(() => StateFiles.ensureSecret(link, dir)).reason, "unsafe")
    const short = join(dir, "short.key")
    writeFileSync(short, "short", { mode: 0o600 })
    assert.strictEqual(refusal(() => StateFiles.ensureSecret(short, dir)).reason, "invalid")
    assert.strictEqual(readFileSync(short, "utf8"), "short")
  })
})
