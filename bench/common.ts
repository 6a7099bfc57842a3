// What the generation benchmarks share: flags, the request they send, their pictures, medians.
import sharp from 'sharp';

const args = process.argv.slice(2);

/** The value after `--name`, or `fallback`. */
export function flag(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

/** Whether `--name` was given. */
export function hasFlag(name: string): boolean {
  return args.includes(`--${name}`);
}

/** Every value given as `--name VALUE` (the flag may repeat). */
export function flags(name: string): string[] {
  return args.flatMap((a, i) => (a === `--${name}` ? [args[i + 1]] : []));
}

/** The question every benchmark request asks (CV-Bench style, with choices). */
export const QUESTION = 'How many red objects are in the image? Select from the following choices.\n(A) 2\n(B) 3\n(C) 4';

/** A size x size PNG of seeded noise: incompressible, so decoding costs what a photo's would. */
export async function noisePng(size: number, seed: number): Promise<Buffer> {
  const data = Buffer.alloc(size * size * 3);
  let x = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    data[i] = x >>> 24;
  }
  return sharp(data, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}
