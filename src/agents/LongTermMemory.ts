/**
 * Keeps lessons across tasks and runs: deduplicated short texts persisted on a KV device and recalled by relevance.
 *
 * `LongTermMemory.open(kvHandle, options)` takes a handle cap to a KV device (`Kv.driver()`, opened with `Sys.open`;
 * the `read` right is enough for `recall` and `all`, `add` needs `write`) and returns the memory, whose calls are
 * Effects needing `Sys` only, so they run inside a process and are journaled like every device call.
 *
 * - Storage: one KV entry per lesson, under the key `<namespace>/<hash>` (`hash`: FNV-1a of the normalized text, in
 *   hex, with `~1`, `~2`, … appended on a collision), holding the JSON text `{ text, normalized, seq }`. Entries that
 *   do not decode (written by something else) are skipped, never an error.
 * - Dedup: a lesson is normalized to its lower-case terms (`ContextMemory.terms`, joined by one space), so case,
 *   punctuation and spacing do not make a new lesson. A lesson equal to a stored one after normalization, or with no
 *   terms at all, is not added (`add` returns `false`).
 * - Recall: `ContextMemory.bm25()` over the stored lessons, queried with the query's terms less common English
 *   function words (`stopWords`: "the", "of", … — unless the query has nothing else); only lessons sharing a term
 *   with it come back, best first (ties: the older lesson first).
 * - Order: `all()` lists lessons in the order they were added (`seq`).
 *
 * Defaults: `namespace` `"lessons"`; `lessonCharsMax` `500` (longer lessons are cut, a lesson is a rule, not a
 * transcript); `recall`'s `k` `3`.
 *
 * @since 0.1.0
 */
import { Effect, Option } from "effect"
import type { CapRef } from "../services/Capability.ts"
import * as Lessons from "../services/internal/lessons.ts"
import * as Sys from "../services/Sys.ts"

/**
 * Options of `open` (defaults in the module documentation).
 *
 * @category models
 */
export interface Options {
  readonly namespace?: string | undefined
  readonly lessonCharsMax?: number | undefined
}

/** The defaults of `Options` and of `recall`'s `k`. */
export const defaults = { namespace: "lessons", lessonCharsMax: 500, k: 3 } as const

/**
 * One stored lesson, as its KV value holds it (JSON text).
 *
 * @category schemas
 */
export const Entry = Lessons.Entry
/** @category models */
export type Entry = Lessons.Entry

/**
 * The memory, bound to one KV handle and namespace.
 *
 * @category models
 */
export interface LongTermMemory {
  readonly namespace: string
  /** Stores a lesson; `false` when it was already there (after normalization) or has no terms. */
  readonly add: (lesson: string) => Effect.Effect<boolean, Sys.DeviceCallError, Sys.Sys>
  /** Stores several lessons in order; returns how many were new. */
  readonly addAll: (lessons: ReadonlyArray<string>) => Effect.Effect<number, Sys.DeviceCallError, Sys.Sys>
  /** The best `k` (default 3) lessons for `query`, best first; only lessons sharing a term with it. */
  readonly recall: (query: string, k?: number) => Effect.Effect<ReadonlyArray<string>, Sys.DeviceCallError, Sys.Sys>
  /** Every lesson, in the order added. */
  readonly all: () => Effect.Effect<ReadonlyArray<string>, Sys.DeviceCallError, Sys.Sys>
}

/**
 * The normal form used for dedup: the lower-case terms of the text, joined by one space.
 *
 * @category lessons
 */
export const normalize = Lessons.normalize

/** Common English function words, left out of recall queries: sharing "the" does not make a lesson relevant. */
export const stopWords: ReadonlySet<string> = Lessons.stopWords

/**
 * Binds a memory to a KV handle cap.
 *
 * @example
 * ```ts
 * const kv = yield* Sys.open(grant.devices.kv!)
 * const memory = LongTermMemory.open(kv, { namespace: "researcher" })
 * yield* memory.add("Check the units before comparing numbers.")
 * const lessons = yield* memory.recall("compare two numbers")
 * ```
 *
 * @category constructors
 */
export const open = (kv: CapRef, options?: Options): LongTermMemory => {
  const namespace = options?.namespace ?? defaults.namespace
  const charsMax = Math.max(1, options?.lessonCharsMax ?? defaults.lessonCharsMax)
  const prefix = `${namespace}/`

  /** The stored entries with their keys, in the order added. */
  const entries = Effect.gen(function* () {
    const keys = (yield* Sys.read<ReadonlyArray<string>>(kv, { op: "keys" })).filter((key) => key.startsWith(prefix))
    if (keys.length === 0) return [] as Array<Entry & { readonly key: string }>
    const values = yield* Sys.readAll<string | null>(
      kv,
      keys.map((key) => ({ op: "get", key }))
    )
    const out: Array<Entry & { readonly key: string }> = []
    values.forEach((value, i) => {
      const entry = value === null ? Option.none() : Lessons.decodeEntry(value)
      if (Option.isSome(entry)) out.push({ ...entry.value, key: keys[i]! })
    })
    return out.sort(Lessons.byAdded)
  })

  const add = (lesson: string) =>
    Effect.gen(function* () {
      const text = lesson.trim().slice(0, charsMax).trim()
      const normalized = normalize(text)
      if (normalized === "") return false
      const stored = yield* entries
      if (stored.some((entry) => entry.normalized === normalized)) return false
      const taken = new Set(stored.map((entry) => entry.key))
      const key = Lessons.keyFor(prefix, normalized, taken)
      const seq = stored.reduce((max, entry) => Math.max(max, entry.seq), 0) + 1
      yield* Sys.write(kv, { op: "set", key, value: JSON.stringify({ text, normalized, seq } satisfies Entry) })
      return true
    })

  const addAll = (lessons: ReadonlyArray<string>) =>
    Effect.reduce(
      lessons,
      () => 0,
      (count: number, lesson) => Effect.map(add(lesson), (added) => count + (added ? 1 : 0))
    )

  const recall = (query: string, k: number = defaults.k) =>
    Effect.map(entries, (stored) =>
      Lessons.rank(
        stored.map((entry) => entry.text),
        query,
        k
      ).map((i) => stored[i]!.text)
    )

  const all = () => Effect.map(entries, (stored) => stored.map((entry) => entry.text))

  return { namespace, add, addAll, recall, all }
}
