/**
 * Typed pipes between processes: a send cap the kernel checks with a Schema (`Sys.attenuate(cap, { message })`).
 * A body that does not decode never reaches the receiver — the sender's send fails with an `ArgumentError`
 * (`invalid: "fail"`, the default) or the message is dead-lettered (`"drop"`: a `Drop` event `invalid`) — and the
 * receiver gets the decoded value. The check is the kernel's, on the body it copied, so a sender cannot get around
 * it: every cap derived from a pipe's cap is the same pipe, and narrowing it again only adds a Schema.
 *
 * A stage is a Schema and what to do with what does not decode:
 *
 * ```ts
 * const results = Pipe.allow(ResearchResult)            // admits ResearchResult messages only
 * const cap = yield* Pipe.narrow(summarizerCap, results) // give this one to the researcher
 * ```
 *
 * `Pipe.allow(A, B, …)` admits the listed message types (their union); `Pipe.allow()` admits nothing — a policy
 * stage that lets everything through must be written as `Pipe.typed(Schema.Unknown)`, never by accident.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import type { CapabilityError, CapRef } from "../services/Capability.ts"
import * as Sys from "../services/Sys.ts"

/**
 * A pipe stage: what a body must decode as, and what becomes of one that does not.
 *
 * @category models
 */
export interface Stage<A = unknown> {
  readonly _tag: "PipeStage"
  readonly schema: Schema.Schema<A>
  readonly invalid: "fail" | "drop"
}

/**
 * A stage that admits only the listed message types (the union of the Schemas); none listed admits nothing.
 *
 * @category constructors
 */
export const allow = <const Schemas extends ReadonlyArray<Schema.Schema<any>>>(
  ...schemas: Schemas
): Stage<Schemas[number]["Type"]> => ({
  _tag: "PipeStage",
  schema: (schemas.length === 0
    ? Schema.Never
    : schemas.length === 1
      ? schemas[0]!
      : Schema.Union(schemas as unknown as ReadonlyArray<Schema.Schema<any>>)) as Schema.Schema<
    Schemas[number]["Type"]
  >,
  invalid: "fail"
})

/**
 * A stage over any Schema, with `invalid` (default `fail`).
 *
 * @category constructors
 */
export const typed = <A>(schema: Schema.Schema<A>, options?: { readonly invalid?: "fail" | "drop" }): Stage<A> => ({
  _tag: "PipeStage",
  schema,
  invalid: options?.invalid ?? "fail"
})

/**
 * The same stage, dead-lettering what does not decode instead of failing the send.
 *
 * @category combinators
 */
export const dropInvalid = <A>(stage: Stage<A>): Stage<A> => ({ ...stage, invalid: "drop" })

/**
 * A cap to the same process through the stage: a send through it must decode as the stage's Schema.
 *
 * @category constructors
 */
export const narrow = (
  cap: CapRef,
  stage: Stage<any>
): Effect.Effect<CapRef, CapabilityError | Sys.ArgumentError, Sys.Sys> =>
  Sys.attenuate(cap, { message: stage.schema, invalid: stage.invalid })

/** Whether `u` is a stage (`allow`, `typed`). */
export const isStage = (u: unknown): u is Stage =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "PipeStage"
