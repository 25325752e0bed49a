/** CPU and system memory figures from the operating system (os.cpus() deltas, /proc/meminfo). */
import { readFile } from 'node:fs/promises';
import { cpus, freemem, totalmem } from 'node:os';
import type { DeviceInfo } from '../plugin/contract.ts';

/** One core's times as `os.cpus()` gives them (ms spent in each mode since boot). */
export interface CpuTimes {
  model?: string;
  times: { user: number; nice: number; sys: number; idle: number; irq: number };
}

const busyOf = (t: CpuTimes['times']) => t.user + t.nice + t.sys + t.irq;

/**
 * Busy fraction of all cores between two `os.cpus()` readings (0 … 1), or undefined when the readings
 * do not compare (core count changed, no time passed, counters went back).
 */
export function cpuUtilization(before: readonly CpuTimes[], after: readonly CpuTimes[]): number | undefined {
  if (!before.length || before.length !== after.length) return undefined;
  let busy = 0;
  let total = 0;
  for (let i = 0; i < after.length; i++) {
    const a = before[i]!.times;
    const b = after[i]!.times;
    const db = busyOf(b) - busyOf(a);
    const di = b.idle - a.idle;
    if (!(db >= 0) || !(di >= 0)) return undefined;
    busy += db;
    total += db + di;
  }
  return total > 0 ? Math.min(1, busy / total) : undefined;
}

/** Total and used system memory from /proc/meminfo text (used = MemTotal − MemAvailable), or undefined when it lacks them. */
export function parseMeminfo(text: string): { totalBytes: number; usedBytes: number } | undefined {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const total = kb('MemTotal');
  const available = kb('MemAvailable') ?? kb('MemFree');
  if (total === undefined || available === undefined || total <= 0) return undefined;
  return { totalBytes: total, usedBytes: Math.max(0, total - Math.min(total, available)) };
}

export interface CpuSamplerSource {
  /** `os.cpus()` by default. */
  cpus?: () => readonly CpuTimes[];
  /** /proc/meminfo text, or undefined where there is none (then os.totalmem()/freemem()). */
  meminfo?: () => Promise<string | undefined>;
}

/**
 * The `cpu` device: cores, their utilisation since the previous sample, and system memory
 * (total, used). The first sample has no utilisation (nothing to compare with).
 */
export class CpuSampler {
  private last: readonly CpuTimes[] | undefined;
  private readonly readCpus: () => readonly CpuTimes[];
  private readonly readMeminfo: () => Promise<string | undefined>;

  constructor(source: CpuSamplerSource = {}) {
    this.readCpus = source.cpus ?? cpus;
    this.readMeminfo = source.meminfo ?? (() => readFile('/proc/meminfo', 'utf8').catch(() => undefined));
  }

  async sample(): Promise<DeviceInfo> {
    const now = this.readCpus();
    const utilization = this.last ? cpuUtilization(this.last, now) : undefined;
    this.last = now;
    const text = await this.readMeminfo();
    const mem = (text !== undefined ? parseMeminfo(text) : undefined) ?? { totalBytes: totalmem(), usedBytes: Math.max(0, totalmem() - freemem()) };
    return {
      id: 'cpu',
      kind: 'cpu',
      name: (now[0]?.model ?? 'cpu').trim().slice(0, 200),
      cores: now.length,
      memoryTotalBytes: mem.totalBytes,
      memoryUsedBytes: mem.usedBytes,
      ...(utilization !== undefined ? { utilization } : {}),
      source: 'os',
    };
  }
}
