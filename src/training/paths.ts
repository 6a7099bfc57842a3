// Where a job's base model and data set live. Requests name them; only folders under the model
// roots and DATA_DIR can be reached: anything else (`..`, an absolute path elsewhere) is refused
// before the filesystem is touched, and a folder a request names that is a symbolic link (or lies
// under one) leading out of its root is refused too. The service's own names (the models the engine
// lists, the named data sets) are the operator's to place wherever their links point.
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import { invalidInput, notFound, ServiceError, unprocessable } from '../errors';

/** Whether `target` is strictly inside `root` (both absolute). */
export function isInside(root: string, target: string): boolean {
  const rel = relative(root, target);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

/**
 * Whether an existing `target` is inside `root` once symbolic links are followed (the root's own
 * links included: a DATA_DIR that is itself a link is fine). A missing target is not judged here.
 */
function reallyInside(root: string, target: string): boolean {
  let real: string;
  try {
    real = realpathSync(target);
  } catch {
    return true;
  }
  try {
    return isInside(realpathSync(root), real);
  } catch {
    return false;
  }
}

/** A plain folder name: no separators, not `.` or `..`. */
const NAME = /^(?!\.{1,2}$)[\w.-]+$/;

function outside(field: string, value: string, where: string): ServiceError {
  return invalidInput('path_outside_roots', `${field} "${value}" is outside ${where}; give a name or a path inside it`);
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
  const listed = NAME.test(value) ? known.find((m) => m.name === value)?.dir : undefined;
  let dir: string | undefined = listed;
  if (!listed) {
    // Each root with the folder the value means in it (lexically inside, or refused).
    const candidates = NAME.test(value)
      ? roots.map((root) => ({ root, target: join(root, value) }))
      : roots.map((root) => ({ root, target: resolve(root, value) })).filter(({ root, target }) => isInside(root, target));
    if (!candidates.length) throw outside('base_model', value, where);
    const found = candidates.find(({ target }) => isDir(target));
    if (found && !reallyInside(found.root, found.target)) throw outside('base_model', value, `${where} once symbolic links are followed`);
    dir = found?.target;
  }
  if (!dir) throw notFound('model_not_found', `no model folder "${value}" under ${where}; see GET /v1/models`);
  if (!isTrainable(dir)) {
    throw unprocessable(
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
  const dir = named ? join(dataDir, named.folder) : resolve(dataDir, value);
  const file = join(dir, `${split}.jsonl`);
  if (!named) {
    if (!isInside(dataDir, dir)) throw outside('dataset', value, `DATA_DIR (${dataDir})`);
    if (!reallyInside(dataDir, dir) || !reallyInside(dataDir, file)) throw outside('dataset', value, `DATA_DIR (${dataDir}) once symbolic links are followed`);
  }
  if (!existsSync(file)) {
    const how = named ? `; make it with: ${named.make(dir)}` : ' (data set format: docs/architecture.md, "A data set on disk")';
    throw notFound('dataset_not_found', `no ${split} split for dataset "${value}": ${file} is missing${how}`);
  }
  return dir;
}
