// VSR, Visual Spatial Reasoning (cambridgeltl/visual-spatial-reasoning; annotations Apache-2.0,
// images from COCO 2017, not included). Each line pairs a COCO image with a caption stating a
// spatial relation and a label: 1 when the caption is true of the image, 0 when false.
//
// Layout: the GitHub repository's data/splits/{random,zeroshot}/{train,dev,test}.jsonl, placed as
// vsr/random/test.jsonl (also accepted: vsr/splits/random/..., vsr/data/splits/random/..., and the
// Hugging Face copies cambridgeltl/vsr_random / vsr_zeroshot as vsr/vsr_random/test.jsonl). Images
// by file name (`image`, e.g. 000000451431.jpg) in vsr/images/ (the repository's images/ folder,
// or its trainval2017/), or in coco/train2017/ and coco/val2017/ of a COCO 2017 download.
// Fields: image, image_link, caption, label, relation, annotator_id, vote_*_validator_id.
//
// Posed as multiple choice: the question asks whether the caption is true of the image, choices
// ["True", "False"], gold A for label 1 and B for label 0. task = `relation` (66 relations, e.g.
// "on top of"; the reported score is plain accuracy, per-relation results are diagnostics).
import { join, resolve } from 'node:path';
import { choicesPrompt, DatasetRecord, EvalItem } from '../types';
import {
  BenchmarkLoader,
  dataPath,
  BenchmarkLoadOptions,
  checkLimit,
  dataMissing,
  fileItem,
  isDir,
  isFile,
  LoadedBenchmarkSplit,
  malformed,
  readJsonl,
  requiredString,
  RowPlace,
  shown,
  SplitInfo,
  taskSubsets,
  unknownSplit,
} from './common';

const TITLE = 'VSR';
const VARIANTS = ['random', 'zeroshot'] as const;
const PARTS = ['test', 'dev', 'train'] as const;
const SPLITS = VARIANTS.flatMap((v) => PARTS.map((p) => `${v}_${p}`));
const CHOICES = ['True', 'False'];

function folder(dataDir?: string): string {
  return dataPath(dataDir, 'vsr');
}

/** Annotation files tried for a split, relative to vsr/. */
function annotationCandidates(variant: string, part: string): string[] {
  return [join(variant, `${part}.jsonl`), join('splits', variant, `${part}.jsonl`), join('data', 'splits', variant, `${part}.jsonl`), join(`vsr_${variant}`, `${part}.jsonl`)];
}

/** Image folders tried in order (COCO ids are unique across train2017 and val2017). */
function imageFolders(dataDir?: string): string[] {
  const vsr = folder(dataDir);
  const coco = dataPath(dataDir, 'coco');
  return [join(vsr, 'images'), join(vsr, 'data', 'images'), join(vsr, 'trainval2017'), join(coco, 'train2017'), join(coco, 'val2017'), join(coco, 'trainval2017')];
}

export function vsrLayout(dataDir?: string): string {
  const dir = folder(dataDir);
  const coco = dataPath(dataDir, 'coco');
  return (
    `VSR: place random/test.jsonl and zeroshot/test.jsonl (data/splits/ of cambridgeltl/visual-spatial-reasoning) in ${dir}/ ` +
    `(${dir}/splits/random/test.jsonl or the Hugging Face copies ${dir}/vsr_random/test.jsonl and ${dir}/vsr_zeroshot/test.jsonl also work), ` +
    `and the COCO 2017 images they name in ${dir}/images/ (or ${coco}/train2017/ and ${coco}/val2017/)`
  );
}

/** The question put to the model for a caption. */
export function vsrQuestion(caption: string): string {
  return `Is the following statement about the image true or false? "${caption.trim()}"`;
}

function label(row: Record<string, unknown>, place: RowPlace): boolean {
  const value = row.label;
  if (value === 1 || value === true || value === '1' || (typeof value === 'string' && value.toLowerCase() === 'true')) return true;
  if (value === 0 || value === false || value === '0' || (typeof value === 'string' && value.toLowerCase() === 'false')) return false;
  throw malformed(place.file, `${place.where}: field "label" is ${JSON.stringify(value) ?? 'missing'}, expected 1 or 0`);
}

function toRecord(row: Record<string, unknown>, split: string, index: number, place: RowPlace, imagePath: string): DatasetRecord {
  const caption = requiredString(row, 'caption', place);
  const truth = label(row, place);
  const question = vsrQuestion(caption);
  const meta: Record<string, unknown> = { row: index, label: truth ? 1 : 0 };
  for (const field of ['image', 'image_link', 'caption', 'relation', 'subj', 'obj', 'annotator_id']) {
    const value = row[field];
    if (value !== undefined && value !== null) meta[field] = value;
  }
  return {
    id: `vsr/${split}/${index}`,
    images: [imagePath],
    question,
    choices: [...CHOICES],
    answer: truth ? 'A' : 'B',
    answer_text: truth ? 'True' : 'False',
    prompt: choicesPrompt(question, CHOICES),
    task: requiredString(row, 'relation', place),
    source: 'VSR',
    meta,
  };
}

async function load(options: BenchmarkLoadOptions): Promise<LoadedBenchmarkSplit> {
  const limit = checkLimit(options.limit);
  const split = options.split ?? 'random_test';
  if (!SPLITS.includes(split)) throw unknownSplit(TITLE, split, SPLITS);
  const [variant, part] = split.split('_');

  const dir = folder(options.dataDir);
  if (!(await isDir(dir))) throw dataMissing(`no VSR folder at ${dir}. ${vsrLayout(options.dataDir)}`);
  let file: string | undefined;
  for (const candidate of annotationCandidates(variant, part)) {
    if (await isFile(join(dir, candidate))) {
      file = join(dir, candidate);
      break;
    }
  }
  if (!file) throw dataMissing(`VSR ${split} not found: place ${variant}/${part}.jsonl in ${dir}/. ${vsrLayout(options.dataDir)}`);

  const folders: string[] = [];
  for (const candidate of imageFolders(options.dataDir)) if (await isDir(candidate)) folders.push(candidate);

  const info: SplitInfo = { layout: 'jsonl', files: [file], rows: 0, skipped: {}, messages: [] };
  const lines = await readJsonl(file);
  const records: { record: DatasetRecord; path: string }[] = [];
  const missing: string[] = [];
  for (const [index, { line, row }] of lines.entries()) {
    const place = { file, where: `line ${line}` };
    info.rows++;
    const image = requiredString(row, 'image', place);
    let path: string | undefined;
    for (const candidate of folders) {
      if (await isFile(join(candidate, image))) {
        path = join(candidate, image);
        break;
      }
    }
    if (!path) {
      missing.push(image);
      continue;
    }
    records.push({ record: toRecord(row, split, index, place, shown(resolve(options.dataDir), path)), path });
  }
  if (missing.length) {
    const tried = imageFolders(options.dataDir).join(', ');
    throw dataMissing(
      `VSR: ${missing.length} of ${lines.length} images named by ${file} are missing (first: ${missing.slice(0, 3).join(', ')}); ` +
        `place the COCO 2017 images in ${join(dir, 'images')}/ or ${dataPath(options.dataDir, 'coco')}/train2017/ and val2017/ (looked in: ${tried})`,
    );
  }

  const tasks = taskSubsets(TITLE, options.subsets, [...new Set(records.map((r) => r.record.task))], true);
  let items: EvalItem[] = records.filter((r) => !tasks || tasks.includes(r.record.task)).map((r) => fileItem(r.record, [r.path]));
  if (limit !== undefined) items = items.slice(0, limit);
  return { benchmark: 'vsr', split, items, info };
}

export const vsrLoader: BenchmarkLoader = {
  name: 'vsr',
  origin: {
    title: TITLE,
    source: 'cambridgeltl/visual-spatial-reasoning (GitHub; Hugging Face cambridgeltl/vsr_random, cambridgeltl/vsr_zeroshot) + COCO 2017 images',
    licence: 'Apache-2.0 (annotations)',
    licenceNote: 'Images are from COCO 2017 (images.cocodataset.org) and follow the COCO terms of use and each image\'s Flickr licence.',
  },
  splits: SPLITS,
  defaultSplit: 'random_test',
  layout: vsrLayout,
  load,
};
