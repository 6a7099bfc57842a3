// Remote models over HTTP (docs/remote-models.md): listed by /v1/models, served by /generate (whole
// and streamed) and /v1/chat/completions, errors in the documented envelope (504 remote_timeout,
// 502 remote_unreachable), traffic in /metrics per remote; and one service instance using another
// on loopback as its remote, giving the same text as the other serves itself.
import request from 'supertest';
import { closedPortUrl, FakeRemote, fakeRemote, streamReply } from '../helpers/fake_remote';
import { startTestService, TestService } from '../helpers/app';
import { noiseImage } from '../helpers/service';

const REPLY = 'left of the sphere</think>\n<answer>B</answer>';

describe('remote models over HTTP', () => {
  let fake: FakeRemote;
  let hang: FakeRemote;
  let service: TestService<undefined>;

  beforeAll(async () => {
    fake = await fakeRemote((_body, res) => streamReply(res, REPLY, { usage: { prompt_tokens: 30, completion_tokens: 8 } }));
    hang = await fakeRemote(() => undefined);
    const gone = await closedPortUrl();
    service = await startTestService({
      runs: false,
      env: { REMOTE_MODELS: `far=${fake.url}#remote-model,hang=${hang.url}#remote-model,gone=${gone}`, REMOTE_TIMEOUT_MS: '300' },
    });
  });
  afterAll(async () => {
    await service?.dispose();
    await fake?.close();
    await hang?.close();
  });

  test('/v1/models lists the remote models', async () => {
    const res = await request(service.app).get('/v1/models').expect(200);
    const far = res.body.data.find((m: { id: string }) => m.id === 'far');
    expect(far).toMatchObject({ id: 'far', object: 'model', owned_by: 'visualthinker', loaded: true, default: false, remote: true });
    expect(res.body.data.map((m: { id: string }) => m.id)).toEqual(expect.arrayContaining(['tiny-random', 'far', 'hang', 'gone']));
    // Every replica's in-flight gauge is there before its first request.
    const metrics = (await request(service.app).get('/metrics').expect(200)).text;
    expect(metrics).toMatch(/vlm_remote_in_flight\{model="gone",remote="http:\/\/127\.0\.0\.1:\d+\/v1"\} 0/);
  });

  test('/generate through a remote, whole and streamed', async () => {
    const image = await noiseImage(16, 16, 1);
    const res = await request(service.app)
      .post('/generate')
      .send({ model: 'far', question: 'Which is left?', image: image.toString('base64'), seed: 7, temperature: 0.5 })
      .expect(200);
    expect(res.body).toMatchObject({ model: 'far', template: 'r1', text: REPLY, think: 'left of the sphere', answer: 'B', format_ok: true, finish_reason: 'stop', usage: { prompt_tokens: 30, completion_tokens: 8 } });
    expect(fake.requests.at(-1)).toMatchObject({ seed: 7, temperature: 0.5 });

    const streamed = await request(service.app).post('/generate').send({ model: 'far', question: 'q', stream: true }).expect(200);
    expect(streamed.headers['content-type']).toMatch(/text\/event-stream/);
    const deltas = [...streamed.text.matchAll(/event: delta\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]).text).join('');
    expect(deltas).toBe(REPLY);
    expect(streamed.text).toMatch(/event: done\ndata: .*"answer":"B"/);
  });

  test('/v1/chat/completions through a remote', async () => {
    const res = await request(service.app)
      .post('/v1/chat/completions')
      .send({ model: 'far', messages: [{ role: 'user', content: 'Which is left?' }] })
      .expect(200);
    expect(res.body.choices[0].message).toEqual({ role: 'assistant', content: 'B', reasoning_content: 'left of the sphere' });
  });

  test('a hanging remote gives 504 remote_timeout and a refusing one 502 remote_unreachable, streamed or not', async () => {
    const started = Date.now();
    const timedOut = await request(service.app).post('/generate').send({ model: 'hang', question: 'q' }).expect(504);
    expect(timedOut.body.error).toEqual({ code: 'remote_timeout', message: expect.stringMatching(/model "hang" replica 1\/1: no answer for 300 ms/) });
    await request(service.app).post('/generate').send({ model: 'hang', question: 'q', stream: true }).expect(504);
    expect(Date.now() - started).toBeLessThan(5000);
    const refused = await request(service.app).post('/v1/chat/completions').send({ model: 'gone', messages: [{ role: 'user', content: 'q' }] }).expect(502);
    expect(refused.body.error).toEqual({ code: 'remote_unreachable', message: expect.stringMatching(/model "gone" replica 1\/1: cannot reach the remote/) });
    // The message names the replica, not its address.
    expect(refused.body.error.message).not.toMatch(/127\.0\.0\.1/);
  });

  test('/metrics counts remote traffic per remote', async () => {
    await request(service.app).post('/generate').send({ model: 'far', question: 'q' }).expect(200);
    const text = (await request(service.app).get('/metrics').expect(200)).text;
    const label = `model="far",remote="${fake.url}"`;
    expect(text).toMatch(new RegExp(`vlm_remote_requests_total\\{${escape(label)}\\} [1-9]`));
    expect(text).toMatch(new RegExp(`vlm_remote_request_duration_seconds_count\\{${escape(label)}\\} [1-9]`));
    expect(text).toMatch(new RegExp(`vlm_remote_in_flight\\{${escape(label)}\\} 0`));
    expect(text).toMatch(/vlm_remote_errors_total\{model="hang",remote="[^"]+",code="remote_timeout"\} [1-9]/);
    expect(text).toMatch(/vlm_remote_errors_total\{model="gone",remote="[^"]+",code="remote_unreachable"\} [1-9]/);
  });

  test('a request cannot make the service call another address', async () => {
    // Model names select configured remotes only; an address in their place is an unknown model.
    const res = await request(service.app).post('/generate').send({ model: 'http://127.0.0.1:1/v1', question: 'q' });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('model_not_found');
  });
});

describe('one service instance as the remote of another', () => {
  let backend: TestService<undefined>;
  let front: TestService<undefined>;
  beforeAll(async () => {
    backend = await startTestService({ runs: false, listen: true, env: { MAX_NEW_TOKENS: '8' } });
    front = await startTestService({ runs: false, env: { REMOTE_MODELS: `far=${backend.base}/v1#tiny-random` } });
  });
  afterAll(async () => {
    await front?.dispose();
    await backend?.dispose();
  });

  test('the start-up check finds the model and the API', async () => {
    expect(await front.engine.checkRemotes(5000)).toEqual([]);
    expect(front.engine.remoteModels()[0].replicas[0].api).toBe('visualthinker');
  });

  test.each(['r1', 'direct', 'raw'])('template %s gives the text the backend gives itself', async (template) => {
    const image = (await noiseImage(28, 28, 5)).toString('base64');
    const body = { question: 'Which shape is larger?', template, image, max_new_tokens: 6 };
    const direct = await request(backend.app).post('/generate').send({ ...body, model: 'tiny-random' }).expect(200);
    const remote = await request(front.app).post('/generate').send({ ...body, model: 'far' }).expect(200);
    expect(remote.body).toMatchObject({
      model: 'far',
      template,
      text: direct.body.text,
      think: direct.body.think,
      answer: direct.body.answer,
      format_ok: direct.body.format_ok,
      finish_reason: direct.body.finish_reason,
      usage: direct.body.usage,
    });
  });

  test('the backend refusing the input comes back as 502 remote_error naming the model', async () => {
    // The backend allows 8 new tokens, the front 64: the backend's 400 is the remote's error.
    const res = await request(front.app).post('/generate').send({ model: 'far', question: 'q', max_new_tokens: 20 }).expect(502);
    expect(res.body.error.code).toBe('remote_error');
    expect(res.body.error.message).toMatch(/model "far" replica 1\/1: the remote answered 400: max_new_tokens/);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
