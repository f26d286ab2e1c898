/**
 * Keeps the kernel's drivers by name and the handles processes opened on them.
 *
 * A handle is opened lazily: `Sys.open` only mints the handle cap; the driver's `open` runs at the first call that
 * goes live, so a replayed run touches no driver at all. A handle is closed when its cap (the one `open` returned)
 * is revoked, which happens at the latest when the process holding it ends.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Schema, type Scope } from "effect"
import type { Driver, Handle } from "./Device.ts"
import { PolicySchema } from "./InferenceScheduler.ts"
import { type KernelDevice, kernelDeviceOf, register } from "./internal/kernelDevice.ts"
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
  /** Set when the driver is one the kernel serves itself (the VFS). */
  readonly kernelDevice: KernelDevice | undefined
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

const AnyFunction = Schema.declare(
  (u: unknown): u is (...args: ReadonlyArray<never>) => unknown => typeof u === "function",
  {
    expected: "a function"
  }
)

/**
 * What the kernel reads of a driver. Fields other than these (a tool set's declarations, …) are not kept.
 *
 * @category schemas
 */
export const DriverSchema = Schema.Struct({
  name: Schema.NonEmptyString,
  open: AnyFunction,
  meters: Schema.optional(Schema.Array(Schema.Literals(["tokens", "toolCalls", "usd"]))),
  scheduled: Schema.optional(Schema.Union([Schema.Boolean, PolicySchema])),
  reserve: Schema.optional(AnyFunction),
  denied: Schema.optional(AnyFunction)
})

const decodeDriver = Schema.decodeUnknownResult(DriverSchema, { errors: "all" })

/** The driver's own fields, each read once (also from a prototype, for a driver that is a class instance). */
const fieldsOf = (driver: unknown): unknown => {
  if (typeof driver !== "object" || driver === null) return driver
  const source = driver as Record<string, unknown>
  const fields: Record<string, unknown> = {}
  for (const key of ["name", "open", "meters", "scheduled", "reserve", "denied"]) {
    const value = source[key]
    if (value !== undefined) fields[key] = value
  }
  return fields
}

/**
 * Decodes every driver and checks that names are distinct: the decoded copies, or one `KernelConfigError` that lists
 * every problem of every driver.
 */
const decodeDrivers = (drivers: ReadonlyArray<unknown>): ReadonlyArray<Driver> | KernelConfigError => {
  const problems: Array<string> = []
  const decoded: Array<Driver> = []
  const seen = new Set<string>()
  drivers.forEach((driver, index) => {
    const fields = fieldsOf(driver)
    const result = decodeDriver(fields)
    if (result._tag === "Failure") {
      const name = (fields as { readonly name?: unknown } | null)?.name
      const which = typeof name === "string" && name !== "" ? `${JSON.stringify(name)}` : `#${index + 1}`
      const issues = result.failure.message
      problems.push(`driver ${which}: ${issues.replaceAll("\n  at ", " at ").replaceAll("\n", "; ")}`)
      return
    }
    const { name, open, meters, scheduled, reserve, denied } = result.success
    if (seen.has(name)) problems.push(`two drivers are named ${JSON.stringify(name)}`)
    seen.add(name)
    // bound to the driver given, so a driver written as a class keeps its `this`
    const copy = {
      name,
      open: open.bind(driver) as Driver["open"],
      ...(meters === undefined ? {} : { meters }),
      ...(scheduled === undefined ? {} : { scheduled }),
      ...(reserve === undefined ? {} : { reserve: reserve.bind(driver) as NonNullable<Driver["reserve"]> }),
      ...(denied === undefined ? {} : { denied: denied.bind(driver) as NonNullable<Driver["denied"]> })
    }
    // a kernel device stays one in the copy (its registration is this package's, not a field a host could set)
    const kernelDevice = kernelDeviceOf(driver as object)
    if (kernelDevice !== undefined) register(copy, kernelDevice)
    decoded.push(copy)
  })
  return problems.length > 0 ? new KernelConfigError({ message: `invalid drivers: ${problems.join("; ")}` }) : decoded
}

/**
 * Makes a table over drivers, decoded as `layerFrom` does; an invalid driver or a repeated name throws the
 * `KernelConfigError`.
 *
 * @category constructors
 */
export const makeUnsafe = (drivers: ReadonlyArray<Driver>): DeviceTableShape => {
  const decoded = decodeDrivers(drivers)
  if (decoded instanceof KernelConfigError) throw decoded
  return tableOf(decoded)
}

/** The table over decoded drivers with distinct names. */
const tableOf = (drivers: ReadonlyArray<Driver>): DeviceTableShape => {
  const byName = new Map<string, Driver>()
  for (const driver of drivers) byName.set(driver.name, driver)
  const handles = new Map<number, HandleEntry>()
  let nextId = 1
  return {
    driver: (name) => byName.get(name),
    names: () => Array.from(byName.keys()),
    create(driver, opener) {
      const entry: HandleEntry = {
        id: nextId++,
        driver,
        opener,
        handle: undefined,
        kernelDevice: kernelDeviceOf(driver),
        closed: false
      }
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
 * Fails with one `KernelConfigError` naming every invalid driver and each of its problems, and any repeated name.
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
      const decoded = decodeDrivers(built)
      if (decoded instanceof KernelConfigError) return yield* decoded
      return tableOf(decoded)
    })
  )
