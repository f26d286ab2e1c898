/**
 * The files a daemon trusts: its state directory, what it appends to there, its secrets and its config.
 *
 * Anyone who may write into the state directory could plant a symbolic link where the daemon appends (and make it
 * write through it), plant a journal, or swap a config that points the model's requests, and the operator's key, at
 * another server. So before the daemon opens anything:
 *
 * - `prepareDir(dir)`: the directory is made (0700) when it is missing; an existing one must be a directory this
 *   user owns that nobody else may write (a group or other write bit is refused: others may already have planted
 *   files); one that others may only read or enter is made 0700; every directory above it must be this user's or
 *   root's, and one that others may write must be sticky (as `/tmp`), else they could swap the state directory;
 * - `checkFile(path)`: a file the daemon appends to or reads back (journal, audit trail, lock) must, when it exists,
 *   be a regular file (a symbolic link is refused, never followed), this user's, and not writable by others; one
 *   that others may read is made 0600;
 * - `readConfig(path, { followLinks })`: a config must be a regular file owned by this user (or root) that nobody
 *   else may write; its text;
 * - `ensureSecret(path)`: a secret (a bearer token, the journal's integrity key): the file's text when it is there
 *   (a regular file, not a link, this user's, no bit past 0600), else made: 32 random bytes as hex, created with
 *   `O_EXCL` and mode 0600. A secret others could read may have been read, so it is refused, not fixed.
 *
 * Inside a directory that `prepareDir` accepted only this user can add, remove or swap files, so the checks are not
 * raced by anyone else. Every refusal is a `StateFilesError` naming the file and what to do.
 *
 * @since 0.1.0
 */
import { randomBytes } from "node:crypto"
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  type Stats,
  statSync,
  writeSync
} from "node:fs"
import { dirname } from "node:path"
import { Schema } from "effect"

/**
 * What was wrong: `unsafe` (others may write it or read a secret, it is a link or not a regular file, or another
 * user owns it), `invalid` (a secret file that holds no secret, a file too large) or `io` (it cannot be read or
 * made).
 *
 * @category errors
 */
export class StateFilesError extends Schema.TaggedError<StateFilesError>()("StateFilesError", {
  reason: Schema.Literals(["unsafe", "invalid", "io"]),
  path: Schema.String,
  message: Schema.String
}) {}

/**
 * The names of the files in a daemon's state directory.
 *
 * @category models
 */
export const names = {
  journal: "journal.jsonl",
  /** The journal's integrity key (HMAC), made with the journal. */
  journalKey: "journal.key",
  token: "agentd.token",
  lock: "agentd.pid",
  socket: "agentd.sock",
  config: "agentd.yaml"
} as const

const unsafe = (path: string, message: string) => new StateFilesError({ reason: "unsafe", path, message })

const uid = (): number | undefined => (process.getuid === undefined ? undefined : process.getuid())

const mode = (stat: Stats) => (stat.mode & 0o777).toString(8)

/** Throws unless this user (or, with `root`, root) owns the file. */
const owned = (path: string, stat: Stats, root = false): void => {
  const me = uid()
  if (me === undefined || stat.uid === me || (root && stat.uid === 0)) return
  throw unsafe(path, `${path} belongs to another user (uid ${stat.uid})`)
}

const codeOf = (error: unknown): string | undefined => (error as NodeJS.ErrnoException | undefined)?.code

const rethrow = (path: string, error: unknown): never => {
  if (error instanceof StateFilesError) throw error
  throw new StateFilesError({ reason: "io", path, message: `${path}: ${String(error)}` })
}

/**
 * Makes `dir` (0700) when it is missing, else checks it: a directory of this user's that no one else may write;
 * made 0700 when others may read it.
 *
 * @category checks
 */
export const prepareDir = (dir: string): void => {
  try {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
    } catch (error) {
      if (codeOf(error) !== "EEXIST") throw error
    }
    // the operator may name the state directory through a link; what is checked is the directory it names
    const stat = statSync(dir)
    if (!stat.isDirectory()) throw unsafe(dir, `${dir} is not a directory`)
    owned(dir, stat)
    if ((stat.mode & 0o022) !== 0) {
      throw unsafe(
        dir,
        `${dir} has mode ${mode(stat)}: others may write into it, and may have planted files there ` +
          `(check what it holds, then chmod 700 it)`
      )
    }
    if ((stat.mode & 0o077) !== 0) chmodSync(dir, 0o700)
    // whoever may write a directory above it may rename the state directory away and put their own in its place
    let at = realpathSync(dir)
    while (dirname(at) !== at) {
      at = dirname(at)
      const parent = statSync(at)
      const me = uid()
      if (me !== undefined && parent.uid !== me && parent.uid !== 0) {
        throw unsafe(dir, `${at}, above ${dir}, belongs to another user (uid ${parent.uid})`)
      }
      // a sticky directory (as /tmp) lets others add their own entries, not rename ours
      if ((parent.mode & 0o022) !== 0 && (parent.mode & 0o1000) === 0) {
        throw unsafe(
          dir,
          `${at}, above ${dir}, has mode ${mode(parent)}: others may write it and swap the state directory ` +
            `(use a state directory under directories only you can write)`
        )
      }
    }
  } catch (error) {
    rethrow(dir, error)
  }
}

/**
 * Checks a file the daemon appends to or reads back, when it exists: a regular file (not a link), this user's, that
 * no one else may write; made 0600 when others may read it. Whether it existed.
 *
 * @category checks
 */
export const checkFile = (path: string): boolean => {
  try {
    let stat: Stats
    try {
      stat = lstatSync(path)
    } catch (error) {
      if (codeOf(error) === "ENOENT") return false
      throw error
    }
    if (stat.isSymbolicLink()) throw unsafe(path, `${path} is a symbolic link: the daemon does not write through one`)
    if (!stat.isFile()) throw unsafe(path, `${path} is not a regular file`)
    owned(path, stat)
    if ((stat.mode & 0o022) !== 0) {
      throw unsafe(path, `${path} has mode ${mode(stat)}: others may write it (check it, then chmod 600 it)`)
    }
    if ((stat.mode & 0o077) !== 0) chmodSync(path, 0o600)
    return true
  } catch (error) {
    return rethrow(path, error)
  }
}

/** The largest config read, in bytes. */
export const configBytesMax = 1024 * 1024

/**
 * A config's text, or `undefined` when there is no such file: a regular file, owned by this user or root, that no
 * one else may write. A link is followed only with `followLinks` (an operator's `--config`), and then the file it
 * names is what is checked.
 *
 * @category checks
 */
export const readConfig = (path: string, options: { readonly followLinks: boolean }): string | undefined =>
  readChecked(path, options.followLinks, (stat) => {
    owned(path, stat, true)
    if ((stat.mode & 0o022) !== 0) {
      throw unsafe(path, `${path} has mode ${mode(stat)}: others may write it (check it, then chmod 644 it)`)
    }
    if (stat.size > configBytesMax) {
      throw new StateFilesError({ reason: "invalid", path, message: `${path} is larger than ${configBytesMax} bytes` })
    }
  })

const secretPattern = /^[\x21-\x7e]{32,}$/

/**
 * The secret in `path`, or `undefined` when there is no such file. Refused: a link, not a regular file, another
 * user's, any mode bit past 0600 (`unsafe`); no secret in it (at least 32 visible ASCII characters) or past 4 KiB
 * (`invalid`).
 *
 * @category secrets
 */
export const readSecret = (path: string): string | undefined => {
  const text = readChecked(path, false, (stat) => {
    if ((stat.mode & 0o077) !== 0) {
      throw unsafe(path, `${path} has mode ${mode(stat)}: others may read it (chmod 600, or delete it)`)
    }
    owned(path, stat)
    if (stat.size > 4096) throw new StateFilesError({ reason: "invalid", path, message: `${path} is too large` })
  })
  if (text === undefined) return undefined
  const secret = text.trim()
  if (!secretPattern.test(secret)) {
    throw new StateFilesError({ reason: "invalid", path, message: `${path} holds no secret` })
  }
  return secret
}

/**
 * The text of the regular file at `path` (opened without blocking, a link followed only with `followLinks`) once
 * `check` accepted what `fstat` says of the file opened; `undefined` when there is none.
 */
const readChecked = (path: string, followLinks: boolean, check: (stat: Stats) => void): string | undefined => {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (followLinks ? 0 : constants.O_NOFOLLOW))
  } catch (error) {
    if (codeOf(error) === "ENOENT") return undefined
    if (codeOf(error) === "ELOOP") throw unsafe(path, `${path} is a symbolic link`)
    return rethrow(path, error)
  }
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile()) throw unsafe(path, `${path} is not a regular file`)
    check(stat)
    return readFileSync(fd, "utf8")
  } catch (error) {
    return rethrow(path, error)
  } finally {
    closeSync(fd)
  }
}

/**
 * The secret in `path` (`readSecret`), made when there is none: 32 random bytes as hex in a file created with
 * `O_EXCL | O_NOFOLLOW` and mode 0600 (its directory, when it is missing, is made 0700). Two daemons racing to make
 * it share the first one's.
 *
 * @category secrets
 */
export const ensureSecret = (path: string, dir: string): string => {
  const existing = readSecret(path)
  if (existing !== undefined) return existing
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (error) {
    if (codeOf(error) !== "EEXIST") rethrow(dir, error)
  }
  const secret = randomBytes(32).toString("hex")
  let fd: number
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
  } catch (error) {
    if (codeOf(error) === "EEXIST") {
      const theirs = readSecret(path)
      if (theirs !== undefined) return theirs
    }
    return rethrow(path, error)
  }
  try {
    // the umask cannot widen 0600, but a narrower one must not leave the file unreadable to its owner either
    fchmodSync(fd, 0o600)
    writeSync(fd, secret + "\n")
    fsyncSync(fd)
  } catch (error) {
    rethrow(path, error)
  } finally {
    closeSync(fd)
  }
  return secret
}
