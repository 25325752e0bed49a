/** The OpenAI-compatible upstream of the overhead bench, in its own process: answers at once. Sends `{ port }` over IPC. */
import { startFakeOpenAI } from '../../src/testing/fake-openai-server.ts';

const up = await startFakeOpenAI({ models: ['fake-model'], tokens: ['Hello', ',', ' world', '!'] });
process.send?.({ port: Number(new URL(up.origin).port) });
process.on('disconnect', () => void up.close().then(() => process.exit(0)));
