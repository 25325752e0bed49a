/**
 * An instance becomes READY in the registry only once this replica's router can route to it. A
 * worker's registration adds the instance and loads it; the view the router reads is rebuilt from
 * the registry, and on a busy machine that rebuild can still be running when the load is done.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../../src/testing/gateway.ts';

describe('instance readiness', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ plugins: [{ use: './examples/capibara-plugin-echo' }] });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('the registry says READY only once the router view holds the loaded instance, however slow rebuilding that view is', async () => {
    const { registry, instances: fleet } = gw.services;
    await registry.register({ id: 'late', task: 'generate', versions: [{ version: 'v1', instances: [] }] });
    await fleet.refresh('late');
    // Registry reads as slow as a busy machine makes them, for the view rebuilds only.
    const versionsByModel = registry.versionsByModel.bind(registry);
    registry.versionsByModel = async (...args) => {
      await new Promise((r) => setTimeout(r, 300));
      return versionsByModel(...args);
    };
    const routableWhenReady: boolean[] = [];
    const setInstanceStatus = registry.setInstanceStatus.bind(registry);
    registry.setInstanceStatus = async (id, status, extra) => {
      if (status === 'ready')
        routableWhenReady.push(
          fleet
            .view('late')
            ?.versions.get('v1')
            ?.some((h) => h.id === id && h.loaded !== undefined) ?? false,
        );
      return setInstanceStatus(id, status, extra);
    };
    try {
      // As a worker's registration does: add the instance (the registry event starts a view rebuild), then load it.
      await registry.addInstance('late', 'v1', { id: 'late-1', backend: 'echo' });
      await fleet.load('late-1');
      expect(routableWhenReady).toEqual([true]);
      const r = await gw.gql<{ infer: { text: string } }>('mutation { infer(model: "late", input: { prompt: "at once" }) { text } }');
      expect(r.errors).toBeUndefined();
      expect(r.data!.infer.text).toBe('at once');
    } finally {
      registry.versionsByModel = versionsByModel;
      registry.setInstanceStatus = setInstanceStatus;
    }
  });

  it('an instance deleted while it loads does not keep what its backend loaded', async () => {
    const { registry, instances: fleet, plugins } = gw.services;
    await registry.register({ id: 'brief', task: 'generate', versions: [{ version: 'v1', instances: [] }] });
    await registry.addInstance('brief', 'v1', { id: 'brief-1', backend: 'echo' });
    const echo = plugins.get('backend', 'echo');
    const load = echo.load.bind(echo);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const loadedHere: Array<{ unloaded: boolean }> = [];
    echo.load = async (...args) => {
      await held;
      const loaded = await load(...args);
      const seen = { unloaded: false };
      loadedHere.push(seen);
      const unload = loaded.unload.bind(loaded);
      loaded.unload = async () => {
        seen.unloaded = true;
        await unload();
      };
      return loaded;
    };
    try {
      const loading = fleet.load('brief-1');
      await new Promise((r) => setTimeout(r, 50)); // the backend's load is under way
      await fleet.forgetModel('brief'); // as when the model's deletion is heard
      release();
      await loading.catch(() => {});
      expect(loadedHere).toEqual([{ unloaded: true }]);
      expect([...fleet.allHandles()].filter((h) => h.modelId === 'brief')).toHaveLength(0);
      expect(fleet.view('brief')).toBeUndefined();
    } finally {
      echo.load = load;
    }
  });
});
