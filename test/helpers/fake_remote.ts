// A fake OpenAI-compatible server on loopback for the remote model tests: GET /v1/models lists
// `models`; POST /v1/chat/completions records the body and hands it to the test's handler, which
// answers (streamReply) or not (a hang).
import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** A request body as the fake received it (the tests' expectations check its shape). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Body = Record<string, any>;

export interface FakeRemote {
  /** The endpoint's base (http://127.0.0.1:<port>/v1). */
  url: string;
  /** Bodies of the chat requests, in arrival order. */
  requests: Body[];
  /** Chat requests being answered now, and the most at once. */
  inFlight: number;
  peakInFlight: number;
  close(): Promise<void>;
}

export type ChatHandler = (body: Body, res: ServerResponse, req: IncomingMessage) => void | Promise<void>;

/** Streams `text` as OpenAI chat completion chunks, then usage and [DONE]. */
export function streamReply(res: ServerResponse, text: string, options: { finish?: string; pieces?: number; usage?: { prompt_tokens: number; completion_tokens: number } } = {}): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const send = (data: unknown) => res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
  send({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
  const pieces = Math.max(1, options.pieces ?? 3);
  const size = Math.ceil(text.length / pieces);
  for (let i = 0; i < text.length; i += size) send({ choices: [{ index: 0, delta: { content: text.slice(i, i + size) }, finish_reason: null }] });
  send({ choices: [{ index: 0, delta: {}, finish_reason: options.finish ?? 'stop' }] });
  send({ choices: [], usage: options.usage ?? { prompt_tokens: 11, completion_tokens: 7 } });
  send('[DONE]');
  res.end();
}

export async function fakeRemote(handler: ChatHandler, options: { models?: string[]; ownedBy?: string } = {}): Promise<FakeRemote> {
  const sockets = new Set<Socket>();
  const remote: FakeRemote = { url: '', requests: [], inFlight: 0, peakInFlight: 0, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ object: 'list', data: (options.models ?? ['remote-model']).map((id) => ({ id, object: 'model', owned_by: options.ownedBy ?? 'vllm' })) }));
      return;
    }
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.statusCode = 404;
      res.end('{"error":{"message":"not found"}}');
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      remote.requests.push(body);
      remote.inFlight += 1;
      remote.peakInFlight = Math.max(remote.peakInFlight, remote.inFlight);
      let counted = true;
      const done = () => {
        if (counted) remote.inFlight -= 1;
        counted = false;
      };
      res.on('close', done);
      void Promise.resolve(handler(body, res, req)).catch(() => res.destroy());
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  remote.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  remote.close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return remote;
}

/** A loopback URL on which nothing listens (a port taken and released). */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/v1`;
}
