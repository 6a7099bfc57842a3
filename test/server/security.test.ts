// Security of the HTTP service beyond the admin token (admin.test.ts) and the refusal of remote
// images without an allow-list (chat.test.ts): remote image URLs with an allow-list configured
// (never a request to a loopback or private address, DNS rebinding included), paths in requests
// confined to their roots (`..`, absolute paths, symbolic links leading out), request ids on every
// response and log line, and no image bytes or bearer tokens in any log line.
import dns from 'node:dns';
import dnsPromises from 'node:dns/promises';
import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import request from 'supertest';
import { JobManager } from '../../src/training/manager';
import { capturingLogger, startTestService, TestService } from '../helpers/app';
import { MODELS_ROOT, noiseImage, vectorPng } from '../helpers/service';
import { TrainingFixture, writeDataset } from '../helpers/training';

const TOKEN = 'security-admin-token-77e0a1';
const auth = { Authorization: `Bearer ${TOKEN}` };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function expectEnvelope(res: request.Response, status: number, code: string) {
  expect([res.status, res.body]).toEqual([status, { error: { code, message: expect.any(String) } }]);
}

/** A folder's files with their contents and modification times (to see that nothing changed). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const entry of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const path = join(rel, entry.name);
      if (entry.isDirectory()) walk(path);
      else out[path] = `${statSync(join(dir, path)).mtimeMs} ${readFileSync(join(dir, path), 'utf8')}`;
    }
  };
  walk('');
  return out;
}

/** A trainable model folder (config.json and safetensors weights). */
function trainableModel(dir: string) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), '{}');
  writeFileSync(join(dir, 'model.safetensors'), 'weights');
}

describe('security', () => {
  let root: string;
  let service: TestService;
  let fx: TrainingFixture;
  let jobs: JobManager;
  let app: TestService['app'];
  let images: Server;
  let port: number;
  const hits: string[] = [];
  const logs: string[] = [];
  // Folders outside every root, which requests try to reach.
  let outsideModel: string;
  let outsideData: string;
  let modelsRoot: string;
  let dataDir: string;

  beforeAll(async () => {
    // An image server on loopback that records every request it gets.
    images = createServer((req, res) => {
      hits.push(`${req.method} ${req.url}`);
      res.setHeader('content-type', 'image/png');
      res.end(vectorPng('56x56'));
    });
    await new Promise<void>((resolve) => images.listen(0, '127.0.0.1', resolve));
    port = (images.address() as AddressInfo).port;

    root = mkdtempSync(join(tmpdir(), 'security-'));
    outsideModel = join(root, 'outside-model');
    trainableModel(outsideModel);
    outsideData = join(root, 'outside-data');
    writeDataset(outsideData);
    // The model root: one trainable model, and a link out of the root.
    modelsRoot = join(root, 'models');
    trainableModel(join(modelsRoot, 'trainable'));
    symlinkSync(outsideModel, join(modelsRoot, 'escape'));
    // DATA_DIR is itself a link (to data-real): links of the roots themselves are fine.
    const dataReal = join(root, 'data-real');
    writeDataset(join(dataReal, 'mine'));
    writeDataset(join(dataReal, 'spatial-synth'));
    symlinkSync(join(dataReal, 'mine'), join(dataReal, 'alias')); // a link that stays inside
    symlinkSync(outsideData, join(dataReal, 'escape'));
    mkdirSync(join(dataReal, 'nested'));
    symlinkSync(outsideData, join(dataReal, 'nested', 'link'));
    mkdirSync(join(dataReal, 'jsonl-link'));
    symlinkSync(join(outsideData, 'train.jsonl'), join(dataReal, 'jsonl-link', 'train.jsonl'));
    mkdirSync(join(dataReal, 'blink'));
    writeFileSync(join(dataReal, 'val.parquet'), 'not for BLINK');
    dataDir = join(root, 'data');
    symlinkSync(dataReal, dataDir);

    const hosts = ['127.0.0.1', 'localhost', '::1', '::ffff:7f00:1', '10.0.0.1', '169.254.169.254', 'fd00::1', '0.0.0.0'];
    const logger = capturingLogger('trace', logs);
    service = await startTestService({
      adminToken: TOKEN,
      env: { DATA_DIR: dataDir, ALLOWED_IMAGE_HOSTS: hosts.join(','), LOG_LEVEL: 'trace' },
      logger,
      jobs: ({ config }) => ({ dataDir: config.dataDir, modelRoots: [modelsRoot], listModels: () => [], defaultModel: 'trainable', maxConcurrent: 4 }),
      runs: { concurrency: 2 },
    });
    ({ fx, jobs, app } = service);
  });
  afterAll(async () => {
    await service.dispose();
    await new Promise((resolve) => images.close(resolve));
    rmSync(root, { recursive: true, force: true });
  });
  afterEach(() => jest.restoreAllMocks());

  const chatWith = (url: string) => ({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }, { type: 'text', text: 'What is it?' }] }], max_tokens: 2 });

  describe('remote image URLs with an allow-list configured', () => {
    beforeEach(() => {
      hits.length = 0;
    });

    test('the recording image server answers (so zero hits below means zero requests)', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/probe.png`);
      expect(res.status).toBe(200);
      expect(hits).toEqual(['GET /probe.png']);
    });

    test.each([
      ['an allowed IPv4 loopback literal', () => `http://127.0.0.1:${port}/cat.png`],
      ['an allowed name that resolves to loopback', () => `http://localhost:${port}/cat.png`],
      ['the IPv6 loopback', () => `http://[::1]:${port}/cat.png`],
      ['loopback as an IPv4-mapped IPv6 address', () => `http://[::ffff:127.0.0.1]:${port}/cat.png`],
      ['loopback as a decimal number', () => `http://2130706433:${port}/cat.png`],
      ['loopback in hex and short form', () => `http://0x7f.1:${port}/cat.png`],
      ['a private network address', () => `http://10.0.0.1:${port}/cat.png`],
      ['the cloud metadata address', () => 'http://169.254.169.254/latest/meta-data/'],
      ['a unique-local IPv6 address', () => `http://[fd00::1]:${port}/cat.png`],
      ['the unspecified address', () => `http://0.0.0.0:${port}/cat.png`],
      ['https to loopback', () => `https://localhost:${port}/cat.png`],
    ])('%s is refused as private or loopback, and never contacted', async (_name, url) => {
      const res = await request(app).post('/v1/chat/completions').send(chatWith(url()));
      expectEnvelope(res, 400, 'remote_image_not_allowed');
      expect(res.body.error.message).toMatch(/private or loopback/);
      expect(hits).toEqual([]);
    });

    test('DNS rebinding: the address checked is the address connected to', async () => {
      // A resolver that answers a public address to a first look-up (a check) and the real,
      // loopback one afterwards (the connection) is no way in.
      const publicFirst = jest.spyOn(dnsPromises, 'lookup').mockResolvedValue([{ address: '93.184.215.14', family: 4 }] as never);
      const res = await request(app).post('/v1/chat/completions').send(chatWith(`http://localhost:${port}/rebind.png`));
      expectEnvelope(res, 400, 'remote_image_not_allowed');
      expect(hits).toEqual([]);
      publicFirst.mockRestore();
    });

    test.each([
      ['a host not on the list', () => `http://127.0.0.2:${port}/cat.png`],
      ['a public host not on the list', () => 'https://images.example.com/cat.png'],
      ['an allowed name with a trailing dot', () => `http://localhost.:${port}/cat.png`],
      ['an allowed name as user info', () => `http://localhost:${port}@images.example.com/cat.png`],
      ['an allowed name after a fragment', () => `http://images.example.com#@localhost:${port}/cat.png`],
    ])('%s is refused before any look-up or connection', async (_name, url) => {
      const lookups = jest.spyOn(dns, 'lookup');
      const res = await request(app).post('/v1/chat/completions').send(chatWith(url()));
      expectEnvelope(res, 400, 'remote_image_not_allowed');
      expect(res.body.error.message).toMatch(/is not allowed; send the image inline/);
      // (supertest's own server resolves 127.0.0.1 to listen on.)
      expect(lookups.mock.calls.map((call) => call[0]).filter((host) => host !== '127.0.0.1')).toEqual([]);
      expect(hits).toEqual([]);
    });

    test.each([
      ['ftp', () => `ftp://127.0.0.1:${port}/cat.png`],
      ['ws', () => `ws://localhost:${port}/cat.png`],
      ['gopher', () => `gopher://127.0.0.1:${port}/_GET%20/cat.png`],
      ['javascript', () => 'javascript:fetch("http://127.0.0.1/")'],
      ['a scheme-relative URL', () => `//127.0.0.1:${port}/cat.png`],
      ['a bare path', () => '/etc/passwd'],
    ])('%s URLs are refused', async (_name, url) => {
      const res = await request(app).post('/v1/chat/completions').send(chatWith(url()));
      expectEnvelope(res, 400, 'invalid_image_url');
      expect(hits).toEqual([]);
    });
  });

  describe('paths in requests stay inside their roots', () => {
    let before: { jobs: number; folders: string[]; outside: Record<string, string> };
    beforeEach(() => {
      before = { jobs: fx.store.list(1000).length, folders: readdirSync(fx.stateDir), outside: { ...snapshot(outsideModel), ...snapshot(outsideData) } };
    });
    afterEach(() => {
      // Nothing recorded, created, or touched outside.
      expect(fx.store.list(1000).length).toBe(before.jobs);
      expect(readdirSync(fx.stateDir)).toEqual(before.folders);
      expect({ ...snapshot(outsideModel), ...snapshot(outsideData) }).toEqual(before.outside);
    });

    test.each([
      ['base_model: a link in the model root leading out', () => ({ base_model: 'escape' })],
      ['base_model: that link by absolute path', () => ({ base_model: join(modelsRoot, 'escape') })],
      ['base_model: a path through that link', () => ({ base_model: 'escape/.' })],
      ['base_model: a path that enters the root, then leaves through the link', () => ({ base_model: 'trainable/../escape' })],
      ['base_model: .. out of the root to a trainable folder', () => ({ base_model: 'trainable/../../outside-model' })],
      ['base_model: an absolute path that normalises out of the root', () => ({ base_model: `${modelsRoot}/trainable/../../outside-model` })],
      ['dataset: a link in DATA_DIR leading out', () => ({ dataset: 'escape' })],
      ['dataset: a folder under a link leading out', () => ({ dataset: 'nested/link' })],
      ['dataset: a folder whose split file links out', () => ({ dataset: 'jsonl-link' })],
      ['dataset: that link by absolute path', () => ({ dataset: join(dataDir, 'escape') })],
      ['dataset: .. out of DATA_DIR to a data set', () => ({ dataset: 'mine/../../outside-data' })],
      ['dataset: an absolute path outside', () => ({ dataset: outsideData })],
    ])('POST /admin/train with %s is 400 path_outside_roots', async (_name, body) => {
      const res = await request(app).post('/admin/train').set(auth).send({ steps: 1, ...body() });
      expectEnvelope(res, 400, 'path_outside_roots');
    });

    test.each([
      ['split ..', { benchmark: 'spatial-synth', split: '..' }, 400, 'unknown_split'],
      ['an absolute split', { benchmark: 'sat', split: '/etc/passwd' }, 400, 'invalid_request'],
      ['a subset with a path', { benchmark: 'blink', subsets: ['../val'] }, 400, 'invalid_request'],
      // DATA_DIR/val.parquet exists: `..` would have reached out of the BLINK folder.
      ['a BLINK subset ..', { benchmark: 'blink', subsets: ['..'] }, 400, 'benchmark_subset_unknown'],
      ['a model by relative path', { benchmark: 'spatial-synth', model: '../models/tiny-random' }, 404, 'model_not_found'],
      ['a model by absolute path', { benchmark: 'spatial-synth', model: join(MODELS_ROOT, 'tiny-random') }, 404, 'model_not_found'],
      ['a benchmark with a path', { benchmark: '../spatial-synth' }, 400, 'invalid_request'],
    ])('POST /evaluate with %s is refused', async (_name, body, status, code) => {
      const listed = (await request(app).get('/evaluate').expect(200)).body.data.length;
      expectEnvelope(await request(app).post('/evaluate').send(body), status, code);
      expect((await request(app).get('/evaluate').expect(200)).body.data.length).toBe(listed);
    });

    describe('what stays inside is accepted', () => {
      // These create jobs: the checks of the enclosing afterEach do not apply.
      let accepted: string[];
      beforeEach(() => (accepted = []));
      afterEach(async () => {
        for (const id of accepted) await jobs.wait(id);
        before = { jobs: fx.store.list(1000).length, folders: readdirSync(fx.stateDir), outside: before.outside };
      });

      test.each([
        ['a model folder by name', { base_model: 'trainable' }],
        ['a data set by name, under a DATA_DIR that is itself a link', { dataset: 'mine' }],
        ['a link that stays inside DATA_DIR', { dataset: 'alias' }],
        ['a path that leaves and re-enters a folder inside the root', { base_model: 'trainable/../trainable', dataset: 'mine/../alias' }],
      ])('%s', async (_name, body) => {
        const res = await request(app).post('/admin/train').set(auth).send({ steps: 1, ...body });
        expect(res.status).toBe(202);
        accepted.push(res.body.id);
      });
    });
  });

  describe('request ids', () => {
    const requestLines = (id: string) => logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.reqId === id);

    test('every response carries one, fresh per request, also on errors; the log lines of the request carry it', async () => {
      const responses = [
        await request(app).get('/healthz'),
        await request(app).get('/v1/models'),
        await request(app).get('/no-such-route'),
        await request(app).post('/generate').send({ question: 'q', max_new_tokens: 0 }),
        await request(app).get('/admin/train'),
        await request(app).post('/evaluate').type('json').send('{"benchmark":'),
      ];
      expect(responses.map((r) => r.status)).toEqual([200, 200, 404, 400, 401, 400]);
      const ids = responses.map((r) => r.headers['x-request-id']);
      for (const id of ids) expect(id).toMatch(UUID);
      expect(new Set(ids).size).toBe(ids.length);
      // Probes are not logged; every other request has its access line, and a refused one its
      // rejection line too.
      expect(requestLines(ids[0])).toEqual([]);
      expect(requestLines(ids[1])).toEqual([expect.objectContaining({ msg: 'request', method: 'GET', route: '/v1/models', status: 200 })]);
      for (const [i, res] of responses.entries()) {
        if (i < 2) continue;
        const lines = requestLines(ids[i]);
        expect(lines).toContainEqual(expect.objectContaining({ msg: 'request', status: res.status }));
        expect(lines).toContainEqual(expect.objectContaining({ msg: 'request rejected', status: res.status, code: res.body.error.code }));
      }
    });

    test('a client id of safe characters is echoed and logged', async () => {
      const id = 'client-42.req:7_a';
      const res = await request(app).post('/generate').set('X-Request-Id', id).attach('image', vectorPng('56x56'), 'in.png').field('question', 'q').field('max_new_tokens', '2');
      expect(res.status).toBe(200);
      expect(res.headers['x-request-id']).toBe(id);
      expect(requestLines(id)).toContainEqual(expect.objectContaining({ msg: 'request', route: '/generate', status: 200 }));
    });

    test.each([
      ['too long', 'a'.repeat(129)],
      ['with spaces', 'a b'],
      ['with quotes and braces', '"}{"msg":"forged'],
      ['with a path', '../../etc/passwd'],
      ['with markup', '<script>alert(1)</script>'],
      ['with non-ASCII', 'id-\u00e9\u00e8'],
      ['empty', ''],
    ])('a client id %s is replaced by a fresh one, and never logged', async (_name, given) => {
      const res = await request(app).get('/no-such-route').set('X-Request-Id', given);
      const id = res.headers['x-request-id'];
      expect(id).toMatch(UUID);
      expect(requestLines(id)).toContainEqual(expect.objectContaining({ msg: 'request', status: 404 }));
      if (given.length > 3) expect(logs.some((l) => l.includes(JSON.stringify(given).slice(1, -1)))).toBe(false);
    });
  });

  describe('no image bytes and no tokens in logs', () => {
    test('images posted every way, good and bad, and bearer tokens of clients appear in no log line', async () => {
      hits.length = 0;
      const clientToken = 'sk-client-secret-0a9f33c1d2e4';
      const apiKey = 'api-key-secret-5b6c7d8e9f';
      const png = await noiseImage(64, 48, 7);
      const jpeg = await noiseImage(40, 40, 9, 'jpeg');
      const bad = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 251));
      const b64 = [png, jpeg, bad].map((b) => b.toString('base64'));
      const dataUrl = `data:image/png;base64,${b64[0]}`;
      const before = logs.length;
      const statuses = [
        (await request(app).post('/generate').set('Authorization', `Bearer ${clientToken}`).send({ question: 'q', image: b64[0], max_new_tokens: 2 })).status,
        (await request(app).post('/generate').attach('image', jpeg, 'in.jpg').field('question', 'q').field('max_new_tokens', '2')).status,
        (await request(app).post('/generate').send({ question: 'q', image: dataUrl, max_new_tokens: 2 })).status,
        (await request(app).post('/generate').send({ question: 'q', image: b64[2] })).status,
        (await request(app).post('/generate').attach('image', bad, 'in.png').field('question', 'q')).status,
        (await request(app).post('/generate').type('json').send(`{"question": "q", "image": "${b64[0]}"`)).status,
        (await request(app).post('/generate').send({ question: 'q', image: b64[0], max_new_tokens: 'many' })).status,
        (await request(app).post('/v1/chat/completions').set('Authorization', `Bearer ${clientToken}`).set('x-api-key', apiKey).send(chatWith(dataUrl))).status,
        (await request(app).post('/v1/chat/completions').send(chatWith(`data:image/png;base64,${b64[2]}`))).status,
        (await request(app).post('/v1/chat/completions').set('Authorization', `Bearer ${clientToken}`).send(chatWith(`http://127.0.0.1:${port}/x.png?img=${b64[1].slice(0, 200)}`))).status,
        (await request(app).post('/admin/train').set('Authorization', `Bearer ${clientToken}`).send({ steps: 1 })).status,
      ];
      expect(statuses).toEqual([200, 200, 200, 415, 415, 400, 400, 200, 415, 400, 401]);
      const text = logs.slice(before).join('');
      // The requests were logged...
      expect(logs.length - before).toBeGreaterThanOrEqual(statuses.length);
      // ...without any piece of the images (base64 windows from start, middle and end; hex too),
      // the URL carrying one, or the tokens.
      for (const [i, encoded] of b64.entries()) {
        for (const at of [0, Math.floor(encoded.length / 2), encoded.length - 48]) expect([i, at, text.includes(encoded.slice(at, at + 48))]).toEqual([i, at, false]);
        expect(text).not.toContain([png, jpeg, bad][i].subarray(0, 32).toString('hex'));
      }
      for (const secret of [clientToken, apiKey, TOKEN]) expect(text).not.toContain(secret);
      expect(hits).toEqual([]);
    });
  });
});
