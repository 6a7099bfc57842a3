// Drawing a scene: an SVG of simple shaded primitives (sky and ground gradients, soft ground
// shadows, then the objects back to front so nearer ones cover farther ones), rasterised to PNG by
// sharp (librsvg). Outlines are exactly the silhouettes layoutScene measured, so what the ground
// truth says is hidden or visible is what the picture shows.
import sharp from 'sharp';
import {
  COLORS,
  Point,
  Rgb,
  Scene,
  SceneLayout,
  SceneObject,
  Vec3,
  cameraPosition,
  circlePoints,
  convexHull,
  cubeCorners,
  dimsOf,
  layoutScene,
  objectCenter,
  project,
} from './scene';

const RAD = Math.PI / 180;

const clamp255 = (x: number) => Math.max(0, Math.min(255, Math.round(x)));
const scale = (c: Rgb, k: number): Rgb => [clamp255(c[0] * k), clamp255(c[1] * k), clamp255(c[2] * k)];
const mix = (a: Rgb, b: Rgb, w: number): Rgb => [
  clamp255(a[0] + (b[0] - a[0]) * w),
  clamp255(a[1] + (b[1] - a[1]) * w),
  clamp255(a[2] + (b[2] - a[2]) * w),
];
const WHITE: Rgb = [255, 255, 255];
const hex = (c: Rgb) => `#${c.map((x) => x.toString(16).padStart(2, '0')).join('')}`;
/** Two decimals: enough for sub-pixel placement, short enough to keep SVGs small. */
const num = (x: number) => (Math.round(x * 100) / 100).toString();
const points = (poly: Point[]) => poly.map(([u, v]) => `${num(u)},${num(v)}`).join(' ');

interface Shading {
  /** Unit vector towards the light. */
  light: Vec3;
  /** The light's direction in the image plane (u right, v down), unit length or zero. */
  screen: Point;
}

function shading(scene: Scene): Shading {
  const az = scene.light.azimuth * RAD;
  const el = scene.light.elevation * RAD;
  const light = { x: Math.cos(el) * Math.sin(az), y: Math.sin(el), z: Math.cos(el) * Math.cos(az) };
  const t = scene.camera.pitch * RAD;
  const su = light.x;
  const sv = -(light.y * Math.cos(t) + light.z * Math.sin(t));
  const n = Math.hypot(su, sv) || 1;
  return { light, screen: [su / n, sv / n] };
}

/**
 * Lambert with ambient: faces turned away from the light keep 58% of their colour, no darker, so
 * that a shaded yellow never reads as brown nor a shaded orange as red.
 */
const lambert = (n: Vec3, l: Vec3) => 0.58 + 0.5 * Math.max(0, n.x * l.x + n.y * l.y + n.z * l.z);

function paint(o: SceneObject): Rgb {
  return scale(COLORS[o.color], o.shade);
}

interface Drawn {
  defs: string[];
  body: string[];
}

function strokeAttrs(base: Rgb, width: number): string {
  return `stroke="${hex(scale(base, 0.35))}" stroke-opacity="0.8" stroke-width="${num(width)}" stroke-linejoin="round"`;
}

/** A left-to-right gradient for round bodies: bright on the lit side, dark on the other. */
function sideGradient(id: string, base: Rgb, litFromLeft: boolean): string {
  const lit = mix(scale(base, 1.08), WHITE, 0.12);
  const stops = litFromLeft
    ? [[0, scale(base, 0.9)], [0.3, lit], [1, scale(base, 0.6)]]
    : [[0, scale(base, 0.6)], [0.7, lit], [1, scale(base, 0.9)]];
  const s = stops.map(([o, c]) => `<stop offset="${o}" stop-color="${hex(c as Rgb)}"/>`).join('');
  return `<linearGradient id="${id}" x1="0" y1="0" x2="1" y2="0">${s}</linearGradient>`;
}

function drawObject(scene: Scene, layout: SceneLayout, index: number, sh: Shading, stroke: number): Drawn {
  const o = scene.objects[index];
  const { camera, image } = scene;
  const base = paint(o);
  const dims = dimsOf(o);
  const toPoint = (p: Vec3): Point => {
    const q = project(camera, image, p);
    return [q.u, q.v];
  };
  const strokeA = strokeAttrs(base, stroke);
  const id = `o${index}`;
  switch (o.shape) {
    case 'cube': {
      const corners = cubeCorners(o);
      const cam = cameraPosition(camera);
      const faces: { idx: number[]; normal: Vec3 }[] = [{ idx: [4, 5, 6, 7], normal: { x: 0, y: 1, z: 0 } }];
      for (let i = 0; i < 4; i++) {
        const j = (i + 1) % 4;
        const mx = (corners[i].x + corners[j].x) / 2 - o.x;
        const mz = (corners[i].z + corners[j].z) / 2 - o.z;
        const n = Math.hypot(mx, mz);
        faces.push({ idx: [i, j, j + 4, i + 4], normal: { x: mx / n, y: 0, z: mz / n } });
      }
      // Back-face culling: a face is seen when the camera is on its outer side. The visible faces
      // of a convex solid never overlap, so their order does not matter.
      const body = faces
        .filter(({ idx, normal }) => {
          const c = idx.reduce((acc, k) => ({ x: acc.x + corners[k].x / 4, y: acc.y + corners[k].y / 4, z: acc.z + corners[k].z / 4 }), { x: 0, y: 0, z: 0 });
          return normal.x * (cam.x - c.x) + normal.y * (cam.y - c.y) + normal.z * (cam.z - c.z) > 1e-9;
        })
        .map(({ idx, normal }) => `<polygon points="${points(idx.map((k) => toPoint(corners[k])))}" fill="${hex(scale(base, lambert(normal, sh.light)))}" ${strokeA}/>`);
      return { defs: [], body };
    }
    case 'sphere': {
      // The silhouette is a 32-gon around this disc; its width gives the disc's radius.
      const [cu, cv] = toPoint(objectCenter(o));
      const r = (layout.objects[index].bbox[2] - layout.objects[index].bbox[0]) / 2;
      const fx = 0.5 + 0.28 * sh.screen[0];
      const fy = 0.5 + 0.28 * sh.screen[1];
      const grad =
        `<radialGradient id="${id}" cx="0.5" cy="0.5" r="0.5" fx="${num(fx)}" fy="${num(fy)}">` +
        `<stop offset="0" stop-color="${hex(mix(base, WHITE, 0.45))}"/>` +
        `<stop offset="0.35" stop-color="${hex(scale(base, 1.02))}"/>` +
        `<stop offset="1" stop-color="${hex(scale(base, 0.58))}"/></radialGradient>`;
      return { defs: [grad], body: [`<circle cx="${num(cu)}" cy="${num(cv)}" r="${num(r)}" fill="url(#${id})" ${strokeA}/>`] };
    }
    case 'cylinder': {
      const top = circlePoints(o.x, dims.height, o.z, dims.radius).map(toPoint);
      const topColor = mix(scale(base, lambert({ x: 0, y: 1, z: 0 }, sh.light)), WHITE, 0.06);
      return {
        defs: [sideGradient(id, base, sh.screen[0] < 0)],
        body: [
          `<polygon points="${points(layout.objects[index].silhouette)}" fill="url(#${id})" ${strokeA}/>`,
          `<polygon points="${points(top)}" fill="${hex(topColor)}" ${strokeA}/>`,
        ],
      };
    }
    case 'cone':
      return {
        defs: [sideGradient(id, base, sh.screen[0] < 0)],
        body: [`<polygon points="${points(layout.objects[index].silhouette)}" fill="url(#${id})" ${strokeA}/>`],
      };
  }
}

/** A soft dark patch on the ground, stretched away from the light by the object's height. */
function shadowPolygon(scene: Scene, o: SceneObject, sh: Shading): Point[] {
  const dims = dimsOf(o);
  const r = dims.radius * (o.shape === 'cube' ? 1.25 : 1.05);
  const horizontal = Math.hypot(sh.light.x, sh.light.z) || 1;
  const length = Math.min((dims.height * 0.5) / Math.tan(scene.light.elevation * RAD), 1.5 * dims.radius);
  const dx = (-sh.light.x / horizontal) * length;
  const dz = (-sh.light.z / horizontal) * length;
  const ring = [...circlePoints(o.x, 0, o.z, r), ...circlePoints(o.x + dx, 0, o.z + dz, r)];
  return convexHull(ring.map((p) => {
    const q = project(scene.camera, scene.image, p);
    return [q.u, q.v] as Point;
  }));
}

/** The scene as an SVG document of image.width x image.height pixels. */
export function sceneSvg(scene: Scene, layout: SceneLayout = layoutScene(scene)): string {
  const { width, height } = scene.image;
  const sh = shading(scene);
  const stroke = Math.max(0.6, height / 500);
  const horizon = Math.max(0, Math.min(height, layout.horizon));
  const haze = mix(scene.ground, scene.sky, 0.45);
  const defs: string[] = [
    `<linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${hex(scene.sky)}"/><stop offset="1" stop-color="${hex(mix(scene.sky, WHITE, 0.45))}"/></linearGradient>`,
    // Ground hazy at the horizon, darker towards the camera: an aerial-perspective depth cue.
    `<linearGradient id="ground" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${hex(haze)}"/><stop offset="1" stop-color="${hex(scale(scene.ground, 0.82))}"/></linearGradient>`,
  ];
  const body: string[] = [];
  if (horizon > 0) body.push(`<rect x="0" y="0" width="${width}" height="${num(horizon)}" fill="url(#sky)"/>`);
  body.push(`<rect x="0" y="${num(horizon)}" width="${width}" height="${num(height - horizon)}" fill="url(#ground)"/>`);
  // Shadows lie on the ground, and the ground is behind every object: all of them first.
  for (const i of layout.drawOrder) {
    body.push(`<polygon points="${points(shadowPolygon(scene, scene.objects[i], sh))}" fill="#000" fill-opacity="0.2"/>`);
  }
  for (const i of layout.drawOrder) {
    const drawn = drawObject(scene, layout, i, sh, stroke);
    defs.push(...drawn.defs);
    body.push(...drawn.body);
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">` +
    `<defs>${defs.join('')}</defs>${body.join('')}</svg>`
  );
}

/** Rasterises an SVG to PNG bytes; the same SVG gives the same bytes (same sharp/libvips build). */
export async function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png({ compressionLevel: 6 }).toBuffer();
}

export async function renderScene(scene: Scene, layout?: SceneLayout): Promise<Buffer> {
  return svgToPng(sceneSvg(scene, layout));
}
