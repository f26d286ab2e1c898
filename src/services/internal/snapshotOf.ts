/**
 * Takes a snapshot of a running process: for `kernel.snapshot` and for the VFS's `/state` checkpoints.
 *
 * Private to the package.
 */
import * as Accounts from "../Accounts.ts"
import { abi, limitOf, type Snapshot, SnapshotError, unencodableAt } from "../Snapshot.ts"
import type { Proc } from "./proc.ts"

/** What `proc` is now besides its code (see `Snapshot`); the bodies are the process's own, not copies. */
export const snapshotOf = (proc: Proc, at: number): Snapshot => {
  const account = proc.account
  return {
    abi,
    name: proc.name,
    memory: proc.memory?.export() ?? { working: [], swap: [] },
    mailbox: proc.mailbox.peekAll().map((m) => ({
      from: m.from,
      body: m.body,
      ...(m.corr === undefined ? {} : { corr: m.corr }),
      ...(m.deadline === undefined ? {} : { deadlineInMs: Math.max(0, m.deadline - at) })
    })),
    budget: {
      tokens: limitOf(Accounts.remaining(account, "tokens")),
      toolCalls: limitOf(Accounts.remaining(account, "toolCalls")),
      usd: limitOf(Accounts.remaining(account, "usd")),
      mem: limitOf(account.memMax),
      mailbox: account.mailboxMax,
      wallMs: limitOf(Math.max(0, account.wallEndsAt - at))
    },
    priority: proc.priority,
    deadlineInMs: proc.deadlineAt === undefined ? null : Math.max(0, proc.deadlineAt - at)
  }
}

/**
 * The `unencodable` error naming the first message or memory segment of `snapshot` that JSON would change, or
 * `undefined` when all of it is JSON-safe: a snapshot is JSON-safe or it is not given.
 */
export const unencodableIn = (pid: number, snapshot: Snapshot): SnapshotError | undefined => {
  for (let i = 0; i < snapshot.mailbox.length; i++) {
    const found = unencodableAt(snapshot.mailbox[i]!.body, "body")
    if (found !== undefined) {
      return new SnapshotError({
        reason: "unencodable",
        message: `pid ${pid}: message ${i + 1} (from pid ${snapshot.mailbox[i]!.from}) holds ${found}`
      })
    }
  }
  for (const segment of [...snapshot.memory.working, ...snapshot.memory.swap]) {
    const found = unencodableAt(segment.body, "body")
    if (found !== undefined) {
      return new SnapshotError({
        reason: "unencodable",
        message: `pid ${pid}: memory segment ${segment.id} holds ${found}`
      })
    }
  }
  return undefined
}
