/**
 * The exclude set a balancer should honour: `exclude` when at least one candidate is outside it,
 * otherwise undefined (every candidate was tried already, so any may be picked again).
 */
export function effectiveExclude(
  candidates: ReadonlyArray<{ readonly id: string }>,
  exclude: ReadonlySet<string> | undefined,
): ReadonlySet<string> | undefined {
  if (exclude === undefined || exclude.size === 0) return undefined;
  for (let i = 0; i < candidates.length; i++) if (!exclude.has(candidates[i]!.id)) return exclude;
  return undefined;
}
