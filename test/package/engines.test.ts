/**
 * Every package in package-lock.json runs on the Node versions package.json's `engines` promises:
 * the oldest release of each line it names (and the Node running the tests). A dependency update
 * that needs a newer Node (npm ci's EBADENGINE warnings) fails here, not on a user's machine.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import semver from 'semver';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { version?: string; engines?: { node?: string } | string[] }>;
};

/** The oldest version of each line the range allows: `^20.19.0 || >=22.13.0` → 20.19.0, 22.13.0. */
function oldestOfEachLine(range: string): string[] {
  return new semver.Range(range).set.map((comparators) => semver.minVersion(new semver.Range(comparators.map((c) => c.value).join(' ')))!.version);
}

describe('Node versions', () => {
  const supported = [...oldestOfEachLine(pkg.engines.node), '24.0.0', process.versions.node];

  it('package.json names Node 20 and the current LTS lines', () => {
    expect(oldestOfEachLine(pkg.engines.node)[0]).toMatch(/^20\./);
    for (const v of ['20.19.0', '22.13.0', '24.0.0', process.versions.node]) expect(semver.satisfies(v, pkg.engines.node), v).toBe(true);
  });

  it('no locked package asks for a newer Node than that (npm ci prints no EBADENGINE)', () => {
    const refused: string[] = [];
    let checked = 0;
    for (const [path, entry] of Object.entries(lock.packages)) {
      const node = Array.isArray(entry.engines) ? undefined : entry.engines?.node;
      if (!path || !node) continue;
      checked++;
      for (const v of supported) if (!semver.satisfies(v, node)) refused.push(`${path}@${entry.version}: node ${node} (not ${v})`);
    }
    expect(checked).toBeGreaterThan(100);
    expect(refused).toEqual([]);
  });
});
