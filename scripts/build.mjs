// Builds the package: compiles src/ to dist/ (ESM .js with `.ts` imports rewritten to `.js`, .d.ts, declaration and
// source maps) with tsconfig.build.json, then copies the runtime files that are not TypeScript (the worker and sandbox
// runners, found through `import.meta.url`) to the same relative paths under dist/.
//
// Run: npm run build (also run by `npm pack` / `npm publish` through `prepack`).
import { spawnSync } from "node:child_process"
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const src = join(root, "src")
const dist = join(root, "dist")
/** Extensions of files under src/ that are loaded at run time as they are. */
const runtimeExtensions = [".mjs", ".cjs", ".js", ".wasm", ".json"]

// A fresh dist/: a module deleted from src/ must not linger in the package.
rmSync(dist, { recursive: true, force: true })

const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc")
const compiled = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" })
if (compiled.status !== 0) {
  console.error("build: tsc failed")
  process.exit(compiled.status ?? 1)
}

let copied = 0
for (const entry of readdirSync(src, { recursive: true, withFileTypes: true })) {
  if (!entry.isFile() || !runtimeExtensions.some((extension) => entry.name.endsWith(extension))) continue
  const from = join(entry.parentPath, entry.name)
  const to = join(dist, from.slice(src.length + 1))
  mkdirSync(dirname(to), { recursive: true })
  copyFileSync(from, to)
  copied++
}
console.log(`build: dist/ compiled from src/, ${copied} runtime file(s) copied`)
