/**
 * The lesson store's format and ranking, shared by `LongTermMemory` (over a KV device) and the VFS's `/mem/semantic`
 * (over the VFS's store): one entry per lesson, under `<prefix><hash>`, holding the JSON text `{ text, normalized,
 * seq }`, so either one reads what the other wrote.
 *
 * Private to the package.
 */
import { Schema } from "effect"
import * as ContextMemory from "../ContextMemory.ts"

/** One stored lesson, as its value holds it (JSON text). */
export const Entry = Schema.Struct({ text: Schema.String, normalized: Schema.String, seq: Schema.Number })
export type Entry = typeof Entry.Type

export const decodeEntry = Schema.decodeUnknownOption(Schema.fromJsonString(Entry))

/** The normal form used for dedup: the lower-case terms of the text, joined by one space. */
export const normalize = (text: string): string => ContextMemory.terms(text).join(" ")

/** Common English function words, left out of recall queries: sharing "the" does not make a lesson relevant. */
export const stopWords: ReadonlySet<string> = new Set(
  (
    "a an and are as at be but by do does for from has have how i if in into is it its of on or so than that the " +
    "their then there these this to was were what when where which who why will with you your"
  ).split(" ")
)

/** The query's terms without stop words (all of them when only stop words are left). */
export const queryText = (query: string): string => {
  const all = ContextMemory.terms(query)
  const kept = all.filter((term) => !stopWords.has(term))
  return (kept.length > 0 ? kept : all).join(" ")
}

/** FNV-1a, 32 bits, as 8 hex digits. */
export const hash = (text: string): string => {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  return (h >>> 0).toString(16).padStart(8, "0")
}

/** The key of a new lesson: `<prefix><hash>`, with `~1`, `~2`, … appended while that key is taken. */
export const keyFor = (prefix: string, normalized: string, taken: ReadonlySet<string>): string => {
  const base = `${prefix}${hash(normalized)}`
  let key = base
  for (let n = 1; taken.has(key); n++) key = `${base}~${n}`
  return key
}

/** Orders entries as they were added (`seq`, then key). */
export const byAdded = (a: Entry & { readonly key: string }, b: Entry & { readonly key: string }): number =>
  a.seq - b.seq || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

/** The indexes of the best `k` texts for `query` by BM25, best first; only texts sharing a term with it. */
export const rank = (texts: ReadonlyArray<string>, query: string, k: number): ReadonlyArray<number> => {
  const ranker = ContextMemory.bm25()
  texts.forEach((text, i) => ranker.add(i, text))
  return ranker.query(queryText(query), Math.max(0, Math.floor(k)))
}
