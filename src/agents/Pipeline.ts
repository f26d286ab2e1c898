/**
 * A pipeline of processes with typed pipes between them:
 *
 * ```ts
 * const { input, stages } = yield* Pipeline.make(researcher, Pipe.allow(ResearchResult), summarizer)
 * yield* Sys.send(input, { _tag: "Topic", text: "…" })
 * ```
 *
 * Run in a process (it spawns the stages as its children, linked to it: the pipeline lives and ends as one). Each
 * image gets, as its first start cap, a send cap to the next image (`Sys.caps()[0]`; the last image gets none),
 * narrowed by the stages written between them — so whatever the researcher sends the summarizer must decode as
 * `ResearchResult`, checked by the kernel — then the caps given with it (`{ image, caps }`, e.g. an LLM cap).
 * `input` is a send cap to the first image.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Quota } from "../services/Accounts.ts"
import type { CapabilityError, CapRef } from "../services/Capability.ts"
import type { Image } from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"
import * as Pipe from "./Pipe.ts"

/**
 * One image of a pipeline, with the caps (moved to it) and quota it starts with.
 *
 * @category models
 */
export interface Step {
  readonly image: Image<void>
  readonly caps?: ReadonlyArray<CapRef> | undefined
  readonly quota?: Quota | undefined
}

/** @category models */
export type Part = Image<void> | Step | Pipe.Stage<any>

/**
 * What `make` started.
 *
 * @category models
 */
export interface Pipeline {
  /** A send cap to the first image. */
  readonly input: CapRef
  /** Every image's process, in order. */
  readonly stages: ReadonlyArray<Sys.Spawned>
}

const isStep = (part: Part): part is Step =>
  typeof part === "object" && part !== null && "image" in part && !Pipe.isStage(part)

/**
 * Starts the images last first, each with a send cap to the next narrowed by the stages between them.
 *
 * @category constructors
 */
export const make = (
  ...parts: ReadonlyArray<Part>
): Effect.Effect<
  Pipeline,
  CapabilityError | Sys.ArgumentError | Sys.SpawnError | import("../services/Accounts.ts").QuotaError,
  Sys.Sys
> =>
  Effect.gen(function* () {
    // the parts as images, each with the stages after it
    const steps: Array<{ readonly step: Step; readonly after: Array<Pipe.Stage<any>> }> = []
    const leading: Array<Pipe.Stage<any>> = []
    for (const part of parts) {
      if (Pipe.isStage(part)) {
        if (steps.length === 0) leading.push(part)
        else steps[steps.length - 1]!.after.push(part)
      } else steps.push({ step: isStep(part) ? part : { image: part as Image<void> }, after: [] })
    }
    if (steps.length === 0) return yield* new Sys.ArgumentError({ call: "spawn", message: "a pipeline needs an image" })
    const started: Array<Sys.Spawned> = []
    let next: CapRef | undefined
    for (let i = steps.length - 1; i >= 0; i--) {
      const { step, after } = steps[i]!
      let out = next
      if (out !== undefined) for (const stage of after) out = yield* Pipe.narrow(out, stage)
      const spawned = yield* Sys.spawn(step.image, {
        caps: [...(out === undefined ? [] : [out]), ...(step.caps ?? [])],
        link: true,
        ...(step.quota === undefined ? {} : { quota: step.quota })
      })
      started.unshift(spawned)
      next = yield* Sys.derive(spawned.cap, ["send"])
    }
    let input = next!
    for (const stage of leading) input = yield* Pipe.narrow(input, stage)
    return { input, stages: started }
  })
