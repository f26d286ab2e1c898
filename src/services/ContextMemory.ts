/**
 * Keeps each process's context memory: a working set bounded by its `mem` quota, paged out to swap when it fills,
 * and recalled from swap by relevance.
 *
 * A segment is a JSON-safe body with a token size (estimated, CJK-aware, unless the caller knows it) that may be
 * pinned. When the working set passes the high watermark (default 80 % of `mem`), the kernel pages out unpinned
 * segments, least recently used first, down to the low watermark (default 60 %), and leaves in their place one
 * summary segment made by the pager (by default a compact marker naming the paged-out ids). Pinned segments alone
 * over the ceiling end the process with `Quota { mem }`. `recall(query, k)` ranks swapped segments with the recaller
 * (BM25 over an inverted index by default: its cost grows with the postings of the query's terms, not with the size
 * of swap) and pages the best `k` back in.
 *
 * @since 0.1.0
 */
import { Context, Effect, Schema } from "effect"
import { intrinsics, push, SafeMap } from "./internal/primordials.ts"
import type * as Sys from "./Sys.ts"

/**
 * One remembered item.
 *
 * @category models
 */
export interface Segment {
  readonly id: number
  readonly body: unknown
  readonly tokens: number
  readonly pinned: boolean
}

/**
 * What a pager leaves in place of the segments it paged out.
 *
 * @category models
 */
export interface Summary {
  readonly body: unknown
  readonly tokens: number
}

/**
 * Turns segments about to be paged out into the summary left in their place (`undefined`: leave nothing). A pager may
 * return an effect: it then runs in the paging process, through its own syscalls (so an LLM pager's model call is
 * charged to that process), before the syscall that caused the paging returns. `Llm.pager` is one that summarises
 * with a model.
 *
 * @category models
 */
export type Pager = (
  paged: ReadonlyArray<Segment>
) => Summary | undefined | Effect.Effect<Summary | undefined, never, Sys.Sys>

/**
 * Ranks swapped segments for a query.
 *
 * @category models
 */
export interface Recaller {
  readonly add: (id: number, text: string) => void
  readonly remove: (id: number) => void
  /** The ids of the best `k` matches, best first. */
  readonly query: (text: string, k: number) => ReadonlyArray<number>
}

/**
 * `forget`/`pin` on a segment the process does not have.
 *
 * @category errors
 */
export class MemoryError extends Schema.TaggedError<MemoryError>()("MemoryError", {
  call: Schema.String,
  id: Schema.Number,
  reason: Schema.Literals(["unknown-segment"])
}) {}

const isCjk = (code: number) =>
  (code >= 0x3040 && code <= 0x30ff) || // kana
  (code >= 0x3400 && code <= 0x4dbf) || // CJK extension A
  (code >= 0x4e00 && code <= 0x9fff) || // CJK unified
  (code >= 0xac00 && code <= 0xd7af) || // hangul
  (code >= 0xf900 && code <= 0xfaff) // CJK compatibility

/**
 * Estimates the tokens of a text: one per CJK character, one per four other characters, at least one.
 *
 * @category tokens
 */
export const estimateTokens = (text: string): number => {
  let cjk = 0
  let other = 0
  for (let i = 0; i < text.length; i++) {
    if (isCjk(text.charCodeAt(i))) cjk++
    else other++
  }
  return Math.max(1, cjk + Math.ceil(other / 4))
}

const getPrototypeOf = Reflect.getPrototypeOf
const objectKeys = Object.keys
const isArray = Array.isArray
const isView = ArrayBuffer.isView
const jsonQuote = JSON.stringify as (value: string) => string
const hasOwn = Object.hasOwn
const {
  apply: reflectApply,
  ArrayBufferPrototype,
  bigintToString,
  DatePrototype,
  dateToISOString,
  mapEntries,
  mapIteratorNext,
  MapPrototype,
  setIteratorNext,
  SetPrototype,
  setValues
} = intrinsics

/**
 * `value`'s own property `key`, never one it inherits (so no getter or `toJSON` of a prototype runs). The kernel's
 * copies have data properties only, so on them nothing runs at all; on another value, an own getter runs (its own
 * code, called by whoever asked for its text).
 */
const ownData = (value: object, key: string): unknown =>
  hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined

/**
 * JSON-like text of a value, written without running any code of its prototypes: own properties only (no inherited
 * getter, no `toJSON`, no `toString`), built-ins through methods captured at load, `Map`s and `Set`s as arrays of their
 * entries, binary data as a marker, a cycle or nesting past 64 as `null`.
 */
const textWalk = (value: unknown, path: Array<unknown>): string => {
  switch (typeof value) {
    case "string":
      return jsonQuote(value)
    case "number":
      return value === value && value !== Infinity && value !== -Infinity ? `${value}` : "null"
    case "boolean":
      return value ? "true" : "false"
    case "bigint":
      return reflectApply(bigintToString, value, []) as string
    case "object": {
      if (value === null || path.length >= 64) return "null"
      for (let i = 0; i < path.length; i++) if (path[i] === value) return "null"
      push(path, value)
      let out: string
      if (isArray(value)) {
        out = "["
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ","
          out += textWalk(ownData(value, `${i}`), path)
        }
        out += "]"
      } else {
        const proto = getPrototypeOf(value)
        if (proto === MapPrototype || proto === SetPrototype) {
          const iterator = reflectApply(proto === MapPrototype ? mapEntries : setValues, value, []) as Iterator<unknown>
          const next = proto === MapPrototype ? mapIteratorNext : setIteratorNext
          out = "["
          for (let first = true; ; first = false) {
            const step = reflectApply(next, iterator, []) as IteratorResult<unknown>
            if (step.done === true) break
            if (!first) out += ","
            out += textWalk(step.value, path)
          }
          out += "]"
        } else if (proto === DatePrototype) {
          try {
            out = jsonQuote(reflectApply(dateToISOString, value, []) as string)
          } catch {
            out = "null"
          }
        } else if (isView(value) || proto === ArrayBufferPrototype) {
          // binary data has no text; what it holds is counted by its size (see `Sys.remember`)
          out = '"<binary>"'
        } else {
          out = "{"
          const keys = objectKeys(value)
          let first = true
          for (let i = 0; i < keys.length; i++) {
            const item = ownData(value, keys[i]!)
            if (item === undefined || typeof item === "function" || typeof item === "symbol") continue
            if (!first) out += ","
            first = false
            out += `${jsonQuote(keys[i]!)}:${textWalk(item, path)}`
          }
          out += "}"
        }
      }
      path.length--
      return out
    }
    default:
      return "null"
  }
}

/**
 * The text of a body, for token estimates and indexing: a string as it is, an object's own `content` string, else
 * JSON-like text of the whole. No code of the body's prototypes runs (no inherited getter, `toJSON` or `toString`):
 * the kernel calls this on the copies it keeps, which have only data properties and must never be handed to process
 * code.
 *
 * @category tokens
 */
export const textOf = (body: unknown): string => {
  if (typeof body === "string") return body
  if (typeof body === "object" && body !== null) {
    try {
      const content = ownData(body, "content")
      if (typeof content === "string") return content
      return textWalk(body, [])
    } catch {
      // only a proxy's traps or a revoked proxy can throw here (the kernel's copies are neither)
      return ""
    }
  }
  return textWalk(body, [])
}

/**
 * The default pager: a marker naming what was paged out, so the working set still says something was there.
 *
 * @category pagers
 */
export const markerPager = (paged: ReadonlyArray<Segment>): Summary => {
  const ids: Array<number> = []
  for (let i = 0; i < paged.length; i++) push(ids, paged[i]!.id)
  return { body: { _tag: "PagedOut", ids, count: ids.length }, tokens: 4 + Math.ceil(ids.length / 4) }
}

/** Splits text into lower-case terms: letters and digits runs, and each CJK character alone. */
export const terms = (text: string): Array<string> => {
  const out: Array<string> = []
  let word = ""
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!
    const code = text.charCodeAt(i)
    if ((code >= 97 && code <= 122) || (code >= 48 && code <= 57)) {
      word += ch
    } else if (code >= 65 && code <= 90) {
      word += String.fromCharCode(code + 32)
    } else if (code < 128) {
      if (word.length > 0) out.push(word)
      word = ""
    } else if (isCjk(code)) {
      if (word.length > 0) out.push(word)
      word = ""
      out.push(ch)
    } else if (/[\p{L}\p{N}]/u.test(ch)) {
      word += ch.toLowerCase()
    } else if (word.length > 0) {
      out.push(word)
      word = ""
    }
  }
  if (word.length > 0) out.push(word)
  return out
}

/**
 * BM25 over an inverted index (k1 1.2, b 0.75). Scoring a query touches only the postings of its terms.
 *
 * @category recallers
 */
export const bm25 = (): Recaller => {
  const postings = new Map<string, Map<number, number>>()
  const lengths = new Map<number, number>()
  const termsOf = new Map<number, ReadonlyArray<string>>()
  let totalLength = 0
  return {
    add(id, text) {
      const ts = terms(text)
      const counts = new Map<string, number>()
      for (const t of ts) counts.set(t, (counts.get(t) ?? 0) + 1)
      for (const [t, n] of counts) {
        let list = postings.get(t)
        if (list === undefined) postings.set(t, (list = new Map()))
        list.set(id, n)
      }
      lengths.set(id, ts.length)
      termsOf.set(id, Array.from(counts.keys()))
      totalLength += ts.length
    },
    remove(id) {
      const ts = termsOf.get(id)
      if (ts === undefined) return
      for (const t of ts) {
        const list = postings.get(t)
        list?.delete(id)
        if (list?.size === 0) postings.delete(t)
      }
      totalLength -= lengths.get(id) ?? 0
      lengths.delete(id)
      termsOf.delete(id)
    },
    query(text, k) {
      const n = lengths.size
      if (n === 0 || k <= 0) return []
      const average = totalLength / n || 1
      const scores = new Map<number, number>()
      const lists = Array.from(new Set(terms(text)), (t) => postings.get(t)).filter((l) => l !== undefined)
      // a term in more than half the segments says little (its idf is near zero) yet has the longest postings:
      // skip it when the query has a rarer term, so a recall costs the rare terms' postings, not the size of swap
      const rare = lists.filter((list) => list.size <= n / 2)
      for (const list of rare.length > 0 ? rare : lists) {
        const idf = Math.log(1 + (n - list.size + 0.5) / (list.size + 0.5))
        for (const [id, tf] of list) {
          const length = lengths.get(id)!
          const score = (idf * tf * 2.2) / (tf + 1.2 * (0.25 + (0.75 * length) / average))
          scores.set(id, (scores.get(id) ?? 0) + score)
        }
      }
      return Array.from(scores.entries())
        .sort((a, b) => b[1] - a[1] || a[0] - b[0])
        .slice(0, k)
        .map(([id]) => id)
    }
  }
}

/**
 * A vector recaller over a pluggable embedding (default: a 256-dimension hashing embedder); cosine similarity.
 *
 * @category recallers
 */
export const vector = (embed: (text: string) => Float64Array = hashingEmbedder(256)): Recaller => {
  const vectors = new Map<number, Float64Array>()
  return {
    add: (id, text) => void vectors.set(id, embed(text)),
    remove: (id) => void vectors.delete(id),
    query(text, k) {
      const q = embed(text)
      return Array.from(vectors.entries())
        .map(([id, v]) => [id, cosine(q, v)] as const)
        .filter(([, score]) => score > 0)
        .sort((a, b) => b[1] - a[1] || a[0] - b[0])
        .slice(0, k)
        .map(([id]) => id)
    }
  }
}

/** Embeds text by hashing its terms into `dimensions` buckets (signed), normalized. */
export const hashingEmbedder =
  (dimensions: number) =>
  (text: string): Float64Array => {
    const v = new Float64Array(dimensions)
    for (const t of terms(text)) {
      let h = 2166136261
      for (let i = 0; i < t.length; i++) h = Math.imul(h ^ t.charCodeAt(i), 16777619)
      v[(h >>> 1) % dimensions]! += h & 1 ? 1 : -1
    }
    let norm = 0
    for (const x of v) norm += x * x
    norm = Math.sqrt(norm) || 1
    for (let i = 0; i < dimensions; i++) v[i]! /= norm
    return v
  }

const cosine = (a: Float64Array, b: Float64Array) => {
  let dot = 0
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!
  return dot
}

interface Entry {
  readonly id: number
  readonly body: unknown
  readonly tokens: number
  pinned: boolean
}

/**
 * The most tokens one segment counts for. Counts are whole numbers at most this, so the working set's running total
 * is exact (a sum of such numbers stays far below 2^53): a segment claiming `1e300` tokens cannot wash the others out
 * of the total when it pages out.
 */
export const segmentTokensMax = 2 ** 32

/** A token count as a segment keeps it: a whole number in `[0, segmentTokensMax]` (`NaN` and negatives are 0). */
export const tokenCount = (tokens: number): number =>
  tokens > 0 ? (tokens < segmentTokensMax ? Math.ceil(tokens) : segmentTokensMax) : 0

/**
 * How a `Memory` takes bodies in and hands them out. The kernel's copies its bodies in (and counts them for what they
 * hold) and hands out copies or frozen values, so nothing outside it holds what it keeps.
 *
 * @category models
 */
export interface MemoryBodies {
  /** A body to keep and its tokens (never below `tokens`), or `undefined` when it cannot be kept. */
  readonly keep: (body: unknown, tokens: number) => { readonly body: unknown; readonly tokens: number } | undefined
  /** A kept body as it leaves the memory (to the process, a pager, a snapshot). */
  readonly handOut: (body: unknown) => unknown
}

const asGiven: MemoryBodies = {
  keep: (body, tokens) => ({ body, tokens: Math.max(tokens, estimateTokens(textOf(body))) }),
  handOut: (body) => body
}

/**
 * One process's memory. Synchronous; the kernel calls it inside syscalls. Its tables are `SafeMap`s and it loops
 * with captured built-ins only, so image code that patches `Map` or `Array` methods never sees an entry.
 *
 * @category models
 */
export class Memory {
  private readonly working = new SafeMap<number, Entry>()
  private readonly swap = new SafeMap<number, Entry>()
  private nextId = 1
  private tokens = 0
  private swapTokens = 0
  private readonly recaller: Recaller
  private readonly pager: Pager
  private readonly bodies: MemoryBodies
  constructor(options?: {
    readonly recaller?: Recaller | undefined
    readonly pager?: Pager | undefined
    readonly bodies?: MemoryBodies | undefined
  }) {
    this.recaller = options?.recaller ?? bm25()
    this.pager = options?.pager ?? markerPager
    this.bodies = options?.bodies ?? asGiven
  }

  /** Tokens in the working set. */
  get used(): number {
    return this.tokens
  }

  /** Segments in swap. */
  get swapped(): number {
    return this.swap.size
  }

  /** Tokens in swap. */
  get swappedTokens(): number {
    return this.swapTokens
  }

  /** Keeps `body` (as the caller's `MemoryBodies` took it in) counted as `tokens`; its id. */
  remember(body: unknown, tokens: number, pinned: boolean): number {
    const entry: Entry = { id: this.nextId++, body, tokens: tokenCount(tokens), pinned }
    this.working.set(entry.id, entry)
    this.tokens += entry.tokens
    return entry.id
  }

  /** The working set, in use order, each body handed out (see `MemoryBodies`). */
  workingSet(): ReadonlyArray<Segment> {
    const entries = this.working.toValues()
    const out: Array<Segment> = []
    for (let i = 0; i < entries.length; i++) push(out, this.segmentOf(entries[i]!))
    return out
  }

  /** The segment `id`, in the working set or in swap (a look: it stays where it is), its body handed out. */
  get(id: number): (Segment & { readonly swapped: boolean }) | undefined {
    const entry = this.working.get(id)
    const swapped = entry === undefined
    const found = entry ?? this.swap.get(id)
    return found === undefined ? undefined : { ...this.segmentOf(found), swapped }
  }

  /** Every segment's id, tokens, pin and place, bodies left where they are (a listing), ordered by id. */
  list(): ReadonlyArray<{
    readonly id: number
    readonly tokens: number
    readonly pinned: boolean
    readonly swapped: boolean
  }> {
    const out: Array<{
      readonly id: number
      readonly tokens: number
      readonly pinned: boolean
      readonly swapped: boolean
    }> = []
    const add = (entries: ReadonlyArray<Entry>, swapped: boolean) => {
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i]!
        push(out, { id: e.id, tokens: e.tokens, pinned: e.pinned, swapped })
      }
    }
    add(this.working.toValues(), false)
    add(this.swap.toValues(), true)
    return out.sort((a, b) => a.id - b.id)
  }

  forget(id: number): boolean {
    const entry = this.working.get(id)
    if (entry !== undefined) {
      this.working.delete(id)
      this.tokens -= entry.tokens
      return true
    }
    const swapped = this.swap.get(id)
    if (swapped !== undefined) {
      this.swap.delete(id)
      this.swapTokens -= swapped.tokens
      this.recaller.remove(id)
      return true
    }
    return false
  }

  pin(id: number, on: boolean): boolean {
    const entry = this.working.get(id) ?? this.swap.get(id)
    if (entry === undefined) return false
    entry.pinned = on
    if (on && this.swap.has(id)) this.pageIn(entry)
    return true
  }

  /**
   * Pages out to the low watermark once the working set is past the high one. `fits` is `false` when the pinned
   * segments alone do not fit under the ceiling; `pending` is the pager's effect still to run, when it has one.
   */
  fit(
    ceiling: number,
    high: number,
    low: number,
    swapMax = Infinity
  ): { readonly fits: boolean; readonly pending: Effect.Effect<void, never, Sys.Sys> | undefined } {
    if (ceiling === Infinity || this.tokens <= ceiling * high) return { fits: true, pending: undefined }
    const target = ceiling * low
    // the working set's insertion order is its use order (a segment enters it when remembered or paged back in,
    // and nothing else counts as a use), so the coldest come first without sorting
    const entries = this.working.toValues()
    const paged: Array<Entry> = []
    let tokens = this.tokens
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!
      if (tokens <= target) break
      if (entry.pinned) continue
      push(paged, entry)
      tokens -= entry.tokens
    }
    let pagedTokens = 0
    const given: Array<Segment> = []
    for (let i = 0; i < paged.length; i++) {
      const entry = paged[i]!
      this.working.delete(entry.id)
      this.tokens -= entry.tokens
      this.swap.set(entry.id, entry)
      this.swapTokens += entry.tokens
      this.recaller.add(entry.id, textOf(entry.body))
      pagedTokens += entry.tokens
      push(given, this.segmentOf(entry))
    }
    let pending: Effect.Effect<void, never, Sys.Sys> | undefined
    if (paged.length > 0) {
      const summary = this.pager(given)
      if (Effect.isEffect(summary)) {
        const effect = summary as Effect.Effect<Summary | undefined, never, Sys.Sys>
        pending = Effect.map(effect, (s) => this.addSummary(s, pagedTokens))
      } else this.addSummary(summary, pagedTokens)
    }
    let pinned = 0
    const left = this.working.toValues()
    for (let i = 0; i < left.length; i++) if (left[i]!.pinned) pinned += left[i]!.tokens
    return { fits: pinned <= ceiling && this.swapTokens <= swapMax, pending }
  }

  /** Keeps a summary (taken in like any body) only while it is smaller than what it replaces. */
  private addSummary(summary: Summary | undefined, pagedTokens: number): void {
    if (summary === undefined) return
    const kept = this.bodies.keep(summary.body, typeof summary.tokens === "number" ? summary.tokens : 0)
    if (kept !== undefined && kept.tokens < pagedTokens) this.remember(kept.body, kept.tokens, false)
  }

  /** Every segment, in the working set (in use order) and in swap, for a snapshot (bodies as handed out). */
  export(): { readonly working: ReadonlyArray<Segment>; readonly swap: ReadonlyArray<Segment> } {
    const out = (entries: ReadonlyArray<Entry>): ReadonlyArray<Segment> => {
      const segments: Array<Segment> = []
      for (let i = 0; i < entries.length; i++) push(segments, this.segmentOf(entries[i]!))
      return segments
    }
    return { working: out(this.working.toValues()), swap: out(this.swap.toValues()) }
  }

  /**
   * Restores segments from a snapshot (ids kept; new ones continue after the highest), each taken in like a body
   * remembered (copied and counted, never below what it holds); `false`, with nothing restored, when one cannot be.
   */
  import(working: ReadonlyArray<Segment>, swap: ReadonlyArray<Segment>): boolean {
    const take = (segments: ReadonlyArray<Segment>): Array<Entry> | undefined => {
      const entries: Array<Entry> = []
      for (let i = 0; i < segments.length; i++) {
        const s = segments[i]!
        const kept = this.bodies.keep(s.body, typeof s.tokens === "number" ? s.tokens : 0)
        if (kept === undefined || typeof s.id !== "number") return undefined
        push(entries, { id: s.id, body: kept.body, tokens: tokenCount(kept.tokens), pinned: s.pinned === true })
      }
      return entries
    }
    const inWorking = take(working)
    const inSwap = inWorking === undefined ? undefined : take(swap)
    if (inWorking === undefined || inSwap === undefined) return false
    for (let i = 0; i < inWorking.length; i++) {
      const e = inWorking[i]!
      this.working.set(e.id, e)
      this.tokens += e.tokens
      if (e.id >= this.nextId) this.nextId = e.id + 1
    }
    for (let i = 0; i < inSwap.length; i++) {
      const e = inSwap[i]!
      this.swap.set(e.id, e)
      this.swapTokens += e.tokens
      this.recaller.add(e.id, textOf(e.body))
      if (e.id >= this.nextId) this.nextId = e.id + 1
    }
    return true
  }

  /** The best `k` swapped segments for `query`, paged back in (most recently used), best first. */
  recall(query: string, k: number): ReadonlyArray<Segment> {
    const ids = this.recaller.query(query, k)
    const out: Array<Segment> = []
    for (let i = 0; i < ids.length; i++) {
      const entry = this.swap.get(ids[i]!)
      if (entry === undefined) continue
      this.pageIn(entry)
      push(out, this.segmentOf(entry))
    }
    return out
  }

  /** A segment as it leaves the memory: its body handed out (the only way one does). */
  private segmentOf(e: Entry): Segment {
    return { id: e.id, body: this.bodies.handOut(e.body), tokens: e.tokens, pinned: e.pinned }
  }

  private pageIn(entry: Entry) {
    this.swap.delete(entry.id)
    this.swapTokens -= entry.tokens
    this.recaller.remove(entry.id)
    this.working.set(entry.id, entry)
    this.tokens += entry.tokens
  }
}

/**
 * How every process's memory pages and recalls: a recaller factory (one recaller per process) and a pager.
 *
 * @category models
 */
export interface MemoryOptions {
  readonly recaller: () => Recaller
  readonly pager: Pager
}

/**
 * The kernel's memory options; `Kernel.layer({ memory })` sets them. Default: BM25 and the marker pager.
 *
 * @category references
 */
export const MemoryOptions = Context.Reference<MemoryOptions>("effect-agent-os/ContextMemory/Options", {
  defaultValue: () => ({ recaller: bm25, pager: markerPager })
})
