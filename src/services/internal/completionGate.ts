/**
 * Hands journaled driver results back to processes one at a time, at quiescent points, in completion order.
 *
 * A live result arrives whenever the outside world answers; what the other processes did meanwhile depends on that
 * timing, and a replay that handed every result back at once would interleave processes differently. So in the
 * journaling modes the kernel numbers completions (`seq`, recorded with the result) and delivers each result only
 * when its run queue is empty, in `seq` order: a recording and its replay then interleave the same way, and their
 * traces match.
 */
export class CompletionGate {
  private readonly waiting = new Map<number, () => void>()
  private nextSeq = 1
  private assigned = 0

  /** A number for a live completion. */
  assign(): number {
    return ++this.assigned
  }

  /** Continues numbering after a replayed prefix (recover mode). */
  seed(last: number): void {
    if (last > this.assigned) this.assigned = last
  }

  enqueue(seq: number, deliver: () => void): void {
    this.waiting.set(seq, deliver)
  }

  /** Results waiting to be delivered. */
  get size(): number {
    return this.waiting.size
  }

  /** The `seq` to be delivered next. */
  get next(): number {
    return this.nextSeq
  }

  /** Whether the next result in order is waiting. */
  get ready(): boolean {
    return this.waiting.has(this.nextSeq)
  }

  /**
   * Delivers the next result in order. With `force`, when the next one is not there (a program that no longer
   * matches its journal), delivers the lowest waiting one instead so the run can go on.
   */
  deliver(force: boolean): boolean {
    let deliver = this.waiting.get(this.nextSeq)
    let seq = this.nextSeq
    if (deliver === undefined) {
      if (!force || this.waiting.size === 0) return false
      seq = Math.min(...this.waiting.keys())
      deliver = this.waiting.get(seq)!
    }
    this.waiting.delete(seq)
    this.nextSeq = seq + 1
    deliver()
    return true
  }
}
