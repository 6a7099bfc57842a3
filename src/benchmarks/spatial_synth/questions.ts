// The four tasks, named and posed as CV-Bench poses them (Count, Relation, Depth, Distance), with
// answers computed from the scene's geometry. Each generator gets the letter position its gold
// option must take (generate.ts balances those over a split) and either returns a question or null
// when the scene offers nothing that is clearly answerable (the caller then draws a new scene).
// Count is the exception that plans ahead: its question and count are fixed first (planCount) and
// the scene is built to match, so that counts and options carry no answer bias.
import { Rng } from './random';
import { COLOR_NAMES, CountConstraint, SHAPES, Scene, SceneLayout, Shape, matchesCategory, planeDistance } from './scene';

export const TASKS = ['Count', 'Relation', 'Depth', 'Distance'] as const;
export type TaskName = (typeof TASKS)[number];

/** Options per task: Count offers four consecutive numbers, the others two objects or two directions. */
export const CHOICE_COUNT: Record<TaskName, number> = { Count: 4, Relation: 2, Depth: 2, Distance: 2 };

/**
 * How clear an answer must be. Relative thresholds keep a question answerable at a glance for a
 * person; absolute ones keep tiny differences out when both values are small.
 */
export const MARGINS = {
  /** Relation: centres apart along the asked axis by this share of the image's width/height... */
  relationShare: 0.08,
  /** ...and by at least this multiple of the two objects' mean half-extent along that axis. */
  relationExtent: 1,
  /** Depth: the farther object's camera distance over the nearer one's, and their difference. */
  depthRatio: 1.2,
  depthDifference: 0.8,
  /** Distance: the farther candidate's ground distance to the reference over the nearer's, and the difference. */
  distanceRatio: 1.3,
  distanceDifference: 1,
  /** Size words ("large red cube") only when the large one looks at least this much bigger. */
  sizeWordRatio: 1.25,
};

export interface QuestionContext {
  rng: Rng;
  /** Index the gold option must take. */
  gold: number;
  /** Least visible share of every object the question depends on. */
  minVisible: number;
  /** Count only: what to ask, planned before the scene was drawn. */
  count?: CountPlan;
}

export interface Question {
  task: TaskName;
  question: string;
  choices: string[];
  /** Index of the gold option in `choices`. */
  answerIndex: number;
  /** The objects and values the answer was derived from (indices into scene.objects). */
  operands: Record<string, unknown>;
}

const round4 = (x: number) => Math.round(x * 1e4) / 1e4;

const PLURAL: Record<Shape, string> = { cube: 'cubes', sphere: 'spheres', cylinder: 'cylinders', cone: 'cones' };

/**
 * A name for each object that picks it out alone, or null: "red cube" when no other object is a
 * red cube; "large red cube" when every other red cube is small and looks clearly smaller in the
 * picture (so perspective cannot mislead); null otherwise (such objects are never asked about).
 */
export function objectNames(scene: Scene, layout: SceneLayout): (string | null)[] {
  const apparent = layout.objects.map(({ bbox }) => Math.max(bbox[2] - bbox[0], bbox[3] - bbox[1]));
  return scene.objects.map((o, i) => {
    const twins = scene.objects.map((_, j) => j).filter((j) => j !== i && scene.objects[j].color === o.color && scene.objects[j].shape === o.shape);
    if (twins.length === 0) return `${o.color} ${o.shape}`;
    const distinct = twins.every((j) => {
      if (scene.objects[j].size === o.size) return false;
      const [big, small] = o.size === 'large' ? [i, j] : [j, i];
      return apparent[big] >= MARGINS.sizeWordRatio * apparent[small];
    });
    return distinct ? `${o.size} ${o.color} ${o.shape}` : null;
  });
}

/**
 * What a Count item asks, decided before its scene is drawn. The four options are always the
 * consecutive numbers start..start+3 in ascending order, so the gold's letter is its rank; the
 * window start is drawn independently of the (balanced) letter, so the options alone tell nothing
 * about the answer. The count is then start + letter, and the scene is built to have exactly that
 * many objects of the category (scene.ts CountConstraint).
 */
export interface CountPlan extends CountConstraint {
  attribute: 'color' | 'shape' | 'color+shape';
  /** The smallest option. */
  start: number;
}

/** Largest window start: options up to 5 (count up to 5 planted objects of one kind). */
const COUNT_MAX_START = 2;

export function planCount(rng: Rng, gold: number, maxObjects: number): CountPlan {
  const draw = rng.float();
  const attribute: CountPlan['attribute'] = draw < 0.5 ? 'color' : draw < 0.8 ? 'shape' : 'color+shape';
  const color = attribute === 'shape' ? undefined : rng.pick(COLOR_NAMES);
  const shape = attribute === 'color' ? undefined : rng.pick(SHAPES);
  // The start never depends on `gold`; capping it by maxObjects - 3 keeps every count plantable
  // (the easy level's 4 objects: windows 0-3 and 1-4, each letter equally likely in each).
  const start = rng.int(0, Math.min(COUNT_MAX_START, maxObjects - 3));
  return { attribute, color, shape, start, count: start + gold };
}

function countQuestion(scene: Scene, layout: SceneLayout, ctx: QuestionContext): Question | null {
  const plan = ctx.count;
  if (!plan) throw new Error('a Count question needs a CountPlan');
  const hits = scene.objects.map((_, i) => i).filter((i) => matchesCategory(scene.objects[i], plan));
  // Every object that counts must be plainly visible, or the true count is not what one sees.
  if (hits.length !== plan.count || hits.some((i) => layout.objects[i].visible < ctx.minVisible)) return null;
  const what = plan.attribute === 'color' ? `${plan.color} objects` : plan.attribute === 'shape' ? PLURAL[plan.shape!] : `${plan.color} ${PLURAL[plan.shape!]}`;
  const operands: Record<string, unknown> = { attribute: plan.attribute };
  if (plan.color) operands.color = plan.color;
  if (plan.shape) operands.shape = plan.shape;
  return {
    task: 'Count',
    question: `How many ${what} are in the image?`,
    choices: [0, 1, 2, 3].map((k) => String(plan.start + k)),
    answerIndex: plan.count - plan.start,
    operands: { ...operands, matches: hits },
  };
}

/** Objects that can be asked about: named unambiguously and mostly visible. */
function askable(layout: SceneLayout, names: (string | null)[], minVisible: number): number[] {
  return names.map((_, i) => i).filter((i) => names[i] !== null && layout.objects[i].visible >= minVisible);
}

function pairs(items: number[]): [number, number][] {
  return items.flatMap((a, k) => items.slice(k + 1).map((b): [number, number] => [a, b]));
}

function relationQuestion(scene: Scene, layout: SceneLayout, { rng, gold, minVisible }: QuestionContext): Question | null {
  const horizontal = rng.chance(0.5);
  const axis = horizontal ? 0 : 1;
  const span = horizontal ? scene.image.width : scene.image.height;
  const names = objectNames(scene, layout);
  const halfExtent = (i: number) => (layout.objects[i].bbox[axis + 2] - layout.objects[i].bbox[axis]) / 2;
  const clear = pairs(askable(layout, names, minVisible)).filter(([i, j]) => {
    const d = Math.abs(layout.objects[i].center[axis] - layout.objects[j].center[axis]);
    return d >= MARGINS.relationShare * span && d >= (MARGINS.relationExtent * (halfExtent(i) + halfExtent(j))) / 2;
  });
  if (clear.length === 0) return null;
  const [i, j] = rng.pick(clear);
  // `first` is left of (or above) `second` in the image.
  const [first, second] = layout.objects[i].center[axis] < layout.objects[j].center[axis] ? [i, j] : [j, i];
  const choices = horizontal ? ['left', 'right'] : ['above', 'below'];
  // The choices keep their natural order; the gold letter is set by which object is the subject.
  const [a, b] = gold === 0 ? [first, second] : [second, first];
  return {
    task: 'Relation',
    question: `Considering the relative positions of the two objects in the image, where is the ${names[a]} located with respect to the ${names[b]}?`,
    choices,
    answerIndex: gold,
    operands: { axis: horizontal ? 'horizontal' : 'vertical', a, b },
  };
}

function depthQuestion(scene: Scene, layout: SceneLayout, { rng, gold, minVisible }: QuestionContext): Question | null {
  const names = objectNames(scene, layout);
  const dist = (i: number) => layout.objects[i].cameraDistance;
  const clear = pairs(askable(layout, names, minVisible)).filter(([i, j]) => {
    const near = Math.min(dist(i), dist(j));
    const far = Math.max(dist(i), dist(j));
    return far >= MARGINS.depthRatio * near && far - near >= MARGINS.depthDifference;
  });
  if (clear.length === 0) return null;
  const [i, j] = rng.pick(clear);
  const [closer, farther] = dist(i) < dist(j) ? [i, j] : [j, i];
  const order = gold === 0 ? [closer, farther] : [farther, closer];
  const choices = order.map((k) => names[k]!);
  return {
    task: 'Depth',
    question: `Which object is closer to the camera taking this photo, the ${choices[0]} or the ${choices[1]}?`,
    choices,
    answerIndex: gold,
    operands: { a: order[0], b: order[1], camera_distances: order.map((k) => round4(dist(k))) },
  };
}

function distanceQuestion(scene: Scene, layout: SceneLayout, { rng, gold, minVisible }: QuestionContext): Question | null {
  const names = objectNames(scene, layout);
  const candidates = askable(layout, names, minVisible);
  const triples: [number, number, number][] = candidates.flatMap((ref) =>
    pairs(candidates.filter((k) => k !== ref))
      .filter(([i, j]) => {
        const di = planeDistance(scene.objects[ref], scene.objects[i]);
        const dj = planeDistance(scene.objects[ref], scene.objects[j]);
        const near = Math.min(di, dj);
        const far = Math.max(di, dj);
        return far >= MARGINS.distanceRatio * near && far - near >= MARGINS.distanceDifference;
      })
      .map(([i, j]): [number, number, number] => [ref, i, j]),
  );
  if (triples.length === 0) return null;
  const [ref, i, j] = rng.pick(triples);
  const d = (k: number) => planeDistance(scene.objects[ref], scene.objects[k]);
  const [closer, farther] = d(i) < d(j) ? [i, j] : [j, i];
  const order = gold === 0 ? [closer, farther] : [farther, closer];
  const choices = order.map((k) => names[k]!);
  return {
    task: 'Distance',
    question: `Which object is closer to the ${names[ref]} (in 3D), the ${choices[0]} or the ${choices[1]}?`,
    choices,
    answerIndex: gold,
    operands: { reference: ref, a: order[0], b: order[1], distances: order.map((k) => round4(d(k))) },
  };
}

const GENERATORS: Record<TaskName, (scene: Scene, layout: SceneLayout, ctx: QuestionContext) => Question | null> = {
  Count: countQuestion,
  Relation: relationQuestion,
  Depth: depthQuestion,
  Distance: distanceQuestion,
};

/** A question of `task` about the scene whose gold option sits at index ctx.gold, or null if none is clear. */
export function makeQuestion(task: TaskName, scene: Scene, layout: SceneLayout, ctx: QuestionContext): Question | null {
  if (ctx.gold < 0 || ctx.gold >= CHOICE_COUNT[task]) throw new RangeError(`gold position ${ctx.gold} out of range for ${task}`);
  return GENERATORS[task](scene, layout, ctx);
}
