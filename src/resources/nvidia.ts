/** NVIDIA GPUs through `nvidia-smi` (the NVML command-line front end). */
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import type { DeviceInfo } from '../plugin/contract.ts';

/** The query the parser expects: one line per GPU, memory in MiB, utilisation in %. */
export const NVIDIA_SMI_ARGS = ['--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu', '--format=csv,noheader,nounits'] as const;

const MIB = 1024 * 1024;
/** GPUs one host may report (more lines are ignored). */
export const MAX_GPUS = 64;

export interface NvidiaParse {
  devices: DeviceInfo[];
  /** Lines that could not be read (at most a few, for a log line). */
  skipped: string[];
}

/** A figure of the CSV: a finite non-negative number, else undefined (`[N/A]`, `[Not Supported]`, garbage). */
function num(field: string | undefined, max: number): number | undefined {
  if (field === undefined || !/^\d+(\.\d+)?$/.test(field)) return undefined;
  const v = Number(field);
  return Number.isFinite(v) && v <= max ? v : undefined;
}

/**
 * Parses the output of `nvidia-smi` with NVIDIA_SMI_ARGS. A line needs an index and a total memory;
 * used memory and utilisation that read `[N/A]` (MIG, some drivers) are left out; extra fields are ignored.
 */
export function parseNvidiaSmiCsv(text: string): NvidiaParse {
  const devices: DeviceInfo[] = [];
  const skipped: string[] = [];
  const seen = new Set<number>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const f = line.split(',').map((s) => s.trim());
    const index = num(f[0], 1023);
    const total = num(f[3], 16 * 1024 * 1024);
    if (f.length < 6 || index === undefined || !Number.isInteger(index) || total === undefined || seen.has(index)) {
      if (skipped.length < 5) skipped.push(line.slice(0, 120));
      continue;
    }
    if (devices.length >= MAX_GPUS) break;
    seen.add(index);
    const used = num(f[4], 16 * 1024 * 1024);
    const util = num(f[5], 100);
    const uuid = f[1] && /^[A-Za-z0-9-]{1,80}$/.test(f[1]) ? f[1] : undefined;
    devices.push({
      id: `gpu:${index}`,
      kind: 'gpu',
      name: `${(f[2] || 'NVIDIA GPU').slice(0, 120)}${uuid ? ` (${uuid})` : ''}`,
      memoryTotalBytes: total * MIB,
      ...(used !== undefined ? { memoryUsedBytes: Math.min(used, total) * MIB } : {}),
      ...(util !== undefined ? { utilization: util / 100 } : {}),
      source: 'nvidia-smi',
    });
  }
  return { devices, skipped };
}

/** The first executable `name` on PATH (or `name` itself when it is a path), else undefined. */
export async function findExecutable(name: string, path = process.env.PATH ?? ''): Promise<string | undefined> {
  const candidates =
    isAbsolute(name) || name.includes('/')
      ? [name]
      : path
          .split(delimiter)
          .filter(Boolean)
          .map((d) => join(d, name));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

export interface NvidiaSmiOptions {
  /** Binary name or path (`nvidia-smi`); false turns GPU detection through it off. */
  binary: string | false;
  /** Longest a run may take, ms (it is killed then). */
  timeoutMs: number;
}

/**
 * Runs `nvidia-smi` when it is installed (looked up once), with a timeout and a bounded output;
 * answers no devices when it is absent, fails or times out (the reason is kept in `lastError`).
 */
export class NvidiaSmi {
  private binary: Promise<string | undefined> | undefined;
  lastError: string | undefined;

  constructor(private readonly options: NvidiaSmiOptions) {}

  async devices(): Promise<DeviceInfo[]> {
    if (this.options.binary === false) return [];
    this.binary ??= findExecutable(this.options.binary);
    const bin = await this.binary;
    if (!bin) return [];
    const out = await new Promise<string | undefined>((resolve) => {
      execFile(bin, [...NVIDIA_SMI_ARGS], { timeout: this.options.timeoutMs, maxBuffer: 256 * 1024, windowsHide: true }, (err, stdout, stderr) => {
        if (err) {
          this.lastError = `${String(stderr || stdout || err.message)
            .trim()
            .slice(0, 200)}`;
          resolve(undefined);
        } else resolve(stdout);
      });
    });
    if (out === undefined) return [];
    this.lastError = undefined;
    return parseNvidiaSmiCsv(out).devices;
  }
}
