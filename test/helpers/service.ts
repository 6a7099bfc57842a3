// Building engines, apps and test images for the engine and server tests.
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { Config, loadConfig } from '../../src/config';
import { Engine, EngineOptions } from '../../src/engine/engine';
import { engineFromConfig } from '../../src/engine/from_config';
import { ImageCase, loadVectors, REPO_ROOT, TINY_MODEL_DIR } from './vectors';

export const MODELS_ROOT = join(REPO_ROOT, 'models');

export function testEngineOptions(overrides: Partial<EngineOptions> = {}): EngineOptions {
  return {
    modelRoots: [MODELS_ROOT],
    defaultModel: 'tiny-random',
    threads: 1,
    scheduler: { maxBatchSize: 8, maxWaiting: 32, maxPrefillTokens: 4096, featureCacheBytes: 16 << 20, ...overrides.scheduler },
    memoryBudgetBytes: 0,
    maxPixels: 401408,
    minPixels: 3136,
    maxInputPixels: 4_000_000,
    defaultMaxNewTokens: 8,
    maxNewTokensCap: 64,
    maxPromptTokens: 4096,
    requestTimeoutMs: 60_000,
    ...overrides,
  };
}

export function testEngine(overrides: Partial<EngineOptions> = {}): Engine {
  return new Engine(testEngineOptions(overrides));
}

/** A configuration as the service reads it, with test-sized limits; `env` overrides variables.
 *  Tests serve tiny-random (fast, every code path) unless they name another model. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({
    DEFAULT_MODEL: 'tiny-random',
    THREADS: '1',
    LOG_LEVEL: 'silent',
    MAX_BATCH_SIZE: '8',
    MAX_QUEUE: '16',
    MAX_NEW_TOKENS: '64',
    DEFAULT_MAX_NEW_TOKENS: '6',
    MAX_IMAGE_BYTES: String(2 * 1024 * 1024),
    MAX_INPUT_PIXELS: '4000000',
    ...env,
  });
}

export function engineFor(config: Config): Engine {
  return engineFromConfig(config);
}

const vectorImages = loadVectors<{ cases: ImageCase[] }>('image_preprocessing.json');

/** PNG bytes of an image of the shared vectors. */
export function vectorPng(name: string): Buffer {
  const found = vectorImages.cases.find((c) => c.name === name);
  if (!found) throw new Error(`no vector image ${name}`);
  return Buffer.from(found.png_base64, 'base64');
}

/** A deterministic noisy RGB image encoded as `format`. */
export async function noiseImage(width: number, height: number, seed: number, format: 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff' = 'png'): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  let x = seed * 2654435761 >>> 0;
  for (let i = 0; i < data.length; i++) {
    x = (x * 1664525 + 1013904223) >>> 0;
    data[i] = x >>> 24;
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).toFormat(format).toBuffer();
}

/** A copy of the tiny model under a new name in a temporary root (for tests that alter it). */
export function copyTinyModel(name = 'tiny-copy'): { root: string; dir: string; cleanup: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'models-'));
  const dir = join(root, name);
  cpSync(TINY_MODEL_DIR, dir, { recursive: true });
  return { root, dir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export async function collectText(engine: Engine, request: Parameters<Engine['generate']>[0]): Promise<string> {
  return (await engine.generateText(request)).text;
}
