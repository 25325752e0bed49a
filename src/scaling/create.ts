/** Builds the scaling controller with its actuators: `instances` always, and those of config `scaling.actuators`. */
import type { AdminService } from '../admin/admin-service.ts';
import { McpError } from '../errors.ts';
import type { ModelRegistry } from '../models/registry.ts';
import type { Actuator } from './actuator.ts';
import { InstancesActuator, type ReplicaPlacement } from './actuators/instances.ts';
import { KubernetesActuator } from './actuators/kubernetes.ts';
import { LocalProcessActuator } from './actuators/local-process.ts';
import { ScalingController, type ScalingControllerDeps } from './controller.ts';

export function createScaling(
  deps: Omit<ScalingControllerDeps, 'actuators' | 'registry'> & {
    registry: ModelRegistry;
    admin: AdminService;
    gatewayUrl: () => string;
    /** The `instances` actuator scales versions with resource requirements through placement. */
    placement?: ReplicaPlacement;
  },
): ScalingController {
  const actuators = new Map<string, Actuator>([['instances', new InstancesActuator('instances', deps.admin, deps.registry, deps.placement)]]);
  for (const a of deps.config.actuators) {
    if (actuators.has(a.name)) throw new McpError('MCP_CONFIG_INVALID', `scaling.actuators: "${a.name}" is listed twice (or is the built-in instances)`);
    const logger = deps.logger.child({ actuator: a.name });
    actuators.set(
      a.name,
      a.type === 'kubernetes'
        ? new KubernetesActuator(a.name, a.options)
        : new LocalProcessActuator(a.name, a.options, { admin: deps.admin, registry: deps.registry, gatewayUrl: deps.gatewayUrl, logger }),
    );
  }
  return new ScalingController({ ...deps, actuators });
}
