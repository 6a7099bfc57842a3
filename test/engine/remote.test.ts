// Remote models (REMOTE_MODELS, docs/remote-models.md) through the engine, against fake
// OpenAI-compatible servers on loopback: the configuration's parsing, the request's shape (the
// template's prompt as a per-request chat template, the image as a data URL), the reply parsed as
// local output, least-outstanding spreading under the in-flight bound, timeouts and refusals,
// failover of whole-result requests, the start-up check, and evaluation through replicas.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EvalRuns } from '../../src/benchmarks/runs';
import { splitLoader } from '../../src/benchmarks/splits';
import { RunStore } from '../../src/benchmarks/store';
import { loadConfig } from '../../src/config';
import { Engine, EngineOptions, GenerateEvent, GenerateRequest } from '../../src/engine/engine';
import { EngineError } from '../../src/engine/errors';
import { INSTRUCT_SUFFIX, renderPrompt } from '../../src/engine/prompts';
import { parseCompletion } from '../../src/engine/rewards';
import { parseRemoteModels } from '../../src/engine/remote/config';
import { PROMPT_CHAT_TEMPLATE } from '../../src/engine/remote/remote_model';
import { openDatabase } from '../../src/storage/database';
import { closedPortUrl, FakeRemote, fakeRemote, streamReply } from '../helpers/fake_remote';
import { noiseImage, testEngine } from '../helpers/service';

const REPLY = 'the cube is left of the sphere</think>\n<answer>B</answer>';

function remoteEngine(models: string, overrides: Partial<EngineOptions> = {}): Engine {
  return testEngine({ remoteModels: parseRemoteModels(models), remote: { maxInFlight: 4, timeoutMs: 2000 }, ...overrides });
}

async function failure(promise: Promise<unknown>): Promise<EngineError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof EngineError) return error;
    throw error;
  }
  throw new Error('expected the request to fail');
}

describe('REMOTE_MODELS parsing', () => {
  test('entries, replicas and remote ids', () => {
    expect(parseRemoteModels('')).toEqual([]);
    expect(parseRemoteModels(' a=http://h:8000/v1/ , b=http://x/v1#Qwen/Qwen2-VL-2B|https://y:9/v1')).toEqual([
      { name: 'a', replicas: [{ url: 'http://h:8000/v1', remoteId: 'a' }] },
      {
        name: 'b',
        replicas: [
          { url: 'http://x/v1', remoteId: 'Qwen/Qwen2-VL-2B' },
          { url: 'https://y:9/v1', remoteId: 'b' },
        ],
      },
    ]);
  });

  test.each([
    ['a', /"a" is not name=URL/],
    ['a=not a url', /model "a": "not a url" is not a URL/],
    ['a=ftp://h/v1', /not an http or https URL/],
    ['a=http://u:p@h/v1', /holds credentials/],
    ['a=http://h/v1?x=1', /query string/],
    ['a=http://h/v1#', /empty remote id/],
    ['a=http://h/v1||http://g/v1', /empty URL/],
    ['a=http://h/v1,a=http://g/v1', /named twice/],
    ['bad name=http://h/v1', /"bad name" is not a model name/],
  ])('%s is refused with a message naming it', (value, message) => {
    expect(() => parseRemoteModels(value)).toThrow(message);
    expect(() => loadConfig({ REMOTE_MODELS: value })).toThrow(/invalid configuration: REMOTE_MODELS/);
  });

  test('a remote model may not take a local model folder name', () => {
    expect(() => remoteEngine('tiny-random=http://127.0.0.1:1/v1')).toThrow(/"tiny-random" is also the local model folder/);
  });
});

describe('remote models through the engine', () => {
  const remotes: FakeRemote[] = [];
  const engines: Engine[] = [];
  const remote = async (...args: Parameters<typeof fakeRemote>) => {
    const r = await fakeRemote(...args);
    remotes.push(r);
    return r;
  };
  const engineFor = (models: string, overrides: Partial<EngineOptions> = {}) => {
    const e = remoteEngine(models, overrides);
    engines.push(e);
    return e;
  };
  afterEach(async () => {
    await Promise.all(engines.splice(0).map((e) => e.dispose()));
    await Promise.all(remotes.splice(0).map((r) => r.close()));
  });

  test('the remote sees the template prompt as a per-request chat template and the image as a data URL; the reply is parsed as local output', async () => {
    const fake = await remote((_body, res) => streamReply(res, REPLY, { usage: { prompt_tokens: 40, completion_tokens: 9 } }));
    const engine = engineFor(`far=${fake.url}#remote-model`);
    expect(engine.listModels().find((m) => m.name === 'far')).toEqual({ name: 'far', dir: '', loaded: true, remote: true });
    const image = await noiseImage(32, 24, 3);
    const result = await engine.generateText({
      model: 'far',
      prompt: { template: 'r1', question: 'Which is left?' },
      images: [image],
      maxNewTokens: 50,
      sampling: { temperature: 0.7, topP: 0.9, topK: 20, repetitionPenalty: 1, seed: 42 },
    });
    expect(fake.requests).toHaveLength(1);
    const body = fake.requests[0];
    expect(body).toMatchObject({
      model: 'remote-model',
      max_tokens: 50,
      stream: true,
      temperature: 0.7,
      top_p: 0.9,
      top_k: 20,
      seed: 42,
      chat_template: PROMPT_CHAT_TEMPLATE,
      chat_template_kwargs: { visualthinker_prompt: renderPrompt('r1', 'Which is left?', true) },
    });
    expect(body.chat_template_kwargs.visualthinker_prompt).toContain('<|vision_start|><|image_pad|><|vision_end|><image>');
    expect(body.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'image_url', image_url: { url: `data:image/png;base64,${image.toString('base64')}` } },
          { type: 'text', text: 'Which is left?' },
        ],
      },
    ]);
    expect(result).toMatchObject({
      model: 'far',
      template: 'r1',
      text: REPLY,
      think: 'the cube is left of the sphere',
      answer: 'B',
      formatOk: true,
      finishReason: 'stop',
      usage: { promptTokens: 40, completionTokens: 9 },
    });
  });

  test('instruct and chat use the remote chat template; streaming yields the remote deltas in order', async () => {
    const fake = await remote((_body, res) => streamReply(res, '<think>a</think><answer>x</answer>', { pieces: 4, finish: 'length' }));
    const engine = engineFor(`far=${fake.url}#remote-model`);
    await engine.generateText({ model: 'far', prompt: { template: 'instruct', question: 'Q?' }, images: [] });
    expect(fake.requests[0].chat_template).toBeUndefined();
    expect(fake.requests[0].messages).toEqual([{ role: 'user', content: [{ type: 'text', text: `Q? ${INSTRUCT_SUFFIX}` }] }]);

    const events: GenerateEvent[] = [];
    for await (const event of engine.generate({ model: 'far', prompt: { template: 'chat', messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: [{ type: 'text', text: 'Hi' }] }] }, images: [] })) {
      events.push(event);
    }
    expect(fake.requests[1].chat_template).toBeUndefined();
    expect(fake.requests[1].messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi' }] },
    ]);
    const deltas = events.filter((e) => e.type === 'delta').map((e) => (e as { text: string }).text);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('<think>a</think><answer>x</answer>');
    const done = events.at(-1)!;
    expect(done.type === 'done' && done.result).toMatchObject({ template: 'chat', ...parseCompletion('<think>a</think><answer>x</answer>', false), finishReason: 'length' });
  });

  test('bad input gets the local 4xx before any remote call', async () => {
    const fake = await remote((_body, res) => streamReply(res, REPLY));
    const engine = engineFor(`far=${fake.url}`);
    const notImage = Buffer.from('hello, not an image');
    expect(await failure(engine.generateText({ model: 'far', prompt: { template: 'r1', question: 'q' }, images: [notImage] }))).toMatchObject({ kind: 'unsupported_media' });
    expect(await failure(engine.generateText({ model: 'far', prompt: { template: 'r1', question: 'q' }, images: [], maxNewTokens: 65 }))).toMatchObject({ kind: 'invalid_input' });
    expect(fake.requests).toHaveLength(0);
  });

  test('more than one image with a question template is too_many_images, as with a local model, before any remote call', async () => {
    const fake = await remote((_body, res) => streamReply(res, REPLY));
    const engine = engineFor(`far=${fake.url}`);
    const image = await noiseImage(32, 24, 3);
    const request: GenerateRequest = { model: 'far', prompt: { template: 'r1', question: 'q' }, images: [image, image] };
    const expected = { kind: 'invalid_input', code: 'too_many_images', message: 'template r1 takes at most one image' };
    expect(await failure(engine.generateText(request))).toMatchObject(expected);
    expect(await failure(engine.generate(request).next())).toMatchObject(expected);
    expect(fake.requests).toHaveLength(0);
  });

  test('load asks the replicas whether they serve the model, without a chat request; none answering, or one serving other models, is 502', async () => {
    const fake = await remote((_body, res) => streamReply(res, REPLY), { models: ['Qwen/Qwen2-VL-2B'] });
    const refused = await closedPortUrl();
    const engine = engineFor(`far=${fake.url}#Qwen/Qwen2-VL-2B|${refused}#Qwen/Qwen2-VL-2B,gone=${refused},wrong=${fake.url}#other-id`);
    expect(await engine.load('far')).toEqual({ name: 'far', dir: '', loaded: true, remote: true });
    expect(fake.requests).toHaveLength(0);
    expect(await failure(engine.load('gone', 2000))).toMatchObject({ kind: 'remote_unavailable', code: 'remote_unreachable', message: expect.stringMatching(/^model "gone" replica 1 \(http:\/\/127\.0\.0\.1:\d+\/v1\): GET .* failed: ECONNREFUSED$/) });
    expect(await failure(engine.load('wrong', 2000))).toMatchObject({ kind: 'remote_unavailable', code: 'remote_error', message: expect.stringContaining('does not serve a model "other-id"') });
  });

  test('requests spread by least outstanding requests, never more than the in-flight bound per replica', async () => {
    const held: (() => void)[] = [];
    const handler = (_body: unknown, res: import('node:http').ServerResponse) => {
      held.push(() => streamReply(res, REPLY));
    };
    const a = await remote(handler);
    const b = await remote(handler);
    const engine = engineFor(`far=${a.url}#remote-model|${b.url}#remote-model`, { remote: { maxInFlight: 2, timeoutMs: 5000 } });
    const far = engine.remoteModels()[0];
    const request = () => engine.generateText({ model: 'far', prompt: { template: 'direct', question: 'q' }, images: [] });
    const pending = Array.from({ length: 6 }, request);
    await waitFor(() => held.length === 4);
    // Two on each replica; the other two wait for a slot.
    expect([a.inFlight, b.inFlight]).toEqual([2, 2]);
    expect(far.outstanding).toBe(6);
    // As held replies finish, the waiting requests take the freed slots.
    while (far.outstanding > 0) {
      if (held.length) held.shift()!();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const results = await Promise.all(pending);
    expect(results.every((r) => r.answer === 'B')).toBe(true);
    expect(a.peakInFlight).toBe(2);
    expect(b.peakInFlight).toBe(2);
    expect(a.requests.length + b.requests.length).toBe(6);
    expect(far.outstanding).toBe(0);

    // Idle replicas with unequal loads: a new request goes to the less loaded one.
    const slow: (() => void)[] = [];
    const c = await remote((_body, res) => void slow.push(() => streamReply(res, REPLY)));
    const d = await remote((_body, res) => void slow.push(() => streamReply(res, REPLY)));
    const engine2 = engineFor(`far=${c.url}#remote-model|${d.url}#remote-model`, { remote: { maxInFlight: 8, timeoutMs: 5000 } });
    const go = () => engine2.generateText({ model: 'far', prompt: { template: 'direct', question: 'q' }, images: [] });
    const three = [go(), go(), go()];
    await waitFor(() => slow.length === 3);
    expect(new Set([c.inFlight, d.inFlight])).toEqual(new Set([1, 2]));
    const fourth = go();
    await waitFor(() => slow.length === 4);
    expect([c.inFlight, d.inFlight]).toEqual([2, 2]);
    while (slow.length) slow.shift()!();
    await Promise.all([...three, fourth]);
  });

  test('a remote that hangs gives remote_timeout (504) and one that refuses gives remote_unreachable (502), without retries left', async () => {
    const hang = await remote(() => undefined);
    const refused = await closedPortUrl();
    const engine = engineFor(`hang=${hang.url}#remote-model,gone=${refused}`, { remote: { maxInFlight: 2, timeoutMs: 300 } });
    const started = Date.now();
    const timedOut = await failure(engine.generateText({ model: 'hang', prompt: { template: 'r1', question: 'q' }, images: [] }));
    expect(timedOut).toMatchObject({ kind: 'remote_timeout', code: 'remote_timeout' });
    expect(timedOut.message).toMatch(/model "hang" replica 1\/1: no answer for 300 ms/);
    expect(Date.now() - started).toBeLessThan(3000);
    await waitFor(() => hang.inFlight === 0);
    expect(await failure(engine.generateText({ model: 'gone', prompt: { template: 'r1', question: 'q' }, images: [] }))).toMatchObject({ kind: 'remote_unavailable', code: 'remote_unreachable' });
    expect(engine.remoteModels().every((m) => m.outstanding === 0)).toBe(true);
  });

  test('an error status, a broken stream and an aborted request', async () => {
    const fake = await remote((body, res) => {
      if (body.messages[0].content.at(-1).text === 'status') {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: 'This model context length is 32 tokens' } }));
      } else if (body.messages[0].content.at(-1).text === 'broken') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: 'half' } }] })}\n\n`);
        setTimeout(() => res.destroy(), 20);
      } // else: hangs until the client goes away
    });
    const engine = engineFor(`far=${fake.url}#remote-model`);
    const ask = (question: string, signal?: AbortSignal) => engine.generateText({ model: 'far', prompt: { template: 'raw', question }, images: [], signal });
    const status = await failure(ask('status'));
    expect(status).toMatchObject({ kind: 'remote_unavailable', code: 'remote_error' });
    expect(status.message).toMatch(/answered 400: This model context length is 32 tokens/);
    expect(await failure(ask('broken'))).toMatchObject({ kind: 'remote_unavailable', code: 'remote_disconnected' });
    const abort = new AbortController();
    const pending = failure(ask('wait', abort.signal));
    await waitFor(() => fake.inFlight === 1);
    abort.abort();
    expect(await pending).toMatchObject({ kind: 'cancelled' });
    // The remote's connection is closed too.
    await waitFor(() => fake.inFlight === 0);
  });

  test('a whole-result request that fails on one replica is answered by another', async () => {
    const bad = await remote((_body, res) => {
      res.writeHead(500);
      res.end('{"error":{"message":"CUDA out of memory"}}');
    });
    const good = await remote((_body, res) => streamReply(res, REPLY));
    const engine = engineFor(`far=${bad.url}#remote-model|${good.url}#remote-model`);
    for (let i = 0; i < 4; i++) {
      const result = await engine.generateText({ model: 'far', prompt: { template: 'r1', question: `q${i}` }, images: [] });
      expect(result.answer).toBe('B');
    }
    expect(good.requests).toHaveLength(4);
    expect(bad.requests.length).toBeGreaterThan(0);
  });

  test('the start-up check: a replica serving another id is a configuration error, an unreachable one a warning', async () => {
    const fake = await remote((_body, res) => streamReply(res, REPLY), { models: ['Qwen/Qwen2-VL-2B'] });
    const refused = await closedPortUrl();
    const wrong = engineFor(`far=${fake.url}#other-id`);
    await expect(wrong.checkRemotes(2000)).rejects.toThrow(/invalid configuration: REMOTE_MODELS: model "far" replica 1 \(http:\/\/127\.0\.0\.1:\d+\/v1\): .* does not serve a model "other-id" \(it serves: Qwen\/Qwen2-VL-2B\); name the remote's id with URL#id/);
    const partly = engineFor(`far=${fake.url}#Qwen/Qwen2-VL-2B|${refused}#Qwen/Qwen2-VL-2B`);
    const warnings = await partly.checkRemotes(2000);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^REMOTE_MODELS: model "far" replica 2 \(http:\/\/127\.0\.0\.1:\d+\/v1\): GET .* failed: ECONNREFUSED; requests to it fail with 502 until it answers$/);
  });

  test('evaluation through remote replicas scores every item exactly once, retrying failed requests on another replica', async () => {
    let calls = 0;
    const flaky = await remote((_body, res) => {
      // Every other request fails: refused mid-way (a dropped connection) or with a 503.
      calls += 1;
      if (calls % 2 === 0) res.destroy();
      else {
        res.writeHead(503);
        res.end('{"error":{"message":"overloaded"}}');
      }
    });
    const steady = await remote((body, res) => streamReply(res, `thinking about ${body.chat_template_kwargs.visualthinker_prompt.length}</think><answer>A</answer>`));
    const engine = engineFor(`far=${flaky.url}#remote-model|${steady.url}#remote-model`);
    const dir = mkdtempSync(join(tmpdir(), 'remote-runs-'));
    const db = openDatabase(join(dir, 'state'));
    try {
      const runs = new EvalRuns(new RunStore(db), engine, splitLoader(join(dir, 'data')), { concurrency: 4 });
      const created = await runs.create({ benchmark: 'spatial-synth', limit: 12, template: 'r1', strategy: 'r1', maxNewTokens: 16, model: 'far' });
      const run = await runs.wait(created.id);
      expect(run).toMatchObject({ status: 'succeeded', progress: { done: 12, total: 12 } });
      const rows = [...runs.predictions(created.id)];
      expect(rows).toHaveLength(12);
      expect(new Set(rows.map((r) => r.item_id)).size).toBe(12);
      expect(rows.every((r) => r.prediction.endsWith('<answer>A</answer>'))).toBe(true);
      expect(steady.requests).toHaveLength(12);
      expect(flaky.requests.length).toBeGreaterThan(0);
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
