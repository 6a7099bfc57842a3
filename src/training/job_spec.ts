// What a training request is, and the job.json it becomes (docs/training.md, "job.json"). The
// HTTP schema (trainSchema in src/server/schemas.ts) checks types and ranges, the trainer's where
// it states them (test/vectors/training_options.json, test/training/training_options.test.ts);
// defaults stay the trainer's, so job.json carries only what the request gave, plus the resolved paths.
import type { LevelName } from '../benchmarks/spatial_synth';

/** A training request as the API takes it (snake_case, like job.json). */
export interface TrainRequest {
  /** A model name (GET /v1/models) or a folder under the model roots; default: the default model. */
  base_model?: string;
  /** `spatial-synth`, `sat`, or a folder name or path under DATA_DIR; default `spatial-synth`. */
  dataset?: string;
  /**
   * spatial-synth only: the level of its items (`standard`, `easy`; docs/spatial-synth.md). Not a
   * trainer key: it chooses the data set folder. Default: DATA_DIR/spatial-synth's when that holds
   * the split, else standard.
   */
  level?: LevelName;
  split?: string;
  steps?: number;
  num_generations?: number;
  prompts_per_step?: number;
  learning_rate?: number;
  beta?: number;
  temperature?: number;
  max_completion_length?: number;
  max_pixels?: number;
  device?: 'auto' | 'cpu' | 'cuda';
  seed?: number;
  save_steps?: number;
  template?: 'r1' | 'instruct';
  freeze_vision?: boolean;
  freeze_llm?: boolean;
  /** Machines (Kubernetes backend; more than one runs a PyTorchJob). Not a trainer key. */
  nodes?: number;
  /** GPUs per machine (Kubernetes backend). Not a trainer key. */
  gpus?: number;
}

/** Request fields handed to the trainer as they are (job.json keys of the same name). */
export const TRAINER_KEYS = [
  'split',
  'steps',
  'num_generations',
  'prompts_per_step',
  'learning_rate',
  'beta',
  'temperature',
  'max_completion_length',
  'max_pixels',
  'device',
  'seed',
  'save_steps',
  'template',
  'freeze_vision',
  'freeze_llm',
] as const satisfies readonly (keyof TrainRequest)[];

export interface JobConfig {
  job_id: string;
  base_model: string;
  dataset: string;
  output_dir: string;
  export_dir: string;
  [key: string]: unknown;
}

export function buildJobConfig(
  request: TrainRequest,
  resolved: { jobId: string; baseModelDir: string; datasetDir: string; jobDir: string; exportDir: string },
): JobConfig {
  const config: JobConfig = {
    job_id: resolved.jobId,
    base_model: resolved.baseModelDir,
    dataset: resolved.datasetDir,
    output_dir: resolved.jobDir,
    export_dir: resolved.exportDir,
  };
  for (const key of TRAINER_KEYS) if (request[key] !== undefined) config[key] = request[key];
  return config;
}
