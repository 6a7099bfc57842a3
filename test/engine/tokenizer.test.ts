// The engine's tokenizer reproduces the Python reference (test/vectors/tokenizer.json): token ids,
// decoded text, special ids and chat-template renderings of models/tiny-random; streaming decoding
// never emits half a character and concatenates to the full decode.
import fc from 'fast-check';
import { mkdtemp, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EngineError } from '../../src/engine/errors';
import { ChatMessage, Tokenizer } from '../../src/engine/tokenizer';
import { loadVectors, TINY_MODEL_DIR } from '../helpers/vectors';

interface TokenizerVectors {
  vocab_size: number;
  special_tokens: Record<string, number>;
  cases: { text: string; ids: number[]; tokens: string[]; decoded: string }[];
  chat_template: { messages: ChatMessage[]; add_generation_prompt: boolean; rendered: string }[];
}

const v = loadVectors<TokenizerVectors>('tokenizer.json');

// Further strings, ids and decoded text computed with Python `tokenizers` 0.23.3
// (Tokenizer.from_file('models/tiny-random/tokenizer.json').encode(text, add_special_tokens=False)).
const PYTHON_EXTRA: [string, number[], string][] = [
  ['a\u0085b c', [64, 126, 227, 65, 265], 'a\u0085b c'],
  ['x\ufeffy', [87, 171, 119, 123, 88], 'x\ufeffy'],
  ['\u001c\u001d text', [216, 217, 276, 578], '\u001c\u001d text'],
  ['e\u0301 cafe\u0301', [127, 102, 371, 69, 127, 102], '\u00e9 caf\u00e9'], // NFC
  ['\r\n\r\n  \n', [201, 198, 201, 198, 220, 407], '\r\n\r\n  \n'],
  ['line\u2028sep', [75, 260, 68, 158, 222, 101, 377, 79], 'line\u2028sep'],
  ['\u00a0nbsp\u3000ideo', [126, 254, 77, 65, 82, 79, 766, 222, 340, 68, 78], '\u00a0nbsp\u3000ideo'],
  ['I\'M HE\'LL', [40, 6, 44, 562, 36, 6, 43, 43], 'I\'M HE\'LL'],
  ['x<|im_end|>y<|endoftext|>', [87, 1099, 88, 1097], 'x<|im_end|>y<|endoftext|>'],
  ['<|im_end |>', [27, 91, 774, 62, 310, 67, 220, 91, 29], '<|im_end |>'],
  ['\ud83d\udc4d\ud83c\udffd\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67', [689, 824, 689, 237, 121, 689, 239, 101, 158, 222, 235, 689, 239, 102, 158, 222, 235, 689, 239, 100], '\ud83d\udc4d\ud83c\udffd\ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67'],
  ['\ud835\udd18\ud835\udd2b \u0661\u0662\u0663 \u00bd \u00b2', [172, 251, 242, 246, 172, 251, 242, 104, 220, 149, 94, 149, 95, 149, 96, 220, 126, 121, 220, 126, 110], '\ud835\udd18\ud835\udd2b \u0661\u0662\u0663 \u00bd \u00b2'],
  ['\ud55c\uad6d\uc5b4 \u4e2d\u6587', [169, 243, 250, 166, 113, 255, 168, 244, 112, 220, 767, 255, 919, 229], '\ud55c\uad6d\uc5b4 \u4e2d\u6587'],
  ['\udbff\udfff', [176, 237, 123, 123], '\udbff\udfff'],
];

/** A readable test title: JSON with every character outside printable ASCII escaped. */
const title = (text: string) => JSON.stringify(text).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** Push ids one at a time; returns the deltas, the flush included as the last one. */
function stream(tok: Tokenizer, ids: number[], skipSpecialTokens = false): string[] {
  const decoder = tok.incrementalDecoder({ skipSpecialTokens });
  const deltas = ids.map((id) => decoder.push(id));
  deltas.push(decoder.flush());
  return deltas;
}

describe('Tokenizer on models/tiny-random', () => {
  let tok: Tokenizer;

  beforeAll(async () => {
    tok = await Tokenizer.fromModelDir(TINY_MODEL_DIR);
  });

  test('size counts the added tokens', () => {
    expect(tok.size).toBe(v.vocab_size);
    expect(tok.idToToken(tok.size - 1)).toBe('<|video_pad|>');
    expect(tok.idToToken(tok.size)).toBeUndefined();
    expect(tok.idToToken(-1)).toBeUndefined();
  });

  test('special tokens have the reference ids and are special', () => {
    for (const [token, id] of Object.entries(v.special_tokens)) {
      expect(tok.tokenToId(token)).toBe(id);
      expect(tok.idToToken(id)).toBe(token);
      expect(tok.isSpecial(id)).toBe(true);
    }
    expect(tok.isSpecial(tok.encode('Hello')[0])).toBe(false);
  });

  test.each(v.cases.map((c) => [title(c.text), c] as const))('encode and decode %s', (_name, c) => {
    expect(tok.encode(c.text)).toEqual(c.ids);
    expect(c.ids.map((id) => tok.idToToken(id))).toEqual(c.tokens);
    expect(tok.decode(c.ids)).toBe(c.decoded);
  });

  test.each(PYTHON_EXTRA.map(([text, ids, decoded]) => [title(text), text, ids, decoded] as const))(
    'matches Python tokenizers on %s',
    (_name, text, ids, decoded) => {
      expect(tok.encode(text)).toEqual(ids);
      expect(tok.decode(ids)).toBe(decoded);
    },
  );

  test('decode can skip special tokens and drops ids without a token', () => {
    const ids = tok.encode('<|im_start|>assistant\nHi<|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('assistant\nHi');
    expect(tok.decode([...ids, tok.size, -3, 2.5])).toBe('<|im_start|>assistant\nHi<|im_end|>');
    expect(tok.decode([])).toBe('');
  });

  test('a partial UTF-8 character decodes to U+FFFD as in Python', () => {
    // Python: decode([689]) of the 2-token emoji and decode of the first 5 of 日本's 6 byte tokens.
    expect(tok.decode([689])).toBe('\uFFFD');
    expect(tok.decode([162, 245, 98, 162, 250])).toBe('\u65e5\uFFFD');
  });

  test.each(v.chat_template.map((c, i) => [i, c] as const))('chat template rendering %i', (_i, c) => {
    expect(tok.applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt })).toBe(c.rendered);
  });

  test('chat template options: no generation prompt, extra variables', () => {
    const messages: ChatMessage[] = [{ role: 'user', content: [{ type: 'image' }, { type: 'text', text: 'Hi' }] }];
    expect(tok.applyChatTemplate(messages)).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Hi<|im_end|>\n',
    );
    expect(tok.applyChatTemplate(messages, { variables: { add_vision_id: true } })).toContain('Picture 1: <|vision_start|>');
    expect(tok.chatTemplate).toContain('<|im_start|>');
  });

  describe('incremental decoding', () => {
    test('holds multi-byte characters split across byte-level tokens until complete', () => {
      const text = 'naïve café: 日本語のテキスト 🙂👍';
      const ids = tok.encode(text);
      const deltas = stream(tok, ids);
      expect(deltas.join('')).toBe(text);
      expect(deltas.join('')).toBe(tok.decode(ids));
      for (const delta of deltas) expect(delta).not.toContain('\uFFFD');
      // 🙂 is two tokens: the first one alone emits nothing, the second one the whole character.
      const emoji = tok.encode('🙂');
      expect(emoji).toHaveLength(2);
      expect(stream(tok, emoji)).toEqual(['', '🙂', '']);
      // 日本 is six single-byte tokens.
      expect(stream(tok, tok.encode('日本'))).toEqual(['', '', '日', '', '', '本', '']);
    });

    test('special tokens are emitted, or skipped, as decode does', () => {
      const ids = tok.encode('<|im_start|>assistant\n日本<|im_end|><|endoftext|>');
      expect(stream(tok, ids).join('')).toBe(tok.decode(ids));
      expect(stream(tok, ids, true).join('')).toBe('assistant\n日本');
      expect(stream(tok, ids, true).join('')).toBe(tok.decode(ids, { skipSpecialTokens: true }));
      expect(stream(tok, [1098])).toEqual(['<|im_start|>', '']);
      expect(stream(tok, [1098], true)).toEqual(['', '']);
    });

    test('flush returns an incomplete character as U+FFFD', () => {
      const decoder = tok.incrementalDecoder();
      expect(decoder.push(tok.encode('A')[0])).toBe('A');
      expect(decoder.push(689)).toBe('');
      expect(decoder.flush()).toBe('\uFFFD');
      expect(decoder.flush()).toBe('');
    });

    test('a broken byte sequence is emitted once text follows it', () => {
      // 0xE6 (the first byte of 日) then ASCII: the U+FFFD is final, so it comes out with the "A".
      const ids = [162, ...tok.encode('A')];
      expect(stream(tok, ids)).toEqual(['', '\uFFFDA', '']);
      expect(tok.decode(ids)).toBe('\uFFFDA');
    });

    test('property: deltas of any text never hold U+FFFD and concatenate to decode(ids)', () => {
      fc.assert(
        fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (text) => {
          fc.pre(!text.includes('\uFFFD') && Buffer.from(text, 'utf8').toString('utf8') === text);
          const ids = tok.encode(text);
          const deltas = stream(tok, ids);
          return deltas.join('') === tok.decode(ids) && deltas.every((d) => !d.includes('\uFFFD'));
        }),
        { numRuns: 300 },
      );
    });

    test('property: deltas of any id sequence concatenate to decode(ids)', () => {
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: tok.size - 1 }), { maxLength: 24 }), fc.boolean(), (ids, skip) => {
          return stream(tok, ids, skip).join('') === tok.decode(ids, { skipSpecialTokens: skip });
        }),
        { numRuns: 500 },
      );
    });
  });
});

describe('Tokenizer.fromModelDir errors', () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tokenizer-test-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function loadError(): Promise<EngineError> {
    try {
      await Tokenizer.fromModelDir(dir);
    } catch (error) {
      expect(error).toBeInstanceOf(EngineError);
      return error as EngineError;
    }
    throw new Error('expected fromModelDir to fail');
  }

  test('missing tokenizer.json', async () => {
    await copyFile(join(TINY_MODEL_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const error = await loadError();
    expect(error.kind).toBe('model_error');
    expect(error.code).toBe('tokenizer_missing');
    expect(error.message).toContain('tokenizer.json');
  });

  test('missing tokenizer_config.json', async () => {
    await copyFile(join(TINY_MODEL_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const error = await loadError();
    expect(error.code).toBe('tokenizer_missing');
    expect(error.message).toContain('tokenizer_config.json');
  });

  test('tokenizer.json that is not JSON', async () => {
    await writeFile(join(dir, 'tokenizer.json'), '{"model": ');
    await copyFile(join(TINY_MODEL_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const error = await loadError();
    expect(error.kind).toBe('model_error');
    expect(error.code).toBe('tokenizer_invalid');
    expect(error.message).toContain('tokenizer.json');
  });

  test('tokenizer.json without a model', async () => {
    await writeFile(join(dir, 'tokenizer.json'), '{"added_tokens": []}');
    await copyFile(join(TINY_MODEL_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    expect((await loadError()).code).toBe('tokenizer_invalid');
  });

  test('a chat template that does not parse', async () => {
    await copyFile(join(TINY_MODEL_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{% for m in messages %}' }));
    const error = await loadError();
    expect(error.code).toBe('tokenizer_invalid');
    expect(error.message).toContain('tokenizer_config.json');
  });

  test('a list of named chat templates uses "default"; none leaves the model without one', async () => {
    await copyFile(join(TINY_MODEL_DIR, 'tokenizer.json'), join(dir, 'tokenizer.json'));
    const templates = [
      { name: 'tool_use', template: 'tools' },
      { name: 'default', template: '{{ messages[0].content }}{% if add_generation_prompt %}!{% endif %}' },
    ];
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: templates }));
    const tok = await Tokenizer.fromModelDir(dir);
    expect(tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })).toBe('Hi!');

    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: templates.slice(0, 1) }));
    const bare = await Tokenizer.fromModelDir(dir);
    expect(bare.chatTemplate).toBeNull();
    expect(() => bare.applyChatTemplate([{ role: 'user', content: 'Hi' }])).toThrow(EngineError);
  });
});
