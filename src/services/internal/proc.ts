/**
 * Holds what the kernel knows of one process.
 *
 * Private to the package.
 */
import type { Fiber } from "effect"
import { Effect } from "effect"
import type * as Accounts from "../Accounts.ts"
import type { CapRef } from "../Capability.ts"
import type { Memory } from "../ContextMemory.ts"
import { Mailbox, type MailboxOwner, type Receiver } from "../Mailbox.ts"
import type * as Process from "../Process.ts"
import type { CapRecord } from "./capRef.ts"
import type { KernelState } from "./kernelState.ts"
import type { SafeMap, SafeSet } from "./primordials.ts"
import { ProcessSys, settle } from "./syscalls.ts"

/** A process's name and its parent's lineage, as it was spawned. */
export interface Lineage {
  readonly name: string
  readonly up: Lineage | undefined
}

/**
 * A live (or just ended) process, as the kernel sees it. Fields that most processes never use are allocated lazily,
 * so an idle process costs little more than its fiber.
 *
 * @category models
 */
export class Proc implements MailboxOwner {
  readonly pid: number
  readonly name: string
  parent: Proc | undefined
  readonly depth: number
  readonly account: Accounts.Account
  readonly mailbox: Mailbox
  readonly kernel: KernelState
  readonly startCaps: ReadonlyArray<CapRef>
  readonly startedAt: number
  readonly sys: ProcessSys
  fiber: Fiber.Fiber<void, unknown> | undefined = undefined
  /** Set once the process has ended; every later syscall is a no-op interrupt. */
  exitReason: Process.ExitReason | undefined = undefined
  /** `undefined` while running; while suspended, the callbacks of syscalls parked until `resume`. */
  suspended: SafeSet<() => void> | undefined = undefined
  // process records only ever go into collections that call the built-ins captured at load (`primordials.ts`)
  children: SafeSet<Proc> | undefined = undefined
  links: SafeSet<Proc> | undefined = undefined
  /** The monitors watching this process, by ref. */
  monitoredBy: SafeMap<number, { readonly ref: number; readonly watcher: Proc }> | undefined = undefined
  /** The monitors this process made, by ref. */
  monitors: SafeMap<number, { readonly ref: number; readonly target: Proc }> | undefined = undefined
  /** Exit signals arrive as `Exit` messages (`Sys.trapExit(true)`) instead of ending the process. */
  trapExit = false
  /** `Sys.started()` was called (its `Started` went to the parent). */
  started = false
  exitWaiters: SafeSet<(reason: Process.ExitReason) => void> | undefined = undefined
  timer: Fiber.Fiber<void> | undefined = undefined
  selfCap: CapRecord | undefined = undefined
  spawnCap: CapRecord | undefined = undefined
  /** Context memory, made at the first `remember`. */
  memory: Memory | undefined = undefined
  /** The VFS's `/state` checkpoints, oldest first, made at the first one. */
  checkpoints: Array<import("../Vfs.ts").Checkpoint> | undefined = undefined
  /** Checkpoints made so far: the next one is `/state/<checkpointsMade + 1>`. */
  checkpointsMade = 0
  /** The names from its root down to it, as spawned (re-parenting an orphan does not change it). */
  readonly lineage: Lineage
  /** Driver calls made so far: the next call is op `ops + 1` (the journal key with the pid). */
  ops = 0
  /** `"<pid>:"`, the start of its driver calls' idempotency keys (`"<pid>:<op>"`), made at its first call. */
  keyPrefix: string | undefined = undefined
  /** Driver calls of this process waiting for an approval (`waiting-approval` in `ps`). */
  approvals = 0
  /** The policy sets every driver call of this process must pass: its parent's, then its own (see `Policy`). */
  policies: ReadonlyArray<import("../Policy.ts").PolicySet> | undefined = undefined
  /** What the policies' `rate` rules counted of this process's calls, made at its first judged call. */
  policyRates: import("../Policy.ts").Rates | undefined = undefined
  priority: number
  /** Absolute kernel-clock millis of the scheduling deadline; `undefined` for none. */
  deadlineAt: number | undefined
  /** The highest priority this process may take (`Sys.sched`), set by its parent at spawn. */
  readonly priorityCeiling: number
  /** Carried in the context of the process's fibers only: a syscall from any other fiber acts for nobody. */
  readonly token: object = Object.freeze({})

  constructor(
    kernel: KernelState,
    pid: number,
    name: string,
    parent: Proc | undefined,
    account: Accounts.Account,
    startCaps: ReadonlyArray<CapRef>,
    now: number,
    priority: number,
    priorityCeiling: number,
    deadlineAt: number | undefined
  ) {
    this.pid = pid
    this.name = name
    this.parent = parent
    this.depth = parent === undefined ? 0 : parent.depth + 1
    this.lineage = { name, up: parent?.lineage }
    this.account = account
    this.startCaps = startCaps
    this.startedAt = now
    this.priority = priority
    this.priorityCeiling = priorityCeiling
    this.deadlineAt = deadlineAt
    this.kernel = kernel
    this.mailbox = new Mailbox(account.mailboxMax, this)
    this.sys = new ProcessSys(this)
  }

  now(): number {
    return this.kernel.now()
  }

  /** When the process's time is up (its wall quota or its deadline, the earlier); `Infinity` for never. */
  endsAt(): number {
    const deadline = this.deadlineAt
    const wall = this.account.wallEndsAt
    return deadline === undefined || wall < deadline ? wall : deadline
  }

  handTo(receiver: Receiver, message: Process.Message): void {
    receiver(
      this.exitReason === undefined && this.suspended === undefined ? Effect.succeed(message) : settle(this, message)
    )
  }

  dropped(message: Process.Message): void {
    this.kernel.counters.messagesDropped++
    // the caps it carried die with it: nobody can receive them any more
    if (message.caps.length > 0) this.kernel.caps.revokeRefs(message.caps)
    this.kernel.events.emit({ _tag: "Drop", pid: message.from, reason: "deadline", target: this.pid })
  }
}
