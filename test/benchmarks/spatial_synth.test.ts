// spatial-synth: determinism, splits, ids, balance, ground truth re-derived from each record alone
// (names resolved against meta.scene, the camera projection and distances recomputed here), the
// rendered images, the files writeDataset leaves, and the CLI's argument checks.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { choicesPrompt, DatasetRecord, optionLetter } from '../../src/benchmarks/types';
import {
  CHOICE_COUNT,
  DESCRIBE_LIMITS,
  DatasetInfo,
  LEVELS,
  SPLITS,
  TASKS,
  generateItem,
  generateItems,
  goldPosition,
  layoutScene,
  renderScene,
  syntheticSplit,
  writeDataset,
} from '../../src/benchmarks/spatial_synth';
import type { Scene, SceneDescription, SceneObject } from '../../src/benchmarks/spatial_synth';
import { main, parseSynthArgs, USAGE, UsageError } from '../../src/cli/synth';

const SEED = 7;
const N = 400;

interface ObjectMeta {
  name: string | null;
  center_3d: [number, number, number];
  center_2d: [number, number];
  camera_distance: number;
  visible: number;
}
interface Meta {
  scene: Scene;
  objects: ObjectMeta[];
  draw_order: number[];
  index: number;
  split: string;
}
const metaOf = (r: DatasetRecord) => r.meta as unknown as Meta;

let records: DatasetRecord[];
beforeAll(() => {
  records = generateItems('test', N, SEED).map((item) => item.record);
});

describe('items', () => {
  test('ids, image paths, prompt and gold text follow the data set format', () => {
    records.forEach((r, i) => {
      const index = String(i).padStart(6, '0');
      expect(r.id).toBe(`spatial-synth/test/${index}`);
      expect(r.images).toEqual([`images/test/${index}.png`]);
      expect(r.source).toBe('spatial-synth');
      expect(r.choices).toHaveLength(CHOICE_COUNT[r.task as keyof typeof CHOICE_COUNT]);
      expect(new Set(r.choices).size).toBe(r.choices.length);
      expect(r.answer_text).toBe(r.choices[r.answer.charCodeAt(0) - 65]);
      expect(r.prompt).toBe(choicesPrompt(r.question, r.choices));
      expect(metaOf(r)).toMatchObject({ split: 'test', index: i });
    });
  });

  test('the same seed gives identical records and PNG bytes; another seed gives other ones', async () => {
    const again = generateItems('test', 8, SEED).map((item) => item.record);
    expect(again).toEqual(records.slice(0, 8));
    // Random access and a start offset give the same items as the sequence.
    expect(generateItem('test', 123, SEED).record).toEqual(records[123]);
    expect(generateItems('test', 2, SEED, { start: 200 }).map((i) => i.record)).toEqual(records.slice(200, 202));

    const [a, b] = [generateItem('test', 5, SEED), generateItem('test', 5, SEED)];
    const [pa, pb] = await Promise.all([a.render(), b.render()]);
    expect(pa.equals(pb)).toBe(true);

    const other = generateItem('test', 5, SEED + 1);
    expect(other.record.id).toBe(a.record.id);
    expect(other.record.meta.scene).not.toEqual(a.record.meta.scene);
    expect((await other.render()).equals(pa)).toBe(false);
  });

  test('splits share no scene, and no scene repeats within a split', () => {
    const fingerprint = (r: DatasetRecord) => JSON.stringify(metaOf(r).scene.objects);
    const seen = new Map<string, string>();
    for (const split of SPLITS) {
      for (const item of generateItems(split, 150, SEED)) {
        const key = fingerprint(item.record);
        expect(seen.get(key)).toBeUndefined();
        seen.set(key, item.record.id);
      }
    }
    expect(seen.size).toBe(450);
  });

  test('tasks take turns: Count, Relation, Depth, Distance, Count, ...', () => {
    records.forEach((r, i) => expect(r.task).toBe(TASKS[i % 4]));
  });

  test('gold letters are balanced per task', () => {
    for (const task of TASKS) {
      const ofTask = records.filter((r) => r.task === task);
      const n = CHOICE_COUNT[task];
      for (let k = 0; k < n; k++) {
        const share = ofTask.filter((r) => r.answer === optionLetter(k)).length / ofTask.length;
        expect(Math.abs(share - 1 / n)).toBeLessThanOrEqual(0.03);
      }
    }
  });

  test('each block of a task deals every letter position once', () => {
    for (let block = 0; block < 20; block++) {
      const positions = [0, 1, 2, 3].map((k) => goldPosition(SEED, 'train', 'Count', block * 4 + k, 4));
      expect([...positions].sort()).toEqual([0, 1, 2, 3]);
    }
  });

  test('Count options are four consecutive numbers in order; their window does not give the answer away', () => {
    const count = records.filter((r) => r.task === 'Count');
    for (const r of count) {
      const start = Number(r.choices[0]);
      expect(r.choices).toEqual([0, 1, 2, 3].map((k) => String(start + k)));
    }
    // Every window start is seen with several different gold letters.
    for (const start of ['0', '1', '2']) {
      expect(new Set(count.filter((r) => r.choices[0] === start).map((r) => r.answer)).size).toBeGreaterThanOrEqual(3);
    }
  });

  test('Count golds vary and include 0; the other tasks ask both directions', () => {
    const counts = new Set(records.filter((r) => r.task === 'Count').map((r) => r.answer_text));
    expect(counts.has('0')).toBe(true);
    expect(counts.size).toBeGreaterThanOrEqual(4);
    const relation = records.filter((r) => r.task === 'Relation').map((r) => r.answer_text);
    for (const word of ['left', 'right', 'above', 'below']) expect(relation).toContain(word);
  });

  test('bad arguments are invalid_input errors naming the value', () => {
    expect(() => generateItem('dev' as 'test', 0, 1)).toThrow(expect.objectContaining({ status: 400, message: expect.stringMatching(/split must be one of train, val, test/) }));
    expect(() => generateItem('test', 0, -1)).toThrow(/seed must be a non-negative integer, got -1/);
    expect(() => generateItem('test', 1_000_000, 1)).toThrow(/index must be an integer from 0 to 999999/);
    expect(() => generateItems('test', 2, 1, { size: 10 })).toThrow(/width must be an integer from 64 to 4096, got 10/);
    expect(() => generateItems('test', 2, 1, { tasks: ['Depth', 'Depth'] })).toThrow(/must not repeat/);
    expect(() => generateItems('test', 2, 1, { minVisible: 0 })).toThrow(/minVisible/);
  });
});

// --- Ground truth, re-derived from a record alone --------------------------------------------

const NAME = /^(?:(small|large) )?(red|green|blue|yellow|purple|orange|gray|brown|cyan|pink) (cube|sphere|cylinder|cone)$/;

/** The one object a name denotes; fails the test when the name fits none or several. */
function resolve(name: string, objects: SceneObject[]): number {
  const m = NAME.exec(name);
  if (!m) throw new Error(`not an object name: ${name}`);
  const [, size, color, shape] = m;
  const hits = objects.flatMap((o, i) => (o.color === color && o.shape === shape && (!size || o.size === size) ? [i] : []));
  if (hits.length !== 1) throw new Error(`"${name}" names ${hits.length} objects`);
  return hits[0];
}

/** Pinhole projection written out again: camera at (0, h, 0), tilted down by pitch, vertical fov. */
function projectAgain(scene: Scene, [x, y, z]: [number, number, number]): [number, number] {
  const pitch = (scene.camera.pitch * Math.PI) / 180;
  const focal = scene.image.height / 2 / Math.tan((scene.camera.fov * Math.PI) / 360);
  const dy = y - scene.camera.height;
  const along = z * Math.cos(pitch) - dy * Math.sin(pitch);
  const up = z * Math.sin(pitch) + dy * Math.cos(pitch);
  return [scene.image.width / 2 + (focal * x) / along, scene.image.height / 2 - (focal * up) / along];
}

function goldByRederiving(r: DatasetRecord): string {
  const { scene, objects } = metaOf(r);
  const shown = (i: number) => expect(objects[i].visible).toBeGreaterThanOrEqual(0.6);
  switch (r.task) {
    case 'Count': {
      const what = /^How many (.+) are in the image\?$/.exec(r.question)![1];
      const m = /^(?:(\w+) objects|(?:(\w+) )?(cube|sphere|cylinder|cone)s)$/.exec(what)!;
      const [color, shape] = [m[1] ?? m[2], m[3]];
      const hits = scene.objects.map((_, i) => i).filter((i) => (!color || scene.objects[i].color === color) && (!shape || scene.objects[i].shape === shape));
      hits.forEach(shown);
      return String(hits.length);
    }
    case 'Relation': {
      const [, subject, reference] = /where is the (.+) located with respect to the (.+)\?$/.exec(r.question)!;
      const [a, b] = [resolve(subject, scene.objects), resolve(reference, scene.objects)];
      [a, b].forEach(shown);
      const [pa, pb] = [projectAgain(scene, objects[a].center_3d), projectAgain(scene, objects[b].center_3d)];
      expect(pa[0]).toBeCloseTo(objects[a].center_2d[0], 1);
      expect(pa[1]).toBeCloseTo(objects[a].center_2d[1], 1);
      const horizontal = r.choices[0] === 'left';
      const axis = horizontal ? 0 : 1;
      // A clear margin: at least 8% of the image apart along the asked axis.
      expect(Math.abs(pa[axis] - pb[axis])).toBeGreaterThanOrEqual(0.08 * (horizontal ? scene.image.width : scene.image.height));
      return horizontal ? (pa[0] < pb[0] ? 'left' : 'right') : pa[1] < pb[1] ? 'above' : 'below';
    }
    case 'Depth': {
      expect(r.question).toBe(`Which object is closer to the camera taking this photo, the ${r.choices[0]} or the ${r.choices[1]}?`);
      const ids = r.choices.map((c) => resolve(c, scene.objects));
      ids.forEach(shown);
      const d = ids.map((i) => {
        const [x, y, z] = objects[i].center_3d;
        return Math.hypot(x, y - scene.camera.height, z);
      });
      expect(Math.max(...d) / Math.min(...d)).toBeGreaterThanOrEqual(1.2);
      return r.choices[d[0] < d[1] ? 0 : 1];
    }
    case 'Distance': {
      const [, reference, c0, c1] = /^Which object is closer to the (.+) \(in 3D\), the (.+) or the (.+)\?$/.exec(r.question)!;
      expect([c0, c1]).toEqual(r.choices);
      const ref = scene.objects[resolve(reference, scene.objects)];
      const ids = r.choices.map((c) => resolve(c, scene.objects));
      ids.forEach(shown);
      const d = ids.map((i) => Math.hypot(scene.objects[i].x - ref.x, scene.objects[i].z - ref.z));
      expect(Math.max(...d) / Math.min(...d)).toBeGreaterThanOrEqual(1.3);
      return r.choices[d[0] < d[1] ? 0 : 1];
    }
    default:
      throw new Error(`unknown task ${r.task}`);
  }
}

describe('ground truth', () => {
  test.each(TASKS)('%s answers follow from the scene in meta', (task) => {
    const ofTask = records.filter((r) => r.task === task);
    expect(ofTask.length).toBe(N / 4);
    for (const r of ofTask) expect(goldByRederiving(r)).toBe(r.answer_text);
  });

  test('visible shares agree with a rasterised map of the silhouettes drawn back to front', async () => {
    let checked = 0;
    for (const item of generateItems('val', 6, SEED)) {
      const layout = layoutScene(item.scene);
      const { width, height } = item.scene.image;
      const polys = layout.drawOrder
        .map((i) => `<polygon points="${layout.objects[i].silhouette.map((p) => p.join(',')).join(' ')}" fill="rgb(${10 + 20 * i},0,0)"/>`)
        .join('');
      const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" shape-rendering="crispEdges"><rect width="${width}" height="${height}" fill="#000"/>${polys}</svg>`;
      const { data, info } = await sharp(Buffer.from(svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const pixels = new Array<number>(item.scene.objects.length).fill(0);
      for (let p = 0; p < data.length; p += info.channels) if (data[p] >= 10) pixels[(data[p] - 10) / 20]++;
      layout.objects.forEach((o, i) => {
        const area = Math.abs(o.silhouette.reduce((s, [x0, y0], k) => {
          const [x1, y1] = o.silhouette[(k + 1) % o.silhouette.length];
          return s + x0 * y1 - x1 * y0;
        }, 0)) / 2;
        if (area < 400) return; // edge pixels dominate tiny shapes
        expect(Math.abs(pixels[i] / area - o.visible)).toBeLessThan(0.06);
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(15);
  });
});

describe('images', () => {
  test('a rendered item is a 448x448 PNG with each plainly visible object where meta puts it', async () => {
    let checked = 0;
    for (const item of generateItems('train', 16, SEED)) {
      const png = await item.render();
      const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 448, height: 448 });
      const { scene, objects } = metaOf(item.record);
      scene.objects.forEach((o, i) => {
        const channel = { red: 0, green: 1, blue: 2 }[o.color as string];
        if (channel === undefined || objects[i].visible < 0.99) return;
        const [u, v] = objects[i].center_2d.map(Math.round);
        const at = (v * info.width + u) * 3;
        const rgb = [data[at], data[at + 1], data[at + 2]];
        expect(rgb.indexOf(Math.max(...rgb))).toBe(channel);
        checked++;
      });
    }
    expect(checked).toBeGreaterThanOrEqual(5);
  });

  test('the image size is configurable', async () => {
    const item = generateItem('val', 0, SEED, { width: 320, height: 240 });
    expect(item.record.meta).toMatchObject({ scene: { image: { width: 320, height: 240 } } });
    expect(await sharp(await item.render()).metadata()).toMatchObject({ width: 320, height: 240 });
    expect(await sharp(await renderScene(item.scene)).metadata()).toMatchObject({ width: 320, height: 240 });
  });

  test('syntheticSplit gives evaluation items that render in memory', async () => {
    const split = syntheticSplit('test', 3, SEED);
    expect(split.map((e) => e.record)).toEqual(records.slice(0, 3));
    const [png] = await split[1].loadImages();
    expect(png.equals(await generateItem('test', 1, SEED).render())).toBe(true);
  });
});

describe('writeDataset', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'spatial-synth-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test('writes the JSONL files, the images and dataset.json with counts per split and task', async () => {
    const progress: number[] = [];
    const info = await writeDataset(dir, { train: 8, val: 4, test: 0, seed: SEED, size: 128, onProgress: (p) => progress.push(p.done) });
    expect(readdirSync(dir).sort()).toEqual(['dataset.json', 'images', 'train.jsonl', 'val.jsonl']);
    const onDisk = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as DatasetInfo;
    expect(onDisk).toEqual(info);
    expect(onDisk).toMatchObject({
      name: 'spatial-synth',
      source: 'generated by this project',
      licence: 'Apache-2.0',
      counts: { train: 8, val: 4 },
      tasks: { train: { Count: 2, Relation: 2, Depth: 2, Distance: 2 }, val: { Count: 1, Relation: 1, Depth: 1, Distance: 1 } },
      generator: { name: 'spatial-synth', version: 1, seed: SEED, width: 128, height: 128 },
    });
    expect(progress).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    for (const [split, n] of [['train', 8], ['val', 4]] as const) {
      const lines = readFileSync(join(dir, `${split}.jsonl`), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as DatasetRecord);
      expect(lines).toEqual(generateItems(split, n, SEED, { size: 128 }).map((i) => i.record));
      for (const r of lines) {
        expect(existsSync(join(dir, r.images[0]))).toBe(true);
        expect(await sharp(join(dir, r.images[0])).metadata()).toMatchObject({ format: 'png', width: 128, height: 128 });
      }
    }
    expect(readdirSync(join(dir, 'images'))).toEqual(['train', 'val']);
  });

  test('refuses to write nothing', async () => {
    await expect(writeDataset(dir, { seed: 1 })).rejects.toThrow(/nothing to write/);
  });
});

describe('scene descriptions', () => {
  interface DescribedMeta extends Meta {
    description: SceneDescription;
    objects: (ObjectMeta & { name: string | null })[];
  }
  const described = generateItems('train', 60, SEED, { describe: true }).map((i) => i.record);
  const dmeta = (r: DatasetRecord) => r.meta as unknown as DescribedMeta;
  const byName = (r: DatasetRecord, name: string) => {
    const i = dmeta(r).objects.findIndex((o) => o.name === name);
    expect(i).toBeGreaterThanOrEqual(0);
    return i;
  };

  test('describing changes nothing but meta.description, and is deterministic', () => {
    const plain = generateItems('train', 60, SEED).map((i) => i.record);
    described.forEach((r, k) => {
      const { description, ...rest } = r.meta;
      expect(description).toBeDefined();
      expect({ ...r, meta: rest }).toEqual(plain[k]);
    });
    expect(generateItem('train', 17, SEED, { describe: true }).record).toEqual(described[17]);
    expect(plain[0].meta.description).toBeUndefined();
  });

  test('statements only: no questions, no markup, the object list first, limits kept', () => {
    for (const r of described) {
      const d = dmeta(r).description;
      expect(d.text).toBe(d.facts.map((f) => f.text).join(' '));
      expect(d.text).not.toMatch(/[?<>]/);
      expect(d.text).not.toMatch(/\b(answer|think|question)\b/i);
      expect(d.facts[0]).toMatchObject({ kind: 'objects', value: String(dmeta(r).scene.objects.length) });
      for (const kind of Object.keys(DESCRIBE_LIMITS) as (keyof typeof DESCRIBE_LIMITS)[]) {
        expect(d.facts.filter((f) => f.kind === kind).length).toBeLessThanOrEqual(DESCRIBE_LIMITS[kind]);
      }
    }
  });

  test('every fact agrees with the scene geometry', () => {
    let checked = 0;
    for (const r of described) {
      const m = dmeta(r);
      const objs = m.scene.objects;
      for (const f of m.description.facts) {
        let match: RegExpMatchArray | null;
        if (f.kind === 'count' && (match = /^There (?:is|are) (\d+) (.+)\.$/.exec(f.text))) {
          const words = match[2].replace(/s$/, '').replace(/ objects?$/, '').split(' ');
          const n = objs.filter((o) => words.every((w) => o.color === w || o.shape === w || o.shape === w.replace(/s$/, ''))).length;
          expect([f.text, n]).toEqual([f.text, Number(match[1])]);
          expect(f.value).toBe(match[1]);
        } else if ((f.kind === 'horizontal' || f.kind === 'vertical') && (match = /^The (.+) is (?:on the |to the )?(left|right|above|below) (?:of )?the (.+)\.$/.exec(f.text))) {
          const axis = f.kind === 'horizontal' ? 0 : 1;
          const [a, b] = [byName(r, match[1]), byName(r, match[3])];
          const before = m.objects[a].center_2d[axis] < m.objects[b].center_2d[axis];
          expect(match[2]).toBe(axis === 0 ? (before ? 'left' : 'right') : before ? 'above' : 'below');
          expect(f.value).toBe(match[2]);
        } else if (f.kind === 'depth' && (match = /^The (.+) is (closer to|farther from) the camera than the (.+)\.$/.exec(f.text))) {
          const [a, b] = [byName(r, match[1]), byName(r, match[3])];
          const closer = m.objects[a].camera_distance < m.objects[b].camera_distance;
          expect(match[2]).toBe(closer ? 'closer to' : 'farther from');
          expect(f.value).toBe(closer ? match[1] : match[3]);
        } else if (f.kind === 'closest') {
          const name = /is the (.+)\.$/.exec(f.text)![1];
          const i = byName(r, name);
          m.objects.forEach((o, k) => {
            if (k !== i && o.name !== null) expect(o.camera_distance).toBeGreaterThan(m.objects[i].camera_distance);
          });
        } else if (f.kind === 'distance' && (match = /^The (.+) is closer to the (.+) than the (.+) is\.$/.exec(f.text))) {
          const [a, ref, b] = [byName(r, match[1]), byName(r, match[2]), byName(r, match[3])];
          const d = (k: number) => Math.hypot(objs[k].x - objs[ref].x, objs[k].z - objs[ref].z);
          expect(d(a)).toBeLessThan(d(b));
          expect(f.value).toBe(match[1]);
        } else {
          expect(f.kind).toBe('objects');
          continue;
        }
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(300);
  });
});

describe('synth CLI', () => {
  test('parses the documented command, with defaults', () => {
    expect(parseSynthArgs(['--out', 'data/spatial-synth', '--train', '20000', '--val', '500', '--test', '1000', '--seed', '1', '--size', '448'])).toEqual({
      out: 'data/spatial-synth', train: 20000, val: 500, test: 1000, seed: 1, width: 448, height: 448, concurrency: undefined, describe: false, help: false,
    });
    expect(parseSynthArgs(['--out', 'x', '--describe', '--seed', '2'])).toMatchObject({ out: 'x', seed: 2, describe: true });
    expect(parseSynthArgs(['--out=x', '--size=640x480', '--train', '0'])).toMatchObject({ out: 'x', train: 0, val: 500, test: 1000, seed: 1, width: 640, height: 480 });
  });

  test.each([
    [[], /--out is required/],
    [['--out'], /--out needs a value/],
    [['--out', 'x', '--train', 'many'], /--train must be a whole number from 0 to 1000000, got "many"/],
    [['--out', 'x', '--val', '-3'], /--val must be a whole number/],
    [['--out', 'x', '--test', '2.5'], /--test must be a whole number/],
    [['--out', 'x', '--seed', 'abc'], /--seed must be a whole number/],
    [['--out', 'x', '--size', '12'], /--size must be a whole number from 64 to 4096, got "12"/],
    [['--out', 'x', '--size', 'big'], /--size must be N or WxH/],
    [['--out', 'x', '--frobnicate', '1'], /unknown option --frobnicate/],
    [['--out', 'x', '--seed', '1', '--seed', '2'], /--seed is given twice/],
    [['--out', 'x', 'extra'], /unexpected argument "extra"/],
    [['--out', 'x', '--train', '0', '--val', '0', '--test', '0'], /nothing to generate/],
  ])('%j is refused: %s', (argv, message) => {
    expect(() => parseSynthArgs(argv as string[])).toThrow(message);
  });

  test('main prints the error and usage and exits 2 on bad arguments; --help exits 0', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } };
    expect(await main(['--train', 'x', '--out', 'y'], io)).toBe(2);
    expect(err.join('')).toMatch(/^synth: --train must be a whole number.*\n\nUsage: npm run synth/s);
    expect(await main(['--help'], io)).toBe(0);
    expect(out.join('')).toMatch(/^Usage: npm run synth/);
  });

  test('main writes a data set and reports progress on stderr', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spatial-synth-cli-'));
    try {
      const out: string[] = [];
      const err: string[] = [];
      const io = { stdout: { write: (s: string) => out.push(s) }, stderr: { write: (s: string) => err.push(s) } };
      expect(await main(['--out', dir, '--train', '4', '--val', '0', '--test', '2', '--size', '96'], io)).toBe(0);
      expect(out.join('')).toMatch(/^wrote 6 items \(train 4, test 2\) to .* items\/s\)\n$/);
      expect(err.join('')).toMatch(/^synth \[#+\] 100\.0% 6\/6 [\d.]+\/s ETA 0s {2}test$/m);
      expect(readdirSync(dir).sort()).toEqual(['dataset.json', 'images', 'test.jsonl', 'train.jsonl']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

});

// --- Levels (docs/spatial-synth.md "Levels") -------------------------------------------------

describe('levels', () => {
  const EASY = 64;
  let easy: DatasetRecord[];
  beforeAll(() => {
    easy = generateItems('test', EASY, SEED, { level: 'easy' }).map((item) => item.record);
  });

  /** Mean share of the image covered by each object's projected bounding box, over the items' scenes. */
  const meanBoxShare = (items: DatasetRecord[]) => {
    const shares = items.flatMap((r) => {
      const m = r.meta as unknown as { scene: Scene; objects: { bbox_2d: number[] }[] };
      const area = m.scene.image.width * m.scene.image.height;
      return m.objects.map(({ bbox_2d: [x0, y0, x1, y1] }) => ((x1 - x0) * (y1 - y0)) / area);
    });
    return shares.reduce((a, b) => a + b, 0) / shares.length;
  };

  test('standard is the default level and is recorded in meta', () => {
    expect(LEVELS.standard).toEqual({ size: 448, minObjects: 3, maxObjects: 8, zMin: 3.2, zMax: 11.5, scale: 1 });
    records.forEach((r) => expect(r.meta.level).toBe('standard'));
    expect(generateItem('test', 9, SEED, { level: 'standard' }).record).toEqual(records[9]);
    // Standard objects carry no scale: their scenes are the ones written before levels existed.
    records.forEach((r) => metaOf(r).scene.objects.forEach((o) => expect(o.scale).toBeUndefined()));
  });

  test('easy scenes have 2 to 4 objects, drawn larger in 168x168 images than standard ones', () => {
    const scenes = easy.slice(0, 50);
    const sizes = new Set<number>();
    for (const r of scenes) {
      const { scene } = metaOf(r);
      expect(r.meta.level).toBe('easy');
      expect(scene.image).toEqual({ width: 168, height: 168 });
      expect(scene.objects.length).toBeGreaterThanOrEqual(r.task === 'Distance' ? 3 : 2);
      expect(scene.objects.length).toBeLessThanOrEqual(4);
      sizes.add(scene.objects.length);
      scene.objects.forEach((o) => expect(o.scale).toBe(LEVELS.easy.scale));
    }
    expect([...sizes].sort()).toEqual([2, 3, 4]);
    // Larger in the picture: share of the image per object, against standard's at the same size too.
    const standardAt168 = generateItems('test', 50, SEED, { size: 168 }).map((i) => i.record);
    expect(meanBoxShare(scenes)).toBeGreaterThan(2 * meanBoxShare(records.slice(0, 50)));
    expect(meanBoxShare(scenes)).toBeGreaterThan(2 * meanBoxShare(standardAt168));
    // Every object lies wholly in the frame.
    for (const r of scenes) {
      for (const { bbox_2d: [x0, y0, x1, y1] } of (r.meta as unknown as { objects: { bbox_2d: number[] }[] }).objects) {
        expect(Math.min(x0, y0)).toBeGreaterThanOrEqual(0);
        expect(Math.max(x1, y1)).toBeLessThanOrEqual(168);
      }
    }
  });

  test('all four tasks, balanced gold letters, answers that follow from the scene, few redraws', () => {
    easy.forEach((r, i) => {
      expect(r.task).toBe(TASKS[i % 4]);
      expect(r.id).toBe(`spatial-synth/test/${String(i).padStart(6, '0')}`);
      expect(goldByRederiving(r)).toBe(r.answer_text);
      expect(r.meta.attempt as number).toBeLessThan(60);
    });
    // 16 items per task: whole blocks of 4 (Count) and 2 (the others), so the letters are exactly even.
    for (const task of TASKS) {
      const letters = easy.filter((r) => r.task === task).map((r) => r.answer);
      const n = CHOICE_COUNT[task];
      for (let k = 0; k < n; k++) expect(letters.filter((l) => l === optionLetter(k)).length).toBe(EASY / 4 / n);
    }
  });

  test('easy Count windows start at 0 or 1 (counts up to 4) and do not give the answer away', () => {
    const count = generateItems('val', 160, SEED, { level: 'easy', tasks: ['Count'] }).map((i) => i.record);
    const starts = new Set(count.map((r) => r.choices[0]));
    expect([...starts].sort()).toEqual(['0', '1']);
    for (const start of starts) {
      expect(new Set(count.filter((r) => r.choices[0] === start).map((r) => r.answer)).size).toBe(4);
    }
    const answers = new Set(count.map((r) => r.answer_text));
    expect([...answers].sort()).toEqual(['0', '1', '2', '3', '4']);
    for (const r of count) expect(goldByRederiving(r)).toBe(r.answer_text);
  });

  test('easy items are deterministic per seed and differ from standard ones', async () => {
    expect(generateItems('test', 4, SEED, { level: 'easy' }).map((i) => i.record)).toEqual(easy.slice(0, 4));
    expect(generateItem('test', 37, SEED, { level: 'easy' }).record).toEqual(easy[37]);
    const [a, b] = [generateItem('test', 2, SEED, { level: 'easy' }), generateItem('test', 2, SEED, { level: 'easy' })];
    const png = await a.render();
    expect(png.equals(await b.render())).toBe(true);
    expect(await sharp(png).metadata()).toMatchObject({ format: 'png', width: 168, height: 168 });
    expect((await renderScene(a.scene)).equals(png)).toBe(true);
    expect(easy[2].meta.scene).not.toEqual(records[2].meta.scene);
    expect(generateItem('test', 2, SEED + 1, { level: 'easy' }).record.meta.scene).not.toEqual(easy[2].meta.scene);
    // --size still overrides the level's default.
    expect(generateItem('test', 2, SEED, { level: 'easy', size: 224 }).record.meta).toMatchObject({ level: 'easy', scene: { image: { width: 224, height: 224 } } });
  });

  test('bad levels and object counts are refused naming the option', () => {
    expect(() => generateItem('test', 0, 1, { level: 'hard' as 'easy' })).toThrow(expect.objectContaining({ status: 400, code: 'invalid_synth_option', message: expect.stringMatching(/level must be one of standard, easy, got "hard"/) }));
    expect(() => generateItem('test', 0, 1, { level: 'easy', maxObjects: 2 })).toThrow(/maxObjects must be an integer from 3 to 12, got 2/);
    expect(() => generateItem('test', 0, 1, { minObjects: 1 })).toThrow(/minObjects must be an integer from 2 to 12, got 1/);
  });

  test('writeDataset records the level and its scene settings in dataset.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spatial-synth-easy-'));
    try {
      const info = await writeDataset(dir, { train: 4, val: 0, test: 0, seed: SEED, level: 'easy' });
      expect(info.generator).toMatchObject({ level: 'easy', width: 168, height: 168, min_objects: 2, max_objects: 4, depth_range: [3.6, 8], object_scale: 1.4 });
      const lines = readFileSync(join(dir, 'train.jsonl'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as DatasetRecord);
      expect(lines).toEqual(generateItems('train', 4, SEED, { level: 'easy' }).map((i) => i.record));
      expect(await sharp(join(dir, lines[0].images[0])).metadata()).toMatchObject({ width: 168, height: 168 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('synth CLI: --level picks the level and its default size; --size still overrides; bad values name the flag', async () => {
    expect(parseSynthArgs(['--out', 'x', '--level', 'easy'])).toMatchObject({ level: 'easy', width: 168, height: 168 });
    expect(parseSynthArgs(['--out', 'x', '--level=easy', '--size', '224'])).toMatchObject({ level: 'easy', width: 224, height: 224 });
    expect(parseSynthArgs(['--out', 'x', '--level', 'standard'])).toMatchObject({ level: 'standard', width: 448 });
    expect(parseSynthArgs(['--out', 'x']).level).toBeUndefined();
    expect(() => parseSynthArgs(['--out', 'x', '--level', 'hard'])).toThrow(new UsageError('--level must be one of standard, easy, got "hard"'));
    expect(() => parseSynthArgs(['--out', 'x', '--level'])).toThrow(/--level needs a value/);
    expect(USAGE).toMatch(/--level standard\|easy/);

    const dir = mkdtempSync(join(tmpdir(), 'spatial-synth-cli-easy-'));
    try {
      const io = { stdout: { write: () => true }, stderr: { write: () => true } };
      expect(await main(['--out', dir, '--train', '0', '--val', '0', '--test', '4', '--level', 'easy'], io)).toBe(0);
      const info = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8')) as DatasetInfo;
      expect(info.generator).toMatchObject({ level: 'easy', width: 168, height: 168 });
      const first = JSON.parse(readFileSync(join(dir, 'test.jsonl'), 'utf8').split('\n')[0]) as DatasetRecord;
      expect(first).toMatchObject({ id: 'spatial-synth/test/000000', meta: { level: 'easy' } });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
