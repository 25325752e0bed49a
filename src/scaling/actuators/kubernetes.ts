/**
 * `kubernetes`: sets the replicas of a Deployment or StatefulSet through its `scale` subresource
 * (`/apis/apps/v1/namespaces/{ns}/{deployments|statefulsets}/{name}/scale`) with the pod's in-cluster
 * credentials: the service-account token (read again for every call: it rotates), the cluster CA and
 * KUBERNETES_SERVICE_HOST/PORT, every path injectable. Each change reads the scale first and writes it
 * with that resourceVersion (a merge patch, or a replace with `method: replace`): a 409 conflict (someone
 * else changed it) reads again and retries; 429, 5xx and transport errors retry with exponential backoff
 * (Retry-After honoured) up to `maxAttempts`. Pods going away get SIGTERM from Kubernetes: a worker
 * deregisters and finishes its in-flight requests on SIGTERM (worker.drainMs; give the pod a
 * terminationGracePeriodSeconds above it).
 */
import { readFile } from 'node:fs/promises';
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import { McpError } from '../../errors.ts';
import { parseActuatorOptions, type Actuator, type ScalingTarget } from '../actuator.ts';

const SA = '/var/run/secrets/kubernetes.io/serviceaccount';

/** Config options (scaling.actuators[].options) of a kubernetes actuator. */
export const kubernetesConfig = z.strictObject({
  /** API server base URL (default https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT). */
  apiServer: z.string().url().optional(),
  /** Service-account token file, read for every call. */
  tokenFile: z.string().default(`${SA}/token`),
  /** CA bundle the API server's certificate is checked against (https only). */
  caFile: z.string().default(`${SA}/ca.crt`),
  /** Namespace used when a policy names none. */
  namespaceFile: z.string().default(`${SA}/namespace`),
  /** `patch`: merge patch with the resourceVersion read; `replace`: PUT of the Scale object. */
  method: z.enum(['patch', 'replace']).default('patch'),
  /** Attempts per change (conflicts and transient failures), the first included. */
  maxAttempts: z.number().int().min(1).max(20).default(6),
  initialBackoffMs: z.number().int().min(1).max(60_000).default(200),
  maxBackoffMs: z.number().int().min(1).max(300_000).default(5_000),
  /** One call's time limit, ms. */
  timeoutMs: z.number().int().min(100).max(120_000).default(10_000),
});
export type KubernetesConfig = z.infer<typeof kubernetesConfig>;

/** A policy's options: which workload. */
export const kubernetesTarget = z.strictObject({
  kind: z.enum(['deployment', 'statefulset']).default('deployment'),
  name: z.string().regex(/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/, 'a Kubernetes object name'),
  namespace: z
    .string()
    .regex(/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'a namespace name')
    .optional(),
});
type K8sTarget = z.infer<typeof kubernetesTarget>;

interface Scale {
  metadata: { name: string; namespace: string; resourceVersion: string };
  spec: { replicas?: number };
  status?: { replicas?: number };
}

export class KubernetesActuator implements Actuator {
  readonly type = 'kubernetes';
  private readonly config: KubernetesConfig;
  private dispatcher: Dispatcher | undefined;

  constructor(
    readonly name: string,
    rawConfig: unknown,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {
    this.config = parseActuatorOptions(kubernetesConfig, rawConfig, name);
  }

  checkOptions(options: unknown): Record<string, unknown> {
    return parseActuatorOptions(kubernetesTarget, options, this.name);
  }

  private base(): string {
    if (this.config.apiServer) return this.config.apiServer.replace(/\/$/, '');
    const host = this.env.KUBERNETES_SERVICE_HOST;
    const port = this.env.KUBERNETES_SERVICE_PORT ?? '443';
    if (!host)
      throw new McpError('MCP_UPSTREAM_UNAVAILABLE', `actuator "${this.name}": not in a cluster (KUBERNETES_SERVICE_HOST unset) and no apiServer configured`);
    return `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  private async agent(): Promise<Dispatcher | undefined> {
    if (!this.base().startsWith('https:')) return undefined;
    if (!this.dispatcher) {
      const ca = await readFile(this.config.caFile, 'utf8').catch(() => undefined);
      this.dispatcher = new Agent({ connect: ca ? { ca } : {} });
    }
    return this.dispatcher;
  }

  private async path(t: K8sTarget): Promise<string> {
    const ns = t.namespace ?? (await readFile(this.config.namespaceFile, 'utf8').catch(() => 'default')).trim();
    return `/apis/apps/v1/namespaces/${ns}/${t.kind === 'statefulset' ? 'statefulsets' : 'deployments'}/${t.name}/scale`;
  }

  /** One call: status and parsed body; transport errors become status 0. */
  private async call(method: 'GET' | 'PATCH' | 'PUT', path: string, body?: unknown): Promise<{ status: number; body: unknown; retryAfterMs?: number }> {
    const token = (await readFile(this.config.tokenFile, 'utf8').catch(() => '')).trim();
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = method === 'PATCH' ? 'application/merge-patch+json' : 'application/json';
    try {
      const dispatcher = await this.agent();
      const res = await request(this.base() + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(dispatcher ? { dispatcher } : {}),
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      const text = await res.body.text();
      let parsed: unknown;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        parsed = undefined;
      }
      const ra = Number(res.headers['retry-after']);
      return { status: res.statusCode, body: parsed, ...(Number.isFinite(ra) && ra >= 0 ? { retryAfterMs: ra * 1000 } : {}) };
    } catch (err) {
      return { status: 0, body: { message: (err as Error).message } };
    }
  }

  private failure(what: string, r: { status: number; body: unknown }): McpError {
    const msg = (r.body as { message?: unknown } | undefined)?.message;
    const detail = typeof msg === 'string' ? msg.slice(0, 300) : '';
    const code = r.status === 0 || r.status >= 500 || r.status === 429 ? 'MCP_UPSTREAM_UNAVAILABLE' : 'MCP_UPSTREAM_ERROR';
    return new McpError(code, `actuator "${this.name}": ${what} answered ${r.status || 'no connection'}${detail ? `: ${detail}` : ''}`, {
      details: { actuator: this.name, status: r.status },
    });
  }

  private async withRetries<T>(
    what: string,
    signal: AbortSignal,
    attempt: () => Promise<{ done: T } | { retry: { status: number; body: unknown; retryAfterMs?: number }; conflict?: boolean }>,
  ): Promise<T> {
    let backoff = this.config.initialBackoffMs;
    let last: { status: number; body: unknown } = { status: 0, body: undefined };
    for (let n = 1; n <= this.config.maxAttempts; n++) {
      if (signal.aborted) break;
      const r = await attempt();
      if ('done' in r) return r.done;
      last = r.retry;
      if (n === this.config.maxAttempts) break;
      if (!r.conflict) {
        const wait = Math.min(this.config.maxBackoffMs, Math.max(backoff, r.retry.retryAfterMs ?? 0));
        await new Promise((res) => setTimeout(res, wait * (0.5 + Math.random() / 2)));
        backoff = Math.min(this.config.maxBackoffMs, backoff * 2);
      }
    }
    throw this.failure(what, last);
  }

  private static transient(status: number): boolean {
    return status === 0 || status === 429 || status >= 500;
  }

  private async read(path: string): Promise<{ status: number; body: unknown; retryAfterMs?: number; scale?: Scale }> {
    const r = await this.call('GET', path);
    return r.status === 200 ? { ...r, scale: r.body as Scale } : r;
  }

  async current(target: ScalingTarget): Promise<number> {
    const path = await this.path(target.options as K8sTarget);
    return this.withRetries<number>(`GET ${path}`, AbortSignal.timeout(this.config.timeoutMs * this.config.maxAttempts), async () => {
      const r = await this.read(path);
      if (r.scale) return { done: r.scale.spec.replicas ?? 0 };
      if (!KubernetesActuator.transient(r.status)) throw this.failure(`GET ${path}`, r);
      return { retry: r };
    });
  }

  async scaleTo(target: ScalingTarget, desired: number, signal: AbortSignal): Promise<void> {
    const t = target.options as K8sTarget;
    const path = await this.path(t);
    await this.withRetries(`scale ${path}`, signal, async () => {
      const r = await this.read(path);
      if (!r.scale) {
        if (!KubernetesActuator.transient(r.status)) throw this.failure(`GET ${path}`, r);
        return { retry: r };
      }
      if (r.scale.spec.replicas === desired) return { done: undefined };
      const rv = r.scale.metadata.resourceVersion;
      const w =
        this.config.method === 'patch'
          ? await this.call('PATCH', path, { metadata: { resourceVersion: rv }, spec: { replicas: desired } })
          : await this.call('PUT', path, {
              apiVersion: 'autoscaling/v1',
              kind: 'Scale',
              metadata: { name: r.scale.metadata.name, namespace: r.scale.metadata.namespace, resourceVersion: rv },
              spec: { replicas: desired },
            });
      if (w.status === 200 || w.status === 201) return { done: undefined };
      if (w.status === 409) return { retry: w, conflict: true };
      if (!KubernetesActuator.transient(w.status)) throw this.failure(`${this.config.method === 'patch' ? 'PATCH' : 'PUT'} ${path}`, w);
      return { retry: w };
    });
  }

  async close(): Promise<void> {
    await this.dispatcher?.close();
  }
}
