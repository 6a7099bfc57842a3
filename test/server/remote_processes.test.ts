// Two service processes on loopback, one using the other as a remote model (docs/remote-models.md):
// the front serves the backend's model as its default and answers as the backend does; and the
// start-up check of REMOTE_MODELS: a malformed value or a remote without the model's id stops the
// start with a message naming it, an unreachable remote is a warning and its requests get 502.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, serviceReady as ready, ServiceProcess as Service, startServiceProcess as startService, stopServiceProcess as stop } from '../helpers/service_process';

const post = (base: string, path: string, body: unknown) =>
  fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

describe('service processes with remote models', () => {
  let dir: string;
  const services: Service[] = [];
  const start = (env: Record<string, string>, port: number) => {
    const service = startService({ STATE_DIR: join(dir, `state-${port}`), DATA_DIR: join(dir, 'data'), ...env }, port);
    services.push(service);
    return service;
  };
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'remote-processes-'));
  });
  afterEach(async () => {
    await Promise.all(services.splice(0).map(stop));
    rmSync(dir, { recursive: true, force: true });
  });

  test('a front process serves the backend process as its default model', async () => {
    const backend = start({ DEFAULT_MODEL: 'tiny-random' }, await freePort());
    await ready(backend);
    const front = start({ DEFAULT_MODEL: 'far', REMOTE_MODELS: `far=${backend.base}/v1#tiny-random` }, await freePort());
    await ready(front);
    const models = (await (await fetch(`${front.base}/v1/models`)).json()) as { data: { id: string; default: boolean; remote?: boolean }[] };
    expect(models.data.find((m) => m.id === 'far')).toMatchObject({ default: true, remote: true });

    const body = { question: 'How many cubes are there?', template: 'r1', max_new_tokens: 8 };
    const direct = (await (await post(backend.base, '/generate', { ...body, model: 'tiny-random' })).json()) as Record<string, unknown>;
    const viaFront = await post(front.base, '/generate', body);
    expect(viaFront.status).toBe(200);
    const remote = (await viaFront.json()) as Record<string, unknown>;
    expect(remote).toMatchObject({ model: 'far', text: direct.text, think: direct.think, answer: direct.answer, format_ok: direct.format_ok, usage: direct.usage });

    const chat = await post(front.base, '/v1/chat/completions', { messages: [{ role: 'user', content: body.question }], max_tokens: 8 });
    expect(chat.status).toBe(200);
    expect(((await chat.json()) as { model: string }).model).toBe('far');
  }, 120_000);

  test('a malformed REMOTE_MODELS or a remote without the model id stops the start with a message naming it', async () => {
    const malformed = start({ REMOTE_MODELS: 'far' }, await freePort());
    expect(await malformed.exited).toBe(1);
    expect(malformed.output()).toMatch(/invalid configuration: REMOTE_MODELS: "far" is not name=URL/);

    const backend = start({ DEFAULT_MODEL: 'tiny-random', WARMUP: 'false' }, await freePort());
    await ready(backend, '/healthz');
    const wrongId = start({ DEFAULT_MODEL: 'tiny-random', WARMUP: 'false', REMOTE_MODELS: `far=${backend.base}/v1#no-such-model` }, await freePort());
    expect(await wrongId.exited).toBe(1);
    expect(wrongId.output()).toMatch(/REMOTE_MODELS: model "far" replica 1 \(http:\/\/127\.0\.0\.1:\d+\/v1\): .*does not serve a model "no-such-model" \(it serves: [^)]*tiny-random/);
  });

  test('an unreachable remote is a warning at start, and its requests get 502 remote_unreachable', async () => {
    const nowhere = `http://127.0.0.1:${await freePort()}/v1`;
    const front = start({ DEFAULT_MODEL: 'tiny-random', WARMUP: 'false', REMOTE_MODELS: `far=${nowhere}` }, await freePort());
    await ready(front, '/healthz');
    expect(front.output()).toMatch(/REMOTE_MODELS: model \\"far\\" replica 1 .*ECONNREFUSED; requests to it fail with 502 until it answers/);
    const res = await post(front.base, '/generate', { model: 'far', question: 'q' });
    expect(res.status).toBe(502);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('remote_unreachable');
  });
});
