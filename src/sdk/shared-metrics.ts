import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * The counter or gauge of this name in the registry, created on first use: several plugin instances (or
 * services) that record the same family share one metric instead of failing on a second registration.
 */
export function sharedCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Counter<L> {
  return (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] });
}

/** Like sharedCounter, for a gauge. */
export function sharedGauge<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]): Gauge<L> {
  return (registry.getSingleMetric(name) as Gauge<L> | undefined) ?? new Gauge({ name, help, labelNames, registers: [registry] });
}
