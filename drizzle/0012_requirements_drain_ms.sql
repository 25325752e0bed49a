-- Resource requirements stored before drainMs existed get its default (10 s, the reconciler's drain time then).
UPDATE "model_versions" SET "resources" = "resources" || '{"drainMs": 10000}'::jsonb WHERE "resources" IS NOT NULL AND NOT ("resources" ? 'drainMs');
