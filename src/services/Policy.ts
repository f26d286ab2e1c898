/**
 * Policies the kernel enforces on driver calls, in the syscall path, before the driver runs (and on results before
 * they reach the process).
 *
 * A policy set is an ordered list of rules; the first rule that matches a call decides it:
 *
 * ```yaml
 * - name: read-only
 *   match: { tool: sql, arguments: { statement: { regex: "(?i)\\b(drop|delete|truncate|alter|update|insert)\\b" } } }
 *   decision: kill
 * - name: no-secrets
 *   match: { tool: "file_*", arguments: { path: { glob: "/etc/**" } } }
 *   decision: deny
 * - name: rest
 *   decision: allow                # a rule without `match` matches everything: the default, at the end
 * ```
 *
 * Match keys (all given must match): `tool` and `device` (globs on the tool the request names — `{ tool, … }` — and
 * on the device's name), `call` (`read` or `write`: policies judge driver reads and writes), `arguments` (per field of the tool's input — `a.b` for a
 * nested one — a `{ regex }` or a `{ glob }`; a field that is absent, or not a string or number, does not match), and
 * `result` (a `{ regex }` or `{ glob }` on the JSON text of what the driver answered: such a rule is judged on the
 * result, after the driver ran and before the result reaches the process). A regular expression may start with `(?i)`
 * (case-insensitive); a glob's `*` matches within one `/`-separated segment, `**` across them, `?` one character.
 *
 * On the caller's state: `spend` (`{ tokens?, toolCalls?, usd? }`, fractions 0 to 1: matches once any meter named
 * has used at least that fraction of the caller's tightest budget) and `rate` (`{ over, per }`: matches a call when
 * more than `over` calls that the rule's other keys matched were judged by it in the last `per` — a duration such
 * as `"1 minute"`, or milliseconds — counting denied attempts too, over the process tree (children share it), on the
 * kernel's clock).
 *
 * On messages sent (`Sys.send`): `call: send` and `message` (`{ type?, to? }`: globs on the body's `_tag` and on the
 * receiver's name). A set judges messages only when it has such a rule: then a message no rule of it matches is
 * denied (`default-deny`, an allow list of types), and a denied send fails with `CapabilityError { reason: "policy",
 * rule }`. Rules without any key of calls or messages (no `match`, or only `spend` / `rate`) judge both.
 *
 * Decisions: `allow`; `deny` (the call reads back a typed denial naming the rule — a tools device's `ToolError`
 * `denied` — and the process goes on); `kill` (the process ends with `Policy { rule }`, which it cannot catch); and
 * `approve` (the call waits in the kernel's approval queue, as a tool granted with `approval` does).
 *
 * Fail closed: a call no rule of a set matches is denied by that set (`default-deny`), a rule whose test throws
 * denies, a policy text that does not parse or names an unknown field is refused with every problem at its path.
 * A process holds a chain of sets — its parent's, then its own (`Sys.spawn(image, { policies })`) — and a call must
 * pass every one; the most severe decision wins (kill, then deny, then approve). A process can add sets to its
 * children, never remove one: policies only tighten down the tree. Every decision other than a plain allow is a
 * `Policy` kernel event naming the rule.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Option, Schema } from "effect"
import * as Yaml from "effect/encoding/Yaml"
import { problemsOf } from "./internal/schemaProblems.ts"

/**
 * @category models
 */
export const Decision = Schema.Literals(["allow", "deny", "kill", "approve"])
export type Decision = typeof Decision.Type

const Pattern = Schema.Union([
  Schema.Struct({ regex: Schema.String }),
  Schema.Struct({ glob: Schema.String.check(Schema.isNonEmpty()) })
])

const NonEmpty = Schema.String.check(Schema.isNonEmpty(), Schema.isMaxLength(256))

/** A fraction of a budget, 0 to 1. */
const Fraction = Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThanOrEqualTo(1))

/** The most calls a `rate` may allow in its window (each rule keeps that many times per process). */
export const rateOverMax = 10_000

/**
 * A rule as written (YAML or JSON).
 *
 * @category schemas
 */
export const RuleFields = Schema.Struct({
  name: Schema.String.check(Schema.isNonEmpty(), Schema.isMaxLength(128)),
  match: Schema.optionalKey(
    Schema.Struct({
      tool: Schema.optionalKey(NonEmpty),
      device: Schema.optionalKey(NonEmpty),
      call: Schema.optionalKey(Schema.Literals(["read", "write", "send"])),
      arguments: Schema.optionalKey(Schema.Record(Schema.String, Pattern)),
      result: Schema.optionalKey(Pattern),
      message: Schema.optionalKey(
        Schema.Struct({ type: Schema.optionalKey(NonEmpty), to: Schema.optionalKey(NonEmpty) })
      ),
      spend: Schema.optionalKey(
        Schema.Struct({
          tokens: Schema.optionalKey(Fraction),
          toolCalls: Schema.optionalKey(Fraction),
          usd: Schema.optionalKey(Fraction)
        })
      ),
      rate: Schema.optionalKey(
        Schema.Struct({
          over: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0), Schema.isLessThanOrEqualTo(rateOverMax)),
          per: Schema.Union([Schema.String, Schema.Finite.check(Schema.isGreaterThan(0))])
        })
      )
    })
  ),
  decision: Decision
})
export type RuleFields = typeof RuleFields.Type

/**
 * A policy set as written: its rules, in order.
 *
 * @category schemas
 */
export const PolicyFields = Schema.Array(RuleFields).check(Schema.isMaxLength(1024))

/**
 * A policy could not be made: `problems` has every one with its path (`[2].match.arguments.statement.regex`).
 *
 * @category errors
 */
export class PolicyError extends Schema.TaggedError<PolicyError>()("PolicyError", {
  message: Schema.String,
  problems: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String }))
}) {}

// Judging runs in the kernel, after image code may have patched built-ins: it calls the ones captured here, at load.
const apply = Reflect.apply
const hasOwn = Object.hasOwn
const regexExec = RegExp.prototype.exec
const weakMapGet = WeakMap.prototype.get
const weakMapSet = WeakMap.prototype.set
const weakMapHas = WeakMap.prototype.has

/** A compiled test of one string. */
type Test = (text: string) => boolean

interface CompiledRule {
  readonly name: string
  readonly decision: Decision
  readonly tool: Test | undefined
  readonly device: Test | undefined
  readonly call: string | undefined
  readonly arguments: ReadonlyArray<readonly [ReadonlyArray<string>, Test]>
  readonly result: Test | undefined
  /**
   * What the rule judges: `sends` (`call: send`, or a `message` key: messages sent only), `calls` (a key of driver
   * calls: `tool`, `device`, `arguments`, `result`, `call: read | write`), or `both` (no such key).
   */
  readonly kind: "sends" | "calls" | "both"
  readonly messageType: Test | undefined
  readonly messageTo: Test | undefined
  readonly spend: { readonly tokens?: number; readonly toolCalls?: number; readonly usd?: number } | undefined
  readonly rate: { readonly over: number; readonly perMs: number } | undefined
}

/**
 * A compiled policy set. Only `make` and `decode` make one (the kernel refuses anything else).
 *
 * @category models
 */
export interface PolicySet {
  readonly _tag: "PolicySet"
  /** The rules as written, for `/policy` views and audits. */
  readonly rules: ReadonlyArray<RuleFields>
}

const compiled = new WeakMap<PolicySet, ReadonlyArray<CompiledRule>>()
const rulesOf = (set: PolicySet): ReadonlyArray<CompiledRule> | undefined => apply(weakMapGet, compiled, [set])
/** What a set judges besides driver calls, found once when it is made (the kernel asks on every send and call). */
const traits = new WeakMap<PolicySet, { readonly sends: boolean; readonly results: boolean }>()
const traitsOf = (set: PolicySet): { readonly sends: boolean; readonly results: boolean } | undefined =>
  apply(weakMapGet, traits, [set])

/** Whether `u` is a policy set `make` made (not a look-alike). */
export const isPolicySet = (u: unknown): u is PolicySet =>
  typeof u === "object" && u !== null && apply(weakMapHas, compiled, [u]) === true

const escape = (text: string) => text.replace(/[.+^${}()|[\]\\]/g, "\\$&")

/** A glob as a regular expression: `**` any run, `*` any run without `/`, `?` one character but `/`. */
const globTest = (glob: string): Test => {
  let source = ""
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === "*" && glob[i + 1] === "*") {
      source += ".*"
      i++
    } else if (c === "*") source += "[^/]*"
    else if (c === "?") source += "[^/]"
    else source += escape(c)
  }
  const re = new RegExp(`^${source}$`, "s")
  return (text) => apply(regexExec, re, [text]) !== null
}

/** The longest text a regular expression is run on; a longer one cannot be judged, and is denied. */
export const regexInputCharsMax = 65_536

/**
 * Whether a pattern repeats a group that itself repeats (`(a+)+`, `(\w*)*`, `(x+){2,}`): what makes a backtracking
 * engine take exponential time on a text that almost matches. Such a pattern is refused when the policy is made,
 * so that no argument can stall the kernel while it is judged.
 */
const nestedQuantifier = (source: string): boolean => {
  // per open group: whether a quantifier is inside it
  const groups: Array<boolean> = []
  let inner = false
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!
    if (c === "\\") {
      i++
      continue
    }
    if (c === "[") {
      // a character class: up to its closing bracket
      for (i++; i < source.length && source[i] !== "]"; i++) if (source[i] === "\\") i++
      continue
    }
    if (c === "(") {
      groups.push(inner)
      inner = false
      continue
    }
    const quantifier = c === "*" || c === "+" || (c === "{" && /^\{\d*,?\d*\}/.test(source.slice(i)))
    if (c === ")") {
      const hadQuantifier: boolean = inner
      inner = groups.pop() ?? false
      const next = source[i + 1]
      const repeated = next === "*" || next === "+" || (next === "{" && /^\{\d*,\d*\}/.test(source.slice(i + 1)))
      if (hadQuantifier && repeated) return true
      // the group's quantifiers count for the group around it
      inner = inner || hadQuantifier
      continue
    }
    if (quantifier) inner = true
  }
  return false
}

/** A regular expression, `(?i)` at its start as the `i` flag; a syntax error or a nested quantifier is a problem. */
const regexTest = (source: string): Test | string => {
  const insensitive = source.startsWith("(?i)")
  const body = insensitive ? source.slice(4) : source
  if (nestedQuantifier(body)) {
    return "a group that repeats a repetition (e.g. (a+)+) can take exponential time: write it without one"
  }
  try {
    const re = new RegExp(body, insensitive ? "iu" : "u")
    return (text) => {
      // judging throws (and so denies) rather than run a pattern on more than it was written for
      if (text.length > regexInputCharsMax) throw new RangeError("too long to judge")
      return apply(regexExec, re, [text]) !== null
    }
  } catch (error) {
    return `not a regular expression: ${error instanceof Error ? error.message : String(error)}`
  }
}

const patternTest = (pattern: { readonly regex: string } | { readonly glob: string }): Test | string =>
  "regex" in pattern ? regexTest(pattern.regex) : globTest(pattern.glob)

const failWith = (problems: ReadonlyArray<{ readonly path: string; readonly message: string }>) =>
  new PolicyError({
    message: `invalid policy: ${problems.map((p) => (p.path === "" ? p.message : `${p.path}: ${p.message}`)).join("; ")}`,
    problems
  })

const decodeFields = Schema.decodeUnknownEffect(PolicyFields)

/**
 * Makes a policy set from its rules (as written, already parsed): every problem at once.
 *
 * @category constructors
 */
export const make = (rules: unknown): Effect.Effect<PolicySet, PolicyError> =>
  Effect.gen(function* () {
    const fields = yield* decodeFields(rules, { errors: "all", onExcessProperty: "error" }).pipe(
      Effect.mapError((error) => failWith(problemsOf(error.issue)))
    )
    const problems: Array<{ path: string; message: string }> = []
    const out: Array<CompiledRule> = []
    fields.forEach((rule, i) => {
      const m = rule.match ?? {}
      const test = (path: string, pattern: { readonly regex: string } | { readonly glob: string }) => {
        const t = patternTest(pattern)
        if (typeof t === "string") {
          problems.push({ path: `[${i}].match.${path}`, message: t })
          return undefined
        }
        return t
      }
      if (m.result !== undefined && rule.decision === "approve") {
        problems.push({
          path: `[${i}].decision`,
          message: "a rule on results cannot wait for an approval (the call ran)"
        })
      }
      const sends = m.call === "send" || m.message !== undefined
      const calls =
        m.tool !== undefined ||
        m.device !== undefined ||
        m.arguments !== undefined ||
        m.result !== undefined ||
        m.call === "read" ||
        m.call === "write"
      if (m.message !== undefined && m.call !== undefined && m.call !== "send") {
        problems.push({ path: `[${i}].match.message`, message: "a message is matched on sends only (call: send)" })
      }
      if (sends) {
        for (const key of ["tool", "device", "arguments", "result"] as const) {
          if (m[key] !== undefined) {
            problems.push({ path: `[${i}].match.${key}`, message: "matches driver calls, not messages sent" })
          }
        }
        if (rule.decision === "approve") {
          problems.push({ path: `[${i}].decision`, message: "a message sent cannot wait for an approval" })
        }
      }
      let rate: { readonly over: number; readonly perMs: number } | undefined
      if (m.rate !== undefined) {
        const per =
          typeof m.rate.per === "number"
            ? Option.some(Duration.millis(m.rate.per))
            : Duration.fromInput(m.rate.per as never)
        if (
          Option.isNone(per) ||
          !(Duration.toMillis(per.value) > 0) ||
          !Number.isFinite(Duration.toMillis(per.value))
        ) {
          problems.push({ path: `[${i}].match.rate.per`, message: 'not a duration (e.g. "1 minute", or milliseconds)' })
        } else rate = Object.freeze({ over: m.rate.over, perMs: Duration.toMillis(per.value) })
        if (m.result !== undefined) {
          problems.push({ path: `[${i}].match.rate`, message: "a rate counts calls, not results" })
        }
      }
      const args: Array<readonly [ReadonlyArray<string>, Test]> = []
      for (const [field, pattern] of Object.entries(m.arguments ?? {})) {
        const t = test(`arguments.${field}.${"regex" in pattern ? "regex" : "glob"}`, pattern)
        if (t !== undefined) args.push([field.split("."), t])
      }
      out.push(
        Object.freeze({
          name: rule.name,
          decision: rule.decision,
          tool: m.tool === undefined ? undefined : globTest(m.tool),
          device: m.device === undefined ? undefined : globTest(m.device),
          call: m.call,
          arguments: Object.freeze(args),
          result:
            m.result === undefined ? undefined : test(`result.${"regex" in m.result ? "regex" : "glob"}`, m.result),
          kind: sends ? "sends" : calls ? "calls" : "both",
          messageType: m.message?.type === undefined ? undefined : globTest(m.message.type),
          messageTo: m.message?.to === undefined ? undefined : globTest(m.message.to),
          spend: m.spend === undefined ? undefined : Object.freeze({ ...m.spend }),
          rate
        })
      )
    })
    if (problems.length > 0) return yield* failWith(problems)
    const set: PolicySet = Object.freeze({ _tag: "PolicySet" as const, rules: Object.freeze(fields) })
    apply(weakMapSet, compiled, [set, Object.freeze(out)])
    // by index: a set made by image code must not get its traits from a patched `Array.prototype.some`
    let sends = false
    let results = false
    for (let r = 0; r < out.length; r++) {
      if (out[r]!.kind === "sends") sends = true
      if (out[r]!.result !== undefined) results = true
    }
    apply(weakMapSet, traits, [set, Object.freeze({ sends, results })])
    return set
  })

/**
 * Makes a policy set from its text: JSON when it starts with `[` or `{`, else YAML.
 *
 * @category constructors
 */
export const decode = (text: string): Effect.Effect<PolicySet, PolicyError> =>
  Effect.gen(function* () {
    const json = /^\s*[[{]/.test(text)
    const parsed = yield* Effect.try({
      try: (): unknown => (json ? JSON.parse(text) : Yaml.parse(text)),
      catch: (error) =>
        failWith([
          { path: "", message: `not ${json ? "JSON" : "YAML"}: ${error instanceof Error ? error.message : error}` }
        ])
    })
    return yield* make(parsed ?? [])
  })

// ---- judging -----------------------------------------------------------------------------------------------------

/**
 * What a call is judged on (the kernel builds it from the copied request).
 *
 * @category judging
 */
export interface Subject {
  /** The device's name (`""` for a message sent). */
  readonly device: string
  readonly call: "read" | "write" | "send"
  /** The tool the request names, if any. */
  readonly tool: string | undefined
  /** The tool's input (or the request itself when it names no tool; the body of a message sent). */
  readonly input: unknown
  /** A message sent: its type (the body's `_tag`, when it is a string) and the receiver's name. */
  readonly message?: { readonly type: string | undefined; readonly to: string } | undefined
  /** The caller's spend, per meter, as the fraction of its tightest budget used (0 without a limit). */
  readonly spent?: { readonly tokens: number; readonly toolCalls: number; readonly usd: number } | undefined
  /** The caller's call counts for `rate` rules (`makeRates`), and the kernel clock's time in ms. */
  readonly rates?: Rates | undefined
  readonly now?: number | undefined
}

/**
 * One process's memory of the calls `rate` rules counted (the kernel keeps one per process). Opaque.
 *
 * @category judging
 */
export interface Rates {
  readonly _tag: "PolicyRates"
}

const ratesOf = new WeakMap<Rates, WeakMap<CompiledRule, { times: Float64Array; next: number; count: number }>>()

/**
 * A process's empty `Rates`.
 *
 * @category judging
 */
export const makeRates = (): Rates => {
  const rates: Rates = Object.freeze({ _tag: "PolicyRates" as const })
  apply(weakMapSet, ratesOf, [rates, new WeakMap()])
  return rates
}

/**
 * Whether this call is more than `over` in `perMs` for the rule, counting it: a ring of the last `over` times per
 * rule and process (a typed array: no index reaches a prototype).
 */
const overRate = (rule: CompiledRule, rate: { readonly over: number; readonly perMs: number }, subject: Subject) => {
  const now = subject.now
  const rates = subject.rates === undefined ? undefined : apply(weakMapGet, ratesOf, [subject.rates])
  // without a memory or a clock, a rate cannot be counted: it matches (closed)
  if (rates === undefined || typeof now !== "number") return true
  if (rate.over === 0) return true
  let ring = apply(weakMapGet, rates, [rule]) as { times: Float64Array; next: number; count: number } | undefined
  if (ring === undefined) {
    ring = { times: new Float64Array(rate.over), next: 0, count: 0 }
    apply(weakMapSet, rates, [rule, ring])
  }
  // the oldest of the last `over` calls: within the window, this call is one too many
  const over = ring.count === rate.over && ring.times[ring.next]! > now - rate.perMs
  ring.times[ring.next] = now
  ring.next = (ring.next + 1) % rate.over
  if (ring.count < rate.over) ring.count++
  return over
}

/**
 * A decision and the rule that made it (`default-deny` when no rule of a set matched).
 *
 * @category judging
 */
export type Verdict =
  { readonly decision: "allow" } | { readonly decision: "deny" | "kill" | "approve"; readonly rule: string }

const allow: Verdict = Object.freeze({ decision: "allow" })
const severity: Readonly<Record<Decision, number>> = { allow: 0, approve: 1, deny: 2, kill: 3 }

const fieldOf = (input: unknown, path: ReadonlyArray<string>): string | undefined => {
  let at: unknown = input
  for (let i = 0; i < path.length; i++) {
    const key = path[i]!
    if (typeof at !== "object" || at === null || !hasOwn(at, key)) return undefined
    at = (at as Record<string, unknown>)[key]
  }
  return typeof at === "string" ? at : typeof at === "number" && Number.isFinite(at) ? String(at) : undefined
}

const judgesKind = (rule: CompiledRule, subject: Subject): boolean =>
  rule.kind === "both" || (rule.kind === "sends") === (subject.call === "send")

const matchesCall = (rule: CompiledRule, subject: Subject): boolean =>
  judgesKind(rule, subject) &&
  (rule.call === undefined || rule.call === subject.call) &&
  (rule.device === undefined || rule.device(subject.device)) &&
  (rule.tool === undefined || (subject.tool !== undefined && rule.tool(subject.tool))) &&
  argumentsMatch(rule, subject) &&
  messageMatches(rule, subject) &&
  spendMatches(rule, subject) &&
  // last: a rate counts only the calls every other key matched
  (rule.rate === undefined || overRate(rule, rule.rate, subject))

const messageMatches = (rule: CompiledRule, subject: Subject): boolean => {
  if (rule.messageType === undefined && rule.messageTo === undefined) return true
  const message = subject.message
  if (message === undefined) return false
  return (
    (rule.messageType === undefined || (message.type !== undefined && rule.messageType(message.type))) &&
    (rule.messageTo === undefined || rule.messageTo(message.to))
  )
}

/** Matches once any meter it names has used at least that fraction of the caller's budget. */
const spendMatches = (rule: CompiledRule, subject: Subject): boolean => {
  const spend = rule.spend
  if (spend === undefined) return true
  const spent = subject.spent
  // a spend the kernel did not give cannot be below the threshold: it matches (closed)
  if (spent === undefined) return true
  return (
    (spend.tokens !== undefined && spent.tokens >= spend.tokens) ||
    (spend.toolCalls !== undefined && spent.toolCalls >= spend.toolCalls) ||
    (spend.usd !== undefined && spent.usd >= spend.usd)
  )
}

const argumentsMatch = (rule: CompiledRule, subject: Subject): boolean => {
  for (let i = 0; i < rule.arguments.length; i++) {
    // by index: destructuring would call an array iterator image code may have replaced
    const entry = rule.arguments[i]!
    const value = fieldOf(subject.input, entry[0])
    if (value === undefined || !entry[1](value)) return false
  }
  return true
}

const verdictOf = (rule: CompiledRule): Verdict =>
  rule.decision === "allow" ? allow : { decision: rule.decision, rule: rule.name }

/** The most severe of two verdicts (the first on a tie). */
const worse = (a: Verdict, b: Verdict): Verdict => (severity[b.decision] > severity[a.decision] ? b : a)

/**
 * Judges a call against every set of the chain, before the driver runs: in each set the first rule that matches
 * decides (rules with a `result` key wait for the result); a set none of whose rules matches denies; a test that
 * throws denies. The most severe verdict of the chain is the call's.
 *
 * @category judging
 */
export const judge = (chain: ReadonlyArray<PolicySet>, subject: Subject): Verdict => {
  let verdict: Verdict = allow
  for (let c = 0; c < chain.length; c++) {
    const rules = rulesOf(chain[c]!)
    if (rules === undefined) return { decision: "deny", rule: "not-a-policy" }
    // a set judges messages sent only when it has rules for them
    if (subject.call === "send" && traitsOf(chain[c]!)?.sends !== true) continue
    let decided: Verdict = { decision: "deny", rule: "default-deny" }
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r]!
      if (rule.result !== undefined) continue
      if (!judgesKind(rule, subject)) continue
      try {
        if (!matchesCall(rule, subject)) continue
      } catch {
        decided = { decision: "deny", rule: rule.name }
        break
      }
      decided = verdictOf(rule)
      break
    }
    verdict = worse(verdict, decided)
    if (verdict.decision === "kill") return verdict
  }
  return verdict
}

/**
 * Whether any set of the chain judges messages sent (so the kernel judges a send only then).
 *
 * @category judging
 */
export const judgesMessages = (chain: ReadonlyArray<PolicySet>): boolean => {
  for (let c = 0; c < chain.length; c++) if (traitsOf(chain[c]!)?.sends === true) return true
  return false
}

/** Whether any set of the chain has a rule judged on results (so the kernel renders results only then). */
export const judgesResults = (chain: ReadonlyArray<PolicySet>): boolean => {
  for (let c = 0; c < chain.length; c++) if (traitsOf(chain[c]!)?.results === true) return true
  return false
}

/**
 * Judges what a driver answered, before it reaches the process: in each set the first rule with a `result` key
 * whose keys all match decides; a result no such rule matches passes. `text` is the result's JSON text.
 *
 * @category judging
 */
export const judgeResult = (chain: ReadonlyArray<PolicySet>, subject: Subject, text: string): Verdict => {
  let verdict: Verdict = allow
  for (let c = 0; c < chain.length; c++) {
    const rules = rulesOf(chain[c]!)
    if (rules === undefined) return { decision: "deny", rule: "not-a-policy" }
    for (let r = 0; r < rules.length; r++) {
      const rule = rules[r]!
      if (rule.result === undefined) continue
      let matched: boolean
      try {
        matched = matchesCall(rule, subject) && rule.result(text)
      } catch {
        verdict = worse(verdict, { decision: "deny", rule: rule.name })
        break
      }
      if (!matched) continue
      verdict = worse(verdict, verdictOf(rule))
      break
    }
  }
  return verdict
}
