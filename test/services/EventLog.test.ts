import { assert, describe, it } from "@effect/vitest"
// the event ring is kernel-internal: tested here by its source path, not through the package
import type * as EventLog from "../../src/services/EventLog.ts"
import { makeEventRing } from "../../src/services/internal/eventRing.ts"

/** A log over a clock that advances by 10 ms on every read, starting at 1000. */
const makeLog = (ringMax: number) => {
  let clock = 990
  let reads = 0
  const log = makeEventRing(ringMax, () => {
    reads++
    return (clock += 10)
  })
  return { log, reads: () => reads }
}

const logEvent = (pid: number, message: string): EventLog.EventInput => ({
  _tag: "Log",
  pid,
  level: "info",
  message
})

const seqs = (events: ReadonlyArray<EventLog.KernelEvent>) => events.map((e) => e.seq)

describe("EventLog", () => {
  it("starts empty: lastSeq 0, no trace, zero counts", () => {
    const { log } = makeLog(4)
    assert.strictEqual(log.lastSeq(), 0)
    assert.deepStrictEqual(log.trace(), [])
    assert.deepStrictEqual(log.trace(3), [])
    assert.deepStrictEqual(log.counts(), {
      Spawn: 0,
      Exit: 0,
      Fault: 0,
      Syscall: 0,
      Denied: 0,
      Charge: 0,
      Signal: 0,
      Drop: 0,
      Log: 0,
      Recover: 0,
      Approval: 0,
      Policy: 0
    })
  })

  it("numbers events from 1 and stamps them with now(), one read per event", () => {
    const { log, reads } = makeLog(10)
    log.emit(logEvent(1, "a"))
    log.syscall(2, "send", 3)
    log.spawn(4, 1, "worker")
    log.emit({ _tag: "Charge", pid: 4, tokens: 5, toolCalls: 1, usd: 0.5 })
    assert.strictEqual(reads(), 4)
    assert.strictEqual(log.lastSeq(), 4)
    assert.deepStrictEqual(log.trace(), [
      { _tag: "Log", seq: 1, at: 1000, pid: 1, level: "info", message: "a" },
      { _tag: "Syscall", seq: 2, at: 1010, pid: 2, call: "send", target: 3 },
      { _tag: "Spawn", seq: 3, at: 1020, pid: 4, parent: 1, name: "worker" },
      { _tag: "Charge", seq: 4, at: 1030, pid: 4, tokens: 5, toolCalls: 1, usd: 0.5 }
    ])
    assert.strictEqual(reads(), 4)
  })

  it("a Syscall has no target key for -1, and keeps a target of 0", () => {
    const { log } = makeLog(4)
    log.syscall(7, "recv", -1)
    log.syscall(7, "lookup", 0)
    const [none, zero] = log.trace()
    assert.deepStrictEqual(none, { _tag: "Syscall", seq: 1, at: 1000, pid: 7, call: "recv" })
    assert.isFalse(Object.hasOwn(none!, "target"))
    assert.deepStrictEqual(zero, { _tag: "Syscall", seq: 2, at: 1010, pid: 7, call: "lookup", target: 0 })
  })

  it("the ring keeps only the newest ringMax events, oldest first", () => {
    const { log } = makeLog(3)
    log.emit(logEvent(1, "one"))
    log.syscall(1, "send", 2)
    log.spawn(2, 1, "two")
    log.emit(logEvent(1, "four"))
    log.syscall(3, "recv", -1)
    assert.strictEqual(log.lastSeq(), 5)
    assert.deepStrictEqual(log.trace(), [
      { _tag: "Spawn", seq: 3, at: 1020, pid: 2, parent: 1, name: "two" },
      { _tag: "Log", seq: 4, at: 1030, pid: 1, level: "info", message: "four" },
      { _tag: "Syscall", seq: 5, at: 1040, pid: 3, call: "recv" }
    ])
  })

  it("trace(n) returns the newest n; more than kept gives what is kept; 0 gives none", () => {
    const { log } = makeLog(4)
    for (let i = 0; i < 6; i++) log.syscall(i, "send", i + 100)
    assert.deepStrictEqual(seqs(log.trace(2)), [5, 6])
    assert.deepStrictEqual(seqs(log.trace(1)), [6])
    assert.deepStrictEqual(seqs(log.trace(4)), [3, 4, 5, 6])
    assert.deepStrictEqual(seqs(log.trace(100)), [3, 4, 5, 6])
    assert.deepStrictEqual(log.trace(0), [])
    assert.deepStrictEqual(log.trace(-3), [])
    assert.deepStrictEqual(seqs(log.trace(2.7)), [5, 6])
    const short = makeLog(10).log
    short.spawn(1, 0, "init")
    short.spawn(2, 1, "child")
    assert.deepStrictEqual(seqs(short.trace(5)), [1, 2])
    assert.deepStrictEqual(seqs(short.trace()), [1, 2])
  })

  it("a slot overwritten by another kind of event shows the newer event", () => {
    const { log } = makeLog(2)
    log.emit(logEvent(1, "object"))
    log.spawn(2, 1, "columnar")
    log.syscall(3, "send", 9)
    log.emit(logEvent(4, "object again"))
    log.spawn(5, 4, "spawn over object")
    log.syscall(6, "kill", -1)
    assert.deepStrictEqual(log.trace(), [
      { _tag: "Spawn", seq: 5, at: 1040, pid: 5, parent: 4, name: "spawn over object" },
      { _tag: "Syscall", seq: 6, at: 1050, pid: 6, call: "kill" }
    ])
    log.emit({ _tag: "Exit", pid: 5, reason: { _tag: "Normal" } })
    assert.deepStrictEqual(log.trace(), [
      { _tag: "Syscall", seq: 6, at: 1050, pid: 6, call: "kill" },
      { _tag: "Exit", seq: 7, at: 1060, pid: 5, reason: { _tag: "Normal" } }
    ])
  })

  it("counts() counts every event per tag, past the ring", () => {
    const { log } = makeLog(2)
    for (let i = 0; i < 5; i++) log.syscall(1, "send", 2)
    log.emit({ _tag: "Syscall", pid: 1, call: "derive", target: 3 })
    for (let i = 0; i < 3; i++) log.spawn(i + 2, 1, "w")
    log.emit({ _tag: "Spawn", pid: 9, parent: 1, name: "emitted" })
    log.emit({ _tag: "Drop", pid: 1, reason: "deadline", target: 2 })
    log.emit({ _tag: "Denied", pid: 1, call: "send", error: "CapabilityError", reason: "revoked" })
    log.emit(logEvent(1, "x"))
    log.emit(logEvent(1, "y"))
    assert.deepStrictEqual(log.counts(), {
      Spawn: 4,
      Exit: 0,
      Fault: 0,
      Syscall: 6,
      Denied: 1,
      Charge: 0,
      Signal: 0,
      Drop: 1,
      Log: 2,
      Recover: 0,
      Approval: 0,
      Policy: 0
    })
    assert.strictEqual(log.lastSeq(), 14)
    assert.strictEqual(log.trace().length, 2)
  })

  it("seq is never reused and increases through many wraps", () => {
    const { log } = makeLog(3)
    let last = 0
    for (let i = 1; i <= 50; i++) {
      if (i % 3 === 0) log.emit(logEvent(i, String(i)))
      else if (i % 3 === 1) log.syscall(i, "send", i)
      else log.spawn(i, 0, String(i))
      const trace = log.trace()
      const newest = trace[trace.length - 1]!
      assert.strictEqual(newest.seq, i)
      assert.strictEqual(newest.pid, i)
      assert.isTrue(newest.seq > last)
      last = newest.seq
      assert.deepStrictEqual(
        seqs(trace),
        Array.from({ length: Math.min(i, 3) }, (_, k) => i - Math.min(i, 3) + 1 + k)
      )
    }
    assert.strictEqual(log.lastSeq(), 50)
  })
})
