// The model worker thread: owns the ONNX sessions (session.run blocks its thread, docs/qwen2-vl.md,
// "Graphs and how they run"), the KV cache of the running batch, the image-feature store and one
// sampler per sequence. The scheduler on the main thread decides what runs. Each `step` here does
// at most one batched prefill of the newly admitted sequences (their first token each), then, while
// rows remain, up to `decodeSteps` batched decode runs over every row of the running batch, the rows
// just prefilled included: each run feeds every row its last token and samples the next, and rows
// that finish leave the batch before the next run. The scheduler asks for no run when the batch
// starts with this step's admissions (their first tokens return at once), one when sequences join a
// running batch or others wait to join, and several (as many as fit DECODE_CALL_BUDGET_MS at the
// recent cost of a run, at most MAX_DECODE_STEPS_PER_CALL) when the batch only decodes, which saves
// a thread round trip per token.
import { parentPort, workerData } from 'node:worker_threads';
import { EngineError, isEngineError } from '../errors';
import { ModelFolder } from '../model_folder';
import { Qwen2VLGraphs } from '../qwen2_vl/modeling';
import { Sampler } from '../sampling/sampler';
import { KvBatch } from './kv_batch';
import { PromptCache, PromptEntry, promptKey } from './prompt_cache';
import { AdmitRequest, FinishReason, FromWorker, SequenceOutput, SerializedError, StepRequest, StepResult, ToWorker, WorkerInit } from './protocol';

interface Row {
  seqId: number;
  sampler: Sampler;
  /** Prompt ids followed by generated ids: the repetition penalty's history. */
  history: number[];
  generated: number;
  maxNewTokens: number;
  ignoreEos: boolean;
  vocabLimit: number;
  nextPosition: number;
  /** The last sampled token, fed to the decoder at the next decode run. */
  pending: number;
}

class ModelWorker {
  private readonly folder: ModelFolder;
  private readonly graphs: Qwen2VLGraphs;
  private readonly eos: Set<number>;
  private readonly features = new Map<string, Float32Array>();
  private readonly rows = new Map<number, Row>();
  private readonly prompts: PromptCache;
  private batch: KvBatch;

  get info() {
    return this.graphs.info;
  }

  constructor(folder: ModelFolder, graphs: Qwen2VLGraphs, promptCacheBytes = 0) {
    this.folder = folder;
    this.graphs = graphs;
    this.prompts = new PromptCache(promptCacheBytes);
    this.eos = new Set(folder.eosTokenIds);
    this.batch = KvBatch.empty(graphs.info.layout);
  }

  async step(request: StepRequest): Promise<StepResult> {
    if (request.drop.length) this.removeRows(request.drop);

    const result: StepResult = {
      outputs: [], prefilled: [], prefillMs: 0, visionMs: 0, decodeMs: 0, batchSize: 0, decodeSteps: 0,
      prefillTokens: 0, imagesEncoded: 0, imagesFromCache: 0, promptsFromCache: 0, kvBytes: 0,
    };
    const outputs = new Map<number, SequenceOutput>();
    const emit = (row: Row, token: number, finish?: FinishReason) => {
      const out = outputs.get(row.seqId) ?? { seqId: row.seqId, tokens: [] };
      out.tokens.push(token);
      if (finish) out.finish = finish;
      outputs.set(row.seqId, out);
    };

    if (request.admit.length) await this.prefill(request.admit, result, emit);

    if (this.batch.size && request.decodeSteps > 0) {
      const started = performance.now();
      result.batchSize = this.batch.size;
      for (let i = 0; i < request.decodeSteps && this.batch.size; i++) {
        await this.decode(emit);
        result.decodeSteps += 1;
      }
      result.decodeMs = performance.now() - started;
    }
    // Evictions apply after this step's admissions, which may still have counted on those features.
    for (const key of request.evict) this.features.delete(key);
    result.outputs = [...outputs.values()];
    result.kvBytes = this.batch.bytes;
    return result;
  }

  /**
   * The admitted sequences join the batch, each with its first token. Each distinct prompt that the
   * prompt cache lacks is computed once, in one batched prefill; the others start from the cache.
   */
  private async prefill(admit: AdmitRequest[], result: StepResult, emit: (row: Row, token: number, finish?: FinishReason) => void) {
    const started = performance.now();
    const keys = admit.map(promptKey);
    const entries = new Map<string, PromptEntry>();
    const compute = new Map<string, AdmitRequest>();
    admit.forEach((a, i) => {
      if (entries.has(keys[i]) || compute.has(keys[i])) return;
      const cached = this.prompts.get(keys[i]);
      if (cached) entries.set(keys[i], cached);
      else compute.set(keys[i], a);
    });
    // A cached prompt's images are not encoded, except those the scheduler now counts on this
    // worker to hold (its feature cache had forgotten them): their features are kept as promised.
    for (const [i, a] of admit.entries()) {
      if (compute.has(keys[i])) continue;
      for (const image of a.images) {
        if (image.pixels && image.cache && !this.features.has(image.key)) {
          this.features.set(image.key, await this.graphs.encodeImage(image.pixels, image.grid));
          result.imagesEncoded += 1;
        }
      }
    }
    if (compute.size) {
      const computed = await this.computePrompts([...compute.values()], result);
      [...compute.keys()].forEach((key, i) => {
        entries.set(key, computed[i]);
        this.prompts.put(key, computed[i]);
      });
    }
    result.promptsFromCache = admit.length - compute.size;
    const joined = KvBatch.fromRows(this.graphs.info.layout, admit.map((a) => a.seqId), keys.map((key) => entries.get(key)!.kv));

    const finished: number[] = [];
    admit.forEach((a, b) => {
      const { logits } = entries.get(keys[b])!;
      const row: Row = {
        seqId: a.seqId,
        sampler: new Sampler(a.sampling),
        history: [...a.inputIds],
        generated: 0,
        maxNewTokens: a.maxNewTokens,
        ignoreEos: a.ignoreEos,
        vocabLimit: Math.min(a.vocabLimit, logits.length),
        nextPosition: a.nextPosition,
        pending: -1,
      };
      this.rows.set(a.seqId, row);
      const finish = this.accept(row, row.sampler.next(logits, 0, row.vocabLimit, row.history));
      emit(row, row.pending, finish);
      if (finish) finished.push(a.seqId);
      result.prefillTokens += a.inputIds.length;
      result.prefilled.push(a.seqId);
    });
    if (finished.length) {
      joined.remove(finished);
      for (const id of finished) this.rows.delete(id);
    }
    this.batch.merge(joined);
    result.prefillMs = performance.now() - started;
  }

  /** One batched prefill of the given prompts (left-padded): each one's KV cache and last logits. */
  private async computePrompts(admit: AdmitRequest[], result: StepResult): Promise<PromptEntry[]> {
    const { hiddenSize } = this.graphs.info;
    const batch = admit.length;
    const seq = Math.max(...admit.map((a) => a.inputIds.length));
    const ids = new BigInt64Array(batch * seq).fill(BigInt(this.folder.padTokenId));
    const positions = new BigInt64Array(3 * batch * seq);
    const mask = new BigInt64Array(batch * seq);
    const pads = admit.map((a) => seq - a.inputIds.length);
    admit.forEach((a, b) => {
      const n = a.inputIds.length;
      for (let i = 0; i < n; i++) ids[b * seq + pads[b] + i] = BigInt(a.inputIds[i]);
      mask.fill(1n, b * seq + pads[b], (b + 1) * seq);
      for (let axis = 0; axis < 3; axis++) {
        for (let i = 0; i < n; i++) positions[(axis * batch + b) * seq + pads[b] + i] = BigInt(a.positionIds[axis * n + i]);
      }
    });
    const embeds = await this.graphs.embed(ids, batch, seq);

    const visionStarted = performance.now();
    for (let b = 0; b < batch; b++) await this.spliceImages(admit[b], embeds, b * seq + pads[b], hiddenSize, result);
    result.visionMs += performance.now() - visionStarted;

    const past = KvBatch.emptyPast(this.graphs.info.layout, batch);
    const { logits, vocab, present } = await this.graphs.decode(embeds, [batch, seq], { type: 'int64', data: mask, dims: [batch, seq] }, positions, past, true);
    return admit.map((_, b) => ({
      kv: KvBatch.rowOf(this.graphs.info.layout, present, b, pads[b]),
      logits: logits.slice(b * vocab, (b + 1) * vocab),
    }));
  }

  /** Write each image's vision features over its <|image_pad|> positions in the prompt's embeddings. */
  private async spliceImages(a: AdmitRequest, embeds: Float32Array, rowStart: number, hidden: number, result: StepResult) {
    if (!a.images.length) return;
    const slots: number[] = [];
    a.inputIds.forEach((id, i) => {
      if (id === this.folder.imageTokenId) slots.push(i);
    });
    const expected = a.images.reduce((sum, image) => sum + image.tokens, 0);
    if (slots.length !== expected) {
      throw new EngineError('invalid_input', 'image_token_mismatch', `prompt has ${slots.length} image tokens but its images need ${expected}`);
    }
    let next = 0;
    for (const image of a.images) {
      let features = this.features.get(image.key);
      if (features) {
        result.imagesFromCache += 1;
      } else {
        if (!image.pixels) throw new EngineError('model_error', 'feature_cache_miss', `features of image ${image.key} were expected in the cache`);
        features = await this.graphs.encodeImage(image.pixels, image.grid);
        result.imagesEncoded += 1;
        if (image.cache) this.features.set(image.key, features);
      }
      if (features.length !== image.tokens * hidden) {
        throw new EngineError('model_error', 'image_feature_size', `vision encoder returned ${features.length / hidden} features for ${image.tokens} image tokens`);
      }
      for (let t = 0; t < image.tokens; t++) {
        embeds.set(features.subarray(t * hidden, (t + 1) * hidden), (rowStart + slots[next++]) * hidden);
      }
    }
  }

  /** One decode run over every running row: feed each pending token, sample the next. */
  private async decode(emit: (row: Row, token: number, finish?: FinishReason) => void) {
    const rows = this.batch.seqIds.map((id) => this.rows.get(id)!);
    const batch = rows.length;
    const ids = BigInt64Array.from(rows.map((r) => BigInt(r.pending)));
    const embeds = await this.graphs.embed(ids, batch, 1);
    const positions = new BigInt64Array(3 * batch);
    rows.forEach((r, b) => {
      for (let axis = 0; axis < 3; axis++) positions[axis * batch + b] = BigInt(r.nextPosition);
    });
    const { logits, vocab, present } = await this.graphs.decode(embeds, [batch, 1], this.batch.attentionMask(1), positions, this.batch.past, true);
    this.batch.advance(present);
    const finished: number[] = [];
    rows.forEach((row, b) => {
      row.nextPosition += 1;
      const finish = this.accept(row, row.sampler.next(logits, b * vocab, row.vocabLimit, row.history));
      emit(row, row.pending, finish);
      if (finish) finished.push(row.seqId);
    });
    if (finished.length) this.removeRows(finished);
  }

  /** Record a sampled token; say whether the sequence ends with it. */
  private accept(row: Row, token: number): FinishReason | undefined {
    row.pending = token;
    row.history.push(token);
    row.generated += 1;
    if (!row.ignoreEos && this.eos.has(token)) return 'stop';
    if (row.generated >= row.maxNewTokens) return 'length';
    return undefined;
  }

  private removeRows(seqIds: number[]) {
    const present = seqIds.filter((id) => this.rows.has(id));
    for (const id of present) this.rows.delete(id);
    this.batch.remove(present);
  }

  /** After a failed step the KV state may be half-updated: forget every sequence. */
  reset(): number[] {
    const dropped = [...this.rows.keys()];
    this.rows.clear();
    this.batch = KvBatch.empty(this.graphs.info.layout);
    return dropped;
  }

  async dispose() {
    this.rows.clear();
    this.features.clear();
    this.prompts.clear();
    await this.graphs.dispose();
  }
}

function serialize(error: unknown): SerializedError {
  if (isEngineError(error)) return { kind: error.kind, code: error.code, message: error.message };
  return { kind: 'model_error', code: 'inference_failed', message: `inference failed: ${(error as Error)?.message ?? String(error)}` };
}

async function main() {
  const port = parentPort!;
  const init = workerData as WorkerInit;
  const send = (message: FromWorker) => port.postMessage(message);
  let worker: ModelWorker;
  try {
    worker = new ModelWorker(init.folder, await Qwen2VLGraphs.open(init.folder, init.threads, init.executionProviders), init.promptCacheBytes);
  } catch (error) {
    send({ type: 'init_error', error: serialize(error) });
    return;
  }
  // Steps are strictly sequential: the next message waits for the current step to finish.
  let queue = Promise.resolve();
  port.on('message', (message: ToWorker) => {
    queue = queue.then(async () => {
      if (message.type === 'dispose') {
        await worker.dispose();
        send({ type: 'disposed', id: message.id });
        port.close();
        return;
      }
      try {
        send({ type: 'stepped', id: message.id, result: await worker.step(message.request) });
      } catch (error) {
        send({ type: 'step_error', id: message.id, error: serialize(error), dropped: worker.reset() });
      }
    });
  });
  send({ type: 'ready', info: worker.info });
}

void main();
