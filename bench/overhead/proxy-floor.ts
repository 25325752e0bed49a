/**
 * The floor of the OpenAI path: a bare node:http server that forwards each POST body to the
 * upstream's /chat/completions with undici.request and sends the answer back. No auth, no
 * routing, no parsing: what any Node gateway pays for the extra hop.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';

const upstream = `${process.env.UPSTREAM_URL!}/chat/completions`;
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    request(upstream, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) })
      .then(async (up) => {
        const body = Buffer.from(await up.body.arrayBuffer());
        res.writeHead(up.statusCode, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
      })
      .catch(() => {
        res.writeHead(502);
        res.end();
      });
  });
});
server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
