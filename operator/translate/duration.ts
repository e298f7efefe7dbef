// Gateway API durations (GEP-2257): up to four `<int><unit>` parts, units h, m, s, ms.
const PART = /([0-9]{1,5})(ms|h|m|s)/g;
const WHOLE = /^([0-9]{1,5}(ms|h|m|s)){1,4}$/;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Milliseconds, or undefined when the string is not a Gateway API duration. */
export function parseDuration(d: string): number | undefined {
  if (!WHOLE.test(d)) return undefined;
  let ms = 0;
  for (const m of d.matchAll(PART)) ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  return ms;
}
