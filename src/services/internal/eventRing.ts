/**
 * Stores kernel events in a bounded columnar ring (the implementation behind `EventLog`).
 *
 * Private to the package.
 */
import type { EventLogShape, KernelEvent, KernelEventTag } from "../EventLog.ts"
import { filled, push, SafeSet } from "./primordials.ts"

/**
 * Makes a log over a clock function (kernel-clock millis).
 *
 * The ring is columnar: `Syscall`, `Spawn` and `Charge` events, by far the most frequent, are stored in typed arrays
 * and only turned into objects when `trace` reads them; other events are stored as the objects they were emitted as.
 *
 * @category constructors
 */
export const makeEventRing = (ringMax: number, now: () => number): EventLogShape => {
  const at = new Float64Array(ringMax)
  const pids = new Float64Array(ringMax)
  const targets = new Float64Array(ringMax)
  // what a columnar slot holds: the syscall name (Syscall) or the process name (Spawn)
  // own slots from the start: a write never reaches a setter image code put on Array.prototype
  const texts = filled<string>(ringMax)
  // what a columnar slot is: 0 a Syscall, 1 a Spawn, 2 a Charge
  const kinds = new Uint8Array(ringMax)
  // a Charge's meters (its `toolCalls` in `targets`), made at the first one: most kernels never charge
  let tokensColumn: Float64Array | undefined
  let usdColumn: Float64Array | undefined
  const objects = filled<KernelEvent>(ringMax)
  let seq = 0
  const counts: Record<KernelEventTag, number> = {
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
  }
  const listeners = new SafeSet<(event: KernelEvent) => void>()
  // `listeners.size`, kept as a number: the emitters look at it on every event
  let listening = 0
  const publish = () => {
    const event = materialize(seq)
    const all = listeners.toArray()
    for (let i = 0; i < all.length; i++) {
      try {
        all[i]!(event)
      } catch {
        // a listener's failure is its own
      }
    }
  }
  const column = (pid: number, text: string, target: number, kind: 0 | 1) => {
    seq++
    const i = seq % ringMax
    at[i] = now()
    pids[i] = pid
    texts[i] = text
    targets[i] = target
    kinds[i] = kind
    objects[i] = undefined
  }
  const materialize = (s: number): KernelEvent => {
    const i = s % ringMax
    const object = objects[i]
    // stamped on the way out, as a fresh object: the one in the ring is never written to (a write could run a
    // setter image code put on Object.prototype)
    if (object !== undefined) return { ...object, seq: s, at: at[i]! } as KernelEvent
    const target = targets[i]!
    const kind = kinds[i]
    if (kind === 2) {
      // the keys in the order of the object `emit` would have stored (`{ ...event, seq, at }`)
      return {
        _tag: "Charge",
        pid: pids[i]!,
        tokens: tokensColumn![i]!,
        toolCalls: target,
        usd: usdColumn![i]!,
        seq: s,
        at: at[i]!
      }
    }
    if (kind === 1) return { _tag: "Spawn", seq: s, at: at[i]!, pid: pids[i]!, parent: target, name: texts[i]! }
    return target < 0
      ? { _tag: "Syscall", seq: s, at: at[i]!, pid: pids[i]!, call: texts[i]! }
      : { _tag: "Syscall", seq: s, at: at[i]!, pid: pids[i]!, call: texts[i]!, target }
  }
  return {
    emit(event) {
      seq++
      const i = seq % ringMax
      at[i] = now()
      objects[i] = event as KernelEvent
      counts[event._tag]++
      if (listening > 0) publish()
    },
    syscall(pid, call, target) {
      counts.Syscall++
      column(pid, call, target, 0)
      if (listening > 0) publish()
    },
    spawn(pid, parent, name) {
      counts.Spawn++
      column(pid, name, parent, 1)
      if (listening > 0) publish()
    },
    charge(pid, tokens, toolCalls, usd) {
      counts.Charge++
      seq++
      const i = seq % ringMax
      at[i] = now()
      pids[i] = pid
      targets[i] = toolCalls
      ;(tokensColumn ??= new Float64Array(ringMax))[i] = tokens
      ;(usdColumn ??= new Float64Array(ringMax))[i] = usd
      kinds[i] = 2
      objects[i] = undefined
      if (listening > 0) publish()
    },
    trace(n) {
      const kept = Math.min(seq, ringMax)
      const take = n === undefined ? kept : Math.max(0, Math.min(Math.floor(n), kept))
      const out: Array<KernelEvent> = []
      for (let s = seq - take + 1; s <= seq; s++) push(out, materialize(s))
      return out
    },
    counts: () => ({ ...counts }),
    lastSeq: () => seq,
    subscribe(listener) {
      // a fresh function per subscription: the same listener twice is two subscriptions
      const entry = (event: KernelEvent) => listener(event)
      listeners.add(entry)
      listening = listeners.size
      return () => {
        listeners.delete(entry)
        listening = listeners.size
      }
    }
  }
}
