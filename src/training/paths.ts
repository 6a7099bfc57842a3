// Where a job's base model and data set live. Requests name them; only folders under the model
// roots and DATA_DIR can be reached: anything else (`..`, an absolute path elsewhere) is refused
// before the filesystem is touched. Confinement is lexical: symbolic links inside the roots are
// the operator's to place, and requests cannot create any.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { EngineError } from '../engine/errors';

/** Whether `target` is strictly inside `root` (both absolute). */
export function isInside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/** A plain folder name: no separators, not `.` or `..`. */
const NAME = /^(?!\.{1,2}$)[\w.-]+$/;

function outside(field: string, value: string, where: string): EngineError {
  return new EngineError('invalid_input', 'path_outside_roots', `${field} "${value}" is outside ${where}; give a name or a path inside it`);
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** A folder the trainer can start from: a Hugging Face checkpoint (config.json and safetensors). */
function isTrainable(dir: string): boolean {
  if (!existsSync(join(dir, 'config.json'))) return false;
  return readdirSync(dir).some((f) => f.endsWith('.safetensors') || f === 'model.safetensors.index.json');
}

/**
 * The folder of `base_model`: a model the engine lists (by name), a folder name under a model
 * root, or a path inside a model root (relative paths are tried against each root in order).
 */
export function resolveBaseModel(value: string, known: { name: string; dir: string }[], roots: string[]): string {
  const where = `the model roots (${roots.join(', ')})`;
  let dir: string | undefined;
  if (NAME.test(value)) {
    dir = known.find((m) => m.name === value)?.dir ?? roots.map((root) => join(root, value)).find(isDir);
  } else if (isAbsolute(value)) {
    const target = resolve(value);
    if (!roots.some((root) => isInside(root, target))) throw outside('base_model', value, where);
    dir = isDir(target) ? target : undefined;
  } else {
    const candidates = roots.map((root) => ({ root, target: resolve(root, value) }));
    if (!candidates.some(({ root, target }) => isInside(root, target))) throw outside('base_model', value, where);
    dir = candidates.filter(({ root, target }) => isInside(root, target)).map((c) => c.target).find(isDir);
  }
  if (!dir) throw new EngineError('not_found', 'model_not_found', `no model folder "${value}" under ${where}; see GET /v1/models`);
  if (!isTrainable(dir)) {
    throw new EngineError(
      'unprocessable',
      'base_model_not_trainable',
      `${dir} has no config.json and safetensors weights; the trainer starts from a Hugging Face checkpoint folder (docs/export.md)`,
    );
  }
  return dir;
}

/** Named data sets: the folders the synth and prepare commands write (docs/spatial-synth.md, docs/benchmarks.md). */
export const NAMED_DATASETS: Record<string, { folder: string; make: (dir: string) => string }> = {
  'spatial-synth': { folder: 'spatial-synth', make: (dir) => `npm run synth -- --out ${dir}` },
  sat: { folder: 'sat-train', make: (dir) => `npm run prepare-data -- --benchmark sat --split train --out ${dir}` },
};

/**
 * The folder of `dataset`: `spatial-synth`, `sat` (the prepared SAT training set), a folder name
 * under DATA_DIR, or a path inside DATA_DIR (relative to it). It must hold `<split>.jsonl`.
 */
export function resolveDataset(value: string, dataDir: string, split: string): string {
  const named = Object.hasOwn(NAMED_DATASETS, value) ? NAMED_DATASETS[value] : undefined;
  let dir: string;
  if (named) dir = join(dataDir, named.folder);
  else {
    dir = resolve(dataDir, value);
    if (!isInside(dataDir, dir)) throw outside('dataset', value, `DATA_DIR (${dataDir})`);
  }
  const file = join(dir, `${split}.jsonl`);
  if (!existsSync(file)) {
    const how = named ? `; make it with: ${named.make(dir)}` : ' (data set format: design.md "A data set on disk")';
    throw new EngineError('not_found', 'dataset_not_found', `no ${split} split for dataset "${value}": ${file} is missing${how}`);
  }
  return dir;
}
