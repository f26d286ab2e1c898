// Checks the package as a user gets it: `npm pack` (which builds dist/ through `prepack`) into a temporary directory
// outside the repo, a fresh app there with registry dependencies only (the versions of the repo's lockfile) and the
// tarball installed, then:
//
// 1. the app type-checks under `nodenext` and under `bundler` resolution, with strict consumer flags
//    (`exactOptionalPropertyTypes`, `noUncheckedIndexedAccess`, `verbatimModuleSyntax`, `skipLibCheck: false`, …);
// 2. its program runs with plain `node` (no loader): a kernel boots, a process makes driver calls (a scripted LLM,
//    the Worker driver's threads) and a Sandbox runs QuickJS on a worker thread, from node_modules;
// 3. the same program runs with tsx (`tsx src/main.ts`), and with plain `node` in a hardened realm
//    (`--import effect-agent-os/hardened`: `ses` lockdown before anything else loads);
// 4. the same program bundled by esbuild into one file (`esbuild src/main.ts --bundle --platform=node --format=esm`,
//    nothing external) runs with plain `node` from a directory outside the app, with no node_modules in reach: the
//    package, effect and the workers' runners and QuickJS engine (inlined by the build) are all in the bundle;
// 5. one `@effect/vitest` test runs on `effect-agent-os/testing`;
// 6. (in the repo, during the install) the Sandbox, Worker and Wasm suites pass on the dist/ just packed, whose
//    worker threads run the runners the build inlined (scripts/vitest.dist.config.mjs).
//
// The type checks and the bundling run at once, then the five runs at once: one npm install serves them all.
//
// Any failing step fails the check (exit 1) and keeps the directory for a look; on success it is removed. The app's
// files are in scripts/package-check/. Installs use the npm cache first (`--prefer-offline`).
//
// Run: npm run package-check (the last step of `npm test`).
import { spawn } from "node:child_process"
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

const repo = join(dirname(fileURLToPath(import.meta.url)), "..")
const templates = join(repo, "scripts", "package-check")
const work = mkdtempSync(join(tmpdir(), "effect-agent-os-package-check-"))
const app = join(work, "app")
/** Where the bundle runs: outside the app, so nothing resolves from its node_modules. */
const bundleDir = join(work, "bundle")
const started = performance.now()

/** The environment for the child commands: npm's per-script variables of the repo's own run are dropped. */
const baseEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([key]) => !/^npm_(package|lifecycle)_/.test(key) && key !== "npm_config_local_prefix" && key !== "INIT_CWD"
  )
)

/** Runs a command; its output is shown only when it fails. */
const run = (label, command, args, options) =>
  new Promise((resolve, reject) => {
    const begun = performance.now()
    const child = spawn(command, args, { ...options, stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    child.stdout.on("data", (chunk) => (output += chunk))
    child.stderr.on("data", (chunk) => (output += chunk))
    child.on("error", reject)
    child.on("close", (code) => {
      const seconds = ((performance.now() - begun) / 1000).toFixed(1)
      if (code === 0) {
        console.log(`package check: ${label} (${seconds} s)`)
        resolve(output)
      } else {
        reject(new Error(`${label} failed (exit ${code}):\n${output}`))
      }
    })
  })

/** The exact version of `name` in the repo's lockfile: the app gets what the repo is tested with. */
const lock = JSON.parse(readFileSync(join(repo, "package-lock.json"), "utf8"))
const locked = (name) => {
  const version = lock.packages?.[`node_modules/${name}`]?.version
  if (version === undefined) throw new Error(`${name} is not in package-lock.json`)
  return version
}

try {
  // npm runs on whatever node is first on PATH; the repo's scripts put its Node 22 there
  await run("npm pack (builds dist/)", "npm", ["pack", "--pack-destination", work, "--silent"], {
    cwd: repo,
    env: baseEnv
  })
  const tarball = readdirSync(work).find((file) => file.endsWith(".tgz"))
  if (tarball === undefined) throw new Error(`npm pack left no tarball in ${work}`)

  mkdirSync(join(app, "src"), { recursive: true })
  mkdirSync(join(app, "test"))
  mkdirSync(bundleDir)
  copyFileSync(join(templates, "tasks.mjs"), join(bundleDir, "tasks.mjs"))
  const manifest = {
    name: "package-check-app",
    private: true,
    type: "module",
    dependencies: {
      "@effect/platform-node": locked("@effect/platform-node"),
      effect: locked("effect"),
      "effect-agent-os": `file:../${tarball}`,
      ses: locked("ses")
    },
    devDependencies: {
      "@effect/vitest": locked("@effect/vitest"),
      "@types/node": locked("@types/node"),
      esbuild: locked("esbuild"),
      node: locked("node"),
      tsx: locked("tsx"),
      typescript: locked("typescript"),
      vitest: locked("vitest")
    },
    // the `node` package installs its binary in a preinstall script; esbuild checks its own in a postinstall one
    allowScripts: { esbuild: true, node: true }
  }
  writeFileSync(join(app, "package.json"), JSON.stringify(manifest, null, 2) + "\n")
  for (const [file, to] of [
    ["main.ts", "src/main.ts"],
    ["kit.test.ts", "test/kit.test.ts"],
    ["tasks.mjs", "tasks.mjs"],
    ["tsconfig.base.json", "tsconfig.base.json"],
    ["tsconfig.nodenext.json", "tsconfig.nodenext.json"],
    ["tsconfig.bundler.json", "tsconfig.bundler.json"]
  ]) {
    copyFileSync(join(templates, file), join(app, to))
  }

  await Promise.all([
    run(
      "npm install (registry dependencies + the tarball)",
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", "--no-package-lock"],
      { cwd: app, env: baseEnv }
    ),
    // meanwhile, in the repo: the thread-starting suites on the dist/ just packed, whose runners the build inlined
    run(
      "vitest: Sandbox, Worker and Wasm suites on the built dist/ (inlined runners)",
      join(repo, "node_modules", ".bin", "vitest"),
      ["run", "--config", join(repo, "scripts", "vitest.dist.config.mjs")],
      { cwd: repo, env: baseEnv }
    )
  ])

  // From here on the app's own tools, on the app's own Node 22.
  const env = { ...baseEnv, PATH: `${join(app, "node_modules", ".bin")}${delimiter}${baseEnv.PATH ?? ""}` }
  const bin = (name) => join(app, "node_modules", ".bin", name)
  const installed = JSON.parse(readFileSync(join(app, "node_modules", "effect-agent-os", "package.json"), "utf8"))
  if (installed.dependencies?.effect !== undefined) {
    throw new Error("effect must be a peer dependency of the package, not a dependency")
  }
  if (!readdirSync(join(app, "node_modules", "effect-agent-os")).includes("LICENSE")) {
    throw new Error("the package ships no LICENSE")
  }

  const bundle = join(bundleDir, "app.mjs")
  await Promise.all([
    run("tsc, nodenext resolution (and emit)", bin("tsc"), ["-p", "tsconfig.nodenext.json"], { cwd: app, env }),
    run("tsc, bundler resolution", bin("tsc"), ["-p", "tsconfig.bundler.json"], { cwd: app, env }),
    run(
      "esbuild src/main.ts --bundle --platform=node --format=esm (nothing external)",
      bin("esbuild"),
      ["src/main.ts", "--bundle", "--platform=node", "--format=esm", `--outfile=${bundle}`, "--log-level=warning"],
      { cwd: app, env }
    )
  ])
  /** Runs the program one way and checks it reported its run. */
  const program = async (label, command, args, cwd, realm = "realm: open") => {
    const ran = await run(label, command, args, { cwd, env })
    if (!ran.includes("ran from the installed package") || !ran.includes(realm)) {
      throw new Error(`${label}: the program did not report its run:\n${ran}`)
    }
  }
  await Promise.all([
    program("node out/src/main.js (plain node, no loader)", bin("node"), ["out/src/main.js"], app),
    program("tsx src/main.ts", bin("tsx"), ["src/main.ts"], app),
    program(
      "node --import effect-agent-os/hardened out/src/main.js (a realm under ses lockdown)",
      bin("node"),
      ["--import", "effect-agent-os/hardened", "out/src/main.js"],
      app,
      "realm: hardened"
    ),
    program("node app.mjs (the esbuild bundle, outside the app)", bin("node"), [bundle], bundleDir),
    run("vitest: a test on effect-agent-os/testing", bin("vitest"), ["run", "--dir", "test"], { cwd: app, env }),
    (async () => {
      // the installed bins, as an operator runs them
      writeFileSync(join(app, "agent.yaml"), 'name: checked\ncapabilities: ["tool: echo"]\n')
      const validated = await run("agentctl validate (installed bin)", bin("agentctl"), ["validate", "agent.yaml"], {
        cwd: app,
        env
      })
      if (!validated.includes("valid (checked)")) throw new Error(`agentctl validate said:\n${validated}`)
      const help = await run("agentd --help (installed bin)", bin("agentd"), ["--help"], { cwd: app, env })
      if (!help.includes("usage: agentd")) throw new Error(`agentd --help said:\n${help}`)
    })()
  ])

  rmSync(work, { recursive: true, force: true })
  console.log(`package check: passed in ${((performance.now() - started) / 1000).toFixed(1)} s`)
} catch (error) {
  console.error(`package check: FAILED — ${error instanceof Error ? error.message : String(error)}`)
  console.error(`package check: the app is kept in ${app}`)
  process.exitCode = 1
}
