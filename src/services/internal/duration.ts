/**
 * Converts a duration given by a user to millis, or `NaN` when it is not a duration ≥ 0.
 *
 * Effect's `Duration.fromInput` reads `NaN` as zero; a kernel limit must refuse it instead.
 */
import { Duration, Option } from "effect"

export const durationMillis = (input: Duration.Input): number => {
  if (typeof input === "number" && Number.isNaN(input)) return NaN
  const duration = Duration.fromInput(input)
  if (Option.isNone(duration)) return NaN
  const ms = Duration.toMillis(duration.value)
  return ms >= 0 ? ms : NaN
}
