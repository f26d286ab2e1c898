/**
 * Lets the `Sys` accessors skip a layer of laziness on the hot syscalls.
 *
 * A `Sys` method must return a lazy effect (it may be run many times, or never). The accessors (`Sys.send(...)`)
 * already run inside the calling fiber when they look the service up, so for the kernel's own `Sys` they may perform
 * the call right there instead of building a second lazy layer: one primitive and one closure less per message.
 * Another implementation of `Sys` (a test double) simply lacks the symbol and is called the ordinary way.
 */
import type { Effect, Fiber } from "effect"
import type { CapabilityError, CapRef } from "../Capability.ts"
import type { Message } from "../Process.ts"
import type { ArgumentError, DeviceCallError, SendOptions } from "../Sys.ts"

export const eager: unique symbol = Symbol.for("effect-agent-os/Sys/eager")

/**
 * Performs the syscall when called: only ever called while `fiber` is running the accessor (the kernel checks that
 * `fiber` is one of the process's own, as for every syscall).
 */
export interface EagerSys {
  readonly sendNow: (
    fiber: Fiber.Fiber<unknown, unknown>,
    to: unknown,
    body: unknown,
    options: SendOptions | undefined
  ) => Effect.Effect<void, CapabilityError | ArgumentError>
  readonly recvNow: <T>(fiber: Fiber.Fiber<unknown, unknown>) => Effect.Effect<Message<T>>
  readonly yieldNow: (fiber: Fiber.Fiber<unknown, unknown>) => Effect.Effect<void>
  readonly readNow: <A>(
    fiber: Fiber.Fiber<unknown, unknown>,
    handle: CapRef,
    request: unknown
  ) => Effect.Effect<A, DeviceCallError>
}

export const eagerOf = (sys: object): EagerSys | undefined => (sys as { readonly [eager]?: EagerSys })[eager]
