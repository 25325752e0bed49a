/** The devices of this process's host with live figures: what a worker (or the embedded one) reports at each heartbeat. */
import type { Config } from '../config/schema.ts';
import type { DeviceInfo } from '../plugin/contract.ts';
import { CpuSampler, type CpuSamplerSource } from './cpu.ts';
import { NvidiaSmi, type NvidiaSmiOptions } from './nvidia.ts';
import { detectTpus, type TpuDetectOptions } from './tpu.ts';

/** Devices one host may report. */
export const MAX_DEVICES = 64;

/**
 * Merges device lists, first list first: a device id seen again only fills the figures the earlier
 * entry lacks (so OS / nvidia-smi figures win over a backend's own view of the same device). At most MAX_DEVICES.
 */
export function mergeDevices(...lists: ReadonlyArray<readonly DeviceInfo[]>): DeviceInfo[] {
  const out = new Map<string, DeviceInfo>();
  for (const list of lists)
    for (const d of list) {
      const have = out.get(d.id);
      if (have) {
        for (const k of ['name', 'memoryTotalBytes', 'memoryUsedBytes', 'utilization', 'cores'] as const)
          if (have[k] === undefined && d[k] !== undefined) (have as unknown as Record<string, unknown>)[k] = d[k];
      } else if (out.size < MAX_DEVICES) out.set(d.id, { ...d });
    }
  return [...out.values()];
}

export interface LocalDevicesOptions {
  nvidiaSmi: NvidiaSmiOptions;
  tpu?: TpuDetectOptions;
  cpu?: CpuSamplerSource;
}

/** Samples CPU and memory, NVIDIA GPUs (nvidia-smi) and TPU chips (detected once: they do not come and go). */
export class LocalDevices {
  private readonly cpu: CpuSampler;
  readonly nvidia: NvidiaSmi;
  private tpus: Promise<DeviceInfo[]> | undefined;

  /** From the `resources` config section (gateway and worker alike). */
  static fromConfig(rc: Config['resources']): LocalDevices {
    return new LocalDevices({ nvidiaSmi: { binary: rc.nvidiaSmi, timeoutMs: rc.nvidiaSmiTimeoutMs }, tpu: { devDir: rc.devDir } });
  }

  constructor(private readonly options: LocalDevicesOptions) {
    this.cpu = new CpuSampler(options.cpu);
    this.nvidia = new NvidiaSmi(options.nvidiaSmi);
  }

  /** The host's devices now, merged with what backends report (`extra`: their devices() lists, instances' declared devices). */
  async sample(extra: ReadonlyArray<readonly DeviceInfo[]> = []): Promise<DeviceInfo[]> {
    this.tpus ??= detectTpus(this.options.tpu).catch(() => []);
    const [cpu, gpus, tpus] = await Promise.all([this.cpu.sample(), this.nvidia.devices(), this.tpus]);
    return mergeDevices([cpu], gpus, tpus, ...extra.map((l) => l.filter((d) => d.kind !== 'remote')));
  }
}
