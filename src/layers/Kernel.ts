/**
 * Assembles the embedded kernel: every kernel service in memory, stamped by the `Clock` of the context it is built
 * in (so under `it.effect`, the `TestClock`).
 *
 * @since 0.1.0
 */
import { type Effect, Layer, type Scope } from "effect"
import type * as Device from "../services/Device.ts"
import * as DeviceTable from "../services/DeviceTable.ts"
import * as Journal from "../services/Journal.ts"
import * as CapabilityTable from "../services/CapabilityTable.ts"
import * as ContextMemory from "../services/ContextMemory.ts"
import * as EventLog from "../services/EventLog.ts"
import * as InferenceScheduler from "../services/InferenceScheduler.ts"
import { Kernel, layerWithoutDependencies } from "../services/Kernel.ts"
import * as KernelConfig from "../services/KernelConfig.ts"
import * as NameRegistry from "../services/NameRegistry.ts"
import * as ProcessTable from "../services/ProcessTable.ts"
import * as VirtualTime from "../services/VirtualTime.ts"

export * from "../services/Kernel.ts"

/**
 * Options of `Kernel.layer`:
 *
 * - `limits`: the limits to change from `KernelConfig.defaults`;
 * - `drivers`: device drivers, or effects building them from the host app's services (their requirements become the
 *   layer's); each name may appear once;
 * - `journal`: the journal mode (default `live`), over the `Journal.JournalStoreService` in context, or in memory;
 * - `memory`: the context-memory recaller factory and pager (default BM25 and a marker pager);
 * - `virtualTime`: run every process on a virtual clock that jumps to the next timer whenever all processes are
 *   blocked (see `VirtualTime`).
 *
 * @category models
 */
export interface KernelOptions<Drivers extends ReadonlyArray<DriverInput> = ReadonlyArray<DriverInput>> {
  readonly limits?: Partial<KernelConfig.KernelLimits> | undefined
  readonly drivers?: Drivers | undefined
  readonly journal?: Journal.Mode | undefined
  readonly virtualTime?: boolean | undefined
  readonly memory?: Partial<ContextMemory.MemoryOptions> | undefined
}

/** A driver, or an effect that builds one from the host app's services. */
export type DriverInput = Device.Driver | Effect.Effect<Device.Driver, any, any>

/** What building the given drivers can fail with. */
export type DriversError<D> = D extends Effect.Effect<Device.Driver, infer E, any> ? E : never

/** What building the given drivers requires of the host (the kernel layer gives them its scope and its limits). */
export type DriversServices<D> = Exclude<
  D extends Effect.Effect<Device.Driver, any, infer R> ? R : never,
  Scope.Scope | KernelConfig.KernelConfig
>

/**
 * The kernel with all its services. Fails to build with `KernelConfigError` on an invalid limit or two drivers with
 * one name, and with `JournalError` when a journal to replay or recover cannot be loaded.
 *
 * @category layers
 */
export const layer = <const Drivers extends ReadonlyArray<DriverInput> = []>(
  options?: KernelOptions<Drivers>
): Layer.Layer<
  Kernel,
  KernelConfig.KernelConfigError | Journal.JournalError | DriversError<Drivers[number]>,
  DriversServices<Drivers[number]>
> =>
  layerWithoutDependencies.pipe(
    Layer.provide(ProcessTable.layer),
    Layer.provide(
      Layer.mergeAll(
        CapabilityTable.layer,
        EventLog.layer,
        NameRegistry.layer,
        DeviceTable.layerFrom<
          DriversError<Drivers[number]>,
          DriversServices<Drivers[number]> | KernelConfig.KernelConfig | Scope.Scope
        >(
          (options?.drivers ?? []) as ReadonlyArray<
            | Device.Driver
            | Effect.Effect<
                Device.Driver,
                DriversError<Drivers[number]>,
                DriversServices<Drivers[number]> | KernelConfig.KernelConfig | Scope.Scope
              >
          >
        ),
        InferenceScheduler.layer,
        Journal.layer(options?.journal ?? "live")
      )
    ),
    Layer.provide(KernelConfig.layer(options?.limits)),
    Layer.provide(options?.virtualTime === true ? VirtualTime.layer : Layer.empty),
    Layer.provide(
      options?.memory === undefined
        ? Layer.empty
        : Layer.succeed(ContextMemory.MemoryOptions)({
            recaller: options.memory.recaller ?? ContextMemory.bm25,
            pager: options.memory.pager ?? ContextMemory.markerPager
          })
    )
  )
