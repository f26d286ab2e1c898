/**
 * Starts processes: validates a spawn, carves the child's account from its parent's, builds its record and forks its
 * fiber with a context of its own. Boot (a root process) and restore take the same path.
 *
 * Private to the package.
 */
import { Context, Effect } from "effect"
import * as Accounts from "../Accounts.ts"
import { type CapRef, CapabilityError, type Resource } from "../Capability.ts"
import type { Memory } from "../ContextMemory.ts"
import * as Process from "../Process.ts"
import { type Snapshot, SnapshotError } from "../Snapshot.ts"
import { ArgumentError, type Spawned, SpawnError, type SpawnOptions, Sys } from "../Sys.ts"
import type { CapRecord } from "./capRef.ts"
import * as Inputs from "./inputs.ts"
import { makeRates, type PolicySet } from "../Policy.ts"
import { freeze, includes, map, push, SafeSet } from "./primordials.ts"
import { CHILD_RIGHTS, type KernelState, noCaps, OPEN, SPAWN } from "./kernelState.ts"
import { Proc } from "./proc.ts"
import { newMemory, processTokenKey } from "./syscalls.ts"

/**
 * The state a restored process starts with (from a `Snapshot`).
 *
 * @category models
 */
export interface Restored {
  readonly priority: number
  readonly deadlineInMs: number | undefined
  readonly memory: Snapshot["memory"]
  readonly mailbox: Snapshot["mailbox"]
}

/** What starting processes needs of the process table. */
export interface SpawnDeps {
  readonly kernel: KernelState
  /** The context every process fiber starts from (see `processContext.ts`). */
  readonly processBase: Context.Context<never>
  readonly nextPid: () => number
  /** Called with every process fiber once it ends. */
  readonly onFiberExit: (proc: Proc, exit: import("effect").Exit.Exit<void, unknown>) => void
}

export interface Spawner {
  readonly spawnChild: <A>(
    parent: Proc,
    image: Process.Image<A>,
    options: SpawnOptions<A> | undefined
  ) => Effect.Effect<Spawned, CapabilityError | Accounts.QuotaError | SpawnError | ArgumentError>
  readonly boot: <A>(
    image: Process.Image<A>,
    args: (grant: { readonly spawn: CapRef; readonly devices: Record<string, CapRef> }) => A,
    devices: ReadonlyArray<string>,
    quota: Accounts.Quota | undefined,
    restored?: Restored | undefined,
    /** Read once and checked here: a `Policy` set or a list of them. */
    policies?: unknown
  ) => Effect.Effect<number, Accounts.QuotaError | SpawnError | ArgumentError | SnapshotError>
}

/** A child's policy chain: its parent's, then the sets given (at most `Inputs.policyChainMax` in all). */
const chainOf = (
  parent: ReadonlyArray<PolicySet> | undefined,
  given: ReadonlyArray<PolicySet> | undefined
): ReadonlyArray<PolicySet> | undefined | ArgumentError => {
  if (given === undefined) return parent
  if (parent === undefined) return given
  if (parent.length + given.length > Inputs.policyChainMax) {
    return new ArgumentError({ call: "spawn", message: `a policy chain holds at most ${Inputs.policyChainMax} sets` })
  }
  const chain: Array<PolicySet> = []
  for (let i = 0; i < parent.length; i++) push(chain, parent[i]!)
  for (let i = 0; i < given.length; i++) push(chain, given[i]!)
  return freeze(chain)
}

export const makeSpawner = (deps: SpawnDeps): Spawner => {
  const { kernel, processBase } = deps
  const { caps, events, limits, counters, procs } = kernel

  const start = <A>(proc: Proc, image: Process.Image<A>, args: A) => {
    counters.spawned++
    kernel.armTimer(proc)
    const main = Effect.suspend(() => image.main(args))
    const context = Context.add(processBase, Sys, proc.sys).pipe(Context.add(tokenTag, proc.token))
    const fiber = Effect.runForkWith(context)(main)
    proc.fiber = fiber
    counters.fibers++
    fiber.addObserver((exit) => {
      counters.fibers--
      deps.onFiberExit(proc, exit)
    })
    // it may have been ended while it ran synchronously, before its fiber was known
    if (proc.exitReason !== undefined && fiber.pollUnsafe() === undefined) fiber.interruptUnsafe()
  }

  const deny = <E extends { readonly _tag: string; readonly message: string }>(pid: number, error: E) => {
    counters.denied++
    events.emit({
      _tag: "Denied",
      pid,
      call: "spawn",
      error: error._tag,
      reason: String((error as { reason?: unknown }).reason ?? error.message)
    })
    return Effect.fail(error)
  }

  /** The live spawn cap the caller holds (the last one used first), or why it has none. */
  const spawnCapOf = (parent: Proc, at: number): CapRecord | CapabilityError => {
    const cached = parent.spawnCap
    if (cached !== undefined && !cached.revoked && cached.owner === parent.pid && cached.expiresAt > at) return cached
    let reason: "not-held" | "missing-right" | "expired" = "not-held"
    const heldCaps = caps.held(parent.pid)
    for (let i = 0; i < heldCaps.length; i++) {
      const held = heldCaps[i]!
      if (held.resource._tag !== "Spawn") continue
      if ((held.rights & SPAWN) === 0) reason = reason === "expired" ? reason : "missing-right"
      else if (held.expiresAt <= at) reason = "expired"
      else {
        parent.spawnCap = held
        return held
      }
    }
    return new CapabilityError({ call: "spawn", reason, right: "spawn" })
  }

  const spawnChild = <A>(
    parent: Proc,
    image: Process.Image<A>,
    options: SpawnOptions<A> | undefined
  ): Effect.Effect<Spawned, CapabilityError | Accounts.QuotaError | SpawnError | ArgumentError> => {
    const at = kernel.now()
    // copy and validate
    const input = Inputs.read("spawn", () =>
      Inputs.spawnOptionsOf(options, limits.capsPerMessageMax, limits.priorityMin, parent.priorityCeiling)
    )
    if (input instanceof ArgumentError) return deny(parent.pid, input)
    const checked = Inputs.read("spawn", () => {
      if (typeof image !== "object" || image === null)
        return new Inputs.Unreadable("not a process image (use Process.make)")
      const tag = image._tag
      const main = image.main
      const name = image.name
      if (tag !== "Image" || typeof main !== "function") {
        return new Inputs.Unreadable("not a process image (use Process.make)")
      }
      // a name is bounded like a registered one: it goes into `ps` and every trace
      const text = typeof name === "string" ? name : String(name)
      return { main, name: text.length > limits.nameLengthMax ? text.slice(0, limits.nameLengthMax) : text }
    })
    if (checked instanceof ArgumentError) return deny(parent.pid, checked)
    // capabilities
    const spawnCap = spawnCapOf(parent, at)
    if (spawnCap instanceof CapabilityError) return deny(parent.pid, spawnCap)
    // kernel-wide and per-parent bounds
    if (parent.account.children >= parent.account.childrenMax) {
      return deny(parent.pid, new SpawnError({ reason: "children", limit: parent.account.childrenMax }))
    }
    if (procs.size >= limits.processesMax) {
      return deny(parent.pid, new SpawnError({ reason: "processes", limit: limits.processesMax }))
    }
    if (parent.depth + 1 > limits.spawnDepthMax) {
      return deny(parent.pid, new SpawnError({ reason: "depth", limit: limits.spawnDepthMax }))
    }
    let moved: ReadonlyArray<CapRecord> = []
    if (input.caps !== undefined) {
      const records: Array<CapRecord> = []
      for (let i = 0; i < input.caps.length; i++) {
        const record = caps.check("spawn", parent.pid, input.caps[i], 0, kernel.now)
        if (record instanceof CapabilityError) return deny(parent.pid, record)
        if (includes(records, record)) {
          return deny(parent.pid, new ArgumentError({ call: "spawn", message: `${record.ref} given twice` }))
        }
        push(records, record)
      }
      moved = records
    }
    if (!caps.room(parent.pid, 1)) return deny(parent.pid, new CapabilityError({ call: "spawn", reason: "limit" }))
    // policies only tighten down the tree: the parent's chain, then the sets given
    const policies = chainOf(parent.policies, input.policies)
    if (policies instanceof ArgumentError) return deny(parent.pid, policies)
    // carve the child's account from what the parent has left
    const account = Accounts.carve(parent.account, input.quota, at, limits.mailboxMessagesMax)
    if (account instanceof Accounts.QuotaError) return deny(parent.pid, account)
    const ceiling = input.priorityMax ?? parent.priorityCeiling
    const priority = input.priority ?? Math.min(parent.priority, ceiling)
    const pid = deps.nextPid()
    const child = new Proc(
      kernel,
      pid,
      checked.name,
      parent,
      account,
      moved.length === 0 ? noCaps : freeze(map(moved, (cap) => cap.ref)),
      at,
      priority,
      ceiling,
      input.deadlineMs === undefined ? undefined : at + input.deadlineMs
    )
    child.policies = policies
    // `rate` rules count the calls of the whole tree: a child shares its parent's memory of them (else spawning
    // children would multiply a rate)
    if (policies !== undefined) {
      if (parent.policyRates === undefined) parent.policyRates = makeRates()
      child.policyRates = parent.policyRates
    }
    procs.set(pid, child)
    for (let i = 0; i < moved.length; i++) caps.transfer(moved[i]!, pid)
    parent.account.children++
    ;(parent.children ??= new SafeSet()).add(child)
    const cap = caps.mint(parent.pid, { _tag: "Process", pid }, CHILD_RIGHTS)
    if (input.link) {
      ;(parent.links ??= new SafeSet()).add(child)
      child.links = new SafeSet<Proc>().add(parent)
    }
    counters.syscalls++
    events.spawn(pid, parent.pid, child.name)
    start(
      child,
      { _tag: "Image", name: checked.name, main: checked.main as (args: A) => Effect.Effect<void, unknown, Sys> },
      input.args as A
    )
    return Effect.succeed({ pid, cap: cap.ref })
  }

  const boot: Spawner["boot"] = (image, args, devices, quota, restored, policies) =>
    Effect.suspend((): Effect.Effect<number, Accounts.QuotaError | SpawnError | ArgumentError | SnapshotError> => {
      const at = kernel.now()
      if (typeof image !== "object" || image === null || image._tag !== "Image" || typeof image.main !== "function") {
        return Effect.fail(new ArgumentError({ call: "boot", message: "not a process image (use Process.make)" }))
      }
      if (procs.size >= limits.processesMax) {
        return Effect.fail(new SpawnError({ reason: "processes", limit: limits.processesMax }))
      }
      const copiedQuota = Inputs.read("boot", () => Inputs.quotaOf(quota))
      if (copiedQuota instanceof ArgumentError) return Effect.fail(copiedQuota)
      const account = Accounts.carve(undefined, copiedQuota, at, limits.mailboxMessagesMax)
      if (account instanceof Accounts.QuotaError) return Effect.fail(account)
      const priority = restored?.priority ?? limits.priorityMin
      if (!Number.isInteger(priority) || priority < limits.priorityMin || priority > limits.priorityMax) {
        return Effect.fail(
          new ArgumentError({
            call: "boot",
            message: `priority must be an integer in [${limits.priorityMin}, ${limits.priorityMax}]`
          })
        )
      }
      const policyChain = Inputs.read("boot", () => Inputs.policiesOf(policies))
      if (policyChain instanceof ArgumentError) return Effect.fail(policyChain)
      // a restored memory is taken in like bodies remembered (copied, counted for what they hold) and must fit its
      // quota as a running process's must
      let memory: Memory | undefined
      if (restored !== undefined && (restored.memory.working.length > 0 || restored.memory.swap.length > 0)) {
        memory = newMemory(kernel)
        if (!memory.import(restored.memory.working, restored.memory.swap)) {
          return Effect.fail(
            new SnapshotError({ reason: "invalid", message: "a memory segment of the snapshot cannot be restored" })
          )
        }
        const { fits } = memory.fit(
          account.memMax,
          limits.memoryHighWatermark,
          limits.memoryLowWatermark,
          limits.swapTokensMax
        )
        if (!fits) {
          return Effect.fail(
            new SnapshotError({ reason: "invalid", message: "the snapshot's memory does not fit its mem quota" })
          )
        }
      }
      const pid = deps.nextPid()
      const resources: Array<Resource> = [{ _tag: "Spawn" }]
      for (const name of devices) resources.push({ _tag: "Device", name })
      const minted = map(resources, (resource) => caps.mint(pid, resource, resource._tag === "Spawn" ? SPAWN : OPEN))
      const grant = {
        spawn: minted[0]!.ref,
        devices: freeze(Object.fromEntries(devices.map((name, i) => [name, minted[i + 1]!.ref])))
      }
      const proc = new Proc(
        kernel,
        pid,
        String(image.name).slice(0, limits.nameLengthMax),
        undefined,
        account,
        freeze(map(minted, (cap) => cap.ref)),
        at,
        priority,
        limits.priorityMax,
        restored?.deadlineInMs === undefined ? undefined : at + restored.deadlineInMs
      )
      proc.policies = policyChain
      procs.set(pid, proc)
      proc.spawnCap = minted[0]
      if (restored !== undefined) {
        if (memory !== undefined) proc.memory = memory
        for (const m of restored.mailbox) {
          proc.mailbox.push({
            from: m.from,
            body: m.body,
            caps: noCaps,
            corr: m.corr,
            deadline: m.deadlineInMs === undefined ? undefined : at + m.deadlineInMs
          })
        }
      }
      events.spawn(pid, 0, proc.name)
      start(proc, image, args(grant))
      return Effect.succeed(pid)
    })

  return { spawnChild, boot }
}

/** The context tag of a process's token (see `processTokenKey`). */
const tokenTag = Context.Reference<object | undefined>(processTokenKey, { defaultValue: () => undefined })
