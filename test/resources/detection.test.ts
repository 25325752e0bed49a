/**
 * Device detection against recorded outputs: `nvidia-smi` CSV (several GPUs; `[N/A]` and malformed lines;
 * the "no driver" failure through a real executable), os.cpus() readings and /proc/meminfo of this machine,
 * and the environment and device folders of a TPU VM (v4-8) and a GKE TPU node (v5litepod-8).
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CpuSampler, cpuUtilization, parseMeminfo, type CpuTimes } from '../../src/resources/cpu.ts';
import { LocalDevices, mergeDevices } from '../../src/resources/local-devices.ts';
import { NvidiaSmi, parseNvidiaSmiCsv } from '../../src/resources/nvidia.ts';
import { detectTpus, parseTpuEnv } from '../../src/resources/tpu.ts';

const FIX = join(import.meta.dirname, '../fixtures/resources');
const read = (f: string) => readFileSync(join(FIX, f), 'utf8');
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const envOf = (f: string) =>
  Object.fromEntries(
    read(f)
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
const tmp = mkdtempSync(join(tmpdir(), 'mcp-res-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A folder laid out like /dev from a recorded listing (`vfio` entries go under dev/vfio). */
function devDir(name: string, accel: string[], vfio: string[]): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'vfio'), { recursive: true });
  for (const e of accel) writeFileSync(join(dir, e), '');
  for (const e of vfio) writeFileSync(join(dir, 'vfio', e), '');
  return dir;
}

describe('nvidia-smi', () => {
  it('parses a 4-GPU capture: ids, names with UUIDs, MiB to bytes, utilisation as a ratio', () => {
    const { devices, skipped } = parseNvidiaSmiCsv(read('nvidia-smi-4gpu.csv'));
    expect(skipped).toEqual([]);
    expect(devices.map((d) => d.id)).toEqual(['gpu:0', 'gpu:1', 'gpu:2', 'gpu:3']);
    expect(devices[0]).toEqual({
      id: 'gpu:0',
      kind: 'gpu',
      name: 'NVIDIA A100-SXM4-40GB (GPU-9b7c3f2e-1a4d-4c8e-b2f6-0d3e5a7c9b11)',
      memoryTotalBytes: 40960 * MIB,
      memoryUsedBytes: 31012 * MIB,
      utilization: 0.87,
      source: 'nvidia-smi',
    });
    expect(devices[3]!.utilization).toBe(1);
    expect(devices[1]!.memoryUsedBytes).toBe(4 * MIB);
  });

  it('keeps a GPU whose figures read [N/A] / [Not Supported] without them, and skips malformed lines', () => {
    const { devices, skipped } = parseNvidiaSmiCsv(read('nvidia-smi-mixed.csv'));
    expect(devices.map((d) => d.id)).toEqual(['gpu:0', 'gpu:1', 'gpu:2', 'gpu:4']);
    const mig = devices[1]!;
    expect(mig.memoryTotalBytes).toBe(81920 * MIB);
    expect(mig).not.toHaveProperty('memoryUsedBytes');
    expect(mig).not.toHaveProperty('utilization');
    expect(devices[2]!.memoryUsedBytes).toBe(22000 * MIB);
    expect(devices[2]).not.toHaveProperty('utilization');
    // the extra trailing field of a newer driver is ignored
    expect(devices[3]).toMatchObject({ id: 'gpu:4', utilization: 0.99, memoryUsedBytes: 81000 * MIB });
    expect(skipped).toEqual(['this line is not a GPU', '3, GPU-bad, Broken Card, -1, 5, 700']);
  });

  it('runs the binary with a timeout: a failing driver gives no GPUs and keeps the reason; a working one its GPUs', async () => {
    const failing = join(tmp, 'nvidia-smi-failing');
    writeFileSync(failing, `#!/bin/sh\ncat '${join(FIX, 'nvidia-smi-no-driver.txt')}'\nexit 9\n`);
    chmodSync(failing, 0o755);
    const bad = new NvidiaSmi({ binary: failing, timeoutMs: 5000 });
    expect(await bad.devices()).toEqual([]);
    expect(bad.lastError).toMatch(/couldn't communicate with the NVIDIA driver/);

    const working = join(tmp, 'nvidia-smi-working');
    // answers only the query the parser expects, like the real tool would
    writeFileSync(
      working,
      `#!/bin/sh\n[ "$1" = "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu" ] && [ "$2" = "--format=csv,noheader,nounits" ] || exit 2\ncat '${join(FIX, 'nvidia-smi-4gpu.csv')}'\n`,
    );
    chmodSync(working, 0o755);
    expect((await new NvidiaSmi({ binary: working, timeoutMs: 5000 }).devices()).map((d) => d.id)).toEqual(['gpu:0', 'gpu:1', 'gpu:2', 'gpu:3']);

    const hanging = join(tmp, 'nvidia-smi-hanging');
    writeFileSync(hanging, '#!/bin/sh\nexec sleep 30\n');
    chmodSync(hanging, 0o755);
    const started = Date.now();
    expect(await new NvidiaSmi({ binary: hanging, timeoutMs: 300 }).devices()).toEqual([]);
    expect(Date.now() - started).toBeLessThan(20_000);

    expect(await new NvidiaSmi({ binary: join(tmp, 'absent-nvidia-smi'), timeoutMs: 300 }).devices()).toEqual([]);
    expect(await new NvidiaSmi({ binary: false, timeoutMs: 300 }).devices()).toEqual([]);
  });
});

describe('CPU and memory', () => {
  const before = JSON.parse(read('os-cpus-before.json')) as CpuTimes[];
  const after = JSON.parse(read('os-cpus-after.json')) as CpuTimes[];

  it('utilisation from two recorded os.cpus() readings (busy ÷ busy + idle over every core)', () => {
    let busy = 0;
    let all = 0;
    for (let i = 0; i < after.length; i++) {
      const b = before[i]!.times;
      const a = after[i]!.times;
      const db = a.user + a.nice + a.sys + a.irq - (b.user + b.nice + b.sys + b.irq);
      busy += db;
      all += db + a.idle - b.idle;
    }
    const u = cpuUtilization(before, after)!;
    expect(u).toBeCloseTo(busy / all, 10);
    expect(u).toBeGreaterThan(0.3); // the capture spun one core of two for 1.5 s
    expect(cpuUtilization(after, before)).toBeUndefined(); // counters going back
    expect(cpuUtilization(before, after.slice(1))).toBeUndefined(); // core count changed
    expect(cpuUtilization(before, before)).toBeUndefined(); // no time passed
  });

  it('system memory from a recorded /proc/meminfo (used = MemTotal − MemAvailable)', () => {
    const text = read('proc-meminfo.txt');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)![1]) * 1024;
    expect(parseMeminfo(text)).toEqual({ totalBytes: kb('MemTotal'), usedBytes: kb('MemTotal') - kb('MemAvailable') });
    expect(parseMeminfo('garbage')).toBeUndefined();
  });

  it('the sampler gives cores, system memory and, from the second sample on, utilisation', async () => {
    const readings = [before, after];
    const s = new CpuSampler({ cpus: () => readings.shift() ?? after, meminfo: async () => read('proc-meminfo.txt') });
    const first = await s.sample();
    expect(first).toMatchObject({ id: 'cpu', kind: 'cpu', cores: before.length, memoryTotalBytes: parseMeminfo(read('proc-meminfo.txt'))!.totalBytes });
    expect(first.utilization).toBeUndefined();
    expect((await s.sample()).utilization).toBeCloseTo(cpuUtilization(before, after)!, 10);
  });
});

describe('TPU runtime environment', () => {
  it('a TPU v4-8 VM: 4 chips from /dev/accel0-3, HBM per chip, the slice in the name', async () => {
    const env = envOf('tpu-v4-8.env');
    expect(parseTpuEnv(env)).toEqual({ acceleratorType: 'v4-8', generation: 'v4', workerId: 0, hosts: 1, chipsPerHost: 4 });
    const dir = devDir('v4', read('tpu-v4-8.dev.txt').trim().split('\n'), []);
    const tpus = await detectTpus({ env, devDir: dir });
    expect(tpus.map((d) => d.id)).toEqual(['tpu:0', 'tpu:1', 'tpu:2', 'tpu:3']);
    expect(tpus[2]).toEqual({ id: 'tpu:2', kind: 'tpu', name: `TPU v4 chip 2 (v4-8, /dev/accel2)`, cores: 1, memoryTotalBytes: 32 * GIB, source: 'tpu-env' });
  });

  it('a GKE v5litepod-8 node: 8 chips through /dev/vfio, topology read', async () => {
    const env = envOf('tpu-v5litepod-8-gke.env');
    expect(parseTpuEnv(env)).toMatchObject({ acceleratorType: 'v5litepod-8', generation: 'v5litepod', chipsPerHost: 8, topology: '2x4' });
    const dir = devDir('v5e', [], read('tpu-v5litepod-8-gke.vfio.txt').trim().split('\n'));
    const tpus = await detectTpus({ env, devDir: dir });
    expect(tpus).toHaveLength(8);
    expect(tpus[7]).toMatchObject({ id: 'tpu:7', memoryTotalBytes: 16 * GIB, name: 'TPU v5litepod chip 7 (v5litepod-8, /dev/vfio/7)' });
  });

  it('a multi-host slice names the host; the environment alone (no device files) still counts the chips', async () => {
    const env = { TPU_ACCELERATOR_TYPE: 'v5p-16', TPU_WORKER_ID: '1', TPU_WORKER_HOSTNAMES: 'h0,h1', TPU_CHIPS_PER_HOST_BOUNDS: '2,2,1' };
    const tpus = await detectTpus({ env, devDir: join(tmp, 'nothing-here') });
    expect(tpus).toHaveLength(4);
    expect(tpus[0]).toMatchObject({ name: 'TPU v5p chip 0 (v5p-16, host 1 of 2)', memoryTotalBytes: 95 * GIB });
  });

  it('no TPU: no TPU_* variables and no accel files; a VFIO device alone (GPU passthrough) is not a TPU', async () => {
    const dir = devDir('none', ['null', 'zero'], ['0', 'vfio']);
    expect(await detectTpus({ env: { HOME: '/root' }, devDir: dir })).toEqual([]);
    expect(parseTpuEnv({ TPU_ACCELERATOR_TYPE: 'v4-8; rm -rf /' })).toEqual({ hosts: 1 });
  });
});

describe('merging', () => {
  it('OS and nvidia-smi figures win over a backend’s view of the same device; the backend fills what they lack', async () => {
    const merged = mergeDevices(
      [{ id: 'gpu:0', kind: 'gpu', memoryTotalBytes: 10, memoryUsedBytes: 5 }],
      [
        { id: 'gpu:0', kind: 'gpu', name: 'CUDA device 0 (tfjs-node-gpu)', memoryUsedBytes: 1 },
        { id: 'gpu:1', kind: 'gpu', memoryUsedBytes: 2 },
      ],
    );
    expect(merged).toEqual([
      { id: 'gpu:0', kind: 'gpu', name: 'CUDA device 0 (tfjs-node-gpu)', memoryTotalBytes: 10, memoryUsedBytes: 5 },
      { id: 'gpu:1', kind: 'gpu', memoryUsedBytes: 2 },
    ]);
    const many = Array.from({ length: 100 }, (_, i) => ({ id: `x:${i}`, kind: 'gpu' as const }));
    expect(mergeDevices(many)).toHaveLength(64);
  });

  it('LocalDevices: this host’s CPU plus recorded GPUs and TPUs, remote entries of backends left out', async () => {
    const smi = join(tmp, 'nvidia-smi-local');
    writeFileSync(smi, `#!/bin/sh\ncat '${join(FIX, 'nvidia-smi-4gpu.csv')}'\n`);
    chmodSync(smi, 0o755);
    const local = new LocalDevices({
      nvidiaSmi: { binary: smi, timeoutMs: 5000 },
      tpu: { env: envOf('tpu-v4-8.env'), devDir: devDir('local', ['accel0', 'accel1', 'accel2', 'accel3'], []) },
    });
    const list = await local.sample([[{ id: 'remote', kind: 'remote' }]]);
    expect(list.map((d) => d.id)).toEqual(['cpu', 'gpu:0', 'gpu:1', 'gpu:2', 'gpu:3', 'tpu:0', 'tpu:1', 'tpu:2', 'tpu:3']);
    expect(list[0]!.cores).toBeGreaterThan(0);
    expect(list[0]!.memoryUsedBytes).toBeGreaterThan(0);
  });
});
