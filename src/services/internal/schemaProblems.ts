/**
 * A Schema issue as a flat list of problems, each with its path (`budget.tokens`, `[2].match.tool`): how manifests,
 * policies and configs report every problem at once.
 *
 * Private to the package.
 */
import * as SchemaIssue from "effect/SchemaIssue"

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

const pathOf = (path: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined): string => {
  let out = ""
  for (const segment of path ?? []) {
    const key = typeof segment === "object" && segment !== null ? segment.key : segment
    out += typeof key === "number" ? `[${key}]` : out.length === 0 ? String(key) : `.${String(key)}`
  }
  return out
}

export const problemsOf = (issue: SchemaIssue.Issue): Array<{ path: string; message: string }> =>
  formatter(issue).issues.map((i) => ({
    path: pathOf(i.path as ReadonlyArray<PropertyKey> | undefined),
    message: i.message
  }))
