// The shapes every benchmark part agrees on: an evaluation item (one line of a data set on disk,
// docs/architecture.md, "A data set on disk", with its images resolvable to bytes) and a loaded benchmark split.

/** One line of `<dataset>/<split>.jsonl` (docs/architecture.md, "A data set on disk"). */
export interface DatasetRecord {
  /** Stable across runs, e.g. "spatial-synth/test/000123" or "cv-bench/test_2d/17". */
  id: string;
  /** Image paths relative to the data set folder. */
  images: string[];
  question: string;
  /** Option texts in letter order (A, B, ...). */
  choices: string[];
  /** Gold letter. */
  answer: string;
  /** Gold option text (SAT-style answers and the paper's accuracy reward). */
  answer_text: string;
  /** The question with CV-Bench-style choices: "<question> Select from the following choices.\n(A) ...". */
  prompt: string;
  /** Category scores are grouped by (CV-Bench: Count, Relation, Depth, Distance; BLINK: subtask; ...). */
  task: string;
  /** What an official score needs (CV-Bench: ADE20K, COCO, Omni3D); the data set's name otherwise. */
  source: string;
  meta: Record<string, unknown>;
}

/** An item ready to evaluate: its record plus a way to get each image's encoded bytes. */
export interface EvalItem {
  record: DatasetRecord;
  /** Encoded image files (PNG/JPEG/WebP), in record.images order. */
  loadImages(): Promise<Buffer[]>;
}

export type BenchmarkName = 'cv-bench' | 'blink' | 'vsr' | 'sat' | 'spatial-synth';
export const BENCHMARKS: readonly BenchmarkName[] = ['cv-bench', 'blink', 'vsr', 'sat', 'spatial-synth'];

export interface BenchmarkSplit {
  benchmark: BenchmarkName;
  /** The split that was loaded, e.g. "test", "test_2d+test_3d", "val", "zeroshot_test". */
  split: string;
  items: EvalItem[];
}

export interface LoadOptions {
  /** Root of benchmark data (DATA_DIR). */
  dataDir: string;
  split?: string;
  /** Benchmark-specific subsets (CV-Bench: 2D/3D; BLINK: subtasks). */
  subsets?: string[];
  limit?: number;
}

/** Letters of multiple-choice options: A, B, C, ... */
export function optionLetter(index: number): string {
  return String.fromCharCode(65 + index);
}

/** CV-Bench's prompt style: the question, then "Select from the following choices." and lettered options. */
export function choicesPrompt(question: string, choices: string[]): string {
  const options = choices.map((c, i) => `(${optionLetter(i)}) ${c}`).join('\n');
  return `${question} Select from the following choices.\n${options}`;
}
