/**
 * Brokers capabilities by name: a process image that keeps caps registered under names and hands out send-only
 * derivations of them.
 *
 * Spawn `NameService.make()` and give its clients a `send` cap to it. Requests are message bodies, decoded with
 * `Request` (a body that does not decode is dropped, and any caps it carried are revoked: a bad message never crashes
 * the service):
 *
 * - `{ _tag: "Register", name }` with caps `[cap to register, reply cap?]` → `Registered { name }` or
 *   `Refused { name, reason }`;
 * - `{ _tag: "Lookup", name }` with caps `[reply cap]` → `Found { name }` carrying a send-only cap, or
 *   `NotFound { name }`;
 * - `{ _tag: "Unregister", name }` with caps `[reply cap?]` → `Unregistered { name }`, `NotFound { name }` or
 *   `Refused { name, reason }`.
 *
 * - **Register**: the cap must carry `send` and `monitor` (`monitor`, so the service can see the process end; `send`,
 *   so it can hand out send-only copies); the service keeps it. Refused when a right is missing or the cap is not
 *   usable (`"the registered cap must carry send and monitor"`), when the name is taken (`"name taken"`), when
 *   `namesMax` names are registered (`"registry full"`). Names are 1 to `nameLengthMax` characters.
 * - **Lookup**: `Found` carries `Sys.derive(cap, ["send"])`: the receiver can send to the registered process but
 *   neither kill nor monitor it, and the service's own cap stays with the service.
 * - **Unregister**: only the process that registered the name (the kernel-set `from` of its `Register`) may drop it
 *   (`"not the registrant"` otherwise; `NotFound` when there is no such name). The service revokes its cap, so every
 *   send-only copy it handed out stops working too.
 * - An entry drops by itself when the registered process ends (the service waits on it with `Sys.waitpid`, and a
 *   `Lookup` or `Register` of the name checks it first, so a request sent after the death never sees the entry); the
 *   caps derived from it are then revoked with it.
 *
 * Without a reply cap, a request is carried out and nothing is answered. The service ends `Normal` on `Term`, and
 * otherwise runs until it is killed.
 *
 * @since 0.1.0
 */
import { Effect, Fiber, Schema } from "effect"
import type { CapRef } from "../services/Capability.ts"
import * as Process from "../services/Process.ts"
import * as Sys from "../services/Sys.ts"

/**
 * The requests the service understands.
 *
 * @category protocol
 */
export const Request = Schema.Union([
  Schema.TaggedStruct("Register", { name: Schema.String }),
  Schema.TaggedStruct("Lookup", { name: Schema.String }),
  Schema.TaggedStruct("Unregister", { name: Schema.String })
])
export type Request = typeof Request.Type

/**
 * The replies the service sends.
 *
 * @category protocol
 */
export const Reply = Schema.Union([
  Schema.TaggedStruct("Registered", { name: Schema.String }),
  Schema.TaggedStruct("Unregistered", { name: Schema.String }),
  Schema.TaggedStruct("Found", { name: Schema.String }),
  Schema.TaggedStruct("NotFound", { name: Schema.String }),
  Schema.TaggedStruct("Refused", { name: Schema.String, reason: Schema.String })
])
export type Reply = typeof Reply.Type

/**
 * Options of `NameService.make`: `name` (default `"name-service"`), `namesMax` (default 10 000 names),
 * `nameLengthMax` (default 256 characters).
 *
 * @category models
 */
export interface Options {
  readonly name?: string | undefined
  readonly namesMax?: number | undefined
  readonly nameLengthMax?: number | undefined
}

/** @category defaults */
export const defaults = { name: "name-service", namesMax: 10_000, nameLengthMax: 256 } as const

interface Entry {
  readonly cap: CapRef
  readonly registrant: number
  watcher: Fiber.Fiber<void> | undefined
}

const decode = Schema.decodeUnknownExit(Request)

/**
 * Makes a name-service image (see the module documentation for the protocol).
 *
 * @category constructors
 */
export const make = (options?: Options): Process.Image<void> =>
  Process.make(options?.name ?? defaults.name, () =>
    Effect.gen(function* () {
      const namesMax = options?.namesMax ?? defaults.namesMax
      const nameLengthMax = options?.nameLengthMax ?? defaults.nameLengthMax
      const entries = new Map<string, Entry>()

      const reply = (to: CapRef | undefined, body: Reply, caps?: ReadonlyArray<CapRef>) =>
        to === undefined
          ? Effect.void
          : Sys.send(to, body, caps === undefined ? undefined : { caps }).pipe(
              // a reply cap that does not work: the caps meant for the client stay with us, so drop them
              Effect.catch(() => Effect.forEach(caps ?? [], (cap) => Effect.ignore(Sys.revoke(cap)), { discard: true }))
            )

      const drop = (name: string, entry: Entry) =>
        Effect.gen(function* () {
          if (entries.get(name) !== entry) return
          entries.delete(name)
          yield* Effect.ignore(Sys.revoke(entry.cap))
        })

      /**
       * Has the process behind `cap` ended? A non-blocking `waitpid`: it answers at once for an ended process, so the
       * answer never waits for the watcher fiber to be scheduled.
       */
      const ended = (cap: CapRef) =>
        Effect.gen(function* () {
          const waiting = yield* Effect.forkChild(Sys.waitpid(cap), { startImmediately: true })
          const exit = waiting.pollUnsafe()
          if (exit === undefined) yield* Fiber.interrupt(waiting)
          return exit !== undefined
        })

      const handle = (message: Process.Message, request: Request) =>
        Effect.gen(function* () {
          const { name } = request
          const invalidName = name.length === 0 || name.length > nameLengthMax
          switch (request._tag) {
            case "Register": {
              const [cap, replyTo] = message.caps
              const refuse = (reason: string) =>
                Effect.gen(function* () {
                  if (cap !== undefined) yield* Effect.ignore(Sys.revoke(cap))
                  yield* reply(replyTo, { _tag: "Refused", name, reason })
                })
              if (invalidName) return yield* refuse(`a name has 1 to ${nameLengthMax} characters`)
              if (cap === undefined) return yield* refuse("no cap to register")
              // both rights, checked without acting: a derivation with them exists only if the cap has them
              const probe = yield* Effect.result(Sys.derive(cap, ["send", "monitor"]))
              if (probe._tag === "Failure") return yield* refuse("the registered cap must carry send and monitor")
              yield* Sys.revoke(probe.success)
              const holder = entries.get(name)
              if (holder !== undefined && (yield* ended(holder.cap))) yield* drop(name, holder)
              if (entries.has(name)) return yield* refuse("name taken")
              if (entries.size >= namesMax) return yield* refuse("registry full")
              const entry: Entry = { cap, registrant: message.from, watcher: undefined }
              entries.set(name, entry)
              entry.watcher = yield* Effect.forkChild(
                Effect.ignore(Sys.waitpid(cap)).pipe(Effect.andThen(drop(name, entry)))
              )
              return yield* reply(replyTo, { _tag: "Registered", name })
            }
            case "Lookup": {
              const replyTo = message.caps[0]
              const entry = entries.get(name)
              if (entry !== undefined && (yield* ended(entry.cap))) yield* drop(name, entry)
              if (entry === undefined || !entries.has(name)) return yield* reply(replyTo, { _tag: "NotFound", name })
              if (replyTo === undefined) return
              const sendOnly = yield* Effect.result(Sys.derive(entry.cap, ["send"]))
              if (sendOnly._tag === "Failure") {
                yield* drop(name, entry)
                return yield* reply(replyTo, { _tag: "NotFound", name })
              }
              return yield* reply(replyTo, { _tag: "Found", name }, [sendOnly.success])
            }
            case "Unregister": {
              const replyTo = message.caps[0]
              const entry = entries.get(name)
              if (entry === undefined) return yield* reply(replyTo, { _tag: "NotFound", name })
              if (entry.registrant !== message.from) {
                return yield* reply(replyTo, { _tag: "Refused", name, reason: "not the registrant" })
              }
              yield* drop(name, entry)
              if (entry.watcher !== undefined) yield* Fiber.interrupt(entry.watcher)
              return yield* reply(replyTo, { _tag: "Unregistered", name })
            }
          }
        })

      while (true) {
        const message = yield* Sys.recv()
        if (Process.isKernelMessage(message)) {
          if (message.body._tag === "Term") return
          continue
        }
        const decoded = decode(message.body)
        if (decoded._tag === "Success") yield* handle(message, decoded.value)
        // the service keeps only registered caps: reply caps and anything else a client attached are revoked
        const request = decoded._tag === "Success" ? decoded.value : undefined
        const kept = request?._tag === "Register" ? entries.get(request.name)?.cap : undefined
        for (const cap of message.caps) if (cap !== kept) yield* Effect.ignore(Sys.revoke(cap))
      }
    })
  )
