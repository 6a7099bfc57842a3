// Load test: many concurrent clients on loopback for a fixed time against the service running as
// its own process, mixing /generate (JSON and multipart, images of several sizes), streamed and
// plain /v1/chat/completions, a running evaluation, and some bad requests. Reports throughput,
// p50/p99 latency, responses by status, peak RSS of the service, and checks the service's promises:
// no 5xx, every 429/503 carries Retry-After, no request hangs, the process survives.
//
//   npx tsx bench/load.ts [--clients 64] [--seconds 60] [--max-requests 100000] [--queue 32] [--model tiny-random]
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { Agent, fetch } from 'undici';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const CLIENTS = Number(flag('clients', '64'));
const SECONDS = Number(flag('seconds', '60'));
const MAX_REQUESTS = Number(flag('max-requests', '100000'));
const QUEUE = flag('queue', '32');
const MODEL = flag('model', 'tiny-random');
const REQUEST_TIMEOUT_MS = 120_000;
const ROOT = resolve(__dirname, '..');

interface Sample {
  kind: string;
  status: number; // 0: network error, -1: client timeout
  ms: number;
  retryAfter: boolean;
}

function freePort(): Promise<number> {
  return new Promise((done) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => done(port));
    });
  });
}

async function noisePng(width: number, height: number, seed: number): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  let x = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    data[i] = x >>> 24;
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : NaN;
}

async function main() {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const state = mkdtempSync(join(tmpdir(), 'load-state-'));
  const child = spawn(process.execPath, ['--require', 'tsx/cjs', join(ROOT, 'src/server/main.ts')], {
    cwd: ROOT,
    env: {
      ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', STATE_DIR: state, DATA_DIR: join(state, 'data'),
      DEFAULT_MODEL: MODEL, MAX_QUEUE: QUEUE, MAX_BATCH_SIZE: '16', MAX_NEW_TOKENS: '128', REQUEST_TIMEOUT_MS: '60000',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const agent = new Agent({ connections: CLIENTS + 8, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS });
  try {
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`service exited with ${child.exitCode}`);
      try {
        if ((await fetch(`${base}/readyz`, { dispatcher: agent })).status === 200) break;
      } catch {
        // not listening yet
      }
      if (i > 600) throw new Error('service not ready after 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }

    const images = await Promise.all([[56, 56, 1], [224, 224, 2], [448, 336, 3], [640, 480, 4], [100, 700, 5]].map(([w, h, s]) => noisePng(w, h, s)));
    const dataUrl = (png: Buffer) => `data:image/png;base64,${png.toString('base64')}`;
    const evalStart = await fetch(`${base}/evaluate`, {
      dispatcher: agent, method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ benchmark: 'spatial-synth', limit: 200, max_new_tokens: 32 }),
    });
    const evalId = ((await evalStart.json()) as { id: string }).id;

    const samples: Sample[] = [];
    const deadline = Date.now() + SECONDS * 1000;
    let issued = 0;
    const one = async (k: number): Promise<Sample> => {
      const png = images[k % images.length];
      const pick = k % 10;
      let kind: string;
      let init: Parameters<typeof fetch>[1];
      let path = '/generate';
      if (pick < 4) {
        kind = 'generate json';
        init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ question: 'How many objects?', image: png.toString('base64'), max_new_tokens: 16 + (k % 48) }) };
      } else if (pick < 6) {
        kind = 'generate multipart';
        const form = new FormData();
        form.append('image', new Blob([png], { type: 'image/png' }), 'x.png');
        form.append('question', 'Which is closer?');
        form.append('max_new_tokens', '24');
        init = { method: 'POST', body: form as never };
      } else if (pick < 8) {
        kind = pick === 6 ? 'chat' : 'chat stream';
        path = '/v1/chat/completions';
        init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ stream: pick === 7, max_tokens: 24, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl(png) } }, { type: 'text', text: 'Describe it.' }] }] }) };
      } else if (pick === 8) {
        kind = 'bad request';
        init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ question: 'x', image: 'not an image', top_p: 3 }) };
      } else {
        kind = 'models + status';
        path = k % 2 ? '/v1/models' : `/evaluate/${evalId}`;
        init = { method: 'GET' };
      }
      const started = performance.now();
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      try {
        const res = await fetch(`${base}${path}`, { ...init, dispatcher: agent, signal: controller.signal });
        await res.arrayBuffer();
        return { kind, status: res.status, ms: performance.now() - started, retryAfter: res.headers.has('retry-after') };
      } catch {
        return { kind, status: controller.signal.aborted ? -1 : 0, ms: performance.now() - started, retryAfter: false };
      } finally {
        clearTimeout(timer);
      }
    };
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, c) => {
        while (Date.now() < deadline && issued < MAX_REQUESTS) {
          const k = issued++ + c;
          const sample = await one(k);
          samples.push(sample);
          // A refused client backs off as told (Retry-After), as a well-behaved client would.
          if (sample.status === 429 || sample.status === 503) await new Promise((r) => setTimeout(r, 250));
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const alive = (await fetch(`${base}/healthz`, { dispatcher: agent })).status === 200;
    const evalView = (await (await fetch(`${base}/evaluate/${evalId}`, { dispatcher: agent })).json()) as { status: string; progress: { done: number; total: number } };
    const rss = peakRssMb(child.pid!);

    const byStatus = new Map<number, number>();
    for (const s of samples) byStatus.set(s.status, (byStatus.get(s.status) ?? 0) + 1);
    const ok = samples.filter((s) => s.status === 200);
    const refusedWithout = samples.filter((s) => (s.status === 429 || s.status === 503) && !s.retryAfter).length;
    const fiveHundreds = samples.filter((s) => s.status >= 500 && s.status !== 503).length;
    console.log(`\nLoad test: ${CLIENTS} clients for ${SECONDS} s (at most ${MAX_REQUESTS} requests), model ${MODEL}, MAX_QUEUE ${QUEUE}, MAX_BATCH_SIZE 16, one evaluation running\n`);
    console.log('| requests | per second | p50 ms (200s) | p99 ms (200s) | by status | 5xx other than 503 | 429/503 without Retry-After | hung (client timeout) | service alive | peak RSS MB | evaluation |');
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    const statuses = [...byStatus.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s === -1 ? 'timeout' : s === 0 ? 'error' : s}: ${n}`).join(', ');
    console.log(`| ${samples.length} | ${(samples.length / seconds).toFixed(1)} | ${percentile(ok.map((s) => s.ms), 50).toFixed(0)} | ${percentile(ok.map((s) => s.ms), 99).toFixed(0)} | ${statuses} | ${fiveHundreds} | ${refusedWithout} | ${byStatus.get(-1) ?? 0} | ${alive ? 'yes' : 'NO'} | ${rss.toFixed(0)} | ${evalView.status} ${evalView.progress.done}/${evalView.progress.total} |`);
    console.log('\n| kind | requests | p50 ms | p99 ms | statuses |');
    console.log('|---|---|---|---|---|');
    for (const kind of [...new Set(samples.map((s) => s.kind))]) {
      const mine = samples.filter((s) => s.kind === kind);
      const counts = new Map<number, number>();
      for (const s of mine) counts.set(s.status, (counts.get(s.status) ?? 0) + 1);
      console.log(`| ${kind} | ${mine.length} | ${percentile(mine.map((s) => s.ms), 50).toFixed(0)} | ${percentile(mine.map((s) => s.ms), 99).toFixed(0)} | ${[...counts.entries()].map(([s, n]) => `${s}: ${n}`).join(', ')} |`);
    }
    if (fiveHundreds || refusedWithout || byStatus.get(-1) || !alive) process.exitCode = 1;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    await agent.close();
    rmSync(state, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
