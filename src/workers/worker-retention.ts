import type { Logger } from 'pino';
import type { AdminService } from '../admin/admin-service.ts';
import type { AuditRecorder } from '../audit/types.ts';
import { toMcpError } from '../errors.ts';
import type { WorkerRegistry } from './worker-registry.ts';

/** Longest wait between two retention sweeps, ms. */
const MAX_SWEEP_MS = 600_000;

/**
 * Removes workers gone (stopped, or not heartbeating) for longer than `retentionMs`, as the
 * `removeWorker` mutation does, with an audit row (`worker.remove`, actor `system`). Sweeps every
 * quarter of the retention, at most every 10 minutes. Off when retentionMs is 0.
 */
export class WorkerRetention {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sweeping: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly retentionMs: number,
    private readonly workers: Pick<WorkerRegistry, 'goneSince'>,
    private readonly admin: Pick<AdminService, 'removeWorker'>,
    private readonly audit: AuditRecorder,
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (this.retentionMs > 0) this.schedule();
  }

  /** Removes every worker gone for longer than the retention; answers with their ids. */
  async sweep(now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    for (const w of await this.workers.goneSince(new Date(now - this.retentionMs))) {
      try {
        await this.admin.removeWorker(w.id);
      } catch (err) {
        // came back meanwhile (MCP_CONFLICT) or removed by another replica (MCP_WORKER_NOT_FOUND)
        const e = toMcpError(err);
        if (e.code !== 'MCP_CONFLICT' && e.code !== 'MCP_WORKER_NOT_FOUND') this.logger.warn({ err, worker: w.id }, 'could not remove a gone worker');
        continue;
      }
      removed.push(w.id);
      const goneForMs = now - w.lastHeartbeatAt.getTime();
      this.logger.info({ worker: w.id, status: w.status, goneForMs }, 'worker removed: gone longer than workers.retentionMs');
      await this.audit
        .record({
          actor: 'system',
          action: 'worker.remove',
          target: `worker:${w.id}`,
          outcome: 'ok',
          details: { reason: 'retention', status: w.status, goneForMs },
        })
        .catch((err: unknown) => this.logger.error({ err }, 'audit record failed'));
    }
    return removed;
  }

  private schedule(): void {
    if (this.closed) return;
    const delay = Math.max(50, Math.min(MAX_SWEEP_MS, Math.floor(this.retentionMs / 4)));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweeping = this.sweep()
        .then(() => undefined)
        .catch((err) => this.logger.warn({ err }, 'worker retention sweep failed'))
        .finally(() => {
          this.sweeping = undefined;
          this.schedule();
        });
    }, delay);
    this.timer.unref?.();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.sweeping;
  }
}
