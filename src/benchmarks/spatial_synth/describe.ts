// Scene descriptions: plain statements about a scene (what is in it, how many of each kind, what is
// left of / above / closer than what), derived from the same geometry and margins as the questions,
// for the base pre-training of the project's embedded model (docs/embedded-model.md). They state
// facts; they never ask anything and never use question/answer or think/answer markup.
import { Rng } from './random';
import { MARGINS, objectNames } from './questions';
import { COLOR_NAMES, SHAPES, Scene, SceneLayout, Shape, planeDistance } from './scene';

export type FactKind = 'objects' | 'count' | 'horizontal' | 'vertical' | 'depth' | 'closest' | 'distance';

export interface Fact {
  kind: FactKind;
  /** One sentence stating the fact. */
  text: string;
  /** The fact's short value: a number, a direction word or an object name. */
  value: string;
}

export interface SceneDescription {
  /** All facts, the object list first, the others in a random order. */
  facts: Fact[];
  /** The facts' sentences joined with spaces. */
  text: string;
}

/** Most facts of each kind in one description (the object list is always there). */
export const DESCRIBE_LIMITS: Record<Exclude<FactKind, 'objects'>, number> = {
  count: 3,
  horizontal: 2,
  vertical: 1,
  depth: 2,
  closest: 1,
  distance: 1,
};

const PLURAL: Record<Shape, string> = { cube: 'cubes', sphere: 'spheres', cylinder: 'cylinders', cone: 'cones' };

function countSentence(n: number, singular: string, plural: string): string {
  return n === 1 ? `There is 1 ${singular}.` : `There are ${n} ${plural}.`;
}

function listPhrase(items: string[]): string {
  return items.length === 1 ? items[0] : `${items.slice(0, -1).join(', ')} and ${items[items.length - 1]}`;
}

const capital = (s: string) => s[0].toUpperCase() + s.slice(1);

/** Pairs (i, j) with i < j. */
function pairs(items: number[]): [number, number][] {
  return items.flatMap((a, k) => items.slice(k + 1).map((b): [number, number] => [a, b]));
}

/**
 * A description of the scene. Relations are only stated where a question would also count them as
 * clear (questions.ts MARGINS), and only between objects with an unambiguous name that are mostly
 * visible (`minVisible`), so a description never contradicts what a question's answer would say.
 */
export function describeScene(scene: Scene, layout: SceneLayout, rng: Rng, minVisible = 0.6): SceneDescription {
  const objs = scene.objects;
  const names = objectNames(scene, layout);
  const left = objs.map((_, i) => i).sort((a, b) => layout.objects[a].center[0] - layout.objects[b].center[0]);
  const listed = left.map((i) => `a ${objs[i].size} ${objs[i].color} ${objs[i].shape}`);
  const intro = rng.pick(['The image shows', 'The scene contains', 'In the picture there are']);
  const objects: Fact = {
    kind: 'objects',
    text: `${intro} ${objs.length} objects, from left to right: ${listPhrase(listed)}.`,
    value: String(objs.length),
  };

  const facts: Fact[] = [];
  // Counts: colours, shapes and colour+shape kinds present, plus one that is absent (a count of 0).
  const counts: Fact[] = [];
  for (const color of COLOR_NAMES) {
    const n = objs.filter((o) => o.color === color).length;
    if (n > 0) counts.push({ kind: 'count', text: countSentence(n, `${color} object`, `${color} objects`), value: String(n) });
  }
  for (const shape of SHAPES) {
    const n = objs.filter((o) => o.shape === shape).length;
    if (n > 0) counts.push({ kind: 'count', text: countSentence(n, shape, PLURAL[shape]), value: String(n) });
  }
  const kinds = new Map<string, number>();
  for (const o of objs) kinds.set(`${o.color} ${o.shape}`, (kinds.get(`${o.color} ${o.shape}`) ?? 0) + 1);
  for (const [kind, n] of kinds) {
    const shape = kind.split(' ')[1] as Shape;
    counts.push({ kind: 'count', text: countSentence(n, kind, `${kind.split(' ')[0]} ${PLURAL[shape]}`), value: String(n) });
  }
  const absent = COLOR_NAMES.filter((c) => !objs.some((o) => o.color === c));
  if (absent.length > 0) {
    const color = rng.pick(absent);
    counts.push({ kind: 'count', text: `There are 0 ${color} objects.`, value: '0' });
  }
  facts.push(...rng.shuffle(counts).slice(0, DESCRIBE_LIMITS.count));

  const askable = objs.map((_, i) => i).filter((i) => names[i] !== null && layout.objects[i].visible >= minVisible);
  const named = (i: number) => `the ${names[i]}`;

  // Left/right and above/below, as the Relation task decides them (projected centres).
  for (const [axis, kind] of [[0, 'horizontal'], [1, 'vertical']] as const) {
    const span = axis === 0 ? scene.image.width : scene.image.height;
    const half = (i: number) => (layout.objects[i].bbox[axis + 2] - layout.objects[i].bbox[axis]) / 2;
    const clear = pairs(askable).filter(([i, j]) => {
      const d = Math.abs(layout.objects[i].center[axis] - layout.objects[j].center[axis]);
      return d >= MARGINS.relationShare * span && d >= (MARGINS.relationExtent * (half(i) + half(j))) / 2;
    });
    for (const [i, j] of rng.shuffle(clear).slice(0, DESCRIBE_LIMITS[kind])) {
      const [a, b] = rng.chance(0.5) ? [i, j] : [j, i];
      const before = layout.objects[a].center[axis] < layout.objects[b].center[axis];
      const word = axis === 0 ? (before ? 'left' : 'right') : before ? 'above' : 'below';
      const text = axis === 0
        ? `${capital(named(a))} is ${rng.pick(['on the', 'to the'])} ${word} of ${named(b)}.`
        : `${capital(named(a))} is ${word} ${named(b)}.`;
      facts.push({ kind, text, value: word });
    }
  }

  // Closer to / farther from the camera, as the Depth task decides it (3-D distance to the camera).
  const dist = (i: number) => layout.objects[i].cameraDistance;
  const clearDepth = pairs(askable).filter(([i, j]) => {
    const near = Math.min(dist(i), dist(j));
    const far = Math.max(dist(i), dist(j));
    return far >= MARGINS.depthRatio * near && far - near >= MARGINS.depthDifference;
  });
  for (const [i, j] of rng.shuffle(clearDepth).slice(0, DESCRIBE_LIMITS.depth)) {
    const [near, far] = dist(i) < dist(j) ? [i, j] : [j, i];
    const text = rng.chance(0.5)
      ? `${capital(named(near))} is closer to the camera than ${named(far)}.`
      : `${capital(named(far))} is farther from the camera than ${named(near)}.`;
    facts.push({ kind: 'depth', text, value: names[near]! });
  }
  if (askable.length >= 2) {
    const nearest = askable.reduce((a, b) => (dist(b) < dist(a) ? b : a));
    const second = Math.min(...askable.filter((k) => k !== nearest).map(dist));
    if (second >= MARGINS.depthRatio * dist(nearest) && DESCRIBE_LIMITS.closest > 0) {
      facts.push({ kind: 'closest', text: `The object closest to the camera is ${named(nearest)}.`, value: names[nearest]! });
    }
  }

  // Which of two objects is nearer to a third on the ground, as the Distance task decides it.
  const triples = askable.flatMap((ref) =>
    pairs(askable.filter((k) => k !== ref))
      .filter(([i, j]) => {
        const di = planeDistance(objs[ref], objs[i]);
        const dj = planeDistance(objs[ref], objs[j]);
        return Math.max(di, dj) >= MARGINS.distanceRatio * Math.min(di, dj) && Math.abs(di - dj) >= MARGINS.distanceDifference;
      })
      .map(([i, j]): [number, number, number] => [ref, i, j]),
  );
  for (const [ref, i, j] of rng.shuffle(triples).slice(0, DESCRIBE_LIMITS.distance)) {
    const [near, far] = planeDistance(objs[ref], objs[i]) < planeDistance(objs[ref], objs[j]) ? [i, j] : [j, i];
    facts.push({ kind: 'distance', text: `${capital(named(near))} is closer to ${named(ref)} than ${named(far)} is.`, value: names[near]! });
  }

  const all = [objects, ...rng.shuffle(facts)];
  return { facts: all, text: all.map((f) => f.text).join(' ') };
}
