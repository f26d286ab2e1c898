/**
 * Keeps the kernel's drivers by name and the handles processes opened on them.
 *
 * A handle is opened lazily: `Sys.open` only mints the handle cap; the driver's `open` runs at the first call that
 * goes live, so a replayed run touches no driver at all. A handle is closed when its cap (the one `open` returned)
 * is revoked, which happens at the latest when the process holding it ends.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, type Scope } from "effect"
import type { Driver, Handle } from "./Device.ts"
import { KernelConfigError } from "./KernelConfig.ts"

/**
 * @category models
 */
export interface HandleEntry {
  readonly id: number
  readonly driver: Driver
  /** The pid that opened it; the driver's `open` sees this owner. */
  readonly opener: number
  /** The driver's handle, once a live call has opened it. */
  handle: Handle | undefined
  closed: boolean
}

/**
 * @category models
 */
export interface DeviceTableShape {
  readonly driver: (name: string) => Driver | undefined
  readonly names: () => ReadonlyArray<string>
  readonly create: (driver: Driver, opener: number) => HandleEntry
  readonly get: (id: number) => HandleEntry | undefined
  /** Forgets a handle; returns it when its driver handle was opened and must be closed. */
  readonly remove: (id: number) => HandleEntry | undefined
  /** Open handles, kernel-wide. */
  readonly size: () => number
}

/**
 * @category services
 */
export class DeviceTable extends Context.Service<DeviceTable, DeviceTableShape>()("effect-agent-os/DeviceTable") {}

/**
 * Makes a table over drivers with distinct names (`layerFrom` checks; here a repeated name throws).
 *
 * @category constructors
 */
export const makeUnsafe = (drivers: ReadonlyArray<Driver>): DeviceTableShape => {
  const byName = new Map<string, Driver>()
  for (const driver of drivers) {
    if (byName.has(driver.name)) throw new Error(`two drivers are named ${JSON.stringify(driver.name)}`)
    byName.set(driver.name, driver)
  }
  const handles = new Map<number, HandleEntry>()
  let nextId = 1
  return {
    driver: (name) => byName.get(name),
    names: () => Array.from(byName.keys()),
    create(driver, opener) {
      const entry: HandleEntry = { id: nextId++, driver, opener, handle: undefined, closed: false }
      handles.set(entry.id, entry)
      return entry
    },
    get: (id) => handles.get(id),
    remove(id) {
      const entry = handles.get(id)
      if (entry === undefined) return undefined
      handles.delete(id)
      entry.closed = true
      return entry.handle === undefined ? undefined : entry
    },
    size: () => handles.size
  }
}

/**
 * The table over drivers given as values or as effects that build them (their requirements become the layer's).
 *
 * @category layers
 */
export const layerFrom = <E, R>(
  drivers: ReadonlyArray<Driver | Effect.Effect<Driver, E, R>>
): Layer.Layer<DeviceTable, E | KernelConfigError, Exclude<R, Scope.Scope>> =>
  Layer.effect(DeviceTable)(
    Effect.gen(function* () {
      const built: Array<Driver> = []
      for (const driver of drivers) built.push(Effect.isEffect(driver) ? yield* driver : driver)
      const names = built.map((driver) => driver.name)
      const twice = names.find((name, i) => names.indexOf(name) !== i)
      if (twice !== undefined) {
        return yield* new KernelConfigError({ message: `two drivers are named ${JSON.stringify(twice)}` })
      }
      return makeUnsafe(built)
    })
  )
