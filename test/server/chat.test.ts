// POST /v1/chat/completions: OpenAI-compatible shapes, streaming chunks, reasoning split, and the
// refusal of remote image URLs that no allow-list permits.
import request from 'supertest';
import { createApp } from '../../src/server/app';
import { Engine } from '../../src/engine/engine';
import { ReasoningSplitter } from '../../src/server/reasoning';
import { engineFor, testConfig, vectorPng } from '../helpers/service';

const config = testConfig();

describe('POST /v1/chat/completions', () => {
  let engine: Engine;
  let app: ReturnType<typeof createApp>['app'];
  const dataUrl = `data:image/png;base64,${vectorPng('56x56').toString('base64')}`;

  beforeAll(() => {
    engine = engineFor(config);
    ({ app } = createApp({ config, engine, state: { draining: false, warmed: true } }));
  });
  afterAll(() => engine.dispose());

  const userTurn = (text: string, withImage = true) => ({
    role: 'user',
    content: [...(withImage ? [{ type: 'image_url', image_url: { url: dataUrl } }] : []), { type: 'text', text }],
  });

  test('answers in the chat.completion shape with reasoning_content', async () => {
    const res = await request(app).post('/v1/chat/completions').send({ messages: [userTurn('How many objects?')], max_tokens: 6 }).expect(200);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^chatcmpl-/),
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'tiny-random',
      choices: [{ index: 0, message: { role: 'assistant', content: expect.any(String), reasoning_content: expect.any(String) }, finish_reason: 'length' }],
      usage: { prompt_tokens: expect.any(Number), completion_tokens: 6, total_tokens: expect.any(Number) },
    });
    // The r1 prompt opens <think>: an unfinished completion is all reasoning.
    expect(res.body.choices[0].message.content).toBe('');
  });

  test('the r1 chat prompt is the /generate prompt of the last user turn', async () => {
    const chat = await request(app).post('/v1/chat/completions').send({ messages: [{ role: 'system', content: 'ignored' }, userTurn('Which is closer?')], max_tokens: 6 });
    const generate = await request(app).post('/generate').send({ question: 'Which is closer?', image: dataUrl, max_new_tokens: 6 });
    expect(chat.body.usage.prompt_tokens).toBe(generate.body.usage.prompt_tokens);
    expect(chat.body.choices[0].message.reasoning_content).toBe(generate.body.think);
  });

  test('template chat renders a multi-turn conversation with the model chat template', async () => {
    const res = await request(app)
      .post('/v1/chat/completions')
      .send({ template: 'chat', messages: [userTurn('Hi'), { role: 'assistant', content: 'Hello.' }, userTurn('And now?', false)], max_tokens: 4 })
      .expect(200);
    expect(res.body.choices[0].message.reasoning_content).toBeNull();
    expect(res.body.choices[0].message.content.length).toBeGreaterThan(0);
  });

  test('stream=true sends chat.completion.chunk events and [DONE]', async () => {
    const res = await request(app)
      .post('/v1/chat/completions')
      .send({ messages: [userTurn('Stream it')], max_tokens: 5, stream: true, stream_options: { include_usage: true } })
      .expect(200);
    const events = res.text.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    for (const c of chunks) expect(c.object).toBe('chat.completion.chunk');
    const finish = chunks.find((c) => c.choices[0]?.finish_reason);
    expect(finish.choices[0].finish_reason).toBe('length');
    expect(chunks.at(-1).usage.completion_tokens).toBe(5);
    const reasoning = chunks.map((c) => c.choices[0]?.delta?.reasoning_content ?? '').join('');
    const whole = await request(app).post('/v1/chat/completions').send({ messages: [userTurn('Stream it')], max_tokens: 5 });
    expect(reasoning.trim()).toBe(whole.body.choices[0].message.reasoning_content);
  });

  test.each([
    ['no messages', { messages: [] }, 400],
    ['a message without role', { messages: [{ content: 'x' }] }, 400],
    ['no user turn', { messages: [{ role: 'system', content: 'x' }] }, 400],
    ['user turn without text', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: dataUrl } }] }] }, 400],
    ['two images with the r1 template', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: dataUrl }, { type: 'image_url', image_url: dataUrl }, { type: 'text', text: 'q' }] }] }, 400],
    ['n = 2', { n: 2, messages: [userTurn('q')] }, 400],
    ['a remote image URL', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://127.0.0.1:1/cat.png' } }, { type: 'text', text: 'q' }] }] }, 400],
    ['a file: URL', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'file:///etc/passwd' } }, { type: 'text', text: 'q' }] }] }, 400],
    ['a data URL that is not an image', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:text/plain;base64,aGk=' } }, { type: 'text', text: 'q' }] }] }, 415],
  ])('%s is refused (%#)', async (_name, body, status) => {
    const res = await request(app).post('/v1/chat/completions').send(body);
    expect(res.status).toBe(status);
    expect(res.body.error).toEqual({ code: expect.any(String), message: expect.any(String) });
  });

  test('remote URLs are refused with a message that says how to send the image instead', async () => {
    const res = await request(app)
      .post('/v1/chat/completions')
      .send({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } }, { type: 'text', text: 'q' }] }] });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('remote_image_not_allowed');
    expect(res.body.error.message).toMatch(/data: URL/);
  });
});

describe('ReasoningSplitter', () => {
  test('splits think and answer across arbitrary chunk boundaries', () => {
    const text = ' I count two. Wait, three. </think>\n<answer>3</answer>';
    for (let size = 1; size <= 7; size++) {
      const splitter = new ReasoningSplitter(true);
      let reasoning = '';
      let content = '';
      for (let i = 0; i < text.length; i += size) {
        const part = splitter.push(text.slice(i, i + size));
        reasoning += part.reasoning;
        content += part.content;
      }
      const tail = splitter.flush();
      reasoning += tail.reasoning;
      content += tail.content;
      expect(reasoning).toBe(' I count two. Wait, three. ');
      expect(content).toBe('\n3');
    }
  });

  test('a "<" that starts no tag is passed through', () => {
    const splitter = new ReasoningSplitter(false);
    expect(splitter.push('a < b <').content).toBe('a < b ');
    expect(splitter.push('c').content).toBe('<c');
  });
});
