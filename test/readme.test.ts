// Every ```ts block of README.md, exactly as written: each is type-checked (as its own module, with the repo's
// compiler options plus `noUncheckedIndexedAccess`, as a strict user app would), and then run — a block that defines
// tests (it imports "@effect/vitest") has its tests collected here; any other block is a program, run with Node
// as `node --experimental-strip-types block.ts` would run it, and must exit 0.
//
// A block that is not meant to stand alone is marked with an HTML comment on the line before its fence:
// `<!-- fragment -->`. It is skipped.
import { assert, describe, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { dirname, join, relative } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Effect } from "effect"
import { Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"
import ts from "typescript"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..")
const readme = readFileSync(join(repo, "README.md"), "utf8")

interface Block {
  /** 1-based line of the opening fence in README.md. */
  readonly line: number
  readonly code: string
  readonly fragment: boolean
  readonly defineTests: boolean
  readonly file: string
}

/** The ```ts blocks of a Markdown text, with the fragment marker of each. */
const extract = (markdown: string): ReadonlyArray<Omit<Block, "file">> => {
  const lines = markdown.split("\n")
  const blocks: Array<Omit<Block, "file">> = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(\s*)(`{3,}|~{3,})\s*(ts|typescript)\s*$/.exec(lines[i]!)
    if (fence === null) continue
    const close = new RegExp(`^\\s*${fence[2]![0] === "`" ? "`" : "~"}{${fence[2]!.length},}\\s*$`)
    let end = i + 1
    while (end < lines.length && !close.test(lines[end]!)) end++
    let before = i - 1
    while (before >= 0 && lines[before]!.trim() === "") before--
    const code = lines.slice(i + 1, end).join("\n") + "\n"
    blocks.push({
      line: i + 1,
      code,
      fragment: before >= 0 && /^<!--\s*fragment\b.*-->$/.test(lines[before]!.trim()),
      defineTests: /from\s+["']@effect\/vitest["']/.test(code)
    })
    i = end
  }
  return blocks
}

// Each block becomes a file inside the repo (so "effect-agent-os" resolves to src/ as for the examples), named by a
// hash of its content: runs in parallel write the same bytes to the same name, and nothing needs cleaning up.
const snippets = join(repo, ".agentos", "readme")
mkdirSync(snippets, { recursive: true })
const blocks: ReadonlyArray<Block> = extract(readme).map((block) => {
  const hash = createHash("sha256").update(block.code).digest("hex").slice(0, 12)
  const file = join(snippets, `line-${block.line}-${hash}.ts`)
  const temporary = `${file}.${process.pid}.tmp`
  writeFileSync(temporary, block.code)
  renameSync(temporary, file)
  return { ...block, file }
})
const checked = blocks.filter((block) => !block.fragment)

describe("README.md ts blocks", () => {
  it("has blocks to check, and each is a program or a test file", () => {
    assert.isAtLeast(checked.length, 2, "the quick start and the test-kit example at least")
  })

  it("type-check exactly as written", () => {
    const config = ts.getParsedCommandLineOfConfigFile(
      join(repo, "tsconfig.json"),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (diagnostic) => assert.fail(String(diagnostic.messageText))
      }
    )!
    const program = ts.createProgram(
      checked.map((block) => block.file),
      { ...config.options, noEmit: true, noUncheckedIndexedAccess: true, noUnusedLocals: false }
    )
    const diagnostics = ts
      .getPreEmitDiagnostics(program)
      .filter((diagnostic) => diagnostic.file === undefined || diagnostic.file.fileName.startsWith(snippets))
    const report = diagnostics.map((diagnostic) => {
      const message = ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")
      if (diagnostic.file === undefined || diagnostic.start === undefined) return message
      const block = checked.find((b) => b.file === diagnostic.file!.fileName)
      const { line, character } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
      return `README.md:${(block?.line ?? 0) + 1 + line}:${character + 1}: ${message}`
    })
    assert.deepStrictEqual(report, [])
  }, 120_000)

  for (const block of checked.filter((b) => !b.defineTests)) {
    it.effect(`runs the program at README.md:${block.line}`, () =>
      Effect.gen(function* () {
        const { code, output } = yield* runNode(block.file)
        assert.strictEqual(code, 0, `README.md:${block.line} exited ${code}:\n${output}`)
      })
    )
  }
})

/** Runs a .ts file as the README tells users to (Node's type stripping), resolving the package to src/. */
const runNode = (file: string) =>
  Effect.callback<{ readonly code: number; readonly output: string }>((resume) => {
    const child = execFile(
      process.execPath,
      ["--conditions=@effect-agent-os/source", "--experimental-strip-types", "--no-warnings", relative(repo, file)],
      { cwd: repo, timeout: 30_000 },
      (error, stdout, stderr) =>
        resume(Effect.succeed({ code: error === null ? 0 : Number(error.code ?? 1), output: stdout + stderr }))
    )
    return Effect.sync(() => child.kill())
  })

// The blocks that define tests are loaded here, so that their tests are collected with this file's.
for (const block of checked.filter((b) => b.defineTests)) {
  await import(pathToFileURL(block.file).href)
}

describe("the quick start's claims", () => {
  const doubler = Process.make("doubler", () =>
    Effect.forever(
      Effect.gen(function* () {
        const m = yield* Sys.recv<number>()
        yield* Sys.charge({ tokens: 10 })
        yield* Sys.send(m.caps[0]!, m.body * 2)
      })
    )
  )

  it.effect("the doubler answers, then runs out of its 25 tokens on its third charge", () =>
    TestKernel.runProcess(() =>
      Effect.gen(function* () {
        const { cap } = yield* Sys.spawn(doubler, { quota: { tokens: 25 } })
        const me = yield* Sys.selfCap()
        for (const n of [1, 2]) {
          yield* Sys.send(cap, n, { caps: [yield* Sys.derive(me, ["send"])] })
          assert.strictEqual((yield* Sys.recv<number>()).body, n * 2)
        }
        yield* Sys.send(cap, 3, { caps: [yield* Sys.derive(me, ["send"])] })
        assert.deepStrictEqual(yield* Sys.waitpid(cap), { _tag: "Quota", resource: "tokens" })
      })
    ).pipe(Effect.provide(TestKernel.layer()))
  )
})
