// Server-sent events: headers, one JSON event per message, a comment heartbeat so proxies keep
// the stream open, and a signal that fires when the client goes away.
import type { Request, Response } from 'express';

export interface SseStream {
  send(event: string | null, data: unknown): void;
  end(): void;
}

export function openSse(res: Response, heartbeatMs = 15_000): SseStream {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
  res.setHeader('Cache-Control', 'no-cache, no-transform');
  res.setHeader('Connection', 'keep-alive');
  res.setHeader('X-Accel-Buffering', 'no');
  res.flushHeaders();
  let ended = false;
  const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), heartbeatMs);
  heartbeat.unref();
  res.on('close', () => clearInterval(heartbeat));
  return {
    send(event, data) {
      if (ended || res.writableEnded) return;
      res.write(`${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    },
    end() {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      res.end();
    },
  };
}

/** An AbortSignal that fires when a non-streaming request's client disconnects early. */
export function clientGone(req: Request, res: Response): AbortSignal {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  req.on('aborted', () => controller.abort());
  return controller.signal;
}
