import type { InstanceRow, ModelFilter, ModelRow, VersionRow } from './registry.ts';

/** One model as stored: its row, its versions and its instances (each in the order the API lists them). */
export interface ModelEntry {
  model: ModelRow;
  versions: VersionRow[];
  instances: InstanceRow[];
}

/** What a full resync changed, per model. */
export interface ViewDiff {
  added: string[];
  removed: string[];
  changed: string[];
}

const byCreatedThen =
  <R extends { createdAt: Date }>(key: (r: R) => string) =>
  (a: R, b: R) =>
    a.createdAt.getTime() - b.createdAt.getTime() || (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
const modelOrder = byCreatedThen<ModelRow>((m) => m.id);
const versionOrder = byCreatedThen<VersionRow>((v) => v.version);
const instanceOrder = byCreatedThen<InstanceRow>((i) => i.id);

/** Rows handed out by the view are shared by every reader: frozen, so none can change them for the others. */
function freezeRow<R extends object>(row: R): R {
  for (const v of Object.values(row)) if (v && typeof v === 'object' && !(v instanceof Date)) Object.freeze(v);
  return Object.freeze(row);
}

/**
 * The registry held in memory (models, versions, instances), indexed for the reads the API and the
 * router make. Every entry carries the registry version it was read or written at: an older read
 * that finishes late never overwrites a newer state (nor brings back a deleted model).
 * Owned by ModelRegistry, which alone changes it.
 */
export class RegistryView {
  private readonly entries = new Map<string, ModelEntry>();
  /** Registry version each model's entry (or its deletion) reflects; models not listed are as of `floor`. */
  private readonly appliedAt = new Map<string, number>();
  private floor = -1;
  private ordered: ModelRow[] | undefined;
  private readonly instanceIndex = new Map<string, { row: InstanceRow; version: string }>();
  private readonly instancesOfVersion = new Map<string, InstanceRow[]>();

  get size(): number {
    return this.entries.size;
  }

  entry(modelId: string): ModelEntry | undefined {
    return this.entries.get(modelId);
  }

  /** Sets the model's state as read (or written) at registry version `at`; null: the model does not exist. Whether it applied. */
  put(modelId: string, entry: ModelEntry | null, at: number): boolean {
    if (at < (this.appliedAt.get(modelId) ?? this.floor)) return false;
    this.appliedAt.set(modelId, at);
    this.set(modelId, entry);
    return true;
  }

  /**
   * Replaces the instance's row (a status change) as of version `at`, when the view holds its model.
   * A state read later than `at` has the change already. The model's other rows may be older than
   * `at`: a read of the model older than `at` is refused from now on, and its reader reads again.
   */
  patchInstance(row: InstanceRow, at: number): void {
    const entry = this.entries.get(row.modelId);
    if (!entry || at < (this.appliedAt.get(row.modelId) ?? this.floor)) return;
    this.appliedAt.set(row.modelId, at);
    this.set(row.modelId, { ...entry, instances: entry.instances.map((i) => (i.id === row.id ? row : i)) });
  }

  /** Every model as read at version `at`; models changed here after `at` keep their newer state. What changed. */
  replaceAll(snapshot: readonly ModelEntry[], at: number): ViewDiff {
    const diff: ViewDiff = { added: [], removed: [], changed: [] };
    const next = new Map(snapshot.map((e) => [e.model.id, e]));
    for (const id of new Set([...this.entries.keys(), ...next.keys()])) {
      if ((this.appliedAt.get(id) ?? this.floor) > at) continue;
      const before = this.entries.get(id);
      const after = next.get(id) ?? null;
      if (!before && after) diff.added.push(id);
      else if (before && !after) diff.removed.push(id);
      else if (before && after && !sameEntry(before, after)) diff.changed.push(id);
      if (!before || !after || !sameEntry(before, after)) this.set(id, after);
    }
    // Entries at or below the new floor say nothing more than the floor does.
    this.floor = Math.max(this.floor, at);
    for (const [id, v] of this.appliedAt) if (v <= this.floor) this.appliedAt.delete(id);
    return diff;
  }

  /** Models whose state in memory is later than version `at` (a full read at `at` left them as they were). */
  newerThan(at: number): string[] {
    return [...this.appliedAt].filter(([, v]) => v > at).map(([id]) => id);
  }

  private set(modelId: string, entry: ModelEntry | null): void {
    const before = this.entries.get(modelId);
    if (before) {
      for (const i of before.instances) this.instanceIndex.delete(i.id);
      for (const v of before.versions) this.instancesOfVersion.delete(v.id);
    }
    this.ordered = undefined;
    if (!entry) {
      this.entries.delete(modelId);
      return;
    }
    const frozen: ModelEntry = {
      model: freezeRow(entry.model),
      versions: entry.versions.map(freezeRow).sort(versionOrder),
      instances: entry.instances.map(freezeRow).sort(instanceOrder),
    };
    this.entries.set(modelId, frozen);
    const names = new Map(frozen.versions.map((v) => [v.id, v.version]));
    for (const v of frozen.versions) this.instancesOfVersion.set(v.id, []);
    for (const i of frozen.instances) {
      this.instanceIndex.set(i.id, { row: i, version: names.get(i.versionId) ?? '?' });
      this.instancesOfVersion.get(i.versionId)?.push(i);
    }
  }

  // ─────────────── reads ───────────────

  /** Every model, oldest first (id breaks ties). */
  models(): readonly ModelRow[] {
    this.ordered ??= [...this.entries.values()].map((e) => e.model).sort(modelOrder);
    return this.ordered;
  }

  /** The models that pass the filter, oldest first. */
  matching(filter: ModelFilter): ModelRow[] {
    const search = filter.search?.toLowerCase();
    const ids = filter.ids ? new Set(filter.ids) : undefined;
    const labels = filter.labels ? Object.entries(filter.labels) : [];
    return this.models().filter(
      (m) =>
        (!filter.task || m.task === filter.task) &&
        (!search || m.id.toLowerCase().includes(search) || m.name.toLowerCase().includes(search)) &&
        (!ids || ids.has(m.id)) &&
        labels.every(([k, v]) => m.labels[k] === v),
    );
  }

  model(modelId: string): ModelRow | undefined {
    return this.entries.get(modelId)?.model;
  }

  versionsOf(modelId: string): VersionRow[] {
    return this.entries.get(modelId)?.versions ?? [];
  }

  instancesOfModel(modelId: string): InstanceRow[] {
    return this.entries.get(modelId)?.instances ?? [];
  }

  instancesOf(versionId: string): InstanceRow[] {
    return this.instancesOfVersion.get(versionId) ?? [];
  }

  instance(instanceId: string): { row: InstanceRow; version: string } | undefined {
    return this.instanceIndex.get(instanceId);
  }

  /** Every instance, oldest first. */
  allInstances(): InstanceRow[] {
    return [...this.instanceIndex.values()].map((i) => i.row).sort(instanceOrder);
  }
}

function sameEntry(a: ModelEntry, b: ModelEntry): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether a model's row sorts after the cursor position (createdAt, id). */
export function isAfter(row: ModelRow, at: Date, id: string): boolean {
  return row.createdAt.getTime() > at.getTime() || (row.createdAt.getTime() === at.getTime() && row.id > id);
}
