/**
 * Confines file tools to path globs (a manifest's `file_read:` / `file_write:` capabilities).
 *
 * A path is resolved before it is matched: made absolute, `.` and `..` removed, and symlinks followed with
 * `realpath` — for a path that exists, the whole path; for one that does not yet (a write), its nearest existing
 * ancestor, with the rest appended (a missing segment cannot be a symlink). A glob's own literal prefix is resolved
 * the same way, so `/data/*` still matches when `/data` is a symlink. So `../` escapes, absolute paths elsewhere and
 * symlinks that point out of the allowed tree are all refused: what is matched is where the bytes really are.
 *
 * Glob syntax: `*` matches within one path segment, `**` any number of segments, `?` one character; everything else
 * is literal.
 *
 * @since 0.1.0
 */
import { realpath } from "node:fs/promises"
import { dirname, isAbsolute, join, resolve, sep } from "node:path"
import { Effect, Schema } from "effect"

/**
 * A path refused: outside every allowed glob (`denied`), or not a usable path (`invalid`: empty, a NUL byte).
 *
 * @category errors
 */
export class FileAccessError extends Schema.TaggedError<FileAccessError>()("FileAccessError", {
  reason: Schema.Literals(["denied", "invalid"]),
  path: Schema.String,
  message: Schema.String
}) {}

const escape = (c: string) => c.replace(/[.+^${}()|[\]\\]/g, "\\$&")

/**
 * A glob as a regular expression over a whole resolved path.
 *
 * @category globs
 */
export const globToRegExp = (glob: string): RegExp => {
  let out = "^"
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!
    if (c === "*") {
      if (glob[i + 1] === "*") {
        // `/**/` matches one or more segments or none: `/a/**/b` matches `/a/b` too
        if (glob[i + 2] === "/") {
          out += "(?:[^/]*/)*"
          i += 2
        } else {
          out += ".*"
          i += 1
        }
      } else {
        out += "[^/]*"
      }
    } else if (c === "?") {
      out += "[^/]"
    } else {
      out += escape(c)
    }
  }
  return new RegExp(out + "$")
}

/** `realpath` of the longest existing prefix of an absolute, normalized `path`, with the missing rest appended. */
const resolveExisting = (path: string): Effect.Effect<string> =>
  Effect.promise(async () => {
    let head = path
    const rest: Array<string> = []
    for (;;) {
      try {
        const real = await realpath(head)
        return rest.length === 0 ? real : join(real, ...rest.reverse())
      } catch {
        const parent = dirname(head)
        if (parent === head) return path
        rest.push(head.slice(parent.length + (parent.endsWith(sep) ? 0 : 1)))
        head = parent
      }
    }
  })

/** The literal directory prefix of a glob (up to its first segment with a wildcard). */
const literalPrefix = (glob: string): { readonly prefix: string; readonly rest: string } => {
  const segments = glob.split("/")
  const firstWild = segments.findIndex((s) => /[*?]/.test(s))
  if (firstWild === -1) return { prefix: glob, rest: "" }
  return { prefix: segments.slice(0, firstWild).join("/") || "/", rest: segments.slice(firstWild).join("/") }
}

/**
 * Resolves globs once (their literal prefixes through `realpath`), for `check`.
 *
 * @category constructors
 */
export const compile = (globs: ReadonlyArray<string>): Effect.Effect<ReadonlyArray<RegExp>> =>
  Effect.forEach(globs, (glob) =>
    Effect.gen(function* () {
      const { prefix, rest } = literalPrefix(resolve(glob))
      const real = yield* resolveExisting(prefix)
      return globToRegExp(rest === "" ? real : `${real === "/" ? "" : real}/${rest}`)
    })
  )

/**
 * The resolved path of `path` (relative ones against `cwd`) when one of `allowed` matches it, else a
 * `FileAccessError`.
 *
 * @category checking
 */
export const check = (
  path: unknown,
  allowed: ReadonlyArray<RegExp>,
  cwd: string = process.cwd()
): Effect.Effect<string, FileAccessError> =>
  Effect.gen(function* () {
    if (typeof path !== "string" || path.length === 0) {
      return yield* new FileAccessError({
        reason: "invalid",
        path: String(path),
        message: "a path must be a non-empty string"
      })
    }
    if (path.includes("\0")) {
      return yield* new FileAccessError({ reason: "invalid", path, message: "a path cannot hold a NUL byte" })
    }
    const absolute = isAbsolute(path) ? resolve(path) : resolve(cwd, path)
    const real = yield* resolveExisting(absolute)
    if (allowed.some((re) => re.test(real))) return real
    return yield* new FileAccessError({
      reason: "denied",
      path,
      message: `${path} (${real}) is outside the allowed paths`
    })
  })
