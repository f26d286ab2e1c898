/**
 * Assembles the embedded kernel: every kernel service in memory, stamped by the `Clock` of the context it is built
 * in (so under `it.effect`, the `TestClock`).
 *
 * @since 0.1.0
 */
import { type Effect, Layer, type Scope } from "effect"
import type * as Device from "../services/Device.ts"
import type { DriverInput, DriversError, DriversServices, KernelOptions } from "../services/Kernel.ts"
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
        Journal.layer(options?.journal ?? "live", { end: options?.journalEnd })
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
