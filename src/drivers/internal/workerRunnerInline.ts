/**
 * `workerRunner.mjs` inlined as text, for the built package: `npm run build` replaces this module in `dist/` with one
 * whose `source` is the runner's code, which the pool then starts with `eval: true`. So the installed package — and a
 * bundle of an app that uses it, which has no `workerRunner.mjs` next to its own file — needs no runner file. In the
 * sources it is `undefined`, and the pool starts the file found through `import.meta.url`.
 *
 * @internal
 */
export const source: string | undefined = undefined
