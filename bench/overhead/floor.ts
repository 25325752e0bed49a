/**
 * The floor: a bare graphql-yoga server whose `infer` mutation calls the upstream with
 * undici.request and returns the text. No auth, no routing, no validation beyond GraphQL's.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSchema, createYoga } from 'graphql-yoga';
import { request } from 'undici';

const upstream = process.env.UPSTREAM_URL!;
const yoga = createYoga({
  logging: false,
  graphiql: false,
  landingPage: false,
  schema: createSchema({
    typeDefs: 'type Query { ok: Boolean } type Result { text: String } type Mutation { infer(model: ID!, prompt: String!): Result }',
    resolvers: {
      Mutation: {
        async infer(_r: unknown, args: { model: string; prompt: string }) {
          const res = await request(`${upstream}/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ model: args.model, messages: [{ role: 'user', content: args.prompt }] }),
          });
          const j = (await res.body.json()) as { choices: Array<{ message: { content: string } }> };
          return { text: j.choices[0]!.message.content };
        },
      },
    },
  }),
});
const server = createServer(yoga);
server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
