/**
 * Queues a process's messages: FIFO, bounded, parking senders when full and receivers when empty.
 *
 * A mailbox has one bound for user messages; kernel messages (`Down`, `Term`) may exceed it, because the kernel never
 * waits on a process. Parked senders are admitted in arrival order as the receiver drains, so nothing is dropped and
 * order is kept. A message whose deadline has passed when it would be delivered is dropped (reported through
 * `onDrop`). Everything here is synchronous; the syscall layer wraps parking in `Effect.callback`.
 *
 * @since 0.1.0
 */
import type { Effect } from "effect"
import { filled, push } from "./internal/primordials.ts"
import type { Message } from "./Process.ts"

/**
 * What a mailbox needs from its process: the kernel clock (for message deadlines) and where to report a message
 * dropped for its deadline.
 */
export interface MailboxOwner {
  readonly now: () => number
  readonly dropped: (message: Message) => void
  /** Hands `message` to a parked receiver (the `resume` of the fiber parked in `recv`). */
  readonly handTo: (receiver: Receiver, message: Message) => void
}

/** A parked receiver, as the `Effect.callback` of `recv` gave it: resumed once with the message it receives. */
export type Receiver = (effect: Effect.Effect<Message>) => void

/**
 * What a selective receive (`Sys.recvMatch`) takes: the oldest message whose `corr` is `corr` (and, with `from`,
 * whose sender is `from`; without `corr`, any message from `from` — `0` for the kernel's), or a kernel `Down` whose
 * `ref` is `ref` — the reply to a call, or the news that the callee died. Data only, checked by the kernel: no process code runs on another process's send.
 */
export interface Match {
  readonly corr?: string | number | undefined
  readonly from?: number | undefined
  readonly ref?: number | undefined
}

const hasOwn = Object.hasOwn

/** Does `message` satisfy `match`? Reads only own fields of the kernel's own message records. */
export const matches = (message: Message, match: Match): boolean => {
  if (match.corr !== undefined) {
    if (message.corr === match.corr && (match.from === undefined || message.from === match.from)) return true
  } else if (match.from !== undefined && message.from === match.from) return true
  if (match.ref === undefined || message.from !== 0) return false
  const body = message.body as Record<string, unknown> | null
  return (
    typeof body === "object" &&
    body !== null &&
    hasOwn(body, "_tag") &&
    body._tag === "Down" &&
    hasOwn(body, "ref") &&
    body.ref === match.ref
  )
}

interface Matcher {
  readonly match: Match
  readonly receiver: Receiver
}

interface ParkedSender {
  readonly message: Message
  readonly admitted: () => void
}

/**
 * A growable ring buffer (a deque without the O(n) `shift`).
 */
class Ring<A> {
  private items: Array<A | undefined>
  private head = 0
  size = 0
  constructor(capacity: number) {
    // own slots from the start: a write never reaches a setter image code put on Array.prototype
    this.items = filled(capacity)
  }
  push(item: A): void {
    if (this.size === this.items.length) this.grow()
    this.items[(this.head + this.size) & (this.items.length - 1)] = item
    this.size++
  }
  shift(): A | undefined {
    if (this.size === 0) return undefined
    const item = this.items[this.head]
    this.items[this.head] = undefined
    this.head = (this.head + 1) & (this.items.length - 1)
    this.size--
    return item
  }
  peek(): A | undefined {
    return this.size === 0 ? undefined : this.items[this.head]
  }
  remove(item: A): boolean {
    const mask = this.items.length - 1
    for (let i = 0; i < this.size; i++) {
      if (this.items[(this.head + i) & mask] === item) {
        for (let j = i; j < this.size - 1; j++) {
          this.items[(this.head + j) & mask] = this.items[(this.head + j + 1) & mask]
        }
        this.items[(this.head + this.size - 1) & mask] = undefined
        this.size--
        return true
      }
    }
    return false
  }
  /** Removes and returns the first item `test` accepts (oldest first), or `undefined`. */
  takeFirst(test: (item: A) => boolean): A | undefined {
    const mask = this.items.length - 1
    for (let i = 0; i < this.size; i++) {
      const item = this.items[(this.head + i) & mask] as A
      if (test(item)) {
        this.remove(item)
        return item
      }
    }
    return undefined
  }
  drain(): Array<A> {
    const out: Array<A> = []
    for (let item = this.shift(); item !== undefined; item = this.shift()) push(out, item)
    return out
  }
  private grow(): void {
    const next = filled<A>(this.items.length * 2)
    for (let i = 0; i < this.size; i++) next[i] = this.items[(this.head + i) & (this.items.length - 1)]
    this.items = next
    this.head = 0
  }
}

/**
 * @category models
 */
export class Mailbox {
  /** Messages waiting to be received. Allocated on first use: an idle process's mailbox costs a few words. */
  private queue: Ring<Message> | undefined
  /** The longest-waiting receiver; later ones queue in `receivers` (rare: a process receiving from several fibers). */
  private receiver: Receiver | undefined
  private receivers: Ring<Receiver> | undefined
  private senders: Ring<ParkedSender> | undefined
  /** Receivers parked in a selective receive, each with what it waits for (checked before plain receivers). */
  private matchers: Ring<Matcher> | undefined
  private closed = false
  /** Kernel messages (from 0) queued: bounded by the kernel with a bound of their own (see `pushKernel`). */
  private kernelQueued = 0
  readonly capacity: number
  private readonly owner: MailboxOwner

  constructor(capacity: number, owner: MailboxOwner) {
    this.capacity = capacity
    this.owner = owner
  }

  /** Messages queued (not counting parked senders). */
  get size(): number {
    return this.queue?.size ?? 0
  }

  /** Senders parked on the bound. */
  get parkedSenders(): number {
    return this.senders?.size ?? 0
  }

  /** Receivers parked waiting for a message. */
  get parkedReceivers(): number {
    return (this.receiver === undefined ? 0 : 1) + (this.receivers?.size ?? 0) + (this.matchers?.size ?? 0)
  }

  private expired(message: Message): boolean {
    return message.deadline !== undefined && message.deadline <= this.owner.now()
  }

  /** Hands the message to a parked receiver if there is one (a selective one that waits for it first). */
  private handOff(message: Message): boolean {
    const matchers = this.matchers
    if (matchers !== undefined && matchers.size > 0) {
      const matcher = matchers.takeFirst((m) => matches(message, m.match))
      if (matcher !== undefined) {
        if (this.expired(message)) {
          // it was for this receiver: it keeps waiting
          matchers.push(matcher)
          this.owner.dropped(message)
          return true
        }
        this.owner.handTo(matcher.receiver, message)
        return true
      }
    }
    const receiver = this.receiver
    if (receiver === undefined) return false
    if (this.expired(message)) {
      this.owner.dropped(message)
      return true
    }
    this.receiver = this.receivers?.shift()
    this.owner.handTo(receiver, message)
    return true
  }

  /**
   * Offers a user message. Returns `true` when it was accepted (queued, handed to a receiver, or dropped for its
   * deadline), `false` when the mailbox is full and the sender must park with `parkSender`.
   */
  offer(message: Message): boolean {
    if (this.closed) return true
    if (this.handOff(message)) return true
    const queue = (this.queue ??= new Ring(8))
    if (queue.size >= this.capacity || (this.senders !== undefined && this.senders.size > 0)) return false
    queue.push(message)
    return true
  }

  /** Queues a message regardless of the bound (restored messages, kernel messages that must arrive). */
  push(message: Message): void {
    if (this.closed) return
    if (this.handOff(message)) return
    if (message.from === 0) this.kernelQueued++
    ;(this.queue ??= new Ring(8)).push(message)
  }

  /**
   * Queues a kernel message that may be dropped (a `Term`): refused (`false`) once `capacity` kernel messages wait,
   * so signals cannot flood a mailbox past a bound of their own.
   */
  pushBounded(message: Message): boolean {
    if (this.closed) return true
    if (this.receiver === undefined && this.kernelQueued >= this.capacity) return false
    this.push(message)
    return true
  }

  /** Parks a sender until its message is admitted; returns the cancel function. */
  parkSender(message: Message, admitted: () => void): () => void {
    const parked: ParkedSender = { message, admitted }
    ;(this.senders ??= new Ring(4)).push(parked)
    return () => {
      this.senders?.remove(parked)
    }
  }

  /** Takes the next deliverable message, or `undefined`. */
  poll(): Message | undefined {
    const queue = this.queue
    while (queue !== undefined && queue.size > 0) {
      const message = queue.shift()!
      if (message.from === 0) this.kernelQueued--
      this.admitSenders()
      if (this.expired(message)) {
        this.owner.dropped(message)
        continue
      }
      return message
    }
    return undefined
  }

  /**
   * Admits parked senders once the queue has drained to half its bound (not at every free slot): each woken sender
   * then has room for a run of messages instead of parking again after one, which keeps fan-in from paying a park and
   * a wake-up per message.
   */
  private admitSenders(): void {
    const senders = this.senders
    if (senders === undefined || senders.size === 0) return
    const queue = (this.queue ??= new Ring(8))
    if (queue.size > this.capacity >> 1) return
    while (senders.size > 0 && queue.size < this.capacity) {
      const parked = senders.shift()!
      queue.push(parked.message)
      parked.admitted()
    }
  }

  /** Takes the oldest deliverable message `match` accepts, or `undefined` (the others stay, in order). */
  pollMatch(match: Match): Message | undefined {
    const queue = this.queue
    while (queue !== undefined && queue.size > 0) {
      const message = queue.takeFirst((m) => matches(m, match))
      if (message === undefined) return undefined
      if (message.from === 0) this.kernelQueued--
      this.admitSenders()
      if (this.expired(message)) {
        this.owner.dropped(message)
        continue
      }
      return message
    }
    return undefined
  }

  /** Parks a selective receiver until a message `match` accepts arrives. */
  parkMatcher(match: Match, receiver: Receiver): void {
    ;(this.matchers ??= new Ring(2)).push({ match, receiver })
  }

  /** Removes a parked selective receiver that gave up. */
  cancelMatcher(receiver: Receiver): void {
    this.matchers?.takeFirst((m) => m.receiver === receiver)
  }

  /** Parks a receiver; returns the cancel function. */
  parkReceiver(receiver: Receiver): void {
    if (this.receiver === undefined) this.receiver = receiver
    else (this.receivers ??= new Ring(2)).push(receiver)
  }

  /** Removes a parked receiver that gave up (its fiber was interrupted). */
  cancelReceiver(receiver: Receiver): void {
    if (this.receiver === receiver) this.receiver = this.receivers?.shift()
    else this.receivers?.remove(receiver)
  }

  /**
   * Closes the mailbox (its process ended): releases parked senders (their messages are dropped) and returns every
   * undelivered message, so the kernel can revoke the caps they carried.
   */
  close(): Array<Message> {
    if (this.closed) return []
    this.closed = true
    this.kernelQueued = 0
    const dropped = this.queue?.drain() ?? []
    if (this.senders !== undefined) {
      const parkedSenders = this.senders.drain()
      for (let i = 0; i < parkedSenders.length; i++) {
        const parked = parkedSenders[i]!
        push(dropped, parked.message)
        parked.admitted()
      }
    }
    this.receiver = undefined
    this.receivers = undefined
    this.matchers = undefined
    return dropped
  }

  /** The queued messages, oldest first, without taking them (for `ps` and snapshots). */
  peekAll(): ReadonlyArray<Message> {
    const out: Array<Message> = []
    const queue = this.queue
    if (queue === undefined) return out
    const items = queue.drain()
    for (let i = 0; i < items.length; i++) {
      queue.push(items[i]!)
      push(out, items[i]!)
    }
    return out
  }
}
