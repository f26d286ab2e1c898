/**
 * Defines named personas (a system prompt, tools and a style) and turns one into `ReactAgent` options with lessons.
 *
 * - `define({ name, system, tools?, style? })` checks and freezes a persona (a blank `name` or `system` is a defect).
 * - `registry(...personas)` indexes personas by name (two with one name is a defect); `get(name)` finds one.
 * - `instantiate(persona, { lessons })` gives `ReactAgent.Options`: `name` the persona's, `tools` its tools, and a
 *   `system` prompt made of the persona's system prompt, then `Style: <style>` when it has one, then the lessons as a
 *   bullet list under `lessonsHeader` (blank and duplicate lessons dropped, at most `lessonsMax`). Other
 *   `ReactAgent` options given in `agent` are kept (the persona's fields win).
 * - `recallAndInstantiate(persona, memory, task, { k })` recalls the best `k` lessons for the task from a
 *   `LongTermMemory` and instantiates with them (an Effect needing `Sys`).
 *
 * Defaults: `tools` `[]`; `lessonsMax` `5`; `k` `3`; `lessonsHeader` `"Lessons from earlier tasks (apply them when
 * they fit):"`.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { ToolDefinition } from "../drivers/Llm.ts"
import type * as Sys from "../services/Sys.ts"
import type * as LongTermMemory from "./LongTermMemory.ts"
import { normalize } from "./LongTermMemory.ts"
import type * as ReactAgent from "./ReactAgent.ts"

/**
 * A persona.
 *
 * @category models
 */
export interface Persona {
  readonly name: string
  readonly system: string
  readonly tools: ReadonlyArray<ToolDefinition>
  readonly style?: string | undefined
}

/**
 * A set of personas by name.
 *
 * @category models
 */
export interface Registry {
  /** The names, in the order given. */
  readonly names: ReadonlyArray<string>
  readonly get: (name: string) => Persona | undefined
}

/** The defaults of `instantiate` and `recallAndInstantiate`. */
export const defaults = {
  lessonsMax: 5,
  k: 3,
  lessonsHeader: "Lessons from earlier tasks (apply them when they fit):"
} as const

/**
 * Makes a persona (frozen). A blank `name` or `system` throws.
 *
 * @category constructors
 */
export const define = (persona: {
  readonly name: string
  readonly system: string
  readonly tools?: ReadonlyArray<ToolDefinition> | undefined
  readonly style?: string | undefined
}): Persona => {
  if (persona.name.trim() === "") throw new Error("Persona.define: the name is blank")
  if (persona.system.trim() === "") throw new Error(`Persona.define: the system prompt of "${persona.name}" is blank`)
  return Object.freeze({
    name: persona.name,
    system: persona.system,
    tools: Object.freeze([...(persona.tools ?? [])]),
    ...(persona.style === undefined || persona.style.trim() === "" ? {} : { style: persona.style })
  })
}

/**
 * Indexes personas by name. Two personas with one name throw.
 *
 * @category constructors
 */
export const registry = (...personas: ReadonlyArray<Persona>): Registry => {
  const byName = new Map<string, Persona>()
  for (const persona of personas) {
    if (byName.has(persona.name)) throw new Error(`Persona.registry: two personas are named "${persona.name}"`)
    byName.set(persona.name, persona)
  }
  return { names: Array.from(byName.keys()), get: (name) => byName.get(name) }
}

/**
 * Options of `instantiate`.
 *
 * @category models
 */
export interface InstantiateOptions {
  readonly lessons?: ReadonlyArray<string> | undefined
  readonly lessonsMax?: number | undefined
  readonly lessonsHeader?: string | undefined
  /** Other `ReactAgent` options to pass on (`steps`, `reflect`, …). */
  readonly agent?: ReactAgent.Options | undefined
}

/**
 * The system prompt of a persona with lessons (see the module documentation).
 *
 * @category prompts
 */
export const systemPrompt = (persona: Persona, options?: Omit<InstantiateOptions, "agent">): string => {
  const max = Math.max(0, Math.floor(options?.lessonsMax ?? defaults.lessonsMax))
  const seen = new Set<string>()
  const lessons: Array<string> = []
  for (const lesson of options?.lessons ?? []) {
    if (lessons.length >= max) break
    const text = lesson.trim()
    const key = normalize(text)
    if (key === "" || seen.has(key)) continue
    seen.add(key)
    lessons.push(text)
  }
  const parts = [persona.system.trim()]
  if (persona.style !== undefined) parts.push(`Style: ${persona.style.trim()}`)
  if (lessons.length > 0) {
    parts.push([options?.lessonsHeader ?? defaults.lessonsHeader, ...lessons.map((l) => `- ${l}`)].join("\n"))
  }
  return parts.join("\n\n")
}

/**
 * `ReactAgent` options for a persona with lessons.
 *
 * @category constructors
 */
export const instantiate = (persona: Persona, options?: InstantiateOptions): ReactAgent.Options => ({
  ...options?.agent,
  name: persona.name,
  system: systemPrompt(persona, options),
  tools: persona.tools
})

/**
 * Recalls the best `k` (default 3) lessons for `task` from `memory` and instantiates the persona with them.
 *
 * @category constructors
 */
export const recallAndInstantiate = (
  persona: Persona,
  memory: LongTermMemory.LongTermMemory,
  task: string,
  options?: Omit<InstantiateOptions, "lessons"> & { readonly k?: number | undefined }
): Effect.Effect<ReactAgent.Options, Sys.DeviceCallError, Sys.Sys> =>
  Effect.map(memory.recall(task, options?.k ?? defaults.k), (lessons) => instantiate(persona, { ...options, lessons }))
