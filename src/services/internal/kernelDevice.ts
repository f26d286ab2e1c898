/**
 * Devices the kernel serves itself, over what it keeps of a process (the VFS): how the driver path recognises them.
 *
 * A kernel device is made only by this package (`Vfs.driver`): its driver value is registered here, and the device
 * table carries the registration over to the copy of the driver it keeps. A call on it is capability-checked,
 * judged by policies, reserved and charged like any driver call. A call that reads or changes only kernel state
 * (`local` answers an effect) runs in the caller's syscall and is not journaled: it is a function of state a replay
 * rebuilds, so a replay runs it again. Every other call goes to its handle (`open`), journaled like any driver's.
 *
 * Private to the package.
 */
import type { Effect } from "effect"
import type { DeviceError, DeviceResult, Handle } from "../Device.ts"
import type { KernelState } from "./kernelState.ts"
import type { Proc } from "./proc.ts"

export interface KernelDevice {
  /** The kernel-state call this (copied) request is, run for the caller; `undefined`: it goes to the handle. */
  readonly local: (
    proc: Proc,
    call: "read" | "write",
    request: unknown
  ) => Effect.Effect<DeviceResult, DeviceError> | undefined
  /**
   * The (copied) request in its canonical form, before policies judge it: what a rule matches is what the device
   * does (a VFS path with `.`, `..` and `//` resolved). A request it cannot make canonical is returned as it is.
   */
  readonly canonical: (request: unknown) => unknown
  /** Opens the handle for the journaled calls. */
  readonly open: (kernel: KernelState, opener: number) => Effect.Effect<Handle, DeviceError>
}

const registry = new WeakMap<object, KernelDevice>()
const weakMapGet = WeakMap.prototype.get
const weakMapSet = WeakMap.prototype.set
const apply = Reflect.apply

/** Registers `driver` as a kernel device. */
export const register = (driver: object, device: KernelDevice): void => {
  apply(weakMapSet, registry, [driver, device])
}

/** The kernel device `driver` is, if it is one. */
export const kernelDeviceOf = (driver: object): KernelDevice | undefined =>
  apply(weakMapGet, registry, [driver]) as KernelDevice | undefined
