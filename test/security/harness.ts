/**
 * Shared pieces of the attack suite (issue 8): running a root process on a test kernel with a real-time bound, reading
 * a syscall's outcome as a value, and recognising kernel records an attacker must never reach.
 *
 * Not a test file (vitest collects `*.test.ts` only).
 */
import { assert } from "@effect/vitest"
import { Cause, Clock, Effect, Exit } from "effect"
import type { Duration } from "effect"
import { TestClock } from "effect/testing"
import { Kernel, Process, Sys } from "effect-agent-os"
import * as TestKernel from "effect-agent-os/testing"

const isObject = (v: unknown): v is object => (typeof v === "object" && v !== null) || typeof v === "function"

/** A root body: the boot grant, and the host's kernel (for `ps`, `metrics`, `trace`, `snapshot`: host-side reads). */
export type Body<A, E> = (grant: Kernel.BootGrant, kernel: Kernel.KernelShape) => Effect.Effect<A, E, Sys.Sys>

/**
 * Bounds `effect` by real time, so that a kernel that leaves the test waiting (a message that never comes, a process
 * that never ends) fails the test at once instead of at vitest's timeout. Provide the kernel layer *outside* of it:
 * the kernel must be built on the test clock.
 */
export const within = <A, E, R>(effect: Effect.Effect<A, E, R>, limit: Duration.Input = "1500 millis") =>
  Clock.clockWith((clock) => {
    const bounded = Effect.timeoutOrElse(effect, {
      duration: limit,
      orElse: () => Effect.die(new Error("the test was left waiting: the kernel never answered"))
    })
    // under it.effect the timeout runs on the live clock; under it.live it already does
    return typeof (clock as { readonly withLive?: unknown }).withLive === "function"
      ? TestClock.withLive(bounded)
      : bounded
  })

/** Runs `body` as a root process (pid 1, init) on the kernel in context and returns what it returns. */
export const runOn = <A, E>(body: Body<A, E>, boot?: Kernel.BootOptions) =>
  Effect.gen(function* () {
    const kernel = yield* Kernel.Kernel
    return yield* within(TestKernel.runProcess((grant) => body(grant, kernel), boot))
  })

/** Runs `body` as a root process on a fresh default test kernel. */
export const run = <A, E>(body: Body<A, E>, boot?: Kernel.BootOptions) =>
  runOn(body, boot).pipe(Effect.provide(TestKernel.layer()))

/** Runs `body` as a child (image "rememberer") with `quota` on a fresh default test kernel; how it ended. */
export const endOf = (body: () => Effect.Effect<unknown, unknown, Sys.Sys>, quota: { readonly mem: number }) =>
  run(() =>
    Effect.gen(function* () {
      const { cap } = yield* Sys.spawn(
        Process.make("rememberer", () => Effect.asVoid(body())),
        { quota }
      )
      return yield* Sys.waitpid(cap)
    })
  )

/**
 * What a syscall failed with, as a value, or `"succeeded"`. Interruption (the kernel ended the caller) and defects
 * propagate: the body stops there.
 */
export const outcome = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<unknown, never, R> =>
  Effect.match(effect, { onFailure: (error): unknown => error, onSuccess: (): unknown => "succeeded" })

/** Like `outcome`, but interruption and defects become values too (`"interrupted"`, `"died: …"`). */
export const attempt = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<unknown, never, R> =>
  Effect.map(Effect.exit(effect), (exit): unknown => {
    if (Exit.isSuccess(exit)) return "succeeded"
    if (Cause.hasInterruptsOnly(exit.cause)) return "interrupted"
    const found = Cause.findError(exit.cause)
    return found._tag === "Success" ? found.success : `died: ${String(Cause.squash(exit.cause))}`
  })

export const tagOf = (u: unknown): unknown =>
  typeof u === "object" && u !== null ? (u as { readonly _tag?: unknown })._tag : undefined

export const show = (u: unknown): string => {
  if (typeof u === "string") return u
  try {
    return JSON.stringify(u, (_, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(u)
  } catch {
    return String(u)
  }
}

/** Asserts an `ArgumentError { call, message }` (of `call`, when given). */
export const assertArgumentError = (u: unknown, call?: string): void => {
  assert.strictEqual(tagOf(u), "ArgumentError", `expected an ArgumentError, got ${show(u)}`)
  const error = u as { readonly call: unknown; readonly message: unknown }
  if (call !== undefined) assert.strictEqual(error.call, call, `ArgumentError of ${call}`)
  assert.isString(error.message)
}

/** Asserts a `CapabilityError` with one of `reasons`. */
export const assertCapabilityError = (u: unknown, ...reasons: ReadonlyArray<string>): void => {
  assert.strictEqual(tagOf(u), "CapabilityError", `expected a CapabilityError, got ${show(u)}`)
  const reason = (u as { readonly reason: string }).reason
  assert.include(reasons, reason, `CapabilityError reason ${reason}, expected one of ${reasons.join(", ")}`)
}

/** Asserts a `QuotaError` of `resource` with `reason`. */
export const assertQuotaError = (u: unknown, resource: string, reason: string): void => {
  assert.strictEqual(tagOf(u), "QuotaError", `expected a QuotaError, got ${show(u)}`)
  assert.deepInclude(u as object, { resource, reason })
}

export const isAlive = (kernel: Kernel.KernelShape, pid: number) =>
  Effect.map(kernel.ps(), (rows) => rows.some((row) => row.pid === pid))

export const rowOf = (kernel: Kernel.KernelShape, pid: number) =>
  Effect.map(kernel.ps(), (rows) => rows.find((row) => row.pid === pid))

/** Receives and ignores messages until ended. */
export const idle = Process.make("idle", () => Effect.forever(Sys.recv()))
/** Never receives: its mailbox only fills. */
export const deaf = Process.make("deaf", () => Effect.never)

export const range = (n: number): ReadonlyArray<number> => Array.from({ length: n }, (_, i) => i)

// ---------------------------------------------------------------------------------------------------------------------
// Kernel records

/**
 * Field names of the kernel's own records: a cap record (`owner`, `rights`), a process (`account`, `mailbox`,
 * `kernel`), the kernel state (`procs`, `caps` as a table), the cap table (`mint`). None of these may be reachable
 * from image code. `owner`, `rights` and `mint` count whatever they hold; the others only when they hold an object
 * (a budget's `limits.mailbox` is a number, `Sys.caps` is a syscall, a message's `caps` is an array of refs).
 */
export const recordFields: ReadonlyArray<string> = ["owner", "rights", "mint"]
const objectFields: ReadonlyArray<string> = ["account", "mailbox", "procs", "kernel"]

/** The kernel-record field `o` has as an own property, if any. */
export const kernelRecordField = (o: object): string | undefined => {
  try {
    for (const name of recordFields) if (Object.hasOwn(o, name)) return name
    for (const name of objectFields) {
      const descriptor = Object.getOwnPropertyDescriptor(o, name)
      if (descriptor !== undefined && "value" in descriptor && isObject(descriptor.value)) return name
    }
    const caps = Object.getOwnPropertyDescriptor(o, "caps")
    if (
      caps !== undefined &&
      "value" in caps &&
      typeof caps.value === "object" &&
      caps.value !== null &&
      !Array.isArray(caps.value)
    ) {
      return "caps"
    }
  } catch {
    // a revoked proxy, say: nothing to read
  }
  return undefined
}

const builtinPrototypes = new Set<unknown>([
  Object.prototype,
  Function.prototype,
  Array.prototype,
  Map.prototype,
  Set.prototype,
  WeakMap.prototype,
  WeakSet.prototype,
  Promise.prototype,
  Error.prototype,
  String.prototype,
  Number.prototype,
  Boolean.prototype,
  Symbol.prototype,
  Date.prototype,
  RegExp.prototype
])

/**
 * Every object reachable from `roots` by reading properties: own properties (string and symbol keys) of each object
 * and of every object on its prototype chain (short of the built-in prototypes), getters called on the object itself.
 */
export const reachable = (roots: ReadonlyArray<unknown>, max = 50_000): ReadonlyArray<object> => {
  const seen = new Set<object>()
  const queue: Array<object> = []
  const visit = (v: unknown) => {
    if (isObject(v) && !builtinPrototypes.has(v) && !seen.has(v)) {
      seen.add(v)
      queue.push(v)
    }
  }
  for (const root of roots) visit(root)
  for (let i = 0; i < queue.length && i < max; i++) {
    const o = queue[i]!
    for (let p: object | null = o; p !== null && !builtinPrototypes.has(p); p = Object.getPrototypeOf(p)) {
      visit(p)
      for (const key of Reflect.ownKeys(p)) {
        const descriptor = Object.getOwnPropertyDescriptor(p, key)
        if (descriptor === undefined) continue
        if ("value" in descriptor) visit(descriptor.value)
        else if (descriptor.get !== undefined) {
          try {
            visit(descriptor.get.call(o))
          } catch {
            // a getter that refuses this receiver
          }
        }
      }
    }
  }
  return Array.from(seen)
}

/** Describes the kernel records among `objects`, for an assertion message. */
export const kernelRecords = (objects: Iterable<object>): ReadonlyArray<string> => {
  const found: Array<string> = []
  for (const o of objects) {
    const field = kernelRecordField(o)
    if (field !== undefined) {
      const keys = Object.keys(o).slice(0, 8).join(", ")
      found.push(`${o.constructor?.name ?? "object"} with ${field} { ${keys} }`)
    }
  }
  return found
}

// ---------------------------------------------------------------------------------------------------------------------
// Patched built-ins

export interface Recorder {
  /** Every object a patched built-in saw as `this`, as an argument, or (for `get`/`next`) as a result. */
  readonly seen: () => ReadonlyArray<object>
  readonly restore: () => void
}

/**
 * What hostile image code in the kernel's realm can do: wrap `Set`/`Map`/`Array` methods, `Object.freeze` and the
 * iterators' `next` so that they record everything they see. Call `restore` (in a finalizer) before asserting.
 */
export const patchBuiltins = (): Recorder => {
  const seen: Array<object> = []
  let count = 0
  let busy = false
  const note = (v: unknown) => {
    if (isObject(v)) seen[count++] = v
  }
  const restores: Array<() => void> = []
  const wrap = (target: Record<PropertyKey, unknown>, key: PropertyKey, results: boolean) => {
    const original = target[key] as (...args: Array<unknown>) => unknown
    const wrapped = function (this: unknown, ...args: Array<unknown>) {
      if (!busy) {
        busy = true
        try {
          note(this)
          for (let i = 0; i < args.length; i++) note(args[i])
        } finally {
          busy = false
        }
      }
      const result = Reflect.apply(original, this, args)
      if (results && !busy) {
        busy = true
        try {
          note(result)
          if (isObject(result) && Object.hasOwn(result, "value")) note((result as { readonly value: unknown }).value)
        } finally {
          busy = false
        }
      }
      return result
    }
    target[key] = wrapped
    restores.push(() => {
      target[key] = original
    })
  }
  const proto = (o: object) => Object.getPrototypeOf(o) as Record<PropertyKey, unknown>
  for (const key of ["add", "has", "delete"]) wrap(Set.prototype as never, key, false)
  wrap(Map.prototype as never, "set", false)
  wrap(Map.prototype as never, "get", true)
  wrap(Map.prototype as never, "delete", false)
  for (const key of ["push", "includes", "map", "indexOf"]) wrap(Array.prototype as never, key, false)
  wrap(Object as never, "freeze", false)
  wrap(proto([][Symbol.iterator]()), "next", true)
  wrap(proto(new Set().values()), "next", true)
  wrap(proto(new Map().entries()), "next", true)
  return {
    seen: () => {
      // arrays seen (Map entries, argument lists) are opened one level
      const out = new Set<object>()
      for (let i = 0; i < count; i++) {
        const o = seen[i]!
        out.add(o)
        if (Array.isArray(o)) for (let j = 0; j < o.length; j++) if (isObject(o[j])) out.add(o[j] as object)
      }
      return Array.from(out)
    },
    restore: () => {
      for (let i = restores.length - 1; i >= 0; i--) restores[i]!()
    }
  }
}

/** Defines `key` on `target` for a test (a getter, a setter, a value), and returns what puts back what was there. */
export const pollute = (target: object, key: PropertyKey, descriptor: PropertyDescriptor): (() => void) => {
  const before = Reflect.getOwnPropertyDescriptor(target, key)
  Reflect.defineProperty(target, key, { configurable: true, ...descriptor })
  return () => {
    if (before === undefined) Reflect.deleteProperty(target, key)
    else Reflect.defineProperty(target, key, before)
  }
}
