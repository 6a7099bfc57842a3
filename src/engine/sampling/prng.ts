// The sampler's random numbers: xoshiro128** (Blackman & Vigna) seeded through splitmix32. 32-bit
// integer arithmetic only (Math.imul, shifts), so a seed gives the same stream on every platform and
// Node version. Random seeds come from node:crypto.
import { randomFillSync } from 'node:crypto';

function splitmix32(state: number): { state: number; value: number } {
  const next = (state + 0x9e3779b9) | 0;
  let z = next;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  z ^= z >>> 16;
  return { state: next, value: z >>> 0 };
}

/** A random seed in [0, MAX_SEED] from the OS's cryptographic source. */
export function randomSeed(): number {
  const words = randomFillSync(new Uint32Array(2));
  return (words[0] & 0x1fffff) * 0x100000000 + words[1];
}

export class Prng {
  private s0 = 0;
  private s1 = 0;
  private s2 = 0;
  private s3 = 0;

  /** `seed`: a non-negative safe integer (all 53 bits matter; requests are checked where they come in). */
  constructor(seed: number) {
    const low = seed >>> 0;
    const high = Math.floor(seed / 0x100000000) >>> 0;
    let step = splitmix32(low ^ Math.imul(high, 0x27d4eb2f));
    this.s0 = step.value | 0;
    step = splitmix32(step.state);
    this.s1 = step.value | 0;
    step = splitmix32(step.state ^ high);
    this.s2 = step.value | 0;
    step = splitmix32(step.state);
    this.s3 = step.value | 0;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the all-zero state is a fixed point
  }

  /** Uniform integer in [0, 2^32). */
  nextUint32(): number {
    const s1 = this.s1;
    const product = Math.imul(s1, 5);
    const result = Math.imul((product << 7) | (product >>> 25), 9) >>> 0;
    const t = s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = (this.s3 << 11) | (this.s3 >>> 21);
    return result;
  }

  /** Uniform float in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const high = this.nextUint32() >>> 5; // 27 bits
    const low = this.nextUint32() >>> 6; // 26 bits
    return (high * 67108864 + low) / 9007199254740992;
  }
}
