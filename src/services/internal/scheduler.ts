/**
 * Runs process fibers from one shared run queue, drained batch after batch in one microtask, with a macrotask turn
 * every N batches so sockets and timers are never starved.
 *
 * Effect's default scheduler gives each fiber its own dispatcher and drains it with `setImmediate`, which costs a
 * macrotask per wake-up; a kernel full of processes handing messages to each other wakes fibers constantly. Sharing
 * one dispatcher batches every wake-up of a turn together, and draining on microtasks makes a wake-up cost a
 * function call. The periodic macrotask keeps the event loop fair.
 */
import type * as Fiber from "effect/Fiber"
import type { Scheduler, SchedulerDispatcher } from "effect/Scheduler"

class KernelDispatcher implements SchedulerDispatcher {
  private tasks: Array<() => void> = []
  /** A drain is queued (as a microtask or a macrotask) or running. */
  private pending = false
  private batches = 0
  private readonly batchesPerMacrotask: number
  /** Batches run so far: a fiber that sees the same number before and after some work did not yield meanwhile. */
  turns = 0
  /** Called each time the run queue drains. */
  onIdle: (() => void) | undefined = undefined

  constructor(batchesPerMacrotask: number) {
    this.batchesPerMacrotask = batchesPerMacrotask
  }

  get idle(): boolean {
    return !this.pending && this.tasks.length === 0
  }

  scheduleTask(task: () => void, _priority: number): void {
    this.tasks.push(task)
    if (!this.pending) {
      this.pending = true
      queueMicrotask(this.run)
    }
  }

  /**
   * Drains the run queue, batch after batch (tasks scheduled while a batch runs form the next one), in one microtask;
   * after `batchesPerMacrotask` batches it lets the event loop turn before going on.
   */
  private readonly run = (): void => {
    while (this.tasks.length > 0) {
      if (++this.batches > this.batchesPerMacrotask) {
        this.batches = 0
        setImmediate(this.run)
        return
      }
      const tasks = this.tasks
      this.tasks = []
      this.turns++
      for (let i = 0; i < tasks.length; i++) tasks[i]!()
    }
    this.pending = false
    this.onIdle?.()
  }

  flush(): void {
    while (this.tasks.length > 0) {
      const tasks = this.tasks
      this.tasks = []
      for (let i = 0; i < tasks.length; i++) tasks[i]!()
    }
  }
}

/** The kernel's scheduler; one per kernel. */
export class KernelScheduler implements Scheduler {
  readonly executionMode = "async" as const
  private readonly dispatcher: KernelDispatcher
  private readonly opsBeforeYield: number

  constructor(batchesPerMacrotask: number, opsBeforeYield = 2048) {
    this.dispatcher = new KernelDispatcher(batchesPerMacrotask)
    this.opsBeforeYield = opsBeforeYield
  }

  shouldYield(fiber: Fiber.Fiber<unknown, unknown>): boolean {
    return (fiber as unknown as { readonly currentOpCount: number }).currentOpCount >= this.opsBeforeYield
  }

  makeDispatcher(): SchedulerDispatcher {
    return this.dispatcher
  }

  /** No task is queued or running. */
  get idle(): boolean {
    return this.dispatcher.idle
  }

  /** Batches run so far (see `KernelDispatcher.turns`). */
  get turns(): number {
    return this.dispatcher.turns
  }

  /** Runs `f` each time the run queue drains. */
  onIdle(f: () => void): void {
    this.dispatcher.onIdle = f
  }
}
