// The 3-D scene model of spatial-synth: objects standing on a ground plane, a pinhole camera above
// the plane looking forward and tilted down, and the projection that places everything in the
// image. Everything a question's ground truth depends on (3-D positions, projected centres, which
// object hides which) is computed here from the same geometry the renderer draws, so the answers
// are exact for the picture.
//
// World coordinates: x to the right, y up, z forward along the ground; the ground is y = 0 and the
// camera centre is at (0, camera.height, 0). Units are arbitrary ("metres").
import { Rng } from './random';

export const SHAPES = ['cube', 'sphere', 'cylinder', 'cone'] as const;
export type Shape = (typeof SHAPES)[number];

export type Rgb = readonly [number, number, number];

/** Colour names and their base RGB: hues far enough apart that the shading never turns one into another. */
export const COLORS = {
  red: [205, 38, 38],
  green: [38, 160, 62],
  blue: [42, 84, 215],
  yellow: [238, 206, 36],
  purple: [132, 58, 182],
  orange: [246, 134, 24],
  gray: [124, 124, 124],
  brown: [122, 78, 38],
  cyan: [38, 200, 214],
  pink: [246, 136, 192],
} as const satisfies Record<string, Rgb>;
export type ColorName = keyof typeof COLORS;
export const COLOR_NAMES = Object.keys(COLORS) as ColorName[];

export const SIZES = ['small', 'large'] as const;
export type SizeClass = (typeof SIZES)[number];
/** Characteristic radius of each size class (world units); "large" is 1.75x "small". */
export const SIZE_RADIUS: Record<SizeClass, number> = { small: 0.4, large: 0.7 };

export interface Camera {
  /** Height of the camera centre above the ground plane (world units). */
  height: number;
  /** Downward tilt of the optical axis from the horizontal, degrees. */
  pitch: number;
  /** Vertical field of view, degrees. */
  fov: number;
}

/** A camera a little above table-top scale: the horizon sits near the top edge, the ground fills the rest. */
export const DEFAULT_CAMERA: Readonly<Camera> = Object.freeze({ height: 3, pitch: 22, fov: 50 });

export interface ImageSize {
  width: number;
  height: number;
}

export interface Light {
  /** Direction towards the light, degrees around y; 0 points away from the camera (+z), 180 towards it. */
  azimuth: number;
  /** Degrees above the ground plane. */
  elevation: number;
}

export interface SceneObject {
  shape: Shape;
  color: ColorName;
  size: SizeClass;
  /** Centre of the object's footprint on the ground plane. */
  x: number;
  z: number;
  /** Rotation about the vertical axis, degrees (cubes only; 0 for round shapes). */
  yaw: number;
  /** Brightness factor of the object's paint (a little variation, ~0.92-1.08). */
  shade: number;
  /**
   * Factor on the size class's radius (every dimension scales with it). Absent means 1: the
   * standard level's scenes never carry it; the easy level draws larger objects (generate.ts LEVELS).
   */
  scale?: number;
}

export interface Scene {
  image: ImageSize;
  camera: Camera;
  light: Light;
  /** Backdrop colours: the ground near the camera and the sky at the top edge. */
  ground: Rgb;
  sky: Rgb;
  objects: SceneObject[];
}

export interface Vec3 {
  x: number;
  y: number;
  z: number;
}

export type Point = [number, number];

export interface ObjectDims {
  /** Half side (cube), radius (sphere, cylinder) or base radius (cone). */
  radius: number;
  height: number;
  /** Radius of the circle on the ground that contains the object: used to keep objects apart. */
  footprint: number;
}

/** Shape proportions chosen so that the four shapes of one size class look about equally big. */
export function objectDims(shape: Shape, size: SizeClass, scale = 1): ObjectDims {
  const r = SIZE_RADIUS[size] * scale;
  switch (shape) {
    case 'cube': {
      const half = 0.85 * r;
      return { radius: half, height: 2 * half, footprint: half * Math.SQRT2 };
    }
    case 'sphere':
      return { radius: r, height: 2 * r, footprint: r };
    case 'cylinder':
      return { radius: 0.85 * r, height: 1.9 * r, footprint: 0.85 * r };
    case 'cone':
      return { radius: r, height: 2.2 * r, footprint: r };
  }
}

/** The object's centre in 3-D: its footprint centre, lifted by half its height. */
export function objectCenter(o: SceneObject): Vec3 {
  return { x: o.x, y: dimsOf(o).height / 2, z: o.z };
}

/** An object's dimensions, its scale included. */
export function dimsOf(o: Pick<SceneObject, 'shape' | 'size' | 'scale'>): ObjectDims {
  return objectDims(o.shape, o.size, o.scale ?? 1);
}

export function cameraPosition(camera: Camera): Vec3 {
  return { x: 0, y: camera.height, z: 0 };
}

/** Euclidean 3-D distance from the camera centre to the object's centre (the Depth task's measure). */
export function cameraDistance(camera: Camera, o: SceneObject): number {
  const c = objectCenter(o);
  return Math.hypot(c.x, c.y - camera.height, c.z);
}

/** Distance between two objects' footprint centres on the ground plane (the Distance task's measure). */
export function planeDistance(a: SceneObject, b: SceneObject): number {
  return Math.hypot(a.x - b.x, a.z - b.z);
}

const RAD = Math.PI / 180;

/** Focal length in pixels: the vertical field of view spans the image height. */
export function focalLength(camera: Camera, image: ImageSize): number {
  return image.height / 2 / Math.tan((camera.fov * RAD) / 2);
}

export interface Projected {
  u: number;
  v: number;
  /** Distance along the optical axis (positive in front of the camera). */
  depth: number;
}

/** Pinhole projection to pixel coordinates (u right, v down), principal point at the image centre. */
export function project(camera: Camera, image: ImageSize, p: Vec3): Projected {
  const t = camera.pitch * RAD;
  const ry = p.y - camera.height;
  // Camera axes: right (1,0,0), up (0,cos t,sin t), forward (0,-sin t,cos t).
  const xc = p.x;
  const yc = ry * Math.cos(t) + p.z * Math.sin(t);
  const zc = -ry * Math.sin(t) + p.z * Math.cos(t);
  const f = focalLength(camera, image);
  return { u: image.width / 2 + (f * xc) / zc, v: image.height / 2 - (f * yc) / zc, depth: zc };
}

/** Image row of the horizon (where the ground plane vanishes); negative when above the image. */
export function horizonRow(camera: Camera, image: ImageSize): number {
  return image.height / 2 - focalLength(camera, image) * Math.tan(camera.pitch * RAD);
}

/** Points of a horizontal circle (ground-parallel), counter-clockwise seen from above. */
export function circlePoints(cx: number, y: number, cz: number, r: number, n = 24): Vec3[] {
  return Array.from({ length: n }, (_, i) => {
    const a = (2 * Math.PI * i) / n;
    return { x: cx + r * Math.cos(a), y, z: cz + r * Math.sin(a) };
  });
}

/** A cube's 8 corners: bottom 0-3 then top 4-7, each ring in the same order around the cube. */
export function cubeCorners(o: SceneObject): Vec3[] {
  const { radius: h, height } = dimsOf(o);
  const c = Math.cos(o.yaw * RAD);
  const s = Math.sin(o.yaw * RAD);
  const ring: [number, number][] = [[-h, -h], [h, -h], [h, h], [-h, h]];
  const corners = (y: number) => ring.map(([dx, dz]) => ({ x: o.x + dx * c - dz * s, y, z: o.z + dx * s + dz * c }));
  return [...corners(0), ...corners(height)];
}

/** Andrew's monotone chain; returns the hull counter-clockwise in (u, v) coordinates, no collinear points. */
export function convexHull(points: Point[]): Point[] {
  const pts = points.slice().sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (pts.length < 3) return pts;
  const cross = (o: Point, a: Point, b: Point) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower: Point[] = [];
  for (const p of pts) {
    while (lower.length >= 2 && cross(lower[lower.length - 2], lower[lower.length - 1], p) <= 0) lower.pop();
    lower.push(p);
  }
  const upper: Point[] = [];
  for (let i = pts.length - 1; i >= 0; i--) {
    const p = pts[i];
    while (upper.length >= 2 && cross(upper[upper.length - 2], upper[upper.length - 1], p) <= 0) upper.pop();
    upper.push(p);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

/** Inside (or on the edge of) a convex polygon given counter-clockwise as convexHull returns it. */
export function insideConvex(poly: Point[], u: number, v: number): boolean {
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [ax, ay] = poly[j];
    const [bx, by] = poly[i];
    if ((bx - ax) * (v - ay) - (by - ay) * (u - ax) < 0) return false;
  }
  return poly.length >= 3;
}

/** The object's outline in the image: a convex polygon, exactly what the renderer fills. */
export function silhouette(camera: Camera, image: ImageSize, o: SceneObject): Point[] {
  const dims = dimsOf(o);
  const toPoint = (p: Vec3): Point => {
    const q = project(camera, image, p);
    return [q.u, q.v];
  };
  switch (o.shape) {
    case 'cube':
      return convexHull(cubeCorners(o).map(toPoint));
    case 'sphere': {
      // Drawn as a disc: the projected centre and radius f*r/depth (the small perspective
      // elongation of a sphere off the optical axis is ignored, in the picture and here alike).
      const c = project(camera, image, objectCenter(o));
      const r = (focalLength(camera, image) * dims.radius) / c.depth;
      return convexHull(Array.from({ length: 32 }, (_, i): Point => {
        const a = (2 * Math.PI * i) / 32;
        return [c.u + r * Math.cos(a), c.v + r * Math.sin(a)];
      }));
    }
    case 'cylinder':
      return convexHull([
        ...circlePoints(o.x, 0, o.z, dims.radius),
        ...circlePoints(o.x, dims.height, o.z, dims.radius),
      ].map(toPoint));
    case 'cone':
      return convexHull([...circlePoints(o.x, 0, o.z, dims.radius), { x: o.x, y: dims.height, z: o.z }].map(toPoint));
  }
}

export type Box = [number, number, number, number];

function boundingBox(poly: Point[]): Box {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -Infinity;
  let y1 = -Infinity;
  for (const [u, v] of poly) {
    x0 = Math.min(x0, u);
    y0 = Math.min(y0, v);
    x1 = Math.max(x1, u);
    y1 = Math.max(y1, v);
  }
  return [x0, y0, x1, y1];
}

export interface ObjectLayout {
  /** Projection of the object's 3-D centre (the Relation task compares these). */
  center: Point;
  /** Depth of the centre along the optical axis (sets the drawing order). */
  depth: number;
  /** 3-D distance from the camera centre to the object's centre. */
  cameraDistance: number;
  silhouette: Point[];
  bbox: Box;
  /** Share of the silhouette not covered by objects drawn after it, in [0, 1]. */
  visible: number;
}

export interface SceneLayout {
  objects: ObjectLayout[];
  /** Object indices back to front: the painter's algorithm draws them in this order. */
  drawOrder: number[];
  horizon: number;
}

/**
 * Share of each silhouette left uncovered by the silhouettes drawn after it, sampled on a grid of
 * about 160 rows whatever the image size (fine enough for a 50%-hidden threshold, cheap enough to
 * run for every candidate scene).
 */
function visibleShares(image: ImageSize, silhouettes: Point[][], boxes: Box[], order: number[]): number[] {
  const step = Math.max(1, image.height / 160);
  const shares = new Array<number>(silhouettes.length).fill(0);
  order.forEach((i, rank) => {
    const [x0, y0, x1, y1] = boxes[i];
    const occluders = order.slice(rank + 1).filter((j) => {
      const b = boxes[j];
      return b[0] <= x1 && b[2] >= x0 && b[1] <= y1 && b[3] >= y0;
    });
    let inside = 0;
    let seen = 0;
    for (let v = y0 + step / 2; v < y1; v += step) {
      for (let u = x0 + step / 2; u < x1; u += step) {
        if (!insideConvex(silhouettes[i], u, v)) continue;
        inside++;
        if (!occluders.some((j) => insideConvex(silhouettes[j], u, v))) seen++;
      }
    }
    shares[i] = inside === 0 ? 0 : seen / inside;
  });
  return shares;
}

/** Everything about a scene's picture that questions need: 2-D positions, drawing order, visibility. */
export function layoutScene(scene: Scene): SceneLayout {
  const { camera, image } = scene;
  const base = scene.objects.map((o) => {
    const c = project(camera, image, objectCenter(o));
    const poly = silhouette(camera, image, o);
    return { center: [c.u, c.v] as Point, depth: c.depth, cameraDistance: cameraDistance(camera, o), silhouette: poly, bbox: boundingBox(poly) };
  });
  // Farthest first; ties (never seen in practice) fall back to the index so the order is total.
  const drawOrder = base.map((_, i) => i).sort((a, b) => base[b].depth - base[a].depth || a - b);
  const visible = visibleShares(image, base.map((b) => b.silhouette), base.map((b) => b.bbox), drawOrder);
  return { objects: base.map((b, i) => ({ ...b, visible: visible[i] })), drawOrder, horizon: horizonRow(camera, image) };
}

/** A scene built for a Count question: exactly `count` objects have this colour and/or shape. */
export interface CountConstraint {
  count: number;
  color?: ColorName;
  shape?: Shape;
}

export function matchesCategory(o: { color: ColorName; shape: Shape }, c: { color?: ColorName; shape?: Shape }): boolean {
  return (c.color === undefined || o.color === c.color) && (c.shape === undefined || o.shape === c.shape);
}

export interface SceneOptions {
  minObjects: number;
  maxObjects: number;
  camera?: Camera;
  /** Ground depth range objects are drawn in (world units). Default PLACEMENT's 3.2 to 11.5. */
  zMin?: number;
  zMax?: number;
  /** Factor on every object's size (SceneObject.scale). Default 1, recorded on no object. */
  scale?: number;
  /** Plant exactly this many objects of a category (the others never belong to it). */
  count?: CountConstraint;
}

/** Where objects may stand: ground depth range (world units) and the spacing and frame margins. */
const PLACEMENT = {
  zMin: 3.2,
  zMax: 11.5,
  /** Clear ground between two footprints, so that no two objects touch. */
  gap: 0.15,
  /** Every object lies entirely inside the frame, this share of the image height from its edges. */
  margin: 0.02,
  triesPerObject: 40,
};

/** Neutral ground tones, far from every object colour. */
const GROUND_TONES: Rgb[] = [
  [196, 190, 176],
  [184, 188, 180],
  [200, 196, 188],
  [178, 176, 170],
];

const quantize = (x: number, step: number) => Math.round(x / step) * step;
/** Scene numbers are rounded when drawn so that meta holds exactly the values everything was computed from. */
const q3 = (x: number) => Number(quantize(x, 0.001).toFixed(3));
const q1 = (x: number) => Number(quantize(x, 0.1).toFixed(1));

function jitterRgb(rng: Rng, rgb: Rgb, amount: number): Rgb {
  const k = 1 + rng.range(-amount, amount);
  return rgb.map((c) => Math.max(0, Math.min(255, Math.round(c * k)))) as unknown as Rgb;
}

function fitsInFrame(camera: Camera, image: ImageSize, o: SceneObject): boolean {
  const m = PLACEMENT.margin * image.height;
  const [x0, y0, x1, y1] = boundingBox(silhouette(camera, image, o));
  return x0 >= m && y0 >= m && x1 <= image.width - m && y1 <= image.height - m;
}

/**
 * Samples objects one at a time at random ground positions inside the view, each kept apart from
 * the ones already placed; an object that finds no room within a few tries is dropped. Returns
 * null when fewer than minObjects fit, or when a planted object of options.count found no room
 * (the caller draws again).
 */
export function sampleScene(rng: Rng, image: ImageSize, options: SceneOptions): Scene | null {
  const camera = options.camera ?? { ...DEFAULT_CAMERA };
  const light: Light = { azimuth: q1(rng.range(110, 250)), elevation: q1(rng.range(35, 65)) };
  const ground = jitterRgb(rng, rng.pick(GROUND_TONES), 0.04);
  const sky = jitterRgb(rng, [172, 198, 222], 0.05);
  const planted = options.count;
  const total = rng.int(Math.max(options.minObjects, planted?.count ?? 0), options.maxObjects);
  const kinds = Array.from({ length: total }, (_, n) => {
    if (planted && n < planted.count) return { shape: planted.shape ?? rng.pick(SHAPES), color: planted.color ?? rng.pick(COLOR_NAMES), planted: true };
    for (;;) {
      const kind = { shape: rng.pick(SHAPES), color: rng.pick(COLOR_NAMES), planted: false };
      if (!planted || !matchesCategory(kind, planted)) return kind;
    }
  });
  // Planted objects go in at random turns, not first (which would give them the emptiest ground).
  const order = planted ? rng.shuffle(kinds) : kinds;
  const f = focalLength(camera, image);
  const t = camera.pitch * RAD;
  const objects: SceneObject[] = [];
  const zMin = options.zMin ?? PLACEMENT.zMin;
  const zMax = options.zMax ?? PLACEMENT.zMax;
  const scale = options.scale ?? 1;
  for (const { shape, color, planted: mustFit } of order) {
    const size = rng.pick(SIZES);
    const yaw = shape === 'cube' ? q1(rng.range(0, 90)) : 0;
    const shade = q3(rng.range(0.92, 1.08));
    const footprint = objectDims(shape, size, scale).footprint;
    let placed = false;
    for (let tries = 0; tries < PLACEMENT.triesPerObject && !placed; tries++) {
      const z = q3(rng.range(zMin, zMax));
      // Half the width of the view at this ground depth: depth along the axis times the half field.
      const halfWidth = ((camera.height * Math.sin(t) + z * Math.cos(t)) * image.width) / 2 / f;
      const x = q3(rng.range(-halfWidth, halfWidth));
      // A scale of 1 is left out, so that standard scenes stay exactly as they were.
      const candidate: SceneObject = scale === 1 ? { shape, color, size, x, z, yaw, shade } : { shape, color, size, x, z, yaw, shade, scale };
      const clear = objects.every((o) => planeDistance(o, candidate) >= footprint + dimsOf(o).footprint + PLACEMENT.gap);
      if (clear && fitsInFrame(camera, image, candidate)) {
        objects.push(candidate);
        placed = true;
      }
    }
    if (!placed && mustFit) return null;
  }
  if (objects.length < options.minObjects) return null;
  return { image: { ...image }, camera, light, ground, sky, objects };
}
