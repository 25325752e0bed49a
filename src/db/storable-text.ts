/**
 * A string as PostgreSQL text can hold it: without NUL characters (which text refuses) and with each lone surrogate
 * (which UTF-8 cannot encode, and json refuses) made U+FFFD, as PostgreSQL itself would store it. Values that are
 * hashed before they are stored (the audit chain) must be made storable first, or the stored row hashes differently.
 */
export function storableText(s: string): string {
  const t = s.includes('\0') ? s.replaceAll('\0', '') : s;
  return t.isWellFormed() ? t : t.toWellFormed();
}
