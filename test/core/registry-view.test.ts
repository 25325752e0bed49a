import { describe, expect, it } from 'vitest';
import { RegistryView, type ModelEntry } from '../../src/models/registry-view.ts';

const at = (ms: number) => new Date(Date.UTC(2026, 0, 1) + ms);
function entry(id: string, created: number, opts: { status?: string; labels?: Record<string, string> } = {}): ModelEntry {
  const model = {
    id,
    name: id,
    description: '',
    task: 'generate',
    labels: opts.labels ?? {},
    defaultVersion: 'v1',
    routing: {},
    createdAt: at(created),
    updatedAt: at(created),
  };
  const version = { id: `${id}-v1`, modelId: id, version: 'v1', description: '', resources: null, createdAt: at(created) };
  const instance = {
    ...{ id: `${id}-i`, modelId: id, versionId: `${id}-v1`, backend: 'echo', endpoint: null, device: null, options: {}, weight: 1 },
    ...{ status: opts.status ?? 'ready', statusReason: null, runtime: null, workerId: null, createdAt: at(created), updatedAt: at(created) },
  };
  return { model, versions: [version], instances: [instance] };
}

describe('RegistryView', () => {
  it('lists oldest first (id breaks ties) and filters by task, search, labels and ids', () => {
    const v = new RegistryView();
    v.replaceAll([entry('b', 1), entry('a', 1), entry('c', 0, { labels: { team: 'x' } })], 1);
    expect(v.models().map((m) => m.id)).toEqual(['c', 'a', 'b']);
    expect(v.matching({ search: 'B' }).map((m) => m.id)).toEqual(['b']);
    expect(v.matching({ labels: { team: 'x' } }).map((m) => m.id)).toEqual(['c']);
    expect(v.matching({ ids: [] })).toEqual([]);
    expect(v.matching({ task: 'embed' })).toEqual([]);
    expect(v.instancesOf('a-v1').map((i) => i.id)).toEqual(['a-i']);
    expect(v.instance('b-i')?.version).toBe('v1');
  });

  it('refuses a read older than the state it holds, and a deletion is not undone by a late read', () => {
    const v = new RegistryView();
    v.replaceAll([entry('m', 0)], 1);
    expect(v.put('m', entry('m', 0, { status: 'draining' }), 5)).toBe(true);
    expect(v.put('m', entry('m', 0, { status: 'loading' }), 4)).toBe(false);
    expect(v.instance('m-i')?.row.status).toBe('draining');
    expect(v.put('m', null, 6)).toBe(true);
    expect(v.put('m', entry('m', 0), 5)).toBe(false);
    expect(v.model('m')).toBeUndefined();
  });

  it('a full read keeps the models changed after it and says what it changed', () => {
    const v = new RegistryView();
    v.replaceAll([entry('kept', 0), entry('gone', 1), entry('same', 2)], 1);
    v.patchInstance({ ...entry('kept', 0).instances[0]!, status: 'unloaded' }, 9);
    const diff = v.replaceAll([entry('kept', 0), entry('same', 2), entry('new', 3)], 8);
    expect(diff).toEqual({ added: ['new'], removed: ['gone'], changed: [] });
    expect(v.instance('kept-i')?.row.status).toBe('unloaded');
    expect(v.newerThan(8)).toEqual(['kept']);
  });

  it('hands out frozen rows', () => {
    const v = new RegistryView();
    v.replaceAll([entry('f', 0, { labels: { a: 'b' } })], 1);
    expect(() => {
      (v.model('f')!.labels as Record<string, string>).a = 'c';
    }).toThrow(TypeError);
  });
});
