/**
 * Finds the reference kernel (the benchmark peer) beside the repository, if it is there.
 *
 * A user's clone has no `../shared/`: then every peer column says "absent" and nothing fails. `AGENTOS_PEER` may
 * name another directory holding the peer's `index.mjs`.
 */
import { existsSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

export interface Peer {
  readonly dir: string
  // the peer is plain JavaScript; its API is used only by the workloads in core.ts
  readonly module: any
}

export const loadPeer = async (): Promise<Peer | undefined> => {
  const repo = fileURLToPath(new URL("..", import.meta.url))
  const dir = process.env.AGENTOS_PEER ?? join(repo, "..", "shared", "peers", "agent-os-seed")
  const entry = join(dir, "index.mjs")
  if (!existsSync(entry)) return undefined
  return { dir, module: await import(pathToFileURL(entry).href) }
}
