/**
 * Drops null fields GraphQL hands us for absent optional inputs, so zod defaults apply. JSON
 * values under `options`, `labels` and `data` (a tensor's elements: up to millions) are kept as given.
 */
export function compact<T>(v: T): T {
  if (Array.isArray(v)) return v.map(compact) as T;
  if (v && typeof v === 'object' && !(v instanceof Date)) {
    return Object.fromEntries(
      Object.entries(v)
        .filter(([, x]) => x !== null && x !== undefined)
        .map(([k, x]) => [k, k === 'options' || k === 'labels' || k === 'data' ? x : compact(x)]),
    ) as T;
  }
  return v;
}
