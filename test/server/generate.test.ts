// HTTP contract of /generate, the probes, /v1/models and /metrics (docs/api.md), and every bad-input
// case: each answers a documented 4xx in the error envelope and the process keeps serving.
import request from 'supertest';
import sharp from 'sharp';
import { createApp } from '../../src/server/app';
import { Engine } from '../../src/engine/engine';
import { engineFor, noiseImage, testConfig, vectorPng } from '../helpers/service';

const config = testConfig({ MAX_IMAGE_BYTES: String(300 * 1024), MAX_QUEUE: '4' });

function expectEnvelope(res: request.Response, status: number, code?: string) {
  expect(res.status).toBe(status);
  expect(res.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
  if (code) expect(res.body.error.code).toBe(code);
}

function parseSse(text: string): { event: string; data: unknown }[] {
  return text
    .split('\n\n')
    .filter((block) => block.trim() && !block.startsWith(':'))
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = /^data: (.*)$/m.exec(block)?.[1] ?? '';
      return { event, data: data === '[DONE]' ? data : JSON.parse(data) };
    });
}

describe('service HTTP API', () => {
  let engine: Engine;
  let app: ReturnType<typeof createApp>['app'];
  const state = { draining: false, warmed: false };

  beforeAll(async () => {
    engine = engineFor(config);
    ({ app } = createApp({ config, engine, state }));
  });
  afterAll(() => engine.dispose());

  describe('probes', () => {
    test('/healthz answers while the process lives; /readyz waits for the warmed model', async () => {
      await request(app).get('/healthz').expect(200, { status: 'ok' });
      expect((await request(app).get('/readyz')).status).toBe(503);
      await engine.warmup();
      state.warmed = true;
      const ready = await request(app).get('/readyz').expect(200);
      expect(ready.body).toEqual({ status: 'ready', model: 'tiny-random' });
      state.draining = true;
      await request(app).get('/readyz').expect(503, { status: 'draining' });
      state.draining = false;
    });

    test('/v1/models lists every model folder by name', async () => {
      const res = await request(app).get('/v1/models').expect(200);
      expect(res.body.object).toBe('list');
      expect(res.body.data).toContainEqual(expect.objectContaining({ id: 'tiny-random', object: 'model', default: true }));
    });
  });

  describe('POST /generate', () => {
    test('multipart: image file and question, answered in the documented shape', async () => {
      const res = await request(app)
        .post('/generate')
        .attach('image', vectorPng('100x150-resized'), 'scene.png')
        .field('question', 'How many red objects are there?')
        .field('max_new_tokens', '5')
        .expect(200);
      expect(res.body).toEqual({
        id: expect.stringMatching(/^gen_/),
        model: 'tiny-random',
        template: 'r1',
        text: expect.any(String),
        think: expect.anything(),
        answer: null,
        format_ok: false,
        finish_reason: 'length',
        usage: { prompt_tokens: expect.any(Number), completion_tokens: 5, image_tokens: 20 },
        timings: { queue_ms: expect.any(Number), prefill_ms: expect.any(Number), decode_ms: expect.any(Number), total_ms: expect.any(Number) },
      });
    });

    test('JSON with a base64 image or a data: URL gives the same greedy answer as multipart', async () => {
      const png = vectorPng('56x56');
      const multipart = await request(app).post('/generate').attach('image', png, 'a.png').field('question', 'Count.').field('max_new_tokens', '6');
      const base64 = await request(app).post('/generate').send({ question: 'Count.', image: png.toString('base64'), max_new_tokens: 6 });
      const dataUrl = await request(app).post('/generate').send({ question: 'Count.', image: `data:image/png;base64,${png.toString('base64')}`, max_new_tokens: 6 });
      expect(base64.status).toBe(200);
      expect(base64.body.text).toBe(multipart.body.text);
      expect(dataUrl.body.text).toBe(multipart.body.text);
    });

    test('templates direct, instruct and raw are accepted; the prompt differs', async () => {
      const texts = new Set<number>();
      for (const template of ['r1', 'direct', 'instruct', 'raw']) {
        const res = await request(app).post('/generate').send({ question: 'Which is closer?', template, max_new_tokens: 2 }).expect(200);
        expect(res.body.template).toBe(template);
        texts.add(res.body.usage.prompt_tokens);
      }
      expect(texts.size).toBe(4);
    });

    test('stream=true sends token deltas, then a final event with the whole result', async () => {
      const res = await request(app).post('/generate').send({ question: 'Stream please', max_new_tokens: 6, stream: true }).expect(200);
      expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
      const events = parseSse(res.text);
      const deltas = events.filter((e) => e.event === 'delta').map((e) => (e.data as { text: string }).text);
      const done = events.find((e) => e.event === 'done')!.data as { text: string; finish_reason: string };
      expect(events.at(-1)!.event).toBe('done');
      expect(deltas.join('')).toBe(done.text);
      expect(done.finish_reason).toBe('length');
    });

    test('seeded sampling through HTTP is reproducible', async () => {
      const body = { question: 'Say something', max_new_tokens: 12, temperature: 1.2, top_p: 0.95, top_k: 50, seed: 3 };
      const a = await request(app).post('/generate').send(body).expect(200);
      const b = await request(app).post('/generate').send(body).expect(200);
      expect(a.body.text).toBe(b.body.text);
    });

    describe('bad input is a 4xx in the envelope, never a crash', () => {
      const cases: [string, () => request.Test, number, string | null][] = [
        ['missing question', () => request(app).post('/generate').send({ max_new_tokens: 3 }), 400, 'invalid_request'],
        ['empty question', () => request(app).post('/generate').send({ question: '   ' }), 400, 'invalid_request'],
        ['unknown field', () => request(app).post('/generate').send({ question: 'q', temprature: 1 }), 400, 'invalid_request'],
        ['unknown template', () => request(app).post('/generate').send({ question: 'q', template: 'chatml' }), 400, 'invalid_request'],
        ['max_new_tokens 0', () => request(app).post('/generate').send({ question: 'q', max_new_tokens: 0 }), 400, null],
        ['max_new_tokens over the cap', () => request(app).post('/generate').send({ question: 'q', max_new_tokens: 100000 }), 400, null],
        ['negative temperature', () => request(app).post('/generate').send({ question: 'q', temperature: -1 }), 400, null],
        ['top_p 0', () => request(app).post('/generate').send({ question: 'q', top_p: 0 }), 400, null],
        ['fractional top_k', () => request(app).post('/generate').send({ question: 'q', top_k: 1.5 }), 400, null],
        ['multipart number that is not one', () => request(app).post('/generate').field('question', 'q').field('max_new_tokens', 'many'), 400, null],
        ['invalid JSON', () => request(app).post('/generate').set('content-type', 'application/json').send('{"question": '), 400, 'invalid_json'],
        ['text/plain body', () => request(app).post('/generate').set('content-type', 'text/plain').send('question=q'), 415, 'unsupported_content_type'],
        ['image not base64', () => request(app).post('/generate').send({ question: 'q', image: '%%%not base64%%%' }), 400, 'invalid_image_encoding'],
        ['data URL of another type', () => request(app).post('/generate').send({ question: 'q', image: 'data:image/gif;base64,R0lGODlhAQABAAAAACw=' }), 415, null],
        ['bytes that are no image', () => request(app).post('/generate').attach('image', Buffer.from('hello world, not an image at all'), 'x.png').field('question', 'q'), 415, 'unsupported_image_type'],
        ['empty file', () => request(app).post('/generate').attach('image', Buffer.alloc(0), 'x.png').field('question', 'q'), 422, null],
        ['truncated PNG', () => request(app).post('/generate').attach('image', vectorPng('224x224').subarray(0, 2000), 'x.png').field('question', 'q'), 422, 'invalid_image'],
        ['two image files', () => request(app).post('/generate').attach('image', vectorPng('56x56'), 'a.png').attach('image', vectorPng('56x56'), 'b.png').field('question', 'q'), 400, null],
        ['file in an unknown field', () => request(app).post('/generate').attach('picture', vectorPng('56x56'), 'a.png').field('question', 'q'), 400, 'unexpected_file'],
        ['unknown model', () => request(app).post('/generate').send({ question: 'q', model: 'no-such-model' }), 404, 'model_not_found'],
        ['unknown route', () => request(app).get('/nope'), 404, 'not_found'],
      ];
      test.each(cases)('%s', async (_name, send, status, code) => {
        expectEnvelope(await send(), status, code ?? undefined);
      });

      test('GIF and TIFF files are refused as unsupported media', async () => {
        for (const format of ['gif', 'tiff'] as const) {
          const res = await request(app).post('/generate').attach('image', await noiseImage(60, 60, 1, format), 'x').field('question', 'q');
          expectEnvelope(res, 415, 'unsupported_image_type');
        }
      });

      test('an aspect ratio over 200 is refused as unprocessable', async () => {
        const thin = await sharp({ create: { width: 600, height: 2, channels: 3, background: '#808080' } }).png().toBuffer();
        expectEnvelope(await request(app).post('/generate').attach('image', thin, 'x.png').field('question', 'q'), 422, 'image_aspect_ratio');
      });

      test('a file over MAX_IMAGE_BYTES is 413', async () => {
        const big = await noiseImage(400, 400, 9); // ~480 KB of noise > 300 KB limit
        expect(big.length).toBeGreaterThan(300 * 1024);
        expectEnvelope(await request(app).post('/generate').attach('image', big, 'x.png').field('question', 'q'), 413, 'image_too_large');
        expectEnvelope(await request(app).post('/generate').send({ question: 'q', image: big.toString('base64') }), 413, 'image_too_large');
      });

      test('a decompression bomb (small file, huge declared size) is refused before decoding', async () => {
        const bomb = await sharp({ create: { width: 4000, height: 4000, channels: 3, background: '#000000' } }).png({ compressionLevel: 9 }).toBuffer();
        expect(bomb.length).toBeLessThan(300 * 1024);
        expectEnvelope(await request(app).post('/generate').attach('image', bomb, 'x.png').field('question', 'q'), 413, 'image_too_many_pixels');
      });

      test('after all of that the service still answers', async () => {
        await request(app).post('/generate').send({ question: 'still alive?', max_new_tokens: 2 }).expect(200);
      });
    });
  });

  test('/metrics exposes the documented metric names', async () => {
    const res = await request(app).get('/metrics').expect(200);
    for (const name of [
      'vlm_requests_total', 'vlm_request_duration_seconds', 'vlm_time_to_first_token_seconds', 'vlm_time_per_output_token_seconds',
      'vlm_prompt_tokens_total', 'vlm_generation_tokens_total', 'vlm_requests_running', 'vlm_requests_waiting', 'vlm_batch_size',
      'process_cpu_user_seconds_total', 'nodejs_heap_size_used_bytes',
    ]) {
      expect(res.text).toContain(`# TYPE ${name}`);
    }
    expect(res.text).toMatch(/vlm_requests_total\{route="\/generate",status="200"\} \d+/);
    expect(res.text).toMatch(/vlm_requests_total\{route="\/generate",status="415"\} \d+/);
    // Each step's time is split into the worker's runs and what the round trip added to them.
    for (const phase of ['prefill', 'decode', 'overhead']) {
      expect(res.text).toMatch(new RegExp(`vlm_step_seconds_count\\{model="[^"]+",phase="${phase}"\\} [1-9]`));
    }
    expect(res.text).toMatch(/vlm_prompt_prefills_total\{model="[^"]+",source="computed"\} [1-9]/);
  });
});

describe('overload', () => {
  test('a full queue answers 429 with Retry-After, never a hang', async () => {
    const small = testConfig({ MAX_BATCH_SIZE: '1', MAX_QUEUE: '1' });
    const engine = engineFor(small);
    const { app } = createApp({ config: small, engine, state: { draining: false, warmed: true } });
    try {
      await engine.warmup();
      const responses = await Promise.all(
        Array.from({ length: 6 }, () => request(app).post('/generate').send({ question: 'busy', max_new_tokens: 40 })),
      );
      const refused = responses.filter((r) => r.status === 429);
      expect(refused.length).toBeGreaterThan(0);
      for (const r of refused) {
        expect(Number(r.headers['retry-after'])).toBeGreaterThanOrEqual(1);
        expect(r.body.error.code).toBe('queue_full');
      }
      expect(responses.every((r) => r.status === 200 || r.status === 429)).toBe(true);
    } finally {
      await engine.dispose();
    }
  });
});
