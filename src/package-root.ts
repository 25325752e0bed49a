import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder of capibara-mcp's package.json, found from this file whether it runs from src/
 * (tsx) or dist/src/ (compiled): migrations, the demo model and schema.graphql live there.
 */
export const PACKAGE_ROOT = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'capibara-mcp') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('capibara-mcp: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
})();
