import { assert, describe, it } from "@effect/vitest"
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { FileAccess } from "effect-agent-os"

/** A real tree: root/allowed/{a.txt, sub/b.txt, out -> ../secret, outdir -> ../secretdir}, root/secret, root/link -> allowed */
const tree = () => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), "agentos-files-")))
  mkdirSync(join(root, "allowed", "sub"), { recursive: true })
  mkdirSync(join(root, "secretdir"))
  writeFileSync(join(root, "allowed", "a.txt"), "a")
  writeFileSync(join(root, "allowed", "sub", "b.txt"), "b")
  writeFileSync(join(root, "secret"), "s")
  symlinkSync(join(root, "secret"), join(root, "allowed", "out"))
  symlinkSync(join(root, "secretdir"), join(root, "allowed", "outdir"))
  symlinkSync(join(root, "allowed"), join(root, "link"))
  return { root, done: () => rmSync(root, { recursive: true, force: true }) }
}

const reasonOf = (effect: Effect.Effect<string, FileAccess.FileAccessError>) =>
  Effect.match(effect, { onFailure: (e) => e.reason, onSuccess: () => "allowed" as const })

describe("FileAccess.check", () => {
  it.effect("a file inside the glob is allowed and comes back resolved; a new file there too (a write)", () =>
    Effect.gen(function* () {
      const { root, done } = tree()
      try {
        const allowed = yield* FileAccess.compile([`${root}/allowed/*`])
        assert.strictEqual(yield* FileAccess.check(`${root}/allowed/a.txt`, allowed), `${root}/allowed/a.txt`)
        assert.strictEqual(yield* FileAccess.check(`${root}/allowed/new.txt`, allowed), `${root}/allowed/new.txt`)
        assert.strictEqual(yield* FileAccess.check("a.txt", allowed, `${root}/allowed`), `${root}/allowed/a.txt`)
      } finally {
        done()
      }
    })
  )

  it.effect("../ escapes, absolute paths elsewhere and nested paths under a one-segment * are denied", () =>
    Effect.gen(function* () {
      const { root, done } = tree()
      try {
        const allowed = yield* FileAccess.compile([`${root}/allowed/*`])
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/allowed/../secret`, allowed)), "denied")
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/allowed/sub/../../secret`, allowed)), "denied")
        assert.strictEqual(yield* reasonOf(FileAccess.check("../secret", allowed, `${root}/allowed`)), "denied")
        assert.strictEqual(yield* reasonOf(FileAccess.check("/etc/passwd", allowed)), "denied")
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/allowed/sub/b.txt`, allowed)), "denied")
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/allowed`, allowed)), "denied")
      } finally {
        done()
      }
    })
  )

  it.effect("a symlink inside the allowed tree that points out of it is denied, for reads and for new files", () =>
    Effect.gen(function* () {
      const { root, done } = tree()
      try {
        const allowed = yield* FileAccess.compile([`${root}/allowed/**`])
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/allowed/out`, allowed)), "denied")
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/allowed/outdir/new.txt`, allowed)), "denied")
        assert.strictEqual(yield* FileAccess.check(`${root}/allowed/sub/b.txt`, allowed), `${root}/allowed/sub/b.txt`)
        assert.strictEqual(
          yield* FileAccess.check(`${root}/allowed/x/y/new.txt`, allowed),
          `${root}/allowed/x/y/new.txt`
        )
      } finally {
        done()
      }
    })
  )

  it.effect("a glob through a symlinked directory matches where the files really are; a path through it too", () =>
    Effect.gen(function* () {
      const { root, done } = tree()
      try {
        const viaLink = yield* FileAccess.compile([`${root}/link/*`])
        assert.strictEqual(yield* FileAccess.check(`${root}/allowed/a.txt`, viaLink), `${root}/allowed/a.txt`)
        assert.strictEqual(yield* FileAccess.check(`${root}/link/a.txt`, viaLink), `${root}/allowed/a.txt`)
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/link/out`, viaLink)), "denied")
      } finally {
        done()
      }
    })
  )

  it.effect("no glob allows nothing; an empty, non-string or NUL path is invalid", () =>
    Effect.gen(function* () {
      const { root, done } = tree()
      try {
        assert.strictEqual(yield* reasonOf(FileAccess.check(`${root}/allowed/a.txt`, [])), "denied")
        const allowed = yield* FileAccess.compile([`${root}/allowed/*`])
        for (const bad of ["", `${root}/allowed/a.txt\0.png`, 42, undefined, { toString: () => "x" }]) {
          assert.strictEqual(yield* reasonOf(FileAccess.check(bad, allowed)), "invalid", String(bad))
        }
      } finally {
        done()
      }
    })
  )
})

describe("FileAccess.globToRegExp", () => {
  it("* stays within a segment, ** crosses them, ? is one character, the rest is literal", () => {
    const one = FileAccess.globToRegExp("/data/*.txt")
    assert.isTrue(one.test("/data/a.txt"))
    assert.isFalse(one.test("/data/x/a.txt"))
    assert.isFalse(one.test("/dataXa.txt"))
    const deep = FileAccess.globToRegExp("/data/**/b.txt")
    assert.isTrue(deep.test("/data/b.txt"))
    assert.isTrue(deep.test("/data/x/y/b.txt"))
    assert.isFalse(deep.test("/other/b.txt"))
    assert.isTrue(FileAccess.globToRegExp("/a/?.md").test("/a/x.md"))
    assert.isFalse(FileAccess.globToRegExp("/a/?.md").test("/a/xy.md"))
    assert.isFalse(FileAccess.globToRegExp("/a/(b)").test("/a/b"))
    assert.isTrue(FileAccess.globToRegExp("/a/(b)").test("/a/(b)"))
  })
})
