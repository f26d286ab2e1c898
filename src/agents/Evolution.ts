/**
 * Evolves prompt variants in a bounded tournament: score each with a metered fitness, keep the best, mutate them.
 *
 * `evolve({ variants, fitness, llm?, mutate?, rounds, population, keep })`, inside a process:
 *
 * 1. The population is the distinct given variants (first `population` of them, in order).
 * 2. Each round scores the variants not scored yet with `fitness(variant)`, one at a time in population order (a
 *    text is scored once per run: the result is cached), and ranks the population: correct first, then fewer
 *    `steps`, then fewer `tokens`, then fewer `usd`, then the earlier discovered variant (so ranking is total and
 *    deterministic).
 * 3. Unless it is the last round, the best `keep` survive and `population - keep` mutations are made from them, in
 *    rank order round-robin: `mutate(parent)` when given, else `Prompts.refine(llm, parent.variant, feedback)` with
 *    feedback naming the parent's score (`feedbackOf`); with neither, the run stops after the first round (selection
 *    only). A mutation equal to a text already seen this run is dropped.
 *
 * So a run makes at most `population + (rounds - 1) * (population - keep)` fitness calls and at most
 * `(rounds - 1) * (population - keep)` mutations. A failing fitness or mutation fails the run.
 *
 * `measure(effect)` is a metered fitness helper: it runs an effect giving `{ correct, steps }` and adds the tokens
 * and dollars the caller's account was charged meanwhile (`Sys.budget` deltas: children's spend included).
 *
 * Defaults: `rounds` `3`, `population` `4`, `keep` `1` (each at least 1; `keep` at most `population`; non-integers
 * are rounded down).
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { CapRef } from "../services/Capability.ts"
import * as Sys from "../services/Sys.ts"
import * as Prompts from "./Prompts.ts"

/**
 * What a fitness call measures.
 *
 * @category models
 */
export interface Fitness {
  readonly correct: boolean
  readonly steps: number
  readonly tokens: number
  readonly usd: number
}

/**
 * A scored variant: `order` is when it was discovered in the run (0-based), `round` the round that scored it (1-based).
 *
 * @category models
 */
export interface Scored {
  readonly variant: string
  readonly fitness: Fitness
  readonly order: number
  readonly round: number
}

/**
 * Options of `evolve` (defaults in the module documentation).
 *
 * @category models
 */
export interface Options<E1, E2> {
  readonly variants: ReadonlyArray<string>
  readonly fitness: (variant: string) => Effect.Effect<Fitness, E1, Sys.Sys>
  readonly llm?: CapRef | undefined
  readonly mutate?: ((parent: Scored) => Effect.Effect<string, E2, Sys.Sys>) | undefined
  readonly rounds?: number | undefined
  readonly population?: number | undefined
  readonly keep?: number | undefined
}

/**
 * What `evolve` returns: the best variant, the final ranking, each round's ranking, and the calls made.
 *
 * @category models
 */
export interface Result {
  readonly best: Scored
  readonly ranked: ReadonlyArray<Scored>
  readonly history: ReadonlyArray<ReadonlyArray<Scored>>
  readonly evaluations: number
  readonly mutations: number
}

/** The defaults of `Options`. */
export const defaults = { rounds: 3, population: 4, keep: 1 } as const

/**
 * Orders two scored variants: negative when `a` ranks first (correct, fewer steps, tokens, dollars, earlier).
 *
 * @category ranking
 */
export const compare = (a: Scored, b: Scored): number =>
  Number(b.fitness.correct) - Number(a.fitness.correct) ||
  a.fitness.steps - b.fitness.steps ||
  a.fitness.tokens - b.fitness.tokens ||
  a.fitness.usd - b.fitness.usd ||
  a.order - b.order

/**
 * The feedback `refine` gets for a parent.
 *
 * @category ranking
 */
export const feedbackOf = (parent: Scored): string =>
  `${parent.fitness.correct ? "The answer was correct" : "The answer was wrong"}; it took ${parent.fitness.steps} ` +
  `steps, ${parent.fitness.tokens} tokens and $${parent.fitness.usd}. Make the agent answer correctly in fewer ` +
  `steps and tokens.`

const count = (value: number | undefined, fallback: number) => Math.max(1, Math.floor(value ?? fallback))

/**
 * Runs the tournament (see the module documentation). An empty `variants` list is a defect.
 *
 * @category evolving
 */
export const evolve = <E1 = never, E2 = never>(
  options: Options<E1, E2>
): Effect.Effect<Result, E1 | E2 | Sys.DeviceCallError, Sys.Sys> =>
  Effect.gen(function* () {
    const rounds = count(options.rounds, defaults.rounds)
    const population = count(options.population, defaults.population)
    const keep = Math.min(population, count(options.keep, defaults.keep))
    const mutate: ((parent: Scored) => Effect.Effect<string, E2 | Sys.DeviceCallError, Sys.Sys>) | undefined =
      options.mutate ??
      (options.llm === undefined
        ? undefined
        : (parent) => Prompts.refine(options.llm!, parent.variant, feedbackOf(parent)))

    const seen = new Map<string, number>()
    const scores = new Map<string, Scored>()
    const discover = (variant: string): boolean => {
      if (seen.has(variant)) return false
      seen.set(variant, seen.size)
      return true
    }
    let current = options.variants.filter(discover).slice(0, population)
    if (current.length === 0) return yield* Effect.die(new Error("Evolution.evolve: no variants"))

    const history: Array<ReadonlyArray<Scored>> = []
    let evaluations = 0
    let mutations = 0
    for (let round = 1; round <= rounds; round++) {
      for (const variant of current) {
        if (scores.has(variant)) continue
        const fitness = yield* options.fitness(variant)
        evaluations++
        scores.set(variant, { variant, fitness, order: seen.get(variant)!, round })
      }
      const ranked = current.map((variant) => scores.get(variant)!).sort(compare)
      history.push(ranked)
      if (round === rounds || mutate === undefined) break
      const survivors = ranked.slice(0, keep)
      const children: Array<string> = []
      for (let i = 0; i < population - keep; i++) {
        const child = yield* mutate(survivors[i % survivors.length]!)
        mutations++
        if (discover(child)) children.push(child)
      }
      current = [...survivors.map((s) => s.variant), ...children]
    }
    const ranked = history[history.length - 1]!
    return { best: ranked[0]!, ranked, history, evaluations, mutations }
  })

/**
 * Runs `effect` and returns its `{ correct, steps }` with the tokens and dollars charged to the caller meanwhile.
 *
 * @category fitness
 */
export const measure = <E, R>(
  effect: Effect.Effect<{ readonly correct: boolean; readonly steps: number }, E, R>
): Effect.Effect<Fitness, E, R | Sys.Sys> =>
  Effect.gen(function* () {
    const before = yield* Sys.budget()
    const outcome = yield* effect
    const after = yield* Sys.budget()
    return {
      correct: outcome.correct,
      steps: outcome.steps,
      tokens: after.used.tokens - before.used.tokens,
      usd: after.used.usd - before.used.usd
    }
  })
