import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type { Process } from "effect-agent-os"
// the mailbox is kernel-internal: unit-tested by its source path, not exported from the package
import * as MailboxModule from "../../src/services/Mailbox.ts"

const { Mailbox } = MailboxModule
type Mailbox = MailboxModule.Mailbox

const msg = (body: string, deadline?: number): Process.Message =>
  deadline === undefined ? { from: 1, body, caps: [] } : { from: 1, body, caps: [], deadline }

const bodies = (messages: ReadonlyArray<Process.Message>) => messages.map((m) => m.body)

/** A mailbox over a settable clock, recording dropped messages and hand-offs. */
const setup = (capacity: number) => {
  const state = { now: 0, dropped: [] as Array<Process.Message>, handed: 0 }
  const mailbox = new Mailbox(capacity, {
    now: () => state.now,
    dropped: (m) => {
      state.dropped.push(m)
    },
    handTo: (receiver, m) => {
      state.handed++
      receiver(Effect.succeed(m))
    }
  })
  return { mailbox, state }
}

/** A receiver recording what it got. */
const receiver = () => {
  const got: Array<Process.Message> = []
  const receive = (effect: Effect.Effect<Process.Message>) => {
    got.push(Effect.runSync(effect))
  }
  return { got, receive }
}

const drain = (mailbox: Mailbox) => {
  const out: Array<Process.Message> = []
  for (let m = mailbox.poll(); m !== undefined; m = mailbox.poll()) out.push(m)
  return out
}

describe("Mailbox: queueing", () => {
  it("delivers in FIFO order, then nothing", () => {
    const { mailbox } = setup(8)
    assert.isUndefined(mailbox.poll())
    for (const body of ["a", "b", "c"]) assert.isTrue(mailbox.offer(msg(body)))
    assert.strictEqual(mailbox.size, 3)
    assert.deepStrictEqual(bodies(mailbox.peekAll()), ["a", "b", "c"])
    assert.strictEqual(mailbox.size, 3)
    assert.strictEqual(mailbox.poll()!.body, "a")
    assert.isTrue(mailbox.offer(msg("d")))
    assert.deepStrictEqual(bodies(drain(mailbox)), ["b", "c", "d"])
    assert.strictEqual(mailbox.size, 0)
  })

  it("keeps FIFO order past the initial ring size, with interleaved polls", () => {
    const { mailbox } = setup(100)
    const expected: Array<string> = []
    const got: Array<unknown> = []
    for (let i = 0; i < 40; i++) {
      assert.isTrue(mailbox.offer(msg(String(i))))
      expected.push(String(i))
      if (i % 3 === 0) got.push(mailbox.poll()!.body)
    }
    got.push(...bodies(drain(mailbox)))
    assert.deepStrictEqual(got, expected)
  })

  it("offer returns false at capacity", () => {
    const { mailbox } = setup(2)
    assert.isTrue(mailbox.offer(msg("a")))
    assert.isTrue(mailbox.offer(msg("b")))
    assert.isFalse(mailbox.offer(msg("c")))
    assert.strictEqual(mailbox.size, 2)
    assert.deepStrictEqual(bodies(drain(mailbox)), ["a", "b"])
  })

  it("offer returns false while senders are parked, even with room in the queue", () => {
    const { mailbox } = setup(3)
    assert.isTrue(mailbox.offer(msg("a")))
    const admitted: Array<string> = []
    mailbox.parkSender(msg("x"), () => admitted.push("x"))
    assert.strictEqual(mailbox.size, 1)
    assert.isFalse(mailbox.offer(msg("y")))
    mailbox.parkSender(msg("y"), () => admitted.push("y"))
    assert.strictEqual(mailbox.parkedSenders, 2)
    assert.strictEqual(mailbox.poll()!.body, "a")
    assert.deepStrictEqual(admitted, ["x", "y"])
    assert.strictEqual(mailbox.parkedSenders, 0)
    assert.isTrue(mailbox.offer(msg("z")))
    assert.deepStrictEqual(bodies(drain(mailbox)), ["x", "y", "z"])
  })

  it("parked senders are admitted in order as poll drains", () => {
    const { mailbox } = setup(2)
    const admitted: Array<string> = []
    for (const body of ["a", "b", "c", "d", "e"]) {
      if (!mailbox.offer(msg(body))) mailbox.parkSender(msg(body), () => admitted.push(body))
    }
    assert.strictEqual(mailbox.size, 2)
    assert.strictEqual(mailbox.parkedSenders, 3)
    assert.isFalse(mailbox.offer(msg("f")))
    assert.strictEqual(mailbox.poll()!.body, "a")
    assert.deepStrictEqual(admitted, ["c"])
    assert.strictEqual(mailbox.size, 2)
    assert.strictEqual(mailbox.parkedSenders, 2)
    assert.strictEqual(mailbox.poll()!.body, "b")
    assert.deepStrictEqual(admitted, ["c", "d"])
    assert.deepStrictEqual(bodies(drain(mailbox)), ["c", "d", "e"])
    assert.deepStrictEqual(admitted, ["c", "d", "e"])
    assert.strictEqual(mailbox.parkedSenders, 0)
  })

  it("parked senders are admitted once the queue has drained to half its bound, up to the bound", () => {
    const { mailbox } = setup(4)
    const admitted: Array<string> = []
    for (const body of ["a", "b", "c", "d", "e", "f", "g"]) {
      if (!mailbox.offer(msg(body))) mailbox.parkSender(msg(body), () => admitted.push(body))
    }
    assert.deepStrictEqual([mailbox.size, mailbox.parkedSenders], [4, 3])
    assert.strictEqual(mailbox.poll()!.body, "a")
    assert.deepStrictEqual(admitted, [])
    assert.deepStrictEqual([mailbox.size, mailbox.parkedSenders], [3, 3])
    assert.strictEqual(mailbox.poll()!.body, "b")
    assert.deepStrictEqual(admitted, ["e", "f"])
    assert.deepStrictEqual([mailbox.size, mailbox.parkedSenders], [4, 1])
    assert.strictEqual(mailbox.poll()!.body, "c")
    assert.deepStrictEqual(admitted, ["e", "f"])
    assert.strictEqual(mailbox.poll()!.body, "d")
    assert.deepStrictEqual(admitted, ["e", "f", "g"])
    assert.deepStrictEqual(bodies(drain(mailbox)), ["e", "f", "g"])
    assert.deepStrictEqual([mailbox.size, mailbox.parkedSenders], [0, 0])
  })

  it("a cancelled parked sender is never admitted; the others keep their order", () => {
    const { mailbox } = setup(1)
    mailbox.offer(msg("a"))
    const admitted: Array<string> = []
    const cancels = ["b", "c", "d"].map((body) => mailbox.parkSender(msg(body), () => admitted.push(body)))
    cancels[1]!()
    assert.strictEqual(mailbox.parkedSenders, 2)
    assert.deepStrictEqual(bodies(drain(mailbox)), ["a", "b", "d"])
    assert.deepStrictEqual(admitted, ["b", "d"])
  })

  it("push ignores the bound and parked senders", () => {
    const { mailbox } = setup(1)
    assert.isTrue(mailbox.offer(msg("a")))
    mailbox.parkSender(msg("s"), () => {})
    mailbox.push(msg("k1"))
    mailbox.push(msg("k2"))
    assert.strictEqual(mailbox.size, 3)
    assert.isFalse(mailbox.offer(msg("b")))
    assert.deepStrictEqual(bodies(drain(mailbox)), ["a", "k1", "k2", "s"])
  })
})

describe("Mailbox: deadlines", () => {
  it("an expired message is dropped at poll and reported; a message is expired exactly at its deadline", () => {
    const { mailbox, state } = setup(8)
    const late = msg("late", 10)
    mailbox.offer(msg("a"))
    mailbox.offer(late)
    mailbox.offer(msg("onTime", 11))
    mailbox.offer(msg("b"))
    state.now = 10
    assert.strictEqual(mailbox.poll()!.body, "a")
    assert.deepStrictEqual(state.dropped, [])
    assert.strictEqual(mailbox.poll()!.body, "onTime")
    assert.deepStrictEqual(state.dropped, [late])
    assert.strictEqual(mailbox.poll()!.body, "b")
    assert.isUndefined(mailbox.poll())
  })

  it("a queue of expired messages polls as empty, and dropping admits parked senders", () => {
    const { mailbox, state } = setup(1)
    mailbox.offer(msg("old", 5))
    const admitted: Array<string> = []
    mailbox.parkSender(msg("fresh"), () => admitted.push("fresh"))
    state.now = 5
    assert.strictEqual(mailbox.poll()!.body, "fresh")
    assert.deepStrictEqual(bodies(state.dropped), ["old"])
    assert.deepStrictEqual(admitted, ["fresh"])
    mailbox.offer(msg("gone", 6))
    state.now = 7
    assert.isUndefined(mailbox.poll())
    assert.deepStrictEqual(bodies(state.dropped), ["old", "gone"])
  })

  it("an expired message is dropped at hand-off and the receiver stays parked", () => {
    const { mailbox, state } = setup(8)
    const r = receiver()
    mailbox.parkReceiver(r.receive)
    state.now = 20
    const expired = msg("expired", 20)
    assert.isTrue(mailbox.offer(expired))
    assert.deepStrictEqual(state.dropped, [expired])
    assert.deepStrictEqual(r.got, [])
    assert.strictEqual(mailbox.parkedReceivers, 1)
    mailbox.push(msg("kernel", 19))
    assert.deepStrictEqual(bodies(state.dropped), ["expired", "kernel"])
    assert.isTrue(mailbox.offer(msg("fresh", 21)))
    assert.deepStrictEqual(bodies(r.got), ["fresh"])
    assert.strictEqual(mailbox.parkedReceivers, 0)
    assert.strictEqual(mailbox.size, 0)
  })
})

describe("Mailbox: receivers", () => {
  it("a parked receiver gets the next message directly, not through the queue", () => {
    const { mailbox, state } = setup(1)
    const r = receiver()
    mailbox.parkReceiver(r.receive)
    assert.strictEqual(mailbox.parkedReceivers, 1)
    assert.isTrue(mailbox.offer(msg("a")))
    assert.deepStrictEqual(bodies(r.got), ["a"])
    assert.strictEqual(state.handed, 1)
    assert.strictEqual(mailbox.size, 0)
    assert.strictEqual(mailbox.parkedReceivers, 0)
    assert.isTrue(mailbox.offer(msg("b")))
    assert.deepStrictEqual(bodies(r.got), ["a"])
    assert.strictEqual(mailbox.size, 1)
  })

  it("push hands a kernel message to a parked receiver", () => {
    const { mailbox } = setup(1)
    const r = receiver()
    mailbox.parkReceiver(r.receive)
    mailbox.push(msg("down"))
    assert.deepStrictEqual(bodies(r.got), ["down"])
    assert.strictEqual(mailbox.size, 0)
  })

  it("with two receivers the oldest gets the first message", () => {
    const { mailbox } = setup(4)
    const first = receiver()
    const second = receiver()
    const third = receiver()
    mailbox.parkReceiver(first.receive)
    mailbox.parkReceiver(second.receive)
    mailbox.parkReceiver(third.receive)
    assert.strictEqual(mailbox.parkedReceivers, 3)
    mailbox.offer(msg("a"))
    mailbox.offer(msg("b"))
    mailbox.offer(msg("c"))
    mailbox.offer(msg("d"))
    assert.deepStrictEqual([first.got, second.got, third.got].map(bodies), [["a"], ["b"], ["c"]])
    assert.strictEqual(mailbox.parkedReceivers, 0)
    assert.deepStrictEqual(bodies(mailbox.peekAll()), ["d"])
  })

  it("a cancelled receiver never gets a message (the oldest, or a later one)", () => {
    const { mailbox } = setup(4)
    const first = receiver()
    const second = receiver()
    const third = receiver()
    mailbox.parkReceiver(first.receive)
    mailbox.parkReceiver(second.receive)
    mailbox.parkReceiver(third.receive)
    mailbox.cancelReceiver(first.receive)
    assert.strictEqual(mailbox.parkedReceivers, 2)
    mailbox.offer(msg("a"))
    assert.deepStrictEqual([first.got, second.got, third.got].map(bodies), [[], ["a"], []])
    mailbox.cancelReceiver(third.receive)
    assert.strictEqual(mailbox.parkedReceivers, 0)
    mailbox.offer(msg("b"))
    assert.deepStrictEqual([first.got, second.got, third.got].map(bodies), [[], ["a"], []])
    assert.deepStrictEqual(bodies(mailbox.peekAll()), ["b"])
  })

  it("cancelling the only receiver leaves messages queued", () => {
    const { mailbox, state } = setup(4)
    const r = receiver()
    mailbox.parkReceiver(r.receive)
    mailbox.cancelReceiver(r.receive)
    mailbox.cancelReceiver(r.receive)
    assert.strictEqual(mailbox.parkedReceivers, 0)
    mailbox.offer(msg("a"))
    assert.deepStrictEqual(r.got, [])
    assert.strictEqual(state.handed, 0)
    assert.strictEqual(mailbox.poll()!.body, "a")
  })
})

describe("Mailbox: close", () => {
  it("returns queued then parked messages, releases parked senders, and ignores later offers", () => {
    const { mailbox } = setup(2)
    const admitted: Array<string> = []
    for (const body of ["a", "b", "c", "d"]) {
      if (!mailbox.offer(msg(body))) mailbox.parkSender(msg(body), () => admitted.push(body))
    }
    mailbox.push(msg("k"))
    assert.deepStrictEqual(bodies(mailbox.close()), ["a", "b", "k", "c", "d"])
    assert.deepStrictEqual(admitted, ["c", "d"])
    assert.strictEqual(mailbox.size, 0)
    assert.strictEqual(mailbox.parkedSenders, 0)
    assert.isTrue(mailbox.offer(msg("late")))
    mailbox.push(msg("late kernel"))
    assert.strictEqual(mailbox.size, 0)
    assert.isUndefined(mailbox.poll())
    assert.deepStrictEqual(mailbox.close(), [])
  })

  it("forgets parked receivers: a message offered after close reaches nobody", () => {
    const { mailbox, state } = setup(2)
    const r = receiver()
    mailbox.parkReceiver(r.receive)
    assert.deepStrictEqual(mailbox.close(), [])
    assert.strictEqual(mailbox.parkedReceivers, 0)
    assert.isTrue(mailbox.offer(msg("after")))
    mailbox.push(msg("after kernel"))
    assert.deepStrictEqual(r.got, [])
    assert.strictEqual(state.handed, 0)
    assert.deepStrictEqual(state.dropped, [])
  })
})
