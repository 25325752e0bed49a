import type { ModelCacheSettings } from '../cache/response-cache.ts';
import { builder } from './builder.ts';
import { compact } from './input.ts';
import { ModelRef } from './models.ts';

const ModelCacheRef = builder.objectRef<ModelCacheSettings>('ModelCache').implement({
  description: "The model's response cache: deterministic answers (tensor, embeddings, generation with temperature 0 or a seed) kept for ttlMs.",
  fields: (t) => ({
    enabled: t.exposeBoolean('enabled'),
    ttlMs: t.exposeInt('ttlMs'),
  }),
});

const ModelCacheInput = builder.inputType('ModelCacheInput', {
  fields: (t) => ({
    enabled: t.boolean({ required: true }),
    ttlMs: t.int({ description: 'How long an answer is kept, ms: 1000 … cache.maxTtlMs (default 300000).' }),
  }),
});

builder.objectFields(ModelRef, (t) => ({
  cache: t.field({
    type: ModelCacheRef,
    nullable: true,
    description: 'Response cache settings (setModelCache); null when never set.',
    resolve: (m) => m.routing.cache ?? null,
  }),
}));

builder.mutationFields((t) => ({
  setModelCache: t.field({
    type: ModelRef,
    description:
      'Turns the response cache on or off for the model. Answers are keyed by version, that version' +
      "'" +
      's instances, the input and its parameters; ' +
      'a change to the instances starts new keys. Clients skip it with `cache-control: no-cache` (no-store: not kept either).',
    authScopes: (_r, args) => ({ model: { permission: 'models:write', id: String(args.model) } }),
    args: { model: t.arg.id({ required: true }), input: t.arg({ type: ModelCacheInput, required: true }) },
    resolve: (_r, { model, input }, ctx) => ctx.services.cache.setModelCache(String(model), compact(input)),
  }),
}));
