// Kernel services sit below the drivers: no file under src/services/ imports a driver, and none but the syscall
// path itself (the module that implements `Sys`) imports `Sys` at run time. Type-only imports are fine.
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs"
import * as Path from "node:path"

const servicesDir = Path.resolve(import.meta.dirname, "../../src/services")

/** The files that implement the syscall surface: they provide `Sys`, so they must import it. */
const syscallPath = (file: string) => file === "ProcessTable.ts" || file.startsWith("internal/")

const sources = (Fs.readdirSync(servicesDir, { recursive: true }) as Array<string>)
  .filter((file) => file.endsWith(".ts"))
  .map((file) => ({
    file: file.split(Path.sep).join("/"),
    text: Fs.readFileSync(Path.join(servicesDir, file), "utf8")
  }))

interface Import {
  readonly from: string
  /** Only types are imported (`import type …`, or every specifier marked `type`). */
  readonly typeOnly: boolean
}

const importsOf = (text: string): Array<Import> =>
  Array.from(text.matchAll(/^\s*(?:import|export)\s+(type\s+)?([^;"]*?)\s*from\s+"([^"]+)"/gm), (match) => {
    const specifiers = /\{([^}]*)\}/.exec(match[2]!)?.[1]
    const allTyped =
      specifiers !== undefined &&
      !/^\s*\*|^\s*\w+\s*,/.test(match[2]!) &&
      specifiers
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "")
        .every((s) => s.startsWith("type "))
    return { from: match[3]!, typeOnly: match[1] !== undefined || allTyped }
  })

const resolved = (file: string, from: string) => Path.posix.normalize(Path.posix.join(Path.posix.dirname(file), from))

describe("src/services imports", () => {
  it("the scanner sees the files and tells type-only imports from runtime ones", () => {
    assert.isAbove(sources.length, 10)
    assert.deepStrictEqual(importsOf('import type * as Sys from "./Sys.ts"'), [{ from: "./Sys.ts", typeOnly: true }])
    assert.deepStrictEqual(importsOf('import { type A, type B } from "./Sys.ts"'), [
      { from: "./Sys.ts", typeOnly: true }
    ])
    assert.deepStrictEqual(importsOf('import { type A, B } from "./Sys.ts"'), [{ from: "./Sys.ts", typeOnly: false }])
    assert.deepStrictEqual(importsOf('import * as Sys from "./Sys.ts"'), [{ from: "./Sys.ts", typeOnly: false }])
  })

  it("no kernel service imports a driver", () => {
    const offenders = sources.flatMap(({ file, text }) =>
      importsOf(text)
        .filter((i) => resolved(file, i.from).startsWith("../drivers/"))
        .map((i) => `${file} imports ${i.from}`)
    )
    assert.deepStrictEqual(offenders, [])
  })

  it("no kernel service outside the syscall path imports Sys at run time", () => {
    const offenders = sources
      .filter(({ file }) => !syscallPath(file))
      .flatMap(({ file, text }) =>
        importsOf(text)
          .filter((i) => resolved(file, i.from) === "Sys.ts" && !i.typeOnly)
          .map((i) => `${file} imports ${i.from} at run time`)
      )
    assert.deepStrictEqual(offenders, [])
  })
})
