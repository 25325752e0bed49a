import { builder } from './builder.ts';

const PluginRef = builder
  .objectRef<{ name: string; kind: string; plugin: string; source: string; description?: string; required: boolean; ok: boolean; detail?: string }>('Plugin')
  .implement({
    fields: (t) => ({
      name: t.exposeString('name'),
      kind: t.exposeString('kind'),
      plugin: t.exposeString('plugin', { description: 'The plugin’s own name (differs from name when configured twice).' }),
      source: t.exposeString('source'),
      description: t.exposeString('description', { nullable: true }),
      required: t.exposeBoolean('required'),
      healthy: t.boolean({ resolve: (p) => p.ok }),
      detail: t.exposeString('detail', { nullable: true }),
    }),
  });

const HealthRef = builder.objectRef<{ live: boolean; ready: boolean; storage: string; storageState: string }>('Health').implement({
  fields: (t) => ({
    live: t.exposeBoolean('live'),
    ready: t.exposeBoolean('ready'),
    storage: t.exposeString('storage', { description: 'pglite or postgres.' }),
    storageState: t.exposeString('storageState', {
      description: 'up, or degraded while the database cannot be reached (inference goes on; what needs storage answers MCP_STORAGE_UNAVAILABLE).',
    }),
  }),
});

builder.queryFields((t) => ({
  health: t.field({
    type: HealthRef,
    resolve: async (_r, _a, ctx) => {
      const r = await ctx.services.readiness();
      return { live: true, ready: r.ready, storage: ctx.services.database.kind, storageState: r.storage };
    },
  }),
  plugins: t.field({
    type: [PluginRef],
    description: 'Configured plugins with their health.',
    authScopes: { permission: 'metrics:read' },
    resolve: (_r, _a, ctx) => ctx.services.plugins.health(),
  }),
}));
