/** TPUs of this host, read from the TPU runtime environment of a Cloud TPU VM or a GKE TPU node. */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeviceInfo } from '../plugin/contract.ts';

const GIB = 1024 ** 3;
/** HBM per chip by generation (Cloud TPU documentation). */
const HBM_PER_CHIP: Record<string, number> = { v2: 16 * GIB, v3: 32 * GIB, v4: 32 * GIB, v5litepod: 16 * GIB, v5e: 16 * GIB, v5p: 95 * GIB, v6e: 32 * GIB };
/** Chips one host may report (more are ignored). */
export const MAX_TPU_CHIPS = 64;

/** What the environment says about this host's TPUs. */
export interface TpuEnvironment {
  /** `TPU_ACCELERATOR_TYPE`, e.g. `v4-8`, `v5litepod-8`. */
  acceleratorType?: string;
  /** Generation: `v4`, `v5litepod`, `v5p`, `v6e`, … */
  generation?: string;
  workerId?: number;
  /** Hosts of the slice (`TPU_WORKER_HOSTNAMES`). */
  hosts: number;
  /** Chips on this host from `TPU_CHIPS_PER_HOST_BOUNDS` (product of the bounds), when set. */
  chipsPerHost?: number;
  /** `TPU_TOPOLOGY` (GKE), e.g. `2x4`. */
  topology?: string;
}

const int = (s: string | undefined, max: number) => (s !== undefined && /^\d{1,6}$/.test(s.trim()) && Number(s) <= max ? Number(s) : undefined);

/** Reads the `TPU_*` variables (undefined when none says a TPU is here). */
export function parseTpuEnv(env: Readonly<Record<string, string | undefined>>): TpuEnvironment | undefined {
  const type = env.TPU_ACCELERATOR_TYPE?.trim().slice(0, 64);
  const bounds = env.TPU_CHIPS_PER_HOST_BOUNDS?.trim();
  if (!type && !bounds && !env.TPU_WORKER_ID) return undefined;
  const out: TpuEnvironment = { hosts: 1 };
  if (type && /^[a-z0-9]+(-\d+)?$/i.test(type)) {
    out.acceleratorType = type;
    out.generation = type.split('-')[0]!.toLowerCase();
  }
  const workerId = int(env.TPU_WORKER_ID, 100_000);
  if (workerId !== undefined) out.workerId = workerId;
  const hosts = env.TPU_WORKER_HOSTNAMES?.split(',').filter((h) => h.trim()).length;
  if (hosts) out.hosts = Math.min(hosts, 100_000);
  if (bounds && /^\d{1,3}(,\d{1,3}){0,3}$/.test(bounds)) {
    const chips = bounds.split(',').reduce((p, n) => p * Number(n), 1);
    if (chips > 0) out.chipsPerHost = Math.min(chips, MAX_TPU_CHIPS);
  }
  const topology = env.TPU_TOPOLOGY?.trim();
  if (topology && /^\d{1,3}(x\d{1,3}){0,3}$/.test(topology)) out.topology = topology;
  return out;
}

/** TPU chip device files: `accel0…` in /dev, or the numbered groups in /dev/vfio (v5e/v6e); sorted by number. */
export function tpuDeviceFiles(devEntries: readonly string[], vfioEntries: readonly string[]): string[] {
  const byNumber = (a: string, b: string) => Number(/\d+$/.exec(a)![0]) - Number(/\d+$/.exec(b)![0]);
  const accel = devEntries.filter((e) => /^accel\d{1,4}$/.test(e)).sort(byNumber);
  if (accel.length) return accel.map((e) => `/dev/${e}`);
  return vfioEntries
    .filter((e) => /^\d{1,4}$/.test(e))
    .sort(byNumber)
    .map((e) => `/dev/vfio/${e}`);
}

/**
 * One `tpu:N` device per chip of this host: as many as device files when there are any, else the
 * chips the environment names. HBM per chip from the generation; used memory and utilisation are
 * not known from the environment (a TPU serving engine declares them, see the `openai` backend).
 */
export function tpuDevices(env: TpuEnvironment | undefined, files: readonly string[]): DeviceInfo[] {
  if (!env && !files.length) return [];
  const count = Math.min(MAX_TPU_CHIPS, files.length || env?.chipsPerHost || 0);
  const hbm = env?.generation ? HBM_PER_CHIP[env.generation] : undefined;
  const where = env?.acceleratorType ? `${env.acceleratorType}${env.hosts > 1 ? `, host ${env.workerId ?? 0} of ${env.hosts}` : ''}` : 'TPU';
  const gen = env?.generation ? `TPU ${env.generation}` : 'TPU';
  return Array.from({ length: count }, (_, i) => ({
    id: `tpu:${i}`,
    kind: 'tpu' as const,
    name: `${gen} chip ${i} (${where}${files[i] ? `, ${files[i]}` : ''})`,
    cores: 1,
    ...(hbm !== undefined ? { memoryTotalBytes: hbm } : {}),
    source: 'tpu-env',
  }));
}

export interface TpuDetectOptions {
  /** Environment to read (process.env by default). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Folder holding the device files (`/dev`). */
  devDir?: string;
}

/** Detects this host's TPU chips (none on a host without TPU device files or TPU_* variables). */
export async function detectTpus(opts: TpuDetectOptions = {}): Promise<DeviceInfo[]> {
  const devDir = opts.devDir ?? '/dev';
  const list = (dir: string) => readdir(dir).catch(() => [] as string[]);
  const [dev, vfio] = await Promise.all([list(devDir), list(join(devDir, 'vfio'))]);
  const env = parseTpuEnv(opts.env ?? process.env);
  // /dev/vfio alone is any VFIO passthrough: count it only on a host the environment calls a TPU host
  const files = tpuDeviceFiles(dev, env ? vfio : []);
  return tpuDevices(env, files);
}
