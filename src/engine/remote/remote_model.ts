// A model served elsewhere by an OpenAI-compatible endpoint (docs/remote-models.md). It takes the
// engine's GenerateRequest and gives the engine's GenerateEvents, so the routes and evaluation runs
// use it as they use a local model. The prompt the remote sees is the template's prompt, rendered
// here (renderPrompt) and sent as a per-request chat template (vLLM) or as the template's name
// (another instance of this service); the reply is parsed by the same rules as local output.
// Requests go to the replica with the fewest outstanding requests, at most `maxInFlight` per
// replica; the others wait for a slot. The only addresses called are the configured ones.
import { EngineError } from '../errors';
import type { GenerateEvent, GenerateRequest, GenerateResult } from '../engine';
import { decodeImage, sniffImageFormat } from '../images/decoding';
import { INSTRUCT_SUFFIX, PromptTemplate, promptOpensThink, renderPrompt } from '../prompts';
import { parseCompletion } from '../rewards';
import type { FinishReason } from '../runner/protocol';
import { DEFAULT_SAMPLING_PARAMS, SamplingParams } from '../sampling/params';
import type { RemoteModelSpec } from './config';
import { readSse } from './sse';

/** How a remote is spoken to: vLLM (and other OpenAI-compatible servers), or this service. */
export type RemoteApi = 'openai' | 'visualthinker';

/** The per-request chat template given to vLLM: it prints the prompt rendered by renderPrompt. */
export const PROMPT_CHAT_TEMPLATE = '{{ visualthinker_prompt }}';

export interface RemoteOptions {
  /** Requests in flight per replica; more wait for a slot. */
  maxInFlight: number;
  /** Requests waiting for a slot (all replicas); more are refused with 429. */
  maxWaiting: number;
  /** Longest silence from a replica (connecting, first byte, between chunks) before a 504. */
  timeoutMs: number;
  requestTimeoutMs: number;
  maxInputPixels: number;
  observer?: RemoteObserver;
}

export interface RemoteObserver {
  /** One request to one replica ended: `code` is null on success, else the error code. */
  onRemoteRequest?(model: string, remote: string, code: string | null, seconds: number): void;
  onRemoteInFlight?(model: string, remote: string, inFlight: number): void;
  onResult?(model: string, result: GenerateResult): void;
}

export class Replica {
  inFlight = 0;
  api: RemoteApi | null = null;
  constructor(
    readonly index: number,
    readonly url: string,
    readonly remoteId: string,
  ) {}
}

interface Waiter {
  exclude: ReadonlySet<Replica>;
  resolve(replica: Replica): void;
}

interface Prepared {
  template: string;
  opensThink: boolean;
  question: string;
  messages: unknown[];
  /** data: URLs of the images, in prompt order. */
  images: string[];
  sampling: SamplingParams;
  maxNewTokens: number;
  ignoreEos: boolean;
}

type Chunk = { delta: string } | { done: { text: string; finish: FinishReason; promptTokens: number; completionTokens: number; imageTokens: number } };

const MIME = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' } as const;

export class RemoteModel {
  readonly replicas: Replica[];
  private readonly waiters: Waiter[] = [];
  private cursor = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(
    readonly spec: RemoteModelSpec,
    private readonly options: RemoteOptions,
  ) {
    this.replicas = spec.replicas.map((r, i) => new Replica(i, r.url, r.remoteId));
  }

  get name(): string {
    return this.spec.name;
  }

  /** Outstanding requests over all replicas, waiting ones included. */
  get outstanding(): number {
    return this.replicas.reduce((sum, r) => sum + r.inFlight, 0) + this.waiters.length;
  }

  private label(replica: Replica): string {
    return `model "${this.name}" replica ${replica.index + 1}/${this.replicas.length}`;
  }

  // ---- replicas: least outstanding requests, bounded in flight ----

  private pick(exclude: ReadonlySet<Replica>): Replica | null {
    let best: Replica | null = null;
    const n = this.replicas.length;
    // Ties go round-robin: the scan starts one replica further each time.
    for (let k = 0; k < n; k++) {
      const replica = this.replicas[(this.cursor + k) % n];
      if (exclude.has(replica) || replica.inFlight >= this.options.maxInFlight) continue;
      if (!best || replica.inFlight < best.inFlight) best = replica;
    }
    if (best) {
      this.cursor = (this.cursor + 1) % n;
      this.take(best);
    }
    return best;
  }

  private take(replica: Replica) {
    replica.inFlight += 1;
    this.options.observer?.onRemoteInFlight?.(this.name, replica.url, replica.inFlight);
  }

  /** A replica not in `exclude` with a free slot, waiting for one until the deadline. */
  acquire(exclude: ReadonlySet<Replica>, deadline: number, signal?: AbortSignal): Promise<Replica> {
    const now = this.pick(exclude);
    if (now) return Promise.resolve(now);
    if (this.waiters.length >= this.options.maxWaiting) {
      return Promise.reject(new EngineError('overloaded', 'queue_full', `model "${this.name}": every replica has ${this.options.maxInFlight} requests in flight and the queue is full; retry later`, { retryAfterSeconds: 1 }));
    }
    return new Promise<Replica>((resolve, reject) => {
      const finish = (error: EngineError | null, replica?: Replica) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        if (error) {
          reject(error);
          this.notifyIdle();
        } else resolve(replica!);
      };
      const waiter: Waiter = { exclude, resolve: (replica) => finish(null, replica) };
      const onAbort = () => finish(new EngineError('cancelled', 'cancelled', 'the request was cancelled'));
      const timer = setTimeout(
        () => finish(new EngineError('remote_timeout', 'remote_timeout', `model "${this.name}": no replica had a free slot before the request's deadline`)),
        Math.max(0, deadline - Date.now()),
      );
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      if (signal?.aborted) onAbort();
    });
  }

  release(replica: Replica): void {
    replica.inFlight = Math.max(0, replica.inFlight - 1);
    this.options.observer?.onRemoteInFlight?.(this.name, replica.url, replica.inFlight);
    for (const waiter of [...this.waiters]) {
      const next = this.pick(waiter.exclude);
      if (next) waiter.resolve(next);
      if (this.replicas.every((r) => r.inFlight >= this.options.maxInFlight)) break;
    }
    this.notifyIdle();
  }

  private notifyIdle() {
    if (this.outstanding) return;
    const waiting = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiting) resolve();
  }

  /** Resolves once no request is in flight or waiting. */
  drain(): Promise<void> {
    if (!this.outstanding) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---- generation ----

  /**
   * The request's events. A replica that fails before anything was yielded is replaced by another
   * one not yet tried (every event is held back when `buffered`, so a whole-result request is
   * retried after a failure at any point): a request is answered by exactly one replica.
   */
  async *generate(request: GenerateRequest, buffered: boolean, maxNewTokens: number): AsyncGenerator<GenerateEvent> {
    const started = Date.now();
    const deadline = started + (request.timeoutMs ?? this.options.requestTimeoutMs);
    const prepared = await this.prepare(request, maxNewTokens);
    const tried = new Set<Replica>();
    let yielded = false;
    for (;;) {
      const replica = await this.acquire(tried, deadline, request.signal);
      const queueMs = Date.now() - started;
      tried.add(replica);
      const callStarted = Date.now();
      let code: string | null = null;
      try {
        const held: string[] = [];
        let firstTokenMs: number | null = null;
        for await (const chunk of this.call(replica, prepared, deadline, request.signal)) {
          if ('delta' in chunk) {
            firstTokenMs ??= Date.now() - started;
            if (buffered) held.push(chunk.delta);
            else {
              yielded = true;
              yield { type: 'delta', text: chunk.delta };
            }
            continue;
          }
          const done = chunk.done;
          const parsed = parseCompletion(done.text, prepared.opensThink);
          const totalMs = Date.now() - started;
          const result: GenerateResult = {
            model: this.name,
            template: prepared.template,
            text: done.text,
            think: parsed.think,
            answer: parsed.answer,
            formatOk: parsed.formatOk,
            finishReason: done.finish,
            tokenIds: [],
            usage: { promptTokens: done.promptTokens, completionTokens: done.completionTokens, imageTokens: done.imageTokens },
            timings: {
              queueMs,
              prefillMs: (firstTokenMs ?? totalMs) - queueMs,
              decodeMs: firstTokenMs === null ? 0 : totalMs - firstTokenMs,
              totalMs,
              firstTokenMs,
            },
          };
          this.options.observer?.onResult?.(this.name, result);
          for (const delta of held) yield { type: 'delta', text: delta };
          yield { type: 'done', result };
          return;
        }
        throw new EngineError('remote_unavailable', 'remote_disconnected', `${this.label(replica)}: the reply ended without finishing`);
      } catch (error) {
        code = error instanceof EngineError ? error.code : 'remote_error';
        const retry =
          error instanceof EngineError &&
          (error.kind === 'remote_unavailable' || error.kind === 'remote_timeout') &&
          !yielded &&
          !request.signal?.aborted &&
          Date.now() < deadline &&
          this.replicas.some((r) => !tried.has(r));
        if (!retry) throw error;
      } finally {
        this.options.observer?.onRemoteRequest?.(this.name, replica.url, code, (Date.now() - callStarted) / 1000);
        this.release(replica);
      }
    }
  }

  /** Checks the request's images as the local engine does (sampling and the token budget arrive resolved), and encodes them as data: URLs. */
  private async prepare(request: GenerateRequest, maxNewTokens: number): Promise<Prepared> {
    const sampling = request.sampling ?? DEFAULT_SAMPLING_PARAMS; // resolved and checked where the request came in
    const images = await Promise.all(
      request.images.map(async (bytes) => {
        // Decoded here too, so that a bad image gets the same 4xx as with a local model.
        await decodeImage(bytes, { maxInputPixels: this.options.maxInputPixels });
        const format = sniffImageFormat(bytes)!;
        return `data:${MIME[format]};base64,${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64')}`;
      }),
    );
    const imageParts = images.map((url) => ({ type: 'image_url', image_url: { url } }));
    if (request.prompt.template === 'chat') {
      let next = 0;
      const messages = request.prompt.messages.map((m) => ({
        role: m.role,
        content: typeof m.content === 'string' ? m.content : m.content.map((part) => (part.type === 'image' ? imageParts[next++] : { type: 'text', text: part.text ?? '' })),
      }));
      if (next !== images.length) throw new EngineError('invalid_input', 'image_count_mismatch', `the messages hold ${next} image parts for ${images.length} images`);
      return { template: 'chat', opensThink: false, question: '', messages, images, sampling, maxNewTokens, ignoreEos: request.ignoreEos === true };
    }
    const template = request.prompt.template;
    const { question } = request.prompt;
    const text = template === 'instruct' ? `${question} ${INSTRUCT_SUFFIX}` : question;
    const messages = [{ role: 'user', content: [...imageParts, { type: 'text', text }] }];
    return { template, opensThink: promptOpensThink(template), question, messages, images, sampling, maxNewTokens, ignoreEos: request.ignoreEos === true };
  }

  /**
   * Asks every replica whether it serves the model (GET <url>/models): a message for each one
   * that cannot be reached, and for each one that serves other models (a configuration mistake).
   */
  async check(timeoutMs: number): Promise<{ unreachable: string[]; wrong: string[] }> {
    const found = { unreachable: [] as string[], wrong: [] as string[] };
    await Promise.all(
      this.replicas.map(async (replica) => {
        const probed = await this.probe(replica, timeoutMs);
        if (!probed.ok) (probed.unreachable ? found.unreachable : found.wrong).push(`model "${this.name}" replica ${replica.index + 1} (${replica.url}): ${probed.message}`);
      }),
    );
    return found;
  }

  /** GET <url>/models: whether the replica serves its model id, and which API it speaks. */
  async probe(replica: Replica, timeoutMs: number, signal?: AbortSignal): Promise<{ ok: true } | { ok: false; unreachable: boolean; message: string }> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeoutMs);
    const forward = () => abort.abort();
    signal?.addEventListener('abort', forward, { once: true });
    try {
      const response = await fetch(`${replica.url}/models`, { signal: abort.signal, redirect: 'error' });
      if (!response.ok) return { ok: false, unreachable: true, message: `GET ${replica.url}/models answered ${response.status}` };
      const body = (await response.json()) as { data?: { id?: unknown; owned_by?: unknown }[] };
      const models = Array.isArray(body?.data) ? body.data : [];
      const entry = models.find((m) => m?.id === replica.remoteId);
      if (!entry) {
        const ids = models.map((m) => String(m?.id)).slice(0, 20);
        return { ok: false, unreachable: false, message: `${replica.url} does not serve a model "${replica.remoteId}" (it serves: ${ids.join(', ') || 'none'}); name the remote's id with URL#id` };
      }
      replica.api = entry.owned_by === 'visualthinker' ? 'visualthinker' : 'openai';
      return { ok: true };
    } catch (error) {
      const reason = abort.signal.aborted ? `no answer within ${timeoutMs} ms` : describeFetchError(error);
      return { ok: false, unreachable: true, message: `GET ${replica.url}/models failed: ${reason}` };
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', forward);
    }
  }

  /** One request to one replica, as text deltas and then the finished reply. */
  private async *call(replica: Replica, prepared: Prepared, deadline: number, signal?: AbortSignal): AsyncGenerator<Chunk> {
    const abort = new AbortController();
    let why: 'idle' | 'deadline' | 'cancelled' | null = null;
    const stop = (reason: typeof why) => {
      why ??= reason;
      abort.abort();
    };
    const idleMs = this.options.timeoutMs;
    let idle = setTimeout(() => stop('idle'), idleMs);
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => stop('idle'), idleMs);
    };
    const overall = setTimeout(() => stop('deadline'), Math.max(0, deadline - Date.now()));
    const onAbort = () => stop('cancelled');
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    const failure = (error: unknown, stage: 'connect' | 'stream'): EngineError => {
      if (error instanceof EngineError) return error;
      if (why === 'cancelled') return new EngineError('cancelled', 'cancelled', 'the request was cancelled');
      if (why === 'idle') return new EngineError('remote_timeout', 'remote_timeout', `${this.label(replica)}: no answer for ${idleMs} ms`, { cause: error });
      if (why === 'deadline') return new EngineError('remote_timeout', 'remote_timeout', `${this.label(replica)}: the request's deadline passed`, { cause: error });
      if (stage === 'connect') return new EngineError('remote_unavailable', 'remote_unreachable', `${this.label(replica)}: cannot reach the remote (${describeFetchError(error)})`, { cause: error });
      return new EngineError('remote_unavailable', 'remote_disconnected', `${this.label(replica)}: the connection broke during the reply`, { cause: error });
    };
    try {
      if (!replica.api) {
        const probed = await this.probe(replica, idleMs, abort.signal);
        if (!probed.ok) {
          if (why) throw failure(null, 'connect');
          throw new EngineError('remote_unavailable', probed.unreachable ? 'remote_unreachable' : 'remote_error', `${this.label(replica)}: ${probed.unreachable ? 'cannot reach the remote' : 'the remote does not serve this model'}`, { cause: new Error(probed.message) });
        }
        touch();
      }
      const { url, body, parse } = this.request(replica, prepared);
      let response: Response;
      try {
        response = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
          body: JSON.stringify(body),
          signal: abort.signal,
          redirect: 'error',
        });
      } catch (error) {
        throw failure(error, 'connect');
      }
      touch();
      if (!response.ok) {
        let detail = '';
        try {
          detail = errorMessageOf(await response.text());
        } catch {
          // the body broke off: the status says enough
        }
        throw new EngineError('remote_unavailable', 'remote_error', `${this.label(replica)}: the remote answered ${response.status}${detail ? `: ${detail}` : ''}`);
      }
      if (!response.body) throw new EngineError('remote_unavailable', 'remote_bad_response', `${this.label(replica)}: the remote sent no body`);
      try {
        for await (const event of readSse(response.body as unknown as AsyncIterable<Uint8Array>)) {
          touch();
          const chunks = parse(event);
          for (const chunk of chunks) yield chunk;
          if (chunks.some((c) => 'done' in c)) return;
        }
      } catch (error) {
        throw failure(error, 'stream');
      }
    } finally {
      clearTimeout(idle);
      clearTimeout(overall);
      signal?.removeEventListener('abort', onAbort);
      // Stops the remote's work when the caller went away or stopped reading.
      abort.abort();
    }
  }

  /** The HTTP request for `replica`'s API, and the parser of its stream's events. */
  private request(replica: Replica, p: Prepared): { url: string; body: Record<string, unknown>; parse: (event: { event: string | null; data: string }) => Chunk[] } {
    const bad = (detail: string) => new EngineError('remote_unavailable', 'remote_bad_response', `${this.label(replica)}: ${detail}`);
    const json = <T>(data: string): T => {
      try {
        return JSON.parse(data) as T;
      } catch {
        throw bad('an event of the reply is not JSON');
      }
    };
    const sampling: Record<string, unknown> = {
      temperature: p.sampling.temperature,
      top_p: p.sampling.topP,
      ...(p.sampling.topK > 0 ? { top_k: p.sampling.topK } : {}),
      ...(p.sampling.repetitionPenalty !== 1 ? { repetition_penalty: p.sampling.repetitionPenalty } : {}),
      ...(p.sampling.seed !== undefined ? { seed: p.sampling.seed } : {}),
      // vLLM's extension and /generate's field alike.
      ...(p.ignoreEos ? { ignore_eos: true } : {}),
    };
    const finishOf = (reason: unknown): FinishReason => (reason === 'length' ? 'length' : 'stop');

    if (replica.api === 'visualthinker' && p.template !== 'chat') {
      // Another instance of this service: its /generate takes the template by name and returns the raw text.
      const url = new URL('../generate', `${replica.url}/`).toString();
      const body = {
        model: replica.remoteId,
        template: p.template,
        question: p.question,
        ...(p.images.length ? { image: p.images[0] } : {}),
        max_new_tokens: p.maxNewTokens,
        stream: true,
        ...sampling,
      };
      const parse = (event: { event: string | null; data: string }): Chunk[] => {
        const data = json<GenerateEventData>(event.data) ?? {};
        if (event.event === 'delta') return typeof data.text === 'string' && data.text ? [{ delta: data.text }] : [];
        if (event.event === 'error') throw new EngineError('remote_unavailable', 'remote_error', `${this.label(replica)}: the remote failed: ${errorMessageOf(event.data)}`);
        if (event.event === 'done') {
          if (typeof data.text !== 'string') throw bad('the done event has no text');
          const usage = data.usage ?? {};
          return [{ done: { text: data.text, finish: finishOf(data.finish_reason), promptTokens: num(usage.prompt_tokens), completionTokens: num(usage.completion_tokens), imageTokens: num(usage.image_tokens) } }];
        }
        return [];
      };
      return { url, body, parse };
    }

    // OpenAI chat completions (vLLM): the four templates' prompt is given as a per-request chat
    // template; instruct and chat use the remote's own chat template, as the local engine uses the model's.
    const usesPromptTemplate = p.template !== 'chat' && p.template !== 'instruct';
    const body = {
      model: replica.remoteId,
      messages: p.messages,
      max_tokens: p.maxNewTokens,
      stream: true,
      stream_options: { include_usage: true },
      ...sampling,
      ...(usesPromptTemplate
        ? { chat_template: PROMPT_CHAT_TEMPLATE, chat_template_kwargs: { visualthinker_prompt: renderPrompt(p.template as PromptTemplate, p.question, p.images.length === 1) } }
        : {}),
      ...(replica.api === 'visualthinker' ? { template: 'chat' } : {}),
    };
    let text = '';
    let reasoningOpen = false;
    let finish: FinishReason | null = null;
    const parse = (event: { event: string | null; data: string }): Chunk[] => {
      if (event.data === '[DONE]') {
        if (finish === null) throw bad('the reply ended without a finish reason');
        return [{ done: { text, finish, promptTokens: usage.prompt, completionTokens: usage.completion, imageTokens: 0 } }];
      }
      const data = json<OpenAiChunk>(event.data) ?? {};
      if (data.error) throw new EngineError('remote_unavailable', 'remote_error', `${this.label(replica)}: the remote failed: ${errorMessageOf(event.data)}`);
      if (data.usage) {
        usage.prompt = num(data.usage.prompt_tokens);
        usage.completion = num(data.usage.completion_tokens);
      }
      const choice = Array.isArray(data.choices) ? data.choices[0] : undefined;
      if (!choice) return [];
      const out: Chunk[] = [];
      const emit = (delta: string) => {
        text += delta;
        out.push({ delta });
      };
      // A remote that splits reasoning out (this service's chat endpoint) has it put back in its think block.
      const reasoning = choice.delta?.reasoning_content;
      if (typeof reasoning === 'string' && reasoning) {
        if (!reasoningOpen) emit('<think>');
        reasoningOpen = true;
        emit(reasoning);
      }
      const content = choice.delta?.content;
      if (typeof content === 'string' && content) {
        if (reasoningOpen) emit('</think>');
        reasoningOpen = false;
        emit(content);
      }
      if (choice.finish_reason) {
        if (reasoningOpen) emit('</think>');
        reasoningOpen = false;
        finish = finishOf(choice.finish_reason);
      }
      return out;
    };
    const usage = { prompt: 0, completion: 0 };
    return { url: `${replica.url}/chat/completions`, body, parse };
  }
}

/** An event of this service's /generate stream (delta, done, error). */
interface GenerateEventData {
  text?: unknown;
  finish_reason?: unknown;
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown; image_tokens?: unknown };
}

/** A chunk of an OpenAI chat completion stream. */
interface OpenAiChunk {
  error?: unknown;
  usage?: { prompt_tokens?: unknown; completion_tokens?: unknown };
  choices?: { delta?: { content?: unknown; reasoning_content?: unknown }; finish_reason?: unknown }[];
}

function num(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

/** The message of an error body ({"error": {"message"}} or {"message"} or text), clipped. */
function errorMessageOf(text: string): string {
  let message = text;
  try {
    const body = JSON.parse(text);
    message = body?.error?.message ?? body?.message ?? (typeof body?.error === 'string' ? body.error : text);
  } catch {
    // not JSON: the text itself
  }
  message = String(message).replace(/\s+/g, ' ').trim();
  return message.length > 200 ? `${message.slice(0, 200)}...` : message;
}

function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } })?.cause;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return error instanceof Error ? error.message : String(error);
}
