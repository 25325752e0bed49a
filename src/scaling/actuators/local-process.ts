/**
 * `local-process`: starts and stops real `capibara-mcp worker` processes on this machine. Each
 * process gets a config file made from `workerConfig` (its plugins and `worker.models`) with its own
 * name (`<namePrefix>-<model>-<n>`), port 0 and this gateway's URL; the model is assigned to it before it
 * starts, so its registration is accepted. It counts once started; it serves once it registered and
 * its instance is ready (the controller sees that in the fleet). Stopping one drains its instances in
 * the gateway first (no new requests, in-flight ones finish), then sends SIGTERM (the worker
 * deregisters and exits), SIGKILL after `stopTimeoutMs`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { AdminService } from '../../admin/admin-service.ts';
import { McpError } from '../../errors.ts';
import type { ModelRegistry } from '../../models/registry.ts';
import { PACKAGE_ROOT } from '../../package-root.ts';
import { workerIdOf } from '../../workers/worker-registry.ts';
import { parseActuatorOptions, type Actuator, type ScalingTarget } from '../actuator.ts';

/** Config options (scaling.actuators[].options) of a local-process actuator. */
export const localProcessConfig = z.strictObject({
  /** The worker processes' config (as a capibara.yaml would hold it): plugins, worker.models, log…; name, port and gateway are set per process. */
  workerConfig: z.record(z.string(), z.unknown()).default({}),
  /** Worker names start with this. */
  namePrefix: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,30}$/)
    .default('auto'),
  /** Most processes this actuator runs at once, over every model. */
  maxProcesses: z.number().int().min(1).max(256).default(8),
  /** Time a stopping process gets after SIGTERM before SIGKILL, ms. */
  stopTimeoutMs: z.number().int().min(100).max(600_000).default(20_000),
  /** Command line before `worker --config <file>` (default: this package's bin/capibara-mcp.js under this Node). */
  command: z.array(z.string().min(1)).min(1).max(32).optional(),
});
export type LocalProcessConfig = z.infer<typeof localProcessConfig>;

interface Proc {
  name: string;
  slot: number;
  child: ChildProcess;
  dir: string;
  exited: Promise<void>;
  stopping: boolean;
}

export class LocalProcessActuator implements Actuator {
  readonly type = 'local-process';
  private readonly config: LocalProcessConfig;
  private readonly procs = new Map<string, Proc[]>();

  constructor(
    readonly name: string,
    rawConfig: unknown,
    private readonly deps: {
      admin: Pick<AdminService, 'assignWorkerModels' | 'drainInstance'>;
      registry: Pick<ModelRegistry, 'instancesByWorker'>;
      /** This gateway's base URL (known once it listens). */
      gatewayUrl: () => string;
      logger: Logger;
    },
  ) {
    this.config = parseActuatorOptions(localProcessConfig, rawConfig, name);
  }

  checkOptions(options: unknown): Record<string, unknown> {
    return parseActuatorOptions(z.strictObject({}), options, this.name);
  }

  private list(target: ScalingTarget): Proc[] {
    const k = `${target.model}@${target.version}`;
    let l = this.procs.get(k);
    if (!l) this.procs.set(k, (l = []));
    return l;
  }

  /** Process names of a target, running (not stopping). */
  running(target: Pick<ScalingTarget, 'model' | 'version'>): string[] {
    return (this.procs.get(`${target.model}@${target.version}`) ?? []).filter((p) => !p.stopping).map((p) => p.name);
  }

  async current(target: ScalingTarget): Promise<number> {
    return this.list(target).filter((p) => !p.stopping).length;
  }

  async scaleTo(target: ScalingTarget, desired: number, signal: AbortSignal): Promise<void> {
    const list = this.list(target);
    const live = () => list.filter((p) => !p.stopping);
    while (live().length < desired && !signal.aborted) {
      const total = [...this.procs.values()].flat().length;
      if (total >= this.config.maxProcesses) {
        throw new McpError('MCP_CONFLICT', `actuator "${this.name}" runs ${total} worker processes already (maxProcesses ${this.config.maxProcesses})`, {
          details: { actuator: this.name },
        });
      }
      const used = new Set(list.map((p) => p.slot));
      let slot = 0;
      while (used.has(slot)) slot++;
      list.push(await this.start(target, slot));
    }
    const surplus = live()
      .sort((a, b) => b.slot - a.slot)
      .slice(0, Math.max(0, live().length - desired));
    await Promise.all(surplus.map((p) => this.stop(p, target.drainMs)));
  }

  private async start(target: ScalingTarget, slot: number): Promise<Proc> {
    const base = `${this.config.namePrefix}-${target.model}-${slot}`.toLowerCase().replace(/[^a-z0-9._-]/g, '-');
    const name = base.slice(0, 63);
    await this.deps.admin.assignWorkerModels(name, [target.model]);
    const dir = mkdtempSync(join(tmpdir(), 'mcp-autoscale-'));
    const wc = this.config.workerConfig;
    const worker = { ...((wc.worker as Record<string, unknown> | undefined) ?? {}), name, port: 0, gateway: this.deps.gatewayUrl() };
    const file = join(dir, 'capibara.json');
    writeFileSync(file, JSON.stringify({ storage: { dataDir: join(dir, 'data') }, ...wc, worker }));
    const [cmd, ...args] = this.config.command ?? [process.execPath, join(PACKAGE_ROOT, 'bin/capibara-mcp.js')];
    const child = spawn(cmd!, [...args, 'worker', '--config', file], {
      cwd: PACKAGE_ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, MCP_CONFIG: '' },
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-2000);
    });
    const proc: Proc = {
      name,
      slot,
      child,
      dir,
      stopping: false,
      exited: new Promise<void>((resolve) =>
        child.once('exit', (code, sig) => {
          rmSync(dir, { recursive: true, force: true });
          const list = this.procs.get(`${target.model}@${target.version}`);
          if (list?.includes(proc)) list.splice(list.indexOf(proc), 1);
          if (!proc.stopping) this.deps.logger.warn({ worker: name, code, signal: sig, stderr: stderr.slice(-500) }, 'autoscaled worker process exited');
          resolve();
        }),
      ),
    };
    this.deps.logger.info({ worker: name, pid: child.pid, model: target.model, version: target.version }, 'autoscaled worker process started');
    return proc;
  }

  /** Drains the worker's instances here, then SIGTERM (SIGKILL after stopTimeoutMs); resolves when it exited. */
  private async stop(p: Proc, drainMs: number): Promise<void> {
    p.stopping = true;
    const [rows = []] = await this.deps.registry.instancesByWorker([workerIdOf(p.name)]).catch(() => [[]]);
    await Promise.all(
      rows
        .filter((r) => r.status === 'ready' || r.status === 'loading')
        .map((r) => this.deps.admin.drainInstance(r.id, drainMs).catch((err) => this.deps.logger.warn({ err, instance: r.id }, 'drain failed'))),
    );
    p.child.kill('SIGTERM');
    const kill = setTimeout(() => p.child.kill('SIGKILL'), this.config.stopTimeoutMs);
    await p.exited;
    clearTimeout(kill);
    this.deps.logger.info({ worker: p.name }, 'autoscaled worker process stopped');
  }

  async close(): Promise<void> {
    await Promise.all([...this.procs.values()].flat().map((p) => this.stop(p, 0)));
  }
}
