/**
 * MCP: servers as capability-checked tools devices (`Mcp.stdio`, `Mcp.http`). A subpath of its own
 * (`effect-agent-os/mcp`), so that only the apps that use MCP need its peer dependencies: `@modelcontextprotocol/sdk`
 * and `ajv`.
 *
 * @since 0.1.0
 */
export * as Mcp from "./drivers/Mcp.ts"
