/**
 * Shares the kernel's internal state between the process table, the syscall implementation and the driver-call path.
 *
 * Private to the package.
 */
import type { Effect } from "effect"
import type * as Accounts from "../Accounts.ts"
import { type CapRef, type CapabilityError, rightBit } from "../Capability.ts"
import type { CapabilityTableShape } from "../CapabilityTable.ts"
import type { MemoryOptions } from "../ContextMemory.ts"
import type { DeviceTableShape } from "../DeviceTable.ts"
import type { EventLogShape } from "../EventLog.ts"
import type { JournalShape } from "../Journal.ts"
import type { KernelLimits } from "../KernelConfig.ts"
import type { NameRegistryShape } from "../NameRegistry.ts"
import type * as Process from "../Process.ts"
import type { ArgumentError, Spawned, SpawnError, SpawnOptions } from "../Sys.ts"
import type { SafeMap } from "./primordials.ts"
import type { Proc } from "./proc.ts"
import type { DriverPath } from "./syscalls.ts"

export const SEND = rightBit("send")
export const MONITOR = rightBit("monitor")
export const SPAWN = rightBit("spawn")
export const KILL = rightBit("kill")
export const OPEN = rightBit("open")
export const READ = rightBit("read")
export const WRITE = rightBit("write")
export const allMeters: ReadonlyArray<Accounts.Meter> = ["tokens", "toolCalls", "usd"]
export const CHILD_RIGHTS = SEND | MONITOR | KILL
export const SELF_RIGHTS = SEND | MONITOR

export const noCaps: ReadonlyArray<CapRef> = Object.freeze([])

/**
 * Counters for `metrics`.
 */
export interface Counters {
  spawned: number
  /** Process fibers still running (a killed process's fiber may finish an uninterruptible region after its exit). */
  fibers: number
  exited: number
  messagesSent: number
  messagesDropped: number
  syscalls: number
  denied: number
  exitsByReason: Record<Process.ExitReason["_tag"], number>
}

/** What the syscall implementation and the driver-call path see of the kernel. */
export interface KernelState {
  readonly memory: MemoryOptions
  readonly limits: KernelLimits
  readonly caps: CapabilityTableShape
  readonly events: EventLogShape
  readonly names: NameRegistryShape
  readonly procs: SafeMap<number, Proc>
  readonly counters: Counters
  readonly now: () => number
  readonly spawnChild: <A>(
    parent: Proc,
    image: Process.Image<A>,
    options: SpawnOptions<A> | undefined
  ) => Effect.Effect<Spawned, CapabilityError | Accounts.QuotaError | SpawnError | ArgumentError>
  readonly terminate: (proc: Proc, reason: Process.ExitReason) => void
  /** Sends an exit signal from pid `from` to `to`: an `Exit` message if it traps exits, else its end (not for `Normal`). */
  readonly signal: (from: number, to: Proc, reason: Process.ExitReason, bounded?: boolean) => void
  /** A fresh monitor ref (kernel-wide counter). */
  readonly nextMonitorRef: () => number
  readonly exitOf: (pid: number) => Process.ExitReason | undefined
  readonly armTimer: (proc: Proc) => void
  /** Ends `proc` now if its wall quota or deadline has passed (its timer may not have fired yet); `true` if it did. */
  readonly expire: (proc: Proc) => boolean
  readonly deliver: (to: Proc, body: Process.KernelMessage, caps?: ReadonlyArray<CapRef>, bounded?: boolean) => void
  readonly devices: DeviceTableShape
  readonly journal: JournalShape
  readonly driverPath: DriverPath
}
