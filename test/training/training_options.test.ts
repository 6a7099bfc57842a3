// The trainer's options, as test/vectors/training_options.json lists them (written from
// trainer/config.py by `python -m trainer.vectors`, kept current by trainer/tests), against every
// list on this side that names them: the POST /admin/train schema and the job.json it becomes, the
// fake trainer the job tests run, and the dashboard's "Start a training job" form.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { trainSchema } from '../../src/server/schemas';
import { buildJobConfig, TRAINER_KEYS, TrainRequest } from '../../src/training/job_spec';
import { FAKE_TRAINER } from '../helpers/training';
import { loadVectors, REPO_ROOT } from '../helpers/vectors';

interface TrainerOption {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'array';
  default: unknown;
  required: boolean;
  choices?: string[];
  item_choices?: string[];
  minimum?: number;
  exclusive_minimum?: number;
  maximum?: number;
}

interface SchemaProperty {
  type?: string;
  enum?: string[];
  minimum?: number;
  exclusiveMinimum?: number;
  maximum?: number;
}

const options = loadVectors<{ options: TrainerOption[] }>('training_options.json').options;
const byName = new Map(options.map((o) => [o.name, o]));
const properties = (z.toJSONSchema(trainSchema, { io: 'input' }) as { properties: Record<string, SchemaProperty> }).properties;
/** Request fields the service resolves into trainer keys of the same name (a model name or data set name becomes a folder). */
const RESOLVED = ['base_model', 'dataset'];
/** Request fields that are not trainer keys: `level` chooses the data set folder, `nodes` and `gpus` the machines. */
const REQUEST_ONLY = ['level', 'nodes', 'gpus'];

/** Where a request field and the trainer's option of the same name disagree (empty: they agree). */
function disagreements(name: string, option: TrainerOption, field: SchemaProperty): string[] {
  const found: string[] = [];
  if (field.type !== option.type) found.push(`${name}: the schema's type is ${field.type}, the trainer's ${option.type}`);
  if (option.choices && JSON.stringify(field.enum) !== JSON.stringify(option.choices)) {
    found.push(`${name}: the schema takes ${JSON.stringify(field.enum)}, the trainer ${JSON.stringify(option.choices)}`);
  }
  // A bound the trainer states is the schema's too; where it states none, the schema may set its own.
  if (option.minimum !== undefined && (field.minimum !== option.minimum || field.exclusiveMinimum !== undefined)) {
    found.push(`${name}: the trainer takes values from ${option.minimum}; the schema's lower bound is ${JSON.stringify({ minimum: field.minimum, exclusiveMinimum: field.exclusiveMinimum })}`);
  }
  if (option.exclusive_minimum !== undefined && (field.exclusiveMinimum !== option.exclusive_minimum || field.minimum !== undefined)) {
    found.push(`${name}: the trainer takes values above ${option.exclusive_minimum}; the schema's lower bound is ${JSON.stringify({ minimum: field.minimum, exclusiveMinimum: field.exclusiveMinimum })}`);
  }
  if (option.maximum !== undefined && field.maximum !== option.maximum) {
    found.push(`${name}: the trainer takes values up to ${option.maximum}; the schema up to ${field.maximum}`);
  }
  if (!option.required && !trainSchema.safeParse({ [name]: option.default }).success) {
    found.push(`${name}: the schema refuses the trainer's default ${JSON.stringify(option.default)}`);
  }
  return found;
}

describe('POST /admin/train and job.json', () => {
  test('every request field is a trainer option, or one of the few the service keeps for itself', () => {
    const fields = Object.keys(properties).sort();
    expect(fields).toEqual([...TRAINER_KEYS, ...RESOLVED, ...REQUEST_ONLY].sort());
    expect([...TRAINER_KEYS, ...RESOLVED].filter((name) => !byName.has(name))).toEqual([]);
    expect(REQUEST_ONLY.filter((name) => byName.has(name))).toEqual([]);
  });

  test("each trainer field of the request has the trainer's type, choices and stated bounds, and takes its default", () => {
    const found = [...TRAINER_KEYS, ...RESOLVED].flatMap((name) => disagreements(name, byName.get(name)!, properties[name]));
    expect(found).toEqual([]);
  });

  test('the comparison sees a schema that drifts from the trainer', () => {
    const temperature = byName.get('temperature')!;
    expect(disagreements('temperature', temperature, { type: 'number', exclusiveMinimum: 0, maximum: 2 })).toEqual([
      'temperature: the trainer takes values up to 10; the schema up to 2',
    ]);
    expect(disagreements('temperature', temperature, { type: 'integer', minimum: 0, maximum: 10 })).toHaveLength(2);
    expect(disagreements('device', byName.get('device')!, { type: 'string', enum: ['cpu', 'cuda'] })).toHaveLength(1);
  });

  test('the job.json a request becomes holds trainer options only', () => {
    const request = Object.fromEntries(TRAINER_KEYS.map((key) => [key, byName.get(key)!.default])) as TrainRequest;
    const config = buildJobConfig({ ...request, level: 'easy', nodes: 1, gpus: 1 }, { jobId: 'j', baseModelDir: '/m', datasetDir: '/d', jobDir: '/o', exportDir: '/e' });
    expect(Object.keys(config).filter((key) => !byName.has(key))).toEqual([]);
    expect(Object.keys(config)).toEqual(expect.arrayContaining([...TRAINER_KEYS, 'job_id', 'base_model', 'dataset', 'output_dir', 'export_dir']));
  });
});

describe('the fake trainer', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'vt-options-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function runFake(job: Record<string, unknown>) {
    const file = join(dir, 'job.json');
    writeFileSync(file, JSON.stringify(job));
    return spawnSync(process.execPath, [FAKE_TRAINER, '--config', file], { env: { ...process.env, FAKE_STEP_MS: '1' }, encoding: 'utf8', timeout: 30_000 });
  }

  test("takes a job.json that sets every one of the trainer's options", () => {
    const job = Object.fromEntries(options.map((o) => [o.name, o.default]));
    const out = join(dir, 'out');
    const run = runFake({ ...job, base_model: '/m', dataset: '/d', output_dir: out, export_dir: join(dir, 'model'), steps: 1, save_steps: 1 });
    expect({ status: run.status, stderr: run.stderr.split('\n').filter((l) => !l.startsWith('[grpo]')).join('\n') }).toEqual({ status: 0, stderr: '' });
    expect(existsSync(join(out, 'result.json'))).toBe(true);
  });

  test('refuses a key the trainer does not know, naming it, as the trainer does', () => {
    const run = runFake({ base_model: '/m', dataset: '/d', output_dir: join(dir, 'out'), steps: 1, stepz: 2 });
    expect(run.status).toBe(2);
    expect(run.stderr).toContain('unknown keys stepz');
  });
});

describe("the dashboard's training form", () => {
  const html = readFileSync(join(REPO_ROOT, 'src', 'server', 'dashboard_static', 'index.html'), 'utf8');
  const form = /<form id="start-job"[^>]*>([\s\S]*?)<\/form>/.exec(html)![1];
  const attributes = (tag: string) => Object.fromEntries([...tag.matchAll(/([\w-]+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
  const controls = [...form.matchAll(/<select\b([^>]*)>([\s\S]*?)<\/select>|<input\b([^>]*)>/g)].map((m) => ({
    kind: m[3] === undefined ? 'select' : 'input',
    attrs: attributes(m[1] ?? m[3]),
    choices: [...(m[2] ?? '').matchAll(/<option(?: value="([^"]*)")?>([^<]*)<\/option>/g)].map((o) => ({ value: o[1] ?? o[2], label: o[2] })),
  }));

  test('offers request fields only, each a trainer option unless the service keeps it for itself', () => {
    const names = controls.map((c) => c.attrs.name);
    expect(names.length).toBeGreaterThan(5);
    expect(names.filter((name) => !(name in properties))).toEqual([]);
    expect(names.filter((name) => !byName.has(name) && !REQUEST_ONLY.includes(name))).toEqual([]);
  });

  test("states the trainer's defaults and bounds, and what it lets a user enter the service takes", () => {
    const found: string[] = [];
    for (const { kind, attrs, choices } of controls) {
      const option = byName.get(attrs.name);
      if (!option) continue;
      const accepts = (value: unknown) => trainSchema.safeParse({ [attrs.name]: value }).success;
      if (kind === 'select') {
        for (const choice of choices) {
          // The empty choice sends nothing: the trainer's default, which its label must name.
          if (choice.value === '' ? choice.label !== option.default : !option.choices?.includes(choice.value) || !accepts(choice.value)) found.push(`${attrs.name}: choice ${JSON.stringify(choice)}`);
        }
        continue;
      }
      if (attrs.type !== 'number') {
        if (option.type !== 'string' || (attrs.value !== undefined && !accepts(attrs.value))) found.push(`${attrs.name}: a text field for a ${option.type}`);
        continue;
      }
      if (option.type !== 'integer' && option.type !== 'number') found.push(`${attrs.name}: a number field for a ${option.type}`);
      if ((attrs.step === 'any') !== (option.type === 'number')) found.push(`${attrs.name}: step=${attrs.step} for a${option.type === 'integer' ? 'n integer' : ' real number'}`);
      const lowest = option.minimum ?? option.exclusive_minimum;
      if (lowest !== undefined && Number(attrs.min) !== lowest) found.push(`${attrs.name}: min=${attrs.min}, the trainer's lower bound ${lowest}`);
      if (attrs.min !== undefined && !accepts(Number(attrs.min))) found.push(`${attrs.name}: the service refuses the form's min=${attrs.min}`);
      const placeholder = Number(attrs.placeholder);
      if (attrs.placeholder && !Number.isNaN(placeholder) && placeholder !== option.default) found.push(`${attrs.name}: placeholder ${attrs.placeholder}, the trainer's default ${String(option.default)}`);
    }
    expect(found).toEqual([]);
  });
});

// TrainRequest (src/training/job_spec.ts) is written out with its comments because the training
// module does not import the server's schemas; the compiler holds it to the schema's output: the
// same fields, optional alike, of the same types. A field added to one side only fails `npm run lint`.
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

test("TrainRequest is exactly the request schema's output type", () => {
  const same: Same<TrainRequest, z.output<typeof trainSchema>> = true;
  expect(same).toBe(true);
});
