// The service's configuration: one validated schema read once at start, every default in one
// place. Each variable is documented in docs/configuration.md.
import { availableParallelism } from 'node:os';
import { basename, resolve } from 'node:path';
import { z } from 'zod';
import { DTYPE_SUFFIX, DtypeChoice, GRAPHS, GraphName, Dtype } from './engine/model_folder';
import { parseRemoteModels, RemoteModelSpec } from './engine/remote/config';

const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);

const EnvSchema = z.object({
  PORT: int(0, 65535).default(8080),
  HOST: z.string().default('0.0.0.0'),
  /** A model folder to serve as the default model (onnx-community Qwen2-VL layout). */
  MODEL_DIR: z.string().optional(),
  /** An extra folder of model folders, listed beside models/. */
  MODELS_DIR: z.string().optional(),
  /** Model used when a request names none (a folder name). */
  DEFAULT_MODEL: z.string().optional(),
  /** Graph variant: fp32, fp16, q8, q4, ... (default: the model's transformers.js_config). */
  MODEL_DTYPE: z.string().optional(),
  /** Intra-op threads of each ONNX session. */
  THREADS: int(1, 1024).optional(),
  /** onnxruntime execution providers in order of preference, comma-separated (cpu, cuda, tensorrt, webgpu). */
  EXECUTION_PROVIDERS: z.string().default('cpu'),
  MAX_BATCH_SIZE: int(1, 256).default(16),
  MAX_QUEUE: int(0, 100000).default(64),
  MAX_PREFILL_TOKENS: int(1).default(8192),
  /** Time budget of one worker call of decode steps while no request waits to join (ms). */
  DECODE_CALL_BUDGET_MS: int(1, 10_000).default(20),
  /** Most decode steps in one worker call (cheap models: fewer thread round trips per token). */
  MAX_DECODE_STEPS_PER_CALL: int(1, 256).default(32),
  FEATURE_CACHE_MB: int(0).default(256),
  /** Prefilled prompts (KV cache and first logits) kept per model for prompts seen again. */
  PROMPT_CACHE_MB: int(0).default(64),
  /** Preprocessed pixels kept for images seen again. */
  IMAGE_CACHE_MB: int(0).default(32),
  /** Unload least recently used models beyond this many MB of weights (0 = never unload). */
  MODEL_MEMORY_BUDGET_MB: int(0).default(0),
  /** Image resize bound, as in training (docs/method.md, "The recipe"). */
  MAX_PIXELS: int(3136).default(401408),
  MIN_PIXELS: int(784).default(3136),
  /** Images declaring more pixels than this are refused before decoding (decompression bombs). */
  MAX_INPUT_PIXELS: int(1).default(40_000_000),
  MAX_IMAGE_BYTES: int(1).default(20 * 1024 * 1024),
  MAX_QUESTION_CHARS: int(1).default(20_000),
  /** max_new_tokens when a request gives none: 1024 (docs/api.md, "POST /generate"), capped by MAX_NEW_TOKENS. */
  DEFAULT_MAX_NEW_TOKENS: int(1).optional(),
  MAX_NEW_TOKENS: int(1).default(2048),
  MAX_PROMPT_TOKENS: int(1).default(8192),
  REQUEST_TIMEOUT_MS: int(1).default(300_000),
  /** Time given to in-flight requests after SIGTERM before the process exits anyway. */
  SHUTDOWN_GRACE_MS: int(0).default(30_000),
  /** After SIGTERM, keep answering (readyz 503, new work 503) this long so load balancers see it. */
  SHUTDOWN_DELAY_MS: int(0).default(2_000),
  /** Comma-separated host names from which chat requests may fetch images (none by default). */
  ALLOWED_IMAGE_HOSTS: z.string().default(''),
  DATA_DIR: z.string().default('./data'),
  STATE_DIR: z.string().default('./state'),
  ADMIN_TOKEN: z.string().optional(),
  /** Where training jobs run: a local trainer process, or Kubernetes Jobs (docs/training.md). */
  TRAIN_BACKEND: z.enum(['local', 'kubernetes']).default('local'),
  /** Python of the local trainer (default: the repository's .venv). */
  TRAINER_PYTHON: z.string().optional(),
  /** Training jobs running at once; the rest wait queued (one job per GPU). */
  TRAIN_MAX_CONCURRENT: int(1, 1024).default(1),
  /** After a cancel's SIGTERM, the trainer gets this long to checkpoint before SIGKILL. */
  TRAIN_CANCEL_GRACE_MS: int(0).default(30_000),
  /** Kubernetes backend: namespace of the trainer Jobs (default: the service's own, else "default"). */
  K8S_NAMESPACE: z.string().optional(),
  /** Kubernetes backend: the trainer image (the Dockerfile's gpu target). */
  K8S_TRAINER_IMAGE: z.string().optional(),
  /** Kubernetes backend: the PersistentVolumeClaim holding STATE_DIR, mounted at the same path in trainer pods. */
  K8S_STATE_PVC: z.string().optional(),
  /** Models served elsewhere: name=URL[#remote-id][|URL...], comma-separated (docs/remote-models.md). */
  REMOTE_MODELS: z.string().default(''),
  /** Requests in flight per remote replica; more wait for a slot. */
  REMOTE_MAX_IN_FLIGHT: int(1, 10_000).default(8),
  /** Longest silence from a remote replica (connecting, first byte, between chunks) before a 504. */
  REMOTE_TIMEOUT_MS: int(1).default(60_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Load and warm the default model at start (readiness waits for it). */
  WARMUP: z.enum(['true', 'false']).default('true'),
});

export type Env = z.infer<typeof EnvSchema>;

export interface Config {
  port: number;
  host: string;
  modelRoots: string[];
  /** Explicit model folders (MODEL_DIR), by name. */
  modelFolders: { name: string; dir: string }[];
  defaultModel: string;
  dtype?: DtypeChoice;
  threads: number;
  /** onnxruntime execution providers in order of preference. */
  executionProviders: string[];
  maxBatchSize: number;
  maxQueue: number;
  maxPrefillTokens: number;
  decodeCallBudgetMs: number;
  maxDecodeStepsPerCall: number;
  featureCacheBytes: number;
  promptCacheBytes: number;
  imageCacheBytes: number;
  memoryBudgetBytes: number;
  maxPixels: number;
  minPixels: number;
  maxInputPixels: number;
  maxImageBytes: number;
  maxQuestionChars: number;
  defaultMaxNewTokens: number;
  maxNewTokens: number;
  maxPromptTokens: number;
  requestTimeoutMs: number;
  shutdownGraceMs: number;
  shutdownDelayMs: number;
  allowedImageHosts: string[];
  dataDir: string;
  stateDir: string;
  adminToken?: string;
  trainBackend: Env['TRAIN_BACKEND'];
  /** The trainer's Python interpreter (local backend). */
  trainerPython: string;
  trainMaxConcurrent: number;
  trainCancelGraceMs: number;
  k8sNamespace?: string;
  k8sTrainerImage?: string;
  k8sStatePvc?: string;
  logLevel: Env['LOG_LEVEL'];
  warmup: boolean;
  remoteModels: RemoteModelSpec[];
  remoteMaxInFlight: number;
  remoteTimeoutMs: number;
}

/** The model shipped in models/ that a fresh clone serves: the project's R1-Zero GRPO policy (docs/embedded-model.md). */
export const EMBEDDED_MODEL = 'nano-r1zero';
// src/config.ts and dist/config.js both sit one level below the repository root.
export const REPO_ROOT = resolve(__dirname, '..');

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`invalid configuration: ${problems}`);
  }
  const e = parsed.data;
  if (e.MIN_PIXELS > e.MAX_PIXELS) throw new Error(`invalid configuration: MIN_PIXELS (${e.MIN_PIXELS}) exceeds MAX_PIXELS (${e.MAX_PIXELS})`);
  if (e.DEFAULT_MAX_NEW_TOKENS !== undefined && e.DEFAULT_MAX_NEW_TOKENS > e.MAX_NEW_TOKENS) {
    throw new Error(`invalid configuration: DEFAULT_MAX_NEW_TOKENS (${e.DEFAULT_MAX_NEW_TOKENS}) exceeds MAX_NEW_TOKENS (${e.MAX_NEW_TOKENS})`);
  }
  const modelFolders = e.MODEL_DIR ? [{ name: basename(resolve(e.MODEL_DIR)), dir: resolve(e.MODEL_DIR) }] : [];
  if (e.TRAIN_BACKEND === 'kubernetes') {
    const missing = (['K8S_TRAINER_IMAGE', 'K8S_STATE_PVC'] as const).filter((name) => !e[name]);
    if (missing.length) throw new Error(`invalid configuration: TRAIN_BACKEND=kubernetes needs ${missing.join(' and ')}`);
  }
  // Models exported by training jobs (STATE_DIR/models) come last: they never shadow shipped ones.
  const modelRoots = [resolve(REPO_ROOT, 'models'), ...(e.MODELS_DIR ? [resolve(e.MODELS_DIR)] : []), resolve(e.STATE_DIR, 'models')];
  return {
    port: e.PORT,
    host: e.HOST,
    modelRoots,
    modelFolders,
    defaultModel: e.DEFAULT_MODEL ?? modelFolders[0]?.name ?? EMBEDDED_MODEL,
    dtype: e.MODEL_DTYPE ? parseDtype(e.MODEL_DTYPE) : undefined,
    threads: e.THREADS ?? availableParallelism(),
    executionProviders: parseExecutionProviders(e.EXECUTION_PROVIDERS),
    maxBatchSize: e.MAX_BATCH_SIZE,
    maxQueue: e.MAX_QUEUE,
    maxPrefillTokens: e.MAX_PREFILL_TOKENS,
    decodeCallBudgetMs: e.DECODE_CALL_BUDGET_MS,
    maxDecodeStepsPerCall: e.MAX_DECODE_STEPS_PER_CALL,
    featureCacheBytes: e.FEATURE_CACHE_MB * 1024 * 1024,
    promptCacheBytes: e.PROMPT_CACHE_MB * 1024 * 1024,
    imageCacheBytes: e.IMAGE_CACHE_MB * 1024 * 1024,
    memoryBudgetBytes: e.MODEL_MEMORY_BUDGET_MB * 1024 * 1024,
    maxPixels: e.MAX_PIXELS,
    minPixels: e.MIN_PIXELS,
    maxInputPixels: e.MAX_INPUT_PIXELS,
    maxImageBytes: e.MAX_IMAGE_BYTES,
    maxQuestionChars: e.MAX_QUESTION_CHARS,
    defaultMaxNewTokens: e.DEFAULT_MAX_NEW_TOKENS ?? Math.min(1024, e.MAX_NEW_TOKENS),
    maxNewTokens: e.MAX_NEW_TOKENS,
    maxPromptTokens: e.MAX_PROMPT_TOKENS,
    requestTimeoutMs: e.REQUEST_TIMEOUT_MS,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    shutdownDelayMs: Math.min(e.SHUTDOWN_DELAY_MS, e.SHUTDOWN_GRACE_MS),
    allowedImageHosts: e.ALLOWED_IMAGE_HOSTS.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean),
    dataDir: resolve(e.DATA_DIR),
    stateDir: resolve(e.STATE_DIR),
    adminToken: e.ADMIN_TOKEN || undefined,
    trainBackend: e.TRAIN_BACKEND,
    // A bare command name (python3) is looked up on PATH; a path is made absolute.
    trainerPython: !e.TRAINER_PYTHON ? resolve(REPO_ROOT, '.venv', 'bin', 'python') : e.TRAINER_PYTHON.includes('/') ? resolve(e.TRAINER_PYTHON) : e.TRAINER_PYTHON,
    trainMaxConcurrent: e.TRAIN_MAX_CONCURRENT,
    trainCancelGraceMs: e.TRAIN_CANCEL_GRACE_MS,
    k8sNamespace: e.K8S_NAMESPACE || undefined,
    k8sTrainerImage: e.K8S_TRAINER_IMAGE || undefined,
    k8sStatePvc: e.K8S_STATE_PVC || undefined,
    logLevel: e.LOG_LEVEL,
    warmup: e.WARMUP === 'true',
    remoteModels: parseRemoteModels(e.REMOTE_MODELS),
    remoteMaxInFlight: e.REMOTE_MAX_IN_FLIGHT,
    remoteTimeoutMs: e.REMOTE_TIMEOUT_MS,
  };
}

/** Names onnxruntime-node gives its execution providers (whether this build has each is checked when a model loads). */
export const EXECUTION_PROVIDER_NAMES = ['cpu', 'cuda', 'tensorrt', 'webgpu', 'dml', 'coreml'] as const;

/** EXECUTION_PROVIDERS: "cuda,cpu" -> ['cuda', 'cpu']; unknown or repeated names are refused. */
export function parseExecutionProviders(value: string): string[] {
  const providers = value.split(',').map((p) => p.trim().toLowerCase()).filter(Boolean);
  if (!providers.length) throw new Error(`invalid configuration: EXECUTION_PROVIDERS is empty; give one or more of ${EXECUTION_PROVIDER_NAMES.join(', ')} (default cpu)`);
  for (const provider of providers) {
    if (!(EXECUTION_PROVIDER_NAMES as readonly string[]).includes(provider)) {
      throw new Error(`invalid configuration: EXECUTION_PROVIDERS "${provider}" is not one of ${EXECUTION_PROVIDER_NAMES.join(', ')}`);
    }
  }
  if (new Set(providers).size !== providers.length) throw new Error(`invalid configuration: EXECUTION_PROVIDERS "${value}" names a provider twice`);
  return providers;
}

/** MODEL_DTYPE: one dtype for every graph ("q4"), or per graph ("decoder_model_merged=q4,vision_encoder=fp32"). */
export function parseDtype(value: string): DtypeChoice {
  const isDtype = (d: string): d is Dtype => d in DTYPE_SUFFIX;
  const known = Object.keys(DTYPE_SUFFIX).join(', ');
  if (!value.includes('=')) {
    if (!isDtype(value)) throw new Error(`invalid configuration: MODEL_DTYPE "${value}" is not one of ${known}`);
    return value;
  }
  const choice: Partial<Record<GraphName, Dtype>> = {};
  for (const item of value.split(',')) {
    const [graph, dtype] = item.split('=').map((x) => x.trim());
    if (!(GRAPHS as readonly string[]).includes(graph)) throw new Error(`invalid configuration: MODEL_DTYPE graph "${graph}" is not one of ${GRAPHS.join(', ')}`);
    if (!isDtype(dtype)) throw new Error(`invalid configuration: MODEL_DTYPE "${dtype}" for ${graph} is not one of ${known}`);
    choice[graph as GraphName] = dtype;
  }
  return choice;
}
