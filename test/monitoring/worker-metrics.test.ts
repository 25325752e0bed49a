import { describe, expect, it } from 'vitest';
import { startTestGateway } from '../../src/testing/gateway.ts';

const SESSION = 'a-session-of-20-chars';
const REGISTER = `mutation { registerWorker(input: {
  name: "gpu-box", endpoint: "http://127.0.0.1:1", session: "${SESSION}", heartbeatIntervalMs: 60000,
  devices: [{ id: "gpu:0", kind: "gpu", name: "test GPU", memoryTotalBytes: 8000000000 }]
}) { worker { id } } }`;
const HEARTBEAT = `mutation ($load: WorkerLoadInput) { workerHeartbeat(id: "gpu-box", load: $load) { id load { inflight cpuSeconds residentMemoryBytes } } }`;

describe('worker metrics', () => {
  it('heartbeats carry CPU, memory and device figures; only registered devices become label values', async () => {
    const gw = await startTestGateway({});
    try {
      const reg = await gw.gql(REGISTER);
      expect(reg.errors, JSON.stringify(reg.errors)).toBeUndefined();
      const load = {
        inflight: 3,
        requestsTotal: 120,
        cpuSeconds: 12.5,
        residentMemoryBytes: 300_000_000,
        devices: [
          { id: 'gpu:0', memoryUsedBytes: 2_000_000_000 },
          { id: 'gpu:made-up', memoryUsedBytes: 1 },
        ],
      };
      const hb = await gw.gql<{ workerHeartbeat: { load: Record<string, number> } }>(HEARTBEAT, { load });
      expect(hb.errors).toBeUndefined();
      expect(hb.data!.workerHeartbeat.load).toEqual({ inflight: 3, cpuSeconds: 12.5, residentMemoryBytes: 300_000_000 });
      const text = await (await fetch(`${gw.url}/metrics`)).text();
      expect(text).toContain('mcp_worker_up{worker="gpu-box"} 1');
      expect(text).toContain('mcp_worker_inflight_requests{worker="gpu-box"} 3');
      expect(text).toContain('mcp_worker_requests_total{worker="gpu-box"} 120');
      expect(text).toContain('mcp_worker_cpu_seconds_total{worker="gpu-box"} 12.5');
      expect(text).toContain('mcp_worker_resident_memory_bytes{worker="gpu-box"} 300000000');
      expect(text).toContain('mcp_worker_device_memory_bytes{worker="gpu-box",device="gpu:0",kind="gpu"} 8000000000');
      expect(text).toContain('mcp_worker_device_memory_used_bytes{worker="gpu-box",device="gpu:0",kind="gpu"} 2000000000');
      expect(text).not.toContain('made-up');
      const at = Number(/mcp_worker_last_heartbeat_timestamp_seconds\{worker="gpu-box"\} (\S+)/.exec(text)![1]);
      expect(Math.abs(at - Date.now() / 1000)).toBeLessThan(120);
      // Figures that are not finite and non-negative are dropped, not stored.
      const bad = await gw.gql<{ workerHeartbeat: { load: Record<string, number | null> } }>(HEARTBEAT, { load: { inflight: 1, cpuSeconds: -4 } });
      expect(bad.data!.workerHeartbeat.load).toEqual({ inflight: 1, cpuSeconds: null, residentMemoryBytes: null });
    } finally {
      await gw.close();
    }
  }, 60_000);
});
