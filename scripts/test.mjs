// The repo's test command (`npm test`): type-check, the test suite, then the package check — stopping at the first
// step that fails. Arguments go to vitest (`npm test -- test/drivers`, `npm test -- --reporter=json …`, as .ci/run
// does), which is why this is a script and not an `&&` chain: npm appends arguments to the last command of a chain.
import { spawnSync } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..")
const bin = (name) => join(repo, "node_modules", ".bin", name)

const steps = [
  [bin("tsc"), ["--noEmit"]],
  [bin("vitest"), ["run", ...process.argv.slice(2)]],
  [process.execPath, [join(repo, "scripts", "package-check.mjs")]]
]
for (const [command, args] of steps) {
  const { status, error } = spawnSync(command, args, { cwd: repo, stdio: "inherit" })
  if (error !== undefined) throw error
  if (status !== 0) process.exit(status ?? 1)
}
