/**
 * Upstream of the streaming bench, in its own process: an OpenAI-compatible SSE stream whose
 * every token carries the wall-clock time (µs) it was written at, so a client on this machine
 * can tell how long each token took to reach it. TOKENS tokens, GAP_MS apart.
 */
import { createServer } from 'node:http';

const TOKENS = Number(process.env.TOKENS ?? 100);
const GAP_MS = Number(process.env.GAP_MS ?? 2);
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

const server = createServer((req, res) => {
  if (req.url?.endsWith('/models')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'stream-model', object: 'model' }] }));
    return;
  }
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let i = 0;
    const send = () => {
      if (res.destroyed) return;
      if (i === TOKENS) {
        const last = {
          id: 'x',
          object: 'chat.completion.chunk',
          choices: [{ index: 0, delta: {}, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: TOKENS, total_tokens: TOKENS + 1 },
        };
        res.write(`data: ${JSON.stringify(last)}\n\n`);
        res.end('data: [DONE]\n\n');
        return;
      }
      i++;
      const chunk = { id: 'x', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: `<${nowUs()}>` }, finish_reason: null }] };
      res.write(`data: ${JSON.stringify(chunk)}\n\n`);
      setTimeout(send, GAP_MS);
    };
    send();
  });
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  process.send?.({ port: typeof addr === 'object' && addr ? addr.port : 0 });
});
process.on('disconnect', () => process.exit(0));
