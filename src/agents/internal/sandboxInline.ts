/**
 * The sandbox's runner and QuickJS engine inlined, for the built package: `npm run build` replaces this module in
 * `dist/` with one whose `runner` is `sandboxRunner.mjs` bundled with the QuickJS glue it imports (one ES module's
 * text, started with `eval: true`) and whose `wasm` is the engine's WebAssembly file in base64. So the installed
 * package — and a bundle of an app that uses it, which has no runner or `.wasm` file next to its own — needs no file
 * but its own modules. In the sources both are `undefined`, and `Sandbox.ts` starts the runner file found through
 * `import.meta.url` with the engine read from `@jitl/quickjs-wasmfile-release-sync`. Loaded only when the first
 * sandbox starts (it is about a megabyte).
 *
 * @internal
 */
export const runner: string | undefined = undefined

/** @internal */
export const wasm: string | undefined = undefined
