/**
 * VFS requests as the tests write them (`Sys.read`/`Sys.write` on a VFS handle): read, write (with optional data and
 * extra fields such as `pin` or `tokens`), remove and restore.
 */
import type { Capability } from "effect-agent-os"
import { Sys } from "effect-agent-os"

type CapRef = Capability.CapRef

export const cat = <A = unknown>(vfs: CapRef, path: string) => Sys.read<A>(vfs, { op: "read", path })

export const put = (vfs: CapRef, path: string, data?: unknown, extra?: object) =>
  Sys.write<{ readonly path: string | null }>(vfs, {
    op: "write",
    path,
    ...(data === undefined ? {} : { data }),
    ...extra
  })

export const rm = (vfs: CapRef, path: string) => Sys.write(vfs, { op: "remove", path })

export const restore = (vfs: CapRef, path: string) => Sys.write(vfs, { op: "restore", path })
