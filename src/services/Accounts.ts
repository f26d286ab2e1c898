/**
 * Keeps hierarchical budgets: carves a child's quota from its parent's and charges meters up the ancestor chain.
 *
 * Each process has an account. Cumulative meters (`tokens`, `toolCalls`, `usd`) count what the process and its whole
 * subtree spent: a charge is applied to the process and every ancestor in one synchronous step, never to part of the
 * chain. A limit is a ceiling on the subtree: a child's limit may not exceed what its parent has left when it is
 * spawned, and every charge is checked against every ancestor, so no subtree can spend more than any of its roots
 * allows. `children` counts live direct children; `wall` is a lifetime ending at an absolute kernel-clock time; `mem`
 * is a ceiling on context memory (used by the context-memory service); `mailbox` bounds the process's mailbox.
 *
 * @since 0.1.0
 */
import { type Duration, Schema } from "effect"
import { durationMillis } from "./internal/duration.ts"
import { own } from "./internal/primordials.ts"

/**
 * A resource a quota bounds; `Quota` exits name one.
 *
 * @category models
 */
export const QuotaResource = Schema.Literals(["tokens", "toolCalls", "usd", "children", "wall", "mem", "mailbox"])
export type QuotaResource = typeof QuotaResource.Type

/**
 * What a spawn or boot may ask for. Absent fields are inherited: meters are bounded only by the ancestors, `wall`
 * ends with the parent's, `mem` is the parent's, `mailbox` is `KernelConfig.mailboxMessagesMax`, `children` is
 * unbounded (the kernel-wide `processesMax` still holds).
 *
 * @category models
 */
export interface Quota {
  readonly tokens?: number | undefined
  readonly toolCalls?: number | undefined
  readonly usd?: number | undefined
  readonly children?: number | undefined
  readonly wall?: Duration.Input | undefined
  readonly mem?: number | undefined
  readonly mailbox?: number | undefined
}

/**
 * A charge for work done: any of the cumulative meters, each a finite number ≥ 0.
 *
 * @category models
 */
export interface Cost {
  readonly tokens?: number | undefined
  readonly toolCalls?: number | undefined
  readonly usd?: number | undefined
}

/** @category models */
export type Meter = "tokens" | "toolCalls" | "usd"

/**
 * A snapshot of one account, as `Sys.budget()` returns it. `Infinity` means no limit at this level (the ancestors'
 * still apply: `remaining` takes them into account).
 *
 * @category models
 */
export interface Budget {
  readonly limits: {
    readonly tokens: number
    readonly toolCalls: number
    readonly usd: number
    readonly children: number
    readonly mem: number
    readonly mailbox: number
  }
  readonly used: {
    readonly tokens: number
    readonly toolCalls: number
    readonly usd: number
    readonly children: number
  }
  /** What can still be charged, the tightest level of the chain counted. */
  readonly remaining: { readonly tokens: number; readonly toolCalls: number; readonly usd: number }
  /** Absolute kernel-clock millis at which the `wall` quota ends the process; `Infinity` for none. */
  readonly wallEndsAt: number
}

/**
 * A spawn or boot asked for a quota the kernel cannot give.
 *
 * - `invalid`: a field is not a finite number ≥ 0 (or a positive integer, for `children` and `mailbox`);
 * - `exceeds-parent`: more than the parent has left (or a `wall` ending after the parent's, a `mem` above it).
 *
 * @category errors
 */
export class QuotaError extends Schema.TaggedError<QuotaError>()("QuotaError", {
  resource: Schema.String,
  reason: Schema.Literals(["invalid", "exceeds-parent"]),
  requested: Schema.optionalKey(Schema.Number),
  available: Schema.optionalKey(Schema.Number)
}) {
  override get message(): string {
    const detail = this.requested === undefined ? "" : ` (asked ${this.requested}, available ${this.available})`
    return `quota ${this.resource}: ${this.reason}${detail}`
  }
}

/**
 * An account's limits. Immutable, and shared between the accounts of children spawned without a quota (most of them).
 *
 * @category models
 */
export interface Limits {
  readonly tokensMax: number
  readonly toolCallsMax: number
  readonly usdMax: number
  readonly childrenMax: number
  readonly memMax: number
  readonly mailboxMax: number
  /** Absolute kernel-clock millis; `Infinity` for no `wall` quota. */
  readonly wallEndsAt: number
}

/**
 * One process's account. Mutable usage counters over shared immutable limits, owned by the kernel and touched only
 * synchronously.
 *
 * @category models
 */
export class Account {
  parent: Account | undefined
  readonly limits: Limits
  /** The limits of a child spawned without a quota, made once and shared by all such children. */
  inherited: Limits | undefined = undefined
  tokens = 0
  toolCalls = 0
  usd = 0
  children = 0
  /** Reserved by driver calls in flight (this account's and its subtree's), settled when each call ends. */
  tokensReserved = 0
  toolCallsReserved = 0
  usdReserved = 0
  constructor(parent: Account | undefined, limits: Limits) {
    this.parent = parent
    this.limits = limits
  }
  get tokensMax(): number {
    return this.limits.tokensMax
  }
  get toolCallsMax(): number {
    return this.limits.toolCallsMax
  }
  get usdMax(): number {
    return this.limits.usdMax
  }
  get childrenMax(): number {
    return this.limits.childrenMax
  }
  get memMax(): number {
    return this.limits.memMax
  }
  get mailboxMax(): number {
    return this.limits.mailboxMax
  }
  get wallEndsAt(): number {
    return this.limits.wallEndsAt
  }
}

const unlimited = (memMax: number, mailboxMax: number, wallEndsAt: number): Limits =>
  Object.freeze({
    tokensMax: Infinity,
    toolCallsMax: Infinity,
    usdMax: Infinity,
    childrenMax: Infinity,
    memMax,
    mailboxMax,
    wallEndsAt
  })

const isAmount = (n: unknown): n is number => typeof n === "number" && Number.isFinite(n) && n >= 0
const isCount = (n: unknown): n is number => typeof n === "number" && Number.isInteger(n) && n > 0

/** Remaining on one meter, tightest level of the chain: the limit less what was used and what is reserved. */
export const remaining = (account: Account, meter: Meter): number => {
  let left = Infinity
  for (let a: Account | undefined = account; a !== undefined; a = a.parent) {
    const max = meter === "tokens" ? a.tokensMax : meter === "toolCalls" ? a.toolCallsMax : a.usdMax
    if (max !== Infinity) {
      const used =
        meter === "tokens"
          ? a.tokens + a.tokensReserved
          : meter === "toolCalls"
            ? a.toolCalls + a.toolCallsReserved
            : a.usd + a.usdReserved
      if (max - used < left) left = max - used
    }
  }
  return left
}

/**
 * The fraction of its tightest budget an account has used, per meter (what policies' `spend` compares): the highest
 * `(used + reserved) / limit` over the chain, 0 where no level has a limit.
 */
export const spentOf = (
  account: Account,
  extra?: { readonly tokens: number; readonly toolCalls: number; readonly usd: number }
): { tokens: number; toolCalls: number; usd: number } => {
  let tokens = 0
  let toolCalls = 0
  let usd = 0
  // what calls in flight reserved counts as spent (else a batch started at once would all be judged at 0), and so
  // does `extra` (the earlier calls of the batch being judged)
  const moreTokens = extra?.tokens ?? 0
  const moreToolCalls = extra?.toolCalls ?? 0
  const moreUsd = extra?.usd ?? 0
  for (let a: Account | undefined = account; a !== undefined; a = a.parent) {
    if (a.tokensMax !== Infinity) {
      tokens = Math.max(tokens, a.tokensMax === 0 ? 1 : (a.tokens + a.tokensReserved + moreTokens) / a.tokensMax)
    }
    if (a.toolCallsMax !== Infinity) {
      toolCalls = Math.max(
        toolCalls,
        a.toolCallsMax === 0 ? 1 : (a.toolCalls + a.toolCallsReserved + moreToolCalls) / a.toolCallsMax
      )
    }
    if (a.usdMax !== Infinity) usd = Math.max(usd, a.usdMax === 0 ? 1 : (a.usd + a.usdReserved + moreUsd) / a.usdMax)
  }
  return { tokens, toolCalls, usd }
}

/**
 * Reserves what a call may cost, at every level of the chain, before it starts: all-or-nothing. Returns the first
 * meter that has not that much left somewhere up the chain (nothing is reserved then), or `undefined`.
 *
 * @category charging
 */
export const reserve = (account: Account, cost: Cost): Meter | undefined => {
  const tokens = own(cost, "tokens") ?? 0
  const toolCalls = own(cost, "toolCalls") ?? 0
  const usd = own(cost, "usd") ?? 0
  if (tokens === 0 && toolCalls === 0 && usd === 0) return undefined
  for (let a: Account | undefined = account; a !== undefined; a = a.parent) {
    if (tokens > 0 && a.tokens + a.tokensReserved + tokens > a.tokensMax) return "tokens"
    if (toolCalls > 0 && a.toolCalls + a.toolCallsReserved + toolCalls > a.toolCallsMax) return "toolCalls"
    if (usd > 0 && a.usd + a.usdReserved + usd > a.usdMax) return "usd"
  }
  for (let a: Account | undefined = account; a !== undefined; a = a.parent) {
    a.tokensReserved += tokens
    a.toolCallsReserved += toolCalls
    a.usdReserved += usd
  }
  return undefined
}

/**
 * Releases a reservation made by `reserve` (the call ended; its actual cost is charged separately).
 *
 * @category charging
 */
export const release = (account: Account, cost: Cost): void => {
  const tokens = own(cost, "tokens") ?? 0
  const toolCalls = own(cost, "toolCalls") ?? 0
  const usd = own(cost, "usd") ?? 0
  if (tokens === 0 && toolCalls === 0 && usd === 0) return
  for (let a: Account | undefined = account; a !== undefined; a = a.parent) {
    a.tokensReserved -= tokens
    a.toolCallsReserved -= toolCalls
    a.usdReserved -= usd
  }
}

// a private frozen copy: `QuotaResource.literals` is reachable from the package root, this list is not
const quotaKeys: ReadonlyArray<QuotaResource> = Object.freeze([...QuotaResource.literals])

/** A quota's own fields, each read once, or `undefined` when it names none (everything inherited). */
const quotaFieldsOf = (quota: Quota): Quota | undefined => {
  let out: { -readonly [K in keyof Quota]: Quota[K] } | undefined
  for (let i = 0; i < quotaKeys.length; i++) {
    const key = quotaKeys[i]!
    const value = own(quota, key)
    if (value !== undefined) (out ??= { __proto__: null } as never)[key] = value as never
  }
  return out
}

/**
 * Builds a child's account from the parent's and the requested quota, or says why it cannot.
 *
 * @category constructors
 */
export const carve = (
  parent: Account | undefined,
  quota: Quota | undefined,
  now: number,
  mailboxDefault: number
): Account | QuotaError => {
  // what the parent has left of its direct children once this one is counted: the child's own `children` is carved
  // from it (a subtree never holds more live processes per level than its root allows)
  const childrenLeft = parent === undefined ? Infinity : parent.childrenMax - parent.children - 1
  const mailboxCeiling = parent === undefined ? mailboxDefault : Math.min(mailboxDefault, parent.mailboxMax)
  // the quota's own fields only, read once: a field it leaves out is never answered by a prototype
  const q = quota === undefined ? undefined : quotaFieldsOf(quota)
  if (q === undefined) {
    if (parent === undefined) return new Account(undefined, unlimited(Infinity, mailboxDefault, Infinity))
    if (childrenLeft !== Infinity) {
      return new Account(
        parent,
        Object.freeze({
          ...unlimited(parent.memMax, mailboxCeiling, parent.wallEndsAt),
          childrenMax: Math.max(0, childrenLeft)
        })
      )
    }
    const inherited =
      parent.inherited?.mailboxMax === mailboxCeiling
        ? parent.inherited
        : (parent.inherited = unlimited(parent.memMax, mailboxCeiling, parent.wallEndsAt))
    return new Account(parent, inherited)
  }
  const meter = (resource: Meter): number | QuotaError => {
    const asked = q[resource]
    const available = parent === undefined ? Infinity : remaining(parent, resource)
    if (asked === undefined) return Infinity
    if (!isAmount(asked)) return new QuotaError({ resource, reason: "invalid" })
    if (asked > available) return new QuotaError({ resource, reason: "exceeds-parent", requested: asked, available })
    return asked
  }
  const tokensMax = meter("tokens")
  if (typeof tokensMax !== "number") return tokensMax
  const toolCallsMax = meter("toolCalls")
  if (typeof toolCallsMax !== "number") return toolCallsMax
  const usdMax = meter("usd")
  if (typeof usdMax !== "number") return usdMax
  if (q.children !== undefined && !(isCount(q.children) || q.children === 0)) {
    return new QuotaError({ resource: "children", reason: "invalid" })
  }
  const childrenAvailable = Math.max(0, childrenLeft)
  if (q.children !== undefined && q.children > childrenAvailable) {
    return new QuotaError({
      resource: "children",
      reason: "exceeds-parent",
      requested: q.children,
      available: childrenAvailable
    })
  }
  const childrenMax = q.children ?? childrenAvailable
  if (q.mailbox !== undefined && !isCount(q.mailbox)) return new QuotaError({ resource: "mailbox", reason: "invalid" })
  if (q.mailbox !== undefined && parent !== undefined && q.mailbox > parent.mailboxMax) {
    return new QuotaError({
      resource: "mailbox",
      reason: "exceeds-parent",
      requested: q.mailbox,
      available: parent.mailboxMax
    })
  }
  const mailboxMax = q.mailbox ?? mailboxCeiling
  const parentMem = parent === undefined ? Infinity : parent.memMax
  let memMax = parentMem
  if (q.mem !== undefined) {
    if (!isAmount(q.mem)) return new QuotaError({ resource: "mem", reason: "invalid" })
    if (q.mem > parentMem) {
      return new QuotaError({ resource: "mem", reason: "exceeds-parent", requested: q.mem, available: parentMem })
    }
    memMax = q.mem
  }
  const parentEnds = parent === undefined ? Infinity : parent.wallEndsAt
  let wallEndsAt = parentEnds
  if (q.wall !== undefined) {
    const ms = typeof q.wall === "number" ? (q.wall >= 0 ? q.wall : NaN) : durationMillis(q.wall)
    if (Number.isNaN(ms)) return new QuotaError({ resource: "wall", reason: "invalid" })
    const ends = now + ms
    if (ends > parentEnds) {
      return new QuotaError({ resource: "wall", reason: "exceeds-parent", requested: ms, available: parentEnds - now })
    }
    wallEndsAt = ends
  }
  return new Account(
    parent,
    Object.freeze({ tokensMax, toolCallsMax, usdMax, childrenMax, memMax, mailboxMax, wallEndsAt })
  )
}

/**
 * Validates a cost: every given meter a finite number ≥ 0.
 *
 * @category guards
 */
export const isValidCost = (cost: Cost): boolean =>
  isMeter(own(cost, "tokens")) && isMeter(own(cost, "toolCalls")) && isMeter(own(cost, "usd"))

const isMeter = (amount: unknown): boolean => amount === undefined || isAmount(amount)

/**
 * Keeps only the meters a cost actually names (for storing it).
 *
 * @category constructors
 */
export const normalize = (cost: Cost): { tokens?: number; toolCalls?: number; usd?: number } => {
  const tokens = own(cost, "tokens")
  const toolCalls = own(cost, "toolCalls")
  const usd = own(cost, "usd")
  return {
    ...(tokens === undefined ? {} : { tokens }),
    ...(toolCalls === undefined ? {} : { toolCalls }),
    ...(usd === undefined ? {} : { usd })
  }
}

/**
 * Applies a (valid) cost to the account and all its ancestors in one step, then returns the first meter that went
 * past a limit at any level, or `undefined`. The charge is applied whole even when it breaches: the work was done,
 * and conservation (a parent's usage is its own plus its subtree's) must hold. The caller ends the process.
 *
 * @category charging
 */
export const charge = (account: Account, cost: Cost): Meter | undefined =>
  chargeMeters(account, own(cost, "tokens") ?? 0, own(cost, "toolCalls") ?? 0, own(cost, "usd") ?? 0)

/**
 * `charge` with the three meters given as numbers (each a finite number ≥ 0).
 *
 * @category charging
 */
export const chargeMeters = (account: Account, tokens: number, toolCalls: number, usd: number): Meter | undefined => {
  let breach: Meter | undefined
  for (let a: Account | undefined = account; a !== undefined; a = a.parent) {
    a.tokens += tokens
    a.toolCalls += toolCalls
    a.usd += usd
    if (breach === undefined) {
      if (a.tokens > a.tokensMax) breach = "tokens"
      else if (a.toolCalls > a.toolCallsMax) breach = "toolCalls"
      else if (a.usd > a.usdMax) breach = "usd"
    }
  }
  return breach
}

/**
 * The first meter among `meters` that has nothing left at some level of the chain: a call that would charge it must
 * not start.
 *
 * @category charging
 */
export const exhausted = (account: Account, meters: ReadonlyArray<Meter>): Meter | undefined => {
  // by index: a patched array iterator cannot hide a used-up meter
  for (let i = 0; i < meters.length; i++) if (remaining(account, meters[i]!) <= 0) return meters[i]

  return undefined
}

/**
 * @category accessors
 */
export const budget = (account: Account): Budget => ({
  limits: {
    tokens: account.tokensMax,
    toolCalls: account.toolCallsMax,
    usd: account.usdMax,
    children: account.childrenMax,
    mem: account.memMax,
    mailbox: account.mailboxMax
  },
  used: { tokens: account.tokens, toolCalls: account.toolCalls, usd: account.usd, children: account.children },
  remaining: {
    tokens: remaining(account, "tokens"),
    toolCalls: remaining(account, "toolCalls"),
    usd: remaining(account, "usd")
  },
  wallEndsAt: account.wallEndsAt
})

/** Widens a meter to the exit-reason resource type. */
export const asResource = (meter: Meter): QuotaResource => meter

/**
 * Budget fields as the kernel reports them (`Sys.budget`, `ps`): what a process may still spend counts its calls in
 * flight as spent (their reservations).
 *
 * @category accessors
 */
export const reservedOf = (account: Account): Cost => ({
  tokens: account.tokensReserved,
  toolCalls: account.toolCallsReserved,
  usd: account.usdReserved
})
