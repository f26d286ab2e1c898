/**
 * Hardened mode: `import "effect-agent-os/hardened"` as the first import of a program (before `effect` and before
 * anything else that builds objects) freezes the realm's shared intrinsics with `ses`'s `lockdown()`:
 * `Object.prototype`, `Array.prototype`, `Function.prototype`, the iterator prototypes, `Promise` and every other
 * built-in become immutable. A process image can then no longer plant a getter on a built-in prototype that runs on
 * another process's fiber, make every object a thenable, or patch the iterators Effect's combinators use: the realm
 * attacks that README's trust model leaves open without it. `ses` is an optional peer dependency
 * (`npm install ses`).
 *
 * Lockdown is process-wide and cannot be undone. It is set up so that Effect and Node keep working: errors keep
 * their stack traces, `console` is left as it is, and assigning a property that a frozen prototype also has (an
 * `Error`'s `name`, a `toString`) still works on the object itself (`overrideTaming: "severe"`). Code that patches
 * built-ins (polyfills, some instrumentation) must run before this import.
 *
 * @since 0.1.0
 */
import "ses"

/** Whether the realm was locked down before this module loaded (another `lockdown` call or an earlier import). */
const already = Object.isFrozen(Object.prototype) && Object.isFrozen(Array.prototype)

if (!already) {
  lockdown({
    errorTaming: "unsafe",
    consoleTaming: "unsafe",
    overrideTaming: "severe",
    stackFiltering: "verbose",
    localeTaming: "unsafe"
  })
}

/**
 * Whether the realm is hardened: its shared intrinsics are frozen (true after this module has loaded).
 *
 * @since 0.1.0
 */
export const isHardened = (): boolean =>
  Object.isFrozen(Object.prototype) &&
  Object.isFrozen(Array.prototype) &&
  Object.isFrozen(Function.prototype) &&
  Object.isFrozen(Object.getPrototypeOf([][Symbol.iterator]()))
