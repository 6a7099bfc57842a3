// The model folder's tokenizer: byte-level BPE from tokenizer.json (via @huggingface/tokenizers) and
// the chat template from tokenizer_config.json (via @huggingface/jinja). A shared rule: token ids,
// decoded text and chat-template renderings match the Python reference (tokenizers / transformers),
// pinned by test/vectors/tokenizer.json. Byte-level BPE, no BOS (docs/qwen2-vl.md, "Tokens").
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { EngineError } from './errors';

export const TOKENIZER_FILE = 'tokenizer.json';
export const TOKENIZER_CONFIG_FILE = 'tokenizer_config.json';

/** One part of a multimodal message, e.g. `{ type: 'image' }` or `{ type: 'text', text }`. */
export interface ChatContentPart {
  type: string;
  text?: string;
  [key: string]: unknown;
}

/** A chat message as transformers' `apply_chat_template` takes it. */
export interface ChatMessage {
  role: string;
  content: string | ChatContentPart[];
}

export interface DecodeOptions {
  /** Drop added tokens marked special (default false, as in transformers' `decode`). */
  skipSpecialTokens?: boolean;
}

export interface ChatTemplateOptions {
  /** Append the assistant turn opener (default false, as in transformers). */
  addGenerationPrompt?: boolean;
  /** Further template variables, e.g. `{ add_vision_id: true }`. */
  variables?: Record<string, unknown>;
}

// The special-token variables transformers passes to chat templates (its `special_tokens_map`).
const TEMPLATE_TOKEN_KEYS = ['bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token'];

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function invalid(file: string, detail: string, cause?: unknown): EngineError {
  return new EngineError('model_error', 'tokenizer_invalid', `${file}: ${detail}`, { cause });
}

/** Read and parse one JSON file of the model folder; missing -> tokenizer_missing, bad -> tokenizer_invalid. */
async function readJsonObject(path: string): Promise<JsonObject> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new EngineError('model_error', 'tokenizer_missing', `${path} does not exist`, { cause: error });
    }
    throw invalid(path, `cannot be read (${code ?? String(error)})`, error);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw invalid(path, `is not valid JSON (${(error as Error).message})`, error);
  }
  if (!isObject(value)) throw invalid(path, 'is not a JSON object');
  return value;
}

/** A special token in tokenizer_config.json is a string or a serialised AddedToken `{ content }`. */
function tokenContent(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isObject(value) && typeof value.content === 'string') return value.content;
  return undefined;
}

/**
 * The chat template source: a string, or a list of `{ name, template }` where transformers uses
 * 'default' (no default -> no usable template). Absent -> null.
 */
export function selectChatTemplate(value: unknown, file: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    for (const entry of value) {
      if (!isObject(entry) || typeof entry.name !== 'string' || typeof entry.template !== 'string') {
        throw invalid(file, 'chat_template list entries must be { name, template } strings');
      }
    }
    const chosen = (value as { name: string; template: string }[]).find((entry) => entry.name === 'default');
    return chosen ? chosen.template : null;
  }
  throw invalid(file, 'chat_template must be a string or a list of named templates');
}

/** Number of ids the tokenizer can produce: highest id of the vocabulary or the added tokens, plus one. */
function vocabularySize(spec: JsonObject, file: string): number {
  const model = spec.model;
  if (!isObject(model)) throw invalid(file, 'has no model section');
  let maxId = -1;
  const vocab = model.vocab;
  if (Array.isArray(vocab)) {
    maxId = vocab.length - 1; // Unigram: a list of [piece, score]
  } else if (isObject(vocab)) {
    for (const id of Object.values(vocab)) {
      if (!Number.isInteger(id) || (id as number) < 0) throw invalid(file, 'model.vocab holds a non-integer id');
      maxId = Math.max(maxId, id as number);
    }
  } else {
    throw invalid(file, 'has no model.vocab');
  }
  for (const token of addedTokens(spec, file)) maxId = Math.max(maxId, token.id);
  return maxId + 1;
}

interface AddedTokenSpec {
  id: number;
  content: string;
  special: boolean;
}

function addedTokens(spec: JsonObject, file: string): AddedTokenSpec[] {
  const list = spec.added_tokens ?? [];
  if (!Array.isArray(list)) throw invalid(file, 'added_tokens is not a list');
  return list.map((token) => {
    if (!isObject(token) || !Number.isInteger(token.id) || typeof token.content !== 'string') {
      throw invalid(file, 'added_tokens entries need an integer id and a string content');
    }
    return { id: token.id as number, content: token.content, special: token.special === true };
  });
}

export class Tokenizer {
  /** Number of ids the tokenizer can produce (added tokens included): sampling must stay below it. */
  readonly size: number;
  /** The chat template source (null when the model folder has none). */
  readonly chatTemplate: string | null;
  private readonly hf: HfTokenizer;
  private readonly specialIds: ReadonlySet<number>;
  private readonly template: Template | null;
  private readonly templateTokens: Record<string, unknown>;

  private constructor(spec: JsonObject, config: JsonObject, dir: string) {
    const tokenizerFile = join(dir, TOKENIZER_FILE);
    const configFile = join(dir, TOKENIZER_CONFIG_FILE);
    this.size = vocabularySize(spec, tokenizerFile);
    this.specialIds = new Set(addedTokens(spec, tokenizerFile).filter((t) => t.special).map((t) => t.id));
    try {
      this.hf = new HfTokenizer(spec, config);
    } catch (error) {
      throw invalid(tokenizerFile, `cannot be loaded (${(error as Error).message})`, error);
    }
    this.chatTemplate = selectChatTemplate(config.chat_template, configFile);
    try {
      this.template = this.chatTemplate === null ? null : new Template(this.chatTemplate);
    } catch (error) {
      throw invalid(configFile, `chat_template does not parse (${(error as Error).message})`, error);
    }
    this.templateTokens = {};
    for (const key of TEMPLATE_TOKEN_KEYS) {
      const content = tokenContent(config[key]);
      if (content !== undefined) this.templateTokens[key] = content;
    }
    const extra = config.additional_special_tokens;
    if (Array.isArray(extra)) this.templateTokens.additional_special_tokens = extra.map(tokenContent).filter((t) => t !== undefined);
  }

  /** Load tokenizer.json and tokenizer_config.json from a model folder. */
  static async fromModelDir(dir: string): Promise<Tokenizer> {
    const [spec, config] = await Promise.all([
      readJsonObject(join(dir, TOKENIZER_FILE)),
      readJsonObject(join(dir, TOKENIZER_CONFIG_FILE)),
    ]);
    return new Tokenizer(spec, config, dir);
  }

  /** Token ids of `text`; no special tokens are added, special tokens written in the text are recognised. */
  encode(text: string): number[] {
    if (text.length === 0) return [];
    return this.hf.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * Text of `ids` as the Python `tokenizers` decode gives it: ids without a token are dropped and no
   * clean-up of spaces is done (Qwen2's clean_up_tokenization_spaces is false).
   */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const kept = ids.filter((id) => this.idToToken(id) !== undefined && !(options.skipSpecialTokens && this.specialIds.has(id)));
    if (kept.length === 0) return '';
    return this.hf.decode(kept, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= this.size) return undefined;
    return this.hf.id_to_token(id) ?? undefined;
  }

  /** Whether `id` is an added token marked special (e.g. `<|im_end|>`, `<|image_pad|>`). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /**
   * Render the chat template as transformers' `apply_chat_template(..., tokenize=False)` does: the
   * messages, add_generation_prompt and the special-token variables of tokenizer_config.json.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string {
    if (this.template === null) {
      throw new EngineError('invalid_input', 'chat_template_missing', 'the model has no chat template (tokenizer_config.json chat_template)');
    }
    try {
      return this.template.render({
        ...this.templateTokens,
        ...options.variables,
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? false,
      });
    } catch (error) {
      throw new EngineError('invalid_input', 'chat_template_error', `the chat template failed: ${(error as Error).message}`, { cause: error });
    }
  }

  /** A streaming decoder over this tokenizer. */
  incrementalDecoder(options: DecodeOptions = {}): IncrementalDecoder {
    return new IncrementalDecoder(this, options);
  }
}

const REPLACEMENT = '\uFFFD';

/**
 * Streaming detokenisation: push token ids one at a time and get back only the new, complete text.
 * It decodes a window of ids starting where the previous delta began, and emits the text past the
 * previously decoded window once it does not end in U+FFFD (a multi-byte character still awaiting
 * bytes). `flush()` returns whatever is left. The deltas concatenate to `decode(allIds)`.
 */
export class IncrementalDecoder {
  private window: number[] = [];
  private readIndex = 0; // window[0, readIndex) is already emitted
  private windowText = ''; // decode(window[0, readIndex))

  constructor(
    private readonly tokenizer: Tokenizer,
    private readonly options: DecodeOptions = {},
  ) {}

  /** Feed one token id; returns the newly completed text ('' while a character is incomplete). */
  push(id: number): string {
    this.window.push(id);
    const text = this.tokenizer.decode(this.window, this.options);
    if (text.length <= this.windowText.length || text.endsWith(REPLACEMENT) || !text.startsWith(this.windowText)) return '';
    return this.advance(text);
  }

  /** Everything not emitted yet, incomplete characters included (as U+FFFD). */
  flush(): string {
    const text = this.tokenizer.decode(this.window, this.options);
    return this.advance(text);
  }

  private advance(text: string): string {
    const delta = text.slice(this.windowText.length);
    // The next window starts at the first id not yet emitted; its prefix is what follows.
    this.window = this.window.slice(this.readIndex);
    this.readIndex = this.window.length;
    this.windowText = this.tokenizer.decode(this.window, this.options);
    return delta;
  }
}
