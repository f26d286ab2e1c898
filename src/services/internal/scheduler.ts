/**
 * Runs process fibers from one shared run queue, drained on the microtask queue, with a macrotask turn every N
 * batches so sockets and timers are never starved.
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
  private scheduled = false
  private batches = 0
  private readonly batchesPerMacrotask: number

  constructor(batchesPerMacrotask: number) {
    this.batchesPerMacrotask = batchesPerMacrotask
  }

  scheduleTask(task: () => void, _priority: number): void {
    this.tasks.push(task)
    if (!this.scheduled) {
      this.scheduled = true
      if (++this.batches >= this.batchesPerMacrotask) {
        this.batches = 0
        setImmediate(this.run)
      } else {
        queueMicrotask(this.run)
      }
    }
  }

  private readonly run = (): void => {
    this.scheduled = false
    const tasks = this.tasks
    this.tasks = []
    for (let i = 0; i < tasks.length; i++) tasks[i]!()
  }

  flush(): void {
    while (this.tasks.length > 0) this.run()
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
}
