/**
 * Memory accounting around loads and unloads: the device memory a worker reports before and after
 * each one. A load's growth is what the instance holds (and what "measured at first load" records);
 * an unload that gives back less than its load took raises `mcp_unload_unreleased_bytes_total` and
 * `mcp_memory_leak_bytes` (per worker and device) and logs a warning. Loads and unloads that overlap
 * on one worker see each other's growth: with a token from begin(), such an operation is not
 * measured (its unload is then not checked either); small differences are tolerated.
 */
import { sharedCounter, sharedGauge } from '../sdk/shared-metrics.ts';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { formatBytes } from './requirements.ts';

/** Memory used per device id, bytes. */
export type DeviceUsage = ReadonlyMap<string, number>;

export interface AccountingOptions {
  logger: Logger;
  metrics?: Registry;
  /** Differences up to this many bytes, or this fraction of what the load took, are noise (default 1 MiB, 5%). */
  toleranceBytes?: number;
  toleranceRatio?: number;
}

export interface UnloadReport {
  /** Bytes the load took, per device. */
  held: number;
  /** Bytes the unload gave back. */
  released: number;
  /** Bytes held and not given back beyond the tolerance (0 when the unload gave it all back). */
  unreleased: number;
}

/** What growth of `after` over `before` there is, summed over devices, and per device. */
function growth(before: DeviceUsage, after: DeviceUsage): Map<string, number> {
  const out = new Map<string, number>();
  for (const [id, v] of after) out.set(id, v - (before.get(id) ?? v));
  return out;
}

/** One load or unload in progress (begin → record…): whether another ran on the worker meanwhile. */
export interface AccountingToken {
  workerId: string;
  seq: number;
  alone: boolean;
}

export class MemoryAccounting {
  private readonly held = new Map<string, Map<string, number>>();
  private readonly running = new Map<string, { count: number; seq: number }>();
  private readonly unreleasedTotal: Counter<'worker' | 'device'> | undefined;
  private readonly leakGauge: Gauge<'worker' | 'device'> | undefined;
  private readonly leaks = new Map<string, number>();
  private readonly tolBytes: number;
  private readonly tolRatio: number;

  constructor(private readonly opts: AccountingOptions) {
    this.tolBytes = opts.toleranceBytes ?? 2 ** 20;
    this.tolRatio = opts.toleranceRatio ?? 0.05;
    if (opts.metrics) {
      this.unreleasedTotal = sharedCounter(
        opts.metrics,
        'mcp_unload_unreleased_bytes_total',
        'Device memory an unload did not give back (what the load took minus what the unload released), bytes',
        ['worker', 'device'],
      );
      this.leakGauge = sharedGauge(opts.metrics, 'mcp_memory_leak_bytes', 'Device memory left behind by unloads since the worker registered, bytes', [
        'worker',
        'device',
      ]);
    }
  }

  private key(workerId: string, instanceId: string): string {
    return `${workerId}\u0000${instanceId}`;
  }

  /** Call before reading the `before` figures of a load or unload; pass the token to record…. */
  begin(workerId: string): AccountingToken {
    const r = this.running.get(workerId) ?? { count: 0, seq: 0 };
    this.running.set(workerId, r);
    r.count++;
    r.seq++;
    return { workerId, seq: r.seq, alone: r.count === 1 };
  }

  /** Ends an operation that failed (nothing to record). */
  abandon(token: AccountingToken | undefined): void {
    this.end(token);
  }

  /** Ends the operation; true when no other one ran on the worker between begin() and now. */
  private end(token: AccountingToken | undefined): boolean {
    if (!token) return true;
    const r = this.running.get(token.workerId);
    if (!r) return false;
    const alone = token.alone && r.seq === token.seq;
    if (--r.count === 0) this.running.delete(token.workerId);
    return alone;
  }

  /**
   * Records a load's before/after figures; answers the bytes it took (summed over devices, never
   * negative), or undefined when another operation overlapped (not measured).
   */
  recordLoad(workerId: string, instanceId: string, before: DeviceUsage, after: DeviceUsage, token?: AccountingToken): number | undefined {
    if (!this.end(token)) {
      this.held.delete(this.key(workerId, instanceId));
      return undefined;
    }
    const g = growth(before, after);
    const positive = new Map([...g].filter(([, v]) => v > 0));
    this.held.set(this.key(workerId, instanceId), positive);
    return [...positive.values()].reduce((a, v) => a + v, 0);
  }

  /** Bytes the instance took at its load, when recorded. */
  heldBy(workerId: string, instanceId: string): number | undefined {
    const h = this.held.get(this.key(workerId, instanceId));
    return h ? [...h.values()].reduce((a, v) => a + v, 0) : undefined;
  }

  /** Records an unload's before/after figures; what was not given back raises the metrics and a warning. */
  recordUnload(workerId: string, instanceId: string, before: DeviceUsage, after: DeviceUsage, token?: AccountingToken): UnloadReport {
    const k = this.key(workerId, instanceId);
    const alone = this.end(token);
    const held = (alone && this.held.get(k)) || new Map<string, number>();
    this.held.delete(k);
    const report: UnloadReport = { held: 0, released: 0, unreleased: 0 };
    for (const [device, took] of held) {
      const now = after.get(device);
      const was = before.get(device);
      if (now === undefined || was === undefined) continue;
      const released = was - now;
      const left = took - released;
      report.held += took;
      report.released += Math.max(0, released);
      if (left <= Math.max(this.tolBytes, this.tolRatio * took)) continue;
      report.unreleased += left;
      this.unreleasedTotal?.inc({ worker: workerId, device }, left);
      const lk = `${workerId}\u0000${device}`;
      const total = (this.leaks.get(lk) ?? 0) + left;
      this.leaks.set(lk, total);
      this.leakGauge?.set({ worker: workerId, device }, total);
      this.opts.logger.warn(
        { worker: workerId, instance: instanceId, device, heldBytes: took, releasedBytes: released, unreleasedBytes: left },
        `unload of ${instanceId} did not give its memory back: ${formatBytes(left)} of ${formatBytes(took)} still used on ${workerId}/${device}`,
      );
    }
    return report;
  }

  /** The worker is gone: what it left behind no longer counts. */
  forgetWorker(workerId: string): void {
    for (const k of [...this.held.keys()]) if (k.startsWith(`${workerId}\u0000`)) this.held.delete(k);
    for (const k of [...this.leaks.keys()]) {
      if (!k.startsWith(`${workerId}\u0000`)) continue;
      this.leaks.delete(k);
      this.leakGauge?.remove({ worker: workerId, device: k.slice(workerId.length + 1) });
    }
  }
}

/** Device usage from a backend's devices() list (devices that report a used figure). */
export function usageOf(devices: ReadonlyArray<{ id: string; memoryUsedBytes?: number | undefined }> | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of devices ?? []) if (typeof d.memoryUsedBytes === 'number') out.set(d.id, d.memoryUsedBytes);
  return out;
}
