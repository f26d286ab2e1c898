// The package check runs the suites of the modules that start worker threads (Sandbox, Worker, Wasm) once more
// against dist/, the compiled package `npm pack` just built: there the threads run the runners the build inlined
// (`eval: true`, the sandbox's runner bundled with its QuickJS glue, the engine in base64), where the sources start
// the runner files. Run: vitest run --config scripts/vitest.dist.config.mjs (after npm run build).
import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

const repo = fileURLToPath(new URL("..", import.meta.url))

export default defineConfig({
  resolve: {
    alias: {
      "effect-agent-os/testing": fileURLToPath(new URL("../dist/testing.js", import.meta.url)),
      "effect-agent-os": fileURLToPath(new URL("../dist/index.js", import.meta.url))
    }
  },
  test: {
    root: repo,
    include: ["test/agents/Sandbox.test.ts", "test/drivers/Worker.test.ts", "test/drivers/Wasm.test.ts"],
    testTimeout: 60_000
  }
})
