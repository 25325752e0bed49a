import { existsSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { Services } from '../services.ts';
import { PACKAGE_ROOT } from '../package-root.ts';

/** The shipped demo model's folder (model.json, weights, vocabulary). */
export const DEMO_MODEL_DIR = join(PACKAGE_ROOT, 'models/capibara-mini');
export const DEMO_MODEL_ID = 'capibara-mini';

/**
 * Registers the models named in the config, and the demo model `capibara-mini`, when they are
 * not registered yet. Existing registrations are never changed (the database is the truth).
 */
export async function seedModels(services: Services, baseDir: string): Promise<void> {
  const { config, registry, plugins, logger } = services;
  const seeds = [...config.models];
  if (config.demo.enabled && plugins.has('backend', 'tfjs') && existsSync(`${DEMO_MODEL_DIR}/model.json`) && !seeds.some((s) => s.id === DEMO_MODEL_ID)) {
    seeds.unshift({
      id: DEMO_MODEL_ID,
      name: 'Capibara Mini',
      description: 'A small character-level language model trained by scripts/train-capibara-mini.ts; ships with the gateway.',
      task: 'generate',
      labels: { demo: 'true' },
      defaultVersion: 'v1',
      versions: [
        { version: 'v1', instances: [{ id: 'capibara-mini-local', backend: 'tfjs', endpoint: DEMO_MODEL_DIR, weight: 1, options: { kind: 'char-lm' } }] },
      ],
    });
  }
  for (const seed of seeds) {
    if (await registry.get(seed.id)) continue;
    const versions = seed.versions.map((v) => ({
      ...v,
      instances: v.instances.map((i) => ({
        ...i,
        endpoint: i.endpoint && i.endpoint.startsWith('.') && !isAbsolute(i.endpoint) ? resolve(baseDir, i.endpoint) : i.endpoint,
      })),
    }));
    await registry.register({ ...seed, versions }, 'config');
    logger.info({ model: seed.id }, 'model registered from configuration');
  }
}
