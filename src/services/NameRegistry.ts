/**
 * Maps registered names to live processes; a name is cleared when its holder exits.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Schema } from "effect"
import { KernelConfig } from "./KernelConfig.ts"

/**
 * `register`/`unregister` refused:
 *
 * - `taken`: another live process holds the name;
 * - `not-holder`: the caller does not hold the name it tried to unregister;
 * - `invalid`: empty, or longer than `KernelConfig.nameLengthMax`;
 * - `full`: `KernelConfig.namesMax` names are registered.
 *
 * @category errors
 */
export class NameError extends Schema.TaggedError<NameError>()("NameError", {
  name: Schema.String,
  reason: Schema.Literals(["taken", "not-holder", "invalid", "full"])
}) {
  override get message(): string {
    return `name ${JSON.stringify(this.name.slice(0, 64))}: ${this.reason}`
  }
}

/**
 * @category models
 */
export interface NameRegistryShape {
  readonly register: (name: string, pid: number) => NameError | undefined
  readonly unregister: (name: string, pid: number) => NameError | undefined
  readonly whereis: (name: string) => number | undefined
  /** Clears every name `pid` holds. */
  readonly releaseAll: (pid: number) => void
  readonly size: () => number
}

/**
 * @category services
 */
export class NameRegistry extends Context.Service<NameRegistry, NameRegistryShape>()("effect-agent-os/NameRegistry") {}

/**
 * @category constructors
 */
export const makeUnsafe = (limits: {
  readonly namesMax: number
  readonly nameLengthMax: number
}): NameRegistryShape => {
  const holders = new Map<string, number>()
  const byPid = new Map<number, Set<string>>()
  return {
    register(name, pid) {
      if (typeof name !== "string" || name.length === 0 || name.length > limits.nameLengthMax) {
        return new NameError({ name: String(name), reason: "invalid" })
      }
      const holder = holders.get(name)
      if (holder === pid) return undefined
      if (holder !== undefined) return new NameError({ name, reason: "taken" })
      if (holders.size >= limits.namesMax) return new NameError({ name, reason: "full" })
      holders.set(name, pid)
      let names = byPid.get(pid)
      if (names === undefined) byPid.set(pid, (names = new Set()))
      names.add(name)
      return undefined
    },
    unregister(name, pid) {
      if (holders.get(name) !== pid) return new NameError({ name: String(name), reason: "not-holder" })
      holders.delete(name)
      const names = byPid.get(pid)
      names?.delete(name)
      if (names?.size === 0) byPid.delete(pid)
      return undefined
    },
    whereis: (name) => holders.get(name),
    releaseAll(pid) {
      const names = byPid.get(pid)
      if (names === undefined) return
      for (const name of names) holders.delete(name)
      byPid.delete(pid)
    },
    size: () => holders.size
  }
}

/**
 * @category layers
 */
export const layer: Layer.Layer<NameRegistry, never, KernelConfig> = Layer.effect(NameRegistry)(
  Effect.gen(function* () {
    return makeUnsafe(yield* KernelConfig)
  })
)
