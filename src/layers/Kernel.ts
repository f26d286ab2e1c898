/**
 * Assembles the embedded kernel: every kernel service in memory, stamped by the `Clock` of the context it is built
 * in (so under `it.effect`, the `TestClock`).
 *
 * @since 0.1.0
 */
import { Layer } from "effect"
import * as CapabilityTable from "../services/CapabilityTable.ts"
import * as EventLog from "../services/EventLog.ts"
import { Kernel, layerWithoutDependencies } from "../services/Kernel.ts"
import * as KernelConfig from "../services/KernelConfig.ts"
import * as NameRegistry from "../services/NameRegistry.ts"
import * as ProcessTable from "../services/ProcessTable.ts"

export * from "../services/Kernel.ts"

/**
 * Options of `Kernel.layer`: the limits to change from `KernelConfig.defaults`.
 *
 * @category models
 */
export interface KernelOptions {
  readonly limits?: Partial<KernelConfig.KernelLimits> | undefined
}

/**
 * The kernel with all its services. Fails to build with `KernelConfigError` on an invalid limit.
 *
 * @category layers
 */
export const layer = (options?: KernelOptions): Layer.Layer<Kernel, KernelConfig.KernelConfigError> =>
  layerWithoutDependencies().pipe(
    Layer.provide(ProcessTable.layer),
    Layer.provide(Layer.mergeAll(CapabilityTable.layer, EventLog.layer, NameRegistry.layer)),
    Layer.provide(KernelConfig.layer(options?.limits))
  )
