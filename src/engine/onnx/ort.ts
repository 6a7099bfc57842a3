// The only module that imports onnxruntime-node. Everything else sees our own `Tensor` shape and
// `Graph` wrapper, so the runtime can change without touching the engine.
//
// `session.run` blocks the calling thread (docs/qwen2-vl.md, "Graphs and how they run"): graphs
// are only opened inside the model worker thread (runner/worker.ts), never on the HTTP thread.
//
// Sessions use onnxruntime's CPU execution provider unless EXECUTION_PROVIDERS names others, in
// order of preference (docs/configuration.md); nodes no provider takes run on the CPU. The
// Dockerfile's gpu image installs the CUDA provider libraries that `cuda` needs.
import * as ort from 'onnxruntime-node';
import { basename } from 'node:path';
import { EngineError } from '../errors';

export type TensorType = 'float32' | 'float16' | 'int64';
export type TensorData = Float32Array | Uint16Array | BigInt64Array;

/** Structurally what ORT tensors are; ORT outputs can be used as inputs again without copying. */
export interface Tensor {
  readonly type: TensorType;
  readonly data: TensorData;
  readonly dims: readonly number[];
}

export interface ValueInfo {
  name: string;
  type: TensorType | string;
  /** Numbers for fixed dimensions, strings for symbolic ones. */
  shape: readonly (number | string)[];
}

export function tensor(type: 'float32', data: Float32Array, dims: readonly number[]): Tensor;
export function tensor(type: 'float16', data: Uint16Array, dims: readonly number[]): Tensor;
export function tensor(type: 'int64', data: BigInt64Array, dims: readonly number[]): Tensor;
export function tensor(type: TensorType, data: TensorData, dims: readonly number[]): Tensor {
  return { type, data, dims };
}

export interface GraphOptions {
  /** Threads for one operator (intra-op); the CPU's cores by default. */
  threads?: number;
  /** onnxruntime execution providers in order of preference (default: cpu only). */
  executionProviders?: readonly string[];
  /**
   * Whether the graph's worker threads spin-wait for more work after a run (onnxruntime's default,
   * true). Every session has its own thread pool, so a spinning pool takes cores from the next
   * graph's run; graphs that run between another graph's runs should not spin.
   */
  spin?: boolean;
}

/** onnxruntime session options for a graph (`Graph.open`; bench/ceiling.ts opens its sessions with the same). */
export function sessionOptions(options: GraphOptions = {}): ort.InferenceSession.SessionOptions {
  const result: ort.InferenceSession.SessionOptions = {
    executionProviders: options.executionProviders?.length ? [...options.executionProviders] : ['cpu'],
    graphOptimizationLevel: 'all',
    interOpNumThreads: 1,
    executionMode: 'sequential',
  };
  if (options.threads !== undefined) result.intraOpNumThreads = options.threads;
  if (options.spin === false) result.extra = { session: { intra_op: { allow_spinning: '0' } } };
  return result;
}

/** The execution providers this onnxruntime-node build knows (`cuda` and `tensorrt` also need their libraries installed). */
export function knownExecutionProviders(): string[] {
  return ort.listSupportedBackends().map((backend) => backend.name);
}

export class Graph {
  readonly name: string;
  readonly inputs: ReadonlyMap<string, ValueInfo>;
  readonly outputs: ReadonlyMap<string, ValueInfo>;
  private session: ort.InferenceSession | null;

  private constructor(name: string, session: ort.InferenceSession) {
    this.name = name;
    this.session = session;
    this.inputs = describe(session.inputMetadata);
    this.outputs = describe(session.outputMetadata);
  }

  static async open(path: string, options: GraphOptions = {}): Promise<Graph> {
    const providers = options.executionProviders?.length ? [...options.executionProviders] : ['cpu'];
    const known = knownExecutionProviders();
    const unknown = providers.filter((p) => !known.includes(p));
    if (unknown.length) {
      throw new EngineError('model_error', 'execution_provider_unknown', `EXECUTION_PROVIDERS: ${unknown.join(', ')} not known to this onnxruntime-node build (known: ${known.join(', ')})`);
    }
    try {
      const session = await ort.InferenceSession.create(path, sessionOptions({ ...options, executionProviders: providers }));
      return new Graph(basename(path), session);
    } catch (error) {
      const via = providers.join(',') === 'cpu' ? '' : ` with EXECUTION_PROVIDERS=${providers.join(',')}`;
      throw new EngineError('model_error', 'graph_load_failed', `cannot load ${path}${via}: ${(error as Error).message}`, { cause: error });
    }
  }

  async run(feeds: Record<string, Tensor>, outputNames?: string[]): Promise<Record<string, Tensor>> {
    if (!this.session) throw new EngineError('model_error', 'graph_disposed', `${this.name} was used after dispose()`);
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, value] of Object.entries(feeds)) {
      ortFeeds[name] = value instanceof ort.Tensor ? value : new ort.Tensor(value.type, value.data, value.dims as number[]);
    }
    const out = outputNames ? await this.session.run(ortFeeds, outputNames) : await this.session.run(ortFeeds);
    return out as unknown as Record<string, Tensor>;
  }

  async dispose(): Promise<void> {
    const session = this.session;
    this.session = null;
    await session?.release();
  }
}

function describe(metadata: readonly ort.InferenceSession.ValueMetadata[]): Map<string, ValueInfo> {
  const out = new Map<string, ValueInfo>();
  for (const value of metadata) {
    out.set(value.name, value.isTensor ? { name: value.name, type: value.type, shape: value.shape } : { name: value.name, type: 'non-tensor', shape: [] });
  }
  return out;
}

// --- float16 <-> float32 ------------------------------------------------------------------------
// fp16 model variants take and return float16 tensors (as Uint16Array bit patterns).

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function toFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    f32[0] = values[i];
    const x = u32[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    let e = exp - 127 + 15;
    if (e >= 0x1f) {
      out[i] = sign | 0x7c00;
      continue;
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign;
        continue;
      }
      mant = (mant | 0x800000) >>> (1 - e);
      // round half to even
      if ((mant & 0x1fff) > 0x1000 || ((mant & 0x1fff) === 0x1000 && (mant & 0x2000))) mant += 0x2000;
      out[i] = sign | (mant >>> 13);
      continue;
    }
    if ((mant & 0x1fff) > 0x1000 || ((mant & 0x1fff) === 0x1000 && (mant & 0x2000))) {
      mant += 0x2000;
      if (mant & 0x800000) {
        mant = 0;
        e += 1;
        if (e >= 0x1f) {
          out[i] = sign | 0x7c00;
          continue;
        }
      }
    }
    out[i] = sign | (e << 10) | (mant >>> 13);
  }
  return out;
}

export function fromFloat16(values: Uint16Array): Float32Array {
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const h = values[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) out[i] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) out[i] = mant ? NaN : sign * Infinity;
    else out[i] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  return out;
}

/** A float tensor's values as float32, converting float16. */
export function floatData(t: Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float16') return fromFloat16(t.data as Uint16Array);
  throw new Error(`expected a float tensor, got ${t.type}`);
}
