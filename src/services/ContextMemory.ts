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

/** The text of a body, for token estimates and indexing. */
export const textOf = (body: unknown): string => {
  if (typeof body === "string") return body
  if (typeof body === "object" && body !== null && typeof (body as { content?: unknown }).content === "string") {
    return (body as { content: string }).content
  }
  try {
    return JSON.stringify(body) ?? ""
  } catch {
    return String(body)
  }
}

/**
 * The default pager: a marker naming what was paged out, so the working set still says something was there.
 *
 * @category pagers
 */
export const markerPager = (paged: ReadonlyArray<Segment>): Summary => {
  const ids = paged.map((segment) => segment.id)
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
 * One process's memory. Synchronous; the kernel calls it inside syscalls.
 *
 * @category models
 */
export class Memory {
  private readonly working = new Map<number, Entry>()
  private readonly swap = new Map<number, Entry>()
  private nextId = 1
  private tokens = 0
  private readonly recaller: Recaller
  private readonly pager: Pager
  constructor(options?: { readonly recaller?: Recaller | undefined; readonly pager?: Pager | undefined }) {
    this.recaller = options?.recaller ?? bm25()
    this.pager = options?.pager ?? markerPager
  }

  /** Tokens in the working set. */
  get used(): number {
    return this.tokens
  }

  /** Segments in swap. */
  get swapped(): number {
    return this.swap.size
  }

  remember(body: unknown, tokens: number, pinned: boolean): number {
    const entry: Entry = { id: this.nextId++, body, tokens, pinned }
    this.working.set(entry.id, entry)
    this.tokens += tokens
    return entry.id
  }

  workingSet(): ReadonlyArray<Segment> {
    return Array.from(this.working.values(), (e) => ({ id: e.id, body: e.body, tokens: e.tokens, pinned: e.pinned }))
  }

  /** The segment `id`, in the working set or in swap (a look: it stays where it is). */
  get(id: number): (Segment & { readonly swapped: boolean }) | undefined {
    const entry = this.working.get(id)
    const swapped = entry === undefined
    const found = entry ?? this.swap.get(id)
    return found === undefined
      ? undefined
      : { id: found.id, body: found.body, tokens: found.tokens, pinned: found.pinned, swapped }
  }

  forget(id: number): boolean {
    const entry = this.working.get(id)
    if (entry !== undefined) {
      this.working.delete(id)
      this.tokens -= entry.tokens
      return true
    }
    if (this.swap.delete(id)) {
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
    low: number
  ): { readonly fits: boolean; readonly pending: Effect.Effect<void, never, Sys.Sys> | undefined } {
    if (ceiling === Infinity || this.tokens <= ceiling * high) return { fits: true, pending: undefined }
    const target = ceiling * low
    // the working set's insertion order is its use order (a segment enters it when remembered or paged back in,
    // and nothing else counts as a use), so the coldest come first without sorting
    const paged: Array<Entry> = []
    let tokens = this.tokens
    for (const entry of this.working.values()) {
      if (tokens <= target) break
      if (entry.pinned) continue
      paged.push(entry)
      tokens -= entry.tokens
    }
    for (const entry of paged) {
      this.working.delete(entry.id)
      this.tokens -= entry.tokens
      this.swap.set(entry.id, entry)
      this.recaller.add(entry.id, textOf(entry.body))
    }
    let pending: Effect.Effect<void, never, Sys.Sys> | undefined
    if (paged.length > 0) {
      const pagedTokens = paged.reduce((s, e) => s + e.tokens, 0)
      const summary = this.pager(paged.map((e) => ({ id: e.id, body: e.body, tokens: e.tokens, pinned: e.pinned })))
      if (Effect.isEffect(summary)) {
        const effect = summary as Effect.Effect<Summary | undefined, never, Sys.Sys>
        pending = Effect.map(effect, (s) => this.addSummary(s, pagedTokens))
      } else this.addSummary(summary, pagedTokens)
    }
    let pinned = 0
    for (const entry of this.working.values()) if (entry.pinned) pinned += entry.tokens
    return { fits: pinned <= ceiling, pending }
  }

  /** Keeps a summary only while it is smaller than what it replaces. */
  private addSummary(summary: Summary | undefined, pagedTokens: number): void {
    if (summary !== undefined && summary.tokens < pagedTokens) this.remember(summary.body, summary.tokens, false)
  }

  /** Every segment, in the working set (in use order) and in swap, for a snapshot. */
  export(): { readonly working: ReadonlyArray<Segment>; readonly swap: ReadonlyArray<Segment> } {
    const copy = (e: Entry): Segment => ({ id: e.id, body: e.body, tokens: e.tokens, pinned: e.pinned })
    return { working: Array.from(this.working.values(), copy), swap: Array.from(this.swap.values(), copy) }
  }

  /** Restores segments from a snapshot (ids kept; new ones continue after the highest). */
  import(working: ReadonlyArray<Segment>, swap: ReadonlyArray<Segment>): void {
    for (const s of working) {
      this.working.set(s.id, { id: s.id, body: s.body, tokens: s.tokens, pinned: s.pinned })
      this.tokens += s.tokens
      if (s.id >= this.nextId) this.nextId = s.id + 1
    }
    for (const s of swap) {
      this.swap.set(s.id, { id: s.id, body: s.body, tokens: s.tokens, pinned: s.pinned })
      this.recaller.add(s.id, textOf(s.body))
      if (s.id >= this.nextId) this.nextId = s.id + 1
    }
  }

  /** The best `k` swapped segments for `query`, paged back in (most recently used), best first. */
  recall(query: string, k: number): ReadonlyArray<Segment> {
    const ids = this.recaller.query(query, k)
    const out: Array<Segment> = []
    for (const id of ids) {
      const entry = this.swap.get(id)
      if (entry === undefined) continue
      this.pageIn(entry)
      out.push({ id: entry.id, body: entry.body, tokens: entry.tokens, pinned: entry.pinned })
    }
    return out
  }

  private pageIn(entry: Entry) {
    this.swap.delete(entry.id)
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
