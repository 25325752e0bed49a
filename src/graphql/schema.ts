import { lexicographicSortSchema, printSchema, type GraphQLSchema } from 'graphql';
import { builder } from './builder.ts';
import './models.ts';
import './inference.ts';
import './routing.ts';
import './system.ts';
import './workers.ts';
import './auth.ts';
import './audit.ts';
import './alerts.ts';
import './placement.ts';
import './metrics.ts';
import './resources.ts';
import './queues.ts';
import './cache.ts';
import './scaling.ts';

let schema: GraphQLSchema | undefined;

/** The executable schema (built once per process from the domain files above). */
export function buildSchema(): GraphQLSchema {
  schema ??= builder.toSchema();
  return schema;
}

/** SDL as committed in schema.graphql. */
export function printSchemaSdl(): string {
  return `${printSchema(lexicographicSortSchema(buildSchema()))}\n`;
}
