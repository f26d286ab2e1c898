import { fileURLToPath } from "node:url"
import { defineConfig } from "vitest/config"

export default defineConfig({
  resolve: {
    alias: {
      "effect-agent-os/hardened": fileURLToPath(new URL("./src/hardened.ts", import.meta.url)),
      "effect-agent-os/mcp": fileURLToPath(new URL("./src/mcp.ts", import.meta.url)),
      "effect-agent-os/testing": fileURLToPath(new URL("./src/testing.ts", import.meta.url)),
      "effect-agent-os": fileURLToPath(new URL("./src/index.ts", import.meta.url))
    }
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000
  }
})
