// Image preprocessing against transformers' Qwen2VLImageProcessorPil (test/vectors/image_preprocessing.json,
// written by `python -m trainer.vectors`), plus the decoding behaviour callers rely on.
//
// Tolerances: the vectors store floats rounded to 6 decimals (sums to 3), so stored values are off by
// up to 5e-7 (5e-4 for sum/abs_sum) from the float32 values the processor made. Our float32 values are
// bit-identical to the processor's, so every bound below is that storage rounding plus 1e-7
// (FLOAT_TOL = 6e-7, SUM_TOL = 5.01e-4). Resized images must be byte-exact.
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { EngineError } from '../../../src/engine/errors';
import { pillowVerticalFirst, resizeBicubic } from '../../../src/engine/images/bicubic';
import { decodeImage, RgbImage } from '../../../src/engine/images/decoding';
import {
  DEFAULT_IMAGE_PROCESSOR_CONFIG,
  ImageProcessorConfig,
  imageGrid,
  imageProcessorConfig,
  pixelValuesFromRgb,
  preprocessImage,
  roundHalfToEven,
  smartResize,
} from '../../../src/engine/qwen2_vl/image_processing';
import { loadVectors, maxAbsDiff, TINY_MODEL_DIR } from '../../helpers/vectors';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

interface Summary {
  sum: number;
  abs_sum: number;
  channel_means: number[];
  row_sums: number[];
  rows: Record<string, number[]>;
}

interface PreprocessingCase {
  name: string;
  png_base64: string;
  mode: string;
  height: number;
  width: number;
  min_pixels: number;
  max_pixels: number;
  resized_height: number;
  resized_width: number;
  resized: boolean;
  grid_thw: number[];
  num_image_tokens: number;
  pixel_values_shape: number[];
  summary: Summary;
  resized_rgb_base64?: string;
  pixel_values?: number[][];
}

interface PreprocessingVectors {
  image_mean: number[];
  image_std: number[];
  patch_size: number;
  merge_size: number;
  temporal_patch_size: number;
  cases: PreprocessingCase[];
  errors: { name: string; png_base64: string; height: number; width: number; error_contains: string }[];
}

const FLOAT_TOL = 6e-7;
const SUM_TOL = 5.01e-4;
const LIMITS = { maxInputPixels: 50_000_000 };

const v = loadVectors<PreprocessingVectors>('image_preprocessing.json');
const caseConfig = (c: PreprocessingCase): ImageProcessorConfig =>
  imageProcessorConfig(
    {
      image_mean: v.image_mean,
      image_std: v.image_std,
      patch_size: v.patch_size,
      merge_size: v.merge_size,
      temporal_patch_size: v.temporal_patch_size,
    },
    { minPixels: c.min_pixels, maxPixels: c.max_pixels },
  );
const png = (c: { png_base64: string }) => Buffer.from(c.png_base64, 'base64');

/** Worst deviation of pixel values from a stored summary, per statistic. */
function summaryDiffs(pixelValues: Float32Array, rowLength: number, summary: Summary) {
  const rows = pixelValues.length / rowLength;
  let sum = 0;
  let absSum = 0;
  const channelSums = [0, 0, 0];
  const rowSums = new Float64Array(rows);
  const perChannel = rowLength / 3;
  for (let r = 0; r < rows; r++) {
    let rs = 0;
    for (let i = 0; i < rowLength; i++) {
      const x = pixelValues[r * rowLength + i];
      rs += x;
      absSum += Math.abs(x);
      channelSums[Math.floor(i / perChannel)] += x;
    }
    rowSums[r] = rs;
    sum += rs;
  }
  const channelMeans = channelSums.map((s) => s / (rows * perChannel));
  let rowsDiff = 0;
  for (const [index, values] of Object.entries(summary.rows)) {
    const r = Number(index);
    rowsDiff = Math.max(rowsDiff, maxAbsDiff(pixelValues.subarray(r * rowLength, (r + 1) * rowLength), values));
  }
  return {
    sum: Math.abs(sum - summary.sum),
    absSum: Math.abs(absSum - summary.abs_sum),
    channelMeans: maxAbsDiff(channelMeans, summary.channel_means),
    rowSums: maxAbsDiff(rowSums, summary.row_sums),
    rows: rowsDiff,
  };
}

function expectSummary(pixelValues: Float32Array, rowLength: number, summary: Summary) {
  const d = summaryDiffs(pixelValues, rowLength, summary);
  expect(d.sum).toBeLessThanOrEqual(SUM_TOL);
  expect(d.absSum).toBeLessThanOrEqual(SUM_TOL);
  expect(d.channelMeans).toBeLessThanOrEqual(FLOAT_TOL);
  expect(d.rowSums).toBeLessThanOrEqual(FLOAT_TOL);
  expect(d.rows).toBeLessThanOrEqual(FLOAT_TOL);
}

async function expectEngineError(promise: Promise<unknown>, kind: string, code?: string): Promise<EngineError> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(EngineError);
  const error = caught as EngineError;
  expect(error.kind).toBe(kind);
  if (code !== undefined) expect(error.code).toBe(code);
  return error;
}

// A minimal PNG writer (8 or 16 bit, no filtering) for inputs sharp would not write.
function pngChunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body) >>> 0);
  return Buffer.concat([length, body, crc]);
}

function makePng(width: number, height: number, bitDepth: 8 | 16, colourType: number, samples: number[] | null): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = bitDepth;
  ihdr[9] = colourType;
  const chunks = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr)];
  if (samples !== null) {
    const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colourType] ?? 1;
    const bytesPerSample = bitDepth / 8;
    const rowBytes = width * channels * bytesPerSample;
    const raw = Buffer.alloc(height * (rowBytes + 1));
    for (let y = 0; y < height; y++) {
      for (let i = 0; i < width * channels; i++) {
        const value = samples[y * width * channels + i];
        const at = y * (rowBytes + 1) + 1 + i * bytesPerSample;
        if (bitDepth === 16) raw.writeUInt16BE(value, at);
        else raw[at] = value;
      }
    }
    chunks.push(pngChunk('IDAT', deflateSync(raw)));
  }
  chunks.push(pngChunk('IEND', Buffer.alloc(0)));
  return Buffer.concat(chunks);
}

/** The JPEG without its APP2 ICC_PROFILE segments (markers before the scan only). */
function stripJpegIcc(jpeg: Buffer): Buffer {
  const parts = [jpeg.subarray(0, 2)];
  let at = 2;
  while (at + 4 <= jpeg.length && jpeg[at] === 0xff && jpeg[at + 1] !== 0xda) {
    const end = at + 2 + jpeg.readUInt16BE(at + 2);
    const icc = jpeg[at + 1] === 0xe2 && jpeg.toString('latin1', at + 4, at + 15) === 'ICC_PROFILE';
    if (!icc) parts.push(jpeg.subarray(at, end));
    at = end;
  }
  parts.push(jpeg.subarray(at));
  return Buffer.concat(parts);
}

const rawImage = (data: number[], width: number, height: number, channels: 1 | 2 | 3 | 4) =>
  sharp(Buffer.from(data), { raw: { width, height, channels } });

// ---------------------------------------------------------------------------------------------------

describe('Qwen2VLImageProcessorPil vectors', () => {
  test('the vectors use the default Qwen2-VL settings', () => {
    expect(v.image_mean).toEqual(DEFAULT_IMAGE_PROCESSOR_CONFIG.imageMean);
    expect(v.image_std).toEqual(DEFAULT_IMAGE_PROCESSOR_CONFIG.imageStd);
    expect(v.cases.length).toBeGreaterThanOrEqual(8);
  });

  describe.each(v.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const config = caseConfig(c);
    const rowLength = c.pixel_values_shape[1];

    test('grid, image tokens and resized size from the dimensions alone', () => {
      const factor = config.patchSize * config.mergeSize;
      expect(smartResize(c.height, c.width, factor, c.min_pixels, c.max_pixels)).toEqual({ height: c.resized_height, width: c.resized_width });
      const grid = imageGrid(c.width, c.height, config);
      expect(grid.gridThw).toEqual(c.grid_thw);
      expect(grid.numImageTokens).toBe(c.num_image_tokens);
      expect([grid.resizedHeight, grid.resizedWidth]).toEqual([c.resized_height, c.resized_width]);
      expect(c.pixel_values_shape).toEqual([c.grid_thw[0] * c.grid_thw[1] * c.grid_thw[2], 3 * config.temporalPatchSize * config.patchSize ** 2]);
    });

    test('decodes to the image size; the bicubic resize is byte-exact against PIL', async () => {
      const decoded = await decodeImage(png(c), LIMITS);
      expect([decoded.height, decoded.width]).toEqual([c.height, c.width]);
      expect(decoded.data.length).toBe(c.height * c.width * 3);
      expect(c.resized).toBe(c.resized_rgb_base64 !== undefined);
      if (c.resized_rgb_base64 === undefined) return;
      const resized = resizeBicubic(decoded, c.resized_width, c.resized_height);
      const expected = Buffer.from(c.resized_rgb_base64, 'base64');
      expect(resized.data.length).toBe(expected.length);
      let differing = 0;
      for (let i = 0; i < expected.length; i++) if (resized.data[i] !== expected[i]) differing++;
      expect(differing).toBe(0);
    });

    test('end to end from the PNG: pixel values and summary', async () => {
      const out = await preprocessImage(png(c), config, LIMITS);
      expect(out.gridThw).toEqual(c.grid_thw);
      expect(out.numImageTokens).toBe(c.num_image_tokens);
      expect([out.height, out.width]).toEqual([c.resized_height, c.resized_width]);
      expect([out.originalHeight, out.originalWidth]).toEqual([c.height, c.width]);
      expect(out.pixelValues.length).toBe(c.pixel_values_shape[0] * rowLength);
      if (c.pixel_values) expect(maxAbsDiff(out.pixelValues, c.pixel_values.flat())).toBeLessThanOrEqual(FLOAT_TOL);
      expectSummary(out.pixelValues, rowLength, c.summary);
    });

    if (c.resized_rgb_base64 !== undefined) {
      const resizedRgb = c.resized_rgb_base64;
      test('pixelValuesFromRgb on the stored PIL-resized image reproduces the summary', () => {
        const image: RgbImage = { width: c.resized_width, height: c.resized_height, data: new Uint8Array(Buffer.from(resizedRgb, 'base64')) };
        const { pixelValues, gridThw } = pixelValuesFromRgb(image, config);
        expect(gridThw).toEqual(c.grid_thw);
        if (c.pixel_values) expect(maxAbsDiff(pixelValues, c.pixel_values.flat())).toBeLessThanOrEqual(FLOAT_TOL);
        expectSummary(pixelValues, rowLength, c.summary);
      });
    }
  });

  test.each(v.errors.map((e) => [e.name, e] as const))('error case %s is an unprocessable EngineError', async (_name, e) => {
    const config = imageProcessorConfig({});
    const error = await expectEngineError(preprocessImage(png(e), config, LIMITS), 'unprocessable', 'image_aspect_ratio');
    expect(error.message).toContain(e.error_contains);
    expect(error.message).toContain('200');
    expect(() => imageGrid(e.width, e.height, config)).toThrow(EngineError);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('smartResize', () => {
  test('rounds half to even like Python round()', () => {
    expect([0.5, 1.5, 2.5, 3.5, 4.5, 2.4999, 2.5001].map(roundHalfToEven)).toEqual([0, 2, 2, 4, 4, 2, 3]);
    // 70/28 = 2.5 -> 2, 98/28 = 3.5 -> 4
    expect(smartResize(70, 98, 28, 3136, 12845056)).toEqual({ height: 56, width: 112 });
    // 42/28 = 1.5 -> 2, 126/28 = 4.5 -> 4
    expect(smartResize(42, 126, 28, 3136, 12845056)).toEqual({ height: 56, width: 112 });
    expect(smartResize(126, 126, 28, 3136, 12845056)).toEqual({ height: 112, width: 112 });
    expect(smartResize(224, 224, 28, 3136, 12845056)).toEqual({ height: 224, width: 224 });
  });

  test('scales up to min_pixels with ceil, down to max_pixels with floor', () => {
    expect(smartResize(20, 20, 28, 3136, 12845056)).toEqual({ height: 56, width: 56 });
    expect(smartResize(10, 300, 28, 3136, 12845056)).toEqual({ height: 28, width: 308 });
    expect(smartResize(400, 350, 28, 3136, 50176)).toEqual({ height: 224, width: 196 });
    expect(smartResize(4000, 3000, 28, 3136, 12845056)).toEqual({ height: 4004, width: 2996 });
    expect(smartResize(8000, 6000, 28, 3136, 12845056)).toEqual({ height: 4116, width: 3080 });
    const capped = smartResize(8000, 6000, 28, 3136, 12845056);
    expect(capped.height * capped.width).toBeLessThanOrEqual(12845056);
  });

  test('aspect ratio over 200 is an unprocessable image_aspect_ratio error; 200 itself is accepted', () => {
    expect(smartResize(28, 5600, 28, 3136, 12845056)).toEqual({ height: 28, width: 5600 });
    let error: unknown;
    try {
      smartResize(2, 500, 28, 3136, 12845056);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).kind).toBe('unprocessable');
    expect((error as EngineError).code).toBe('image_aspect_ratio');
    expect((error as EngineError).message).toMatch(/aspect ratio 250 .*limit of 200/);
  });

  test('imageGrid matches the reference example (224x224 -> grid 1x16x16, 64 tokens)', () => {
    expect(imageGrid(224, 224, imageProcessorConfig({}))).toEqual({ gridThw: [1, 16, 16], numImageTokens: 64, resizedWidth: 224, resizedHeight: 224 });
  });
});

describe('imageProcessorConfig', () => {
  test('reads the tiny model folder', () => {
    const json = JSON.parse(readFileSync(join(TINY_MODEL_DIR, 'preprocessor_config.json'), 'utf8')) as Record<string, unknown>;
    expect(imageProcessorConfig(json)).toEqual({ ...DEFAULT_IMAGE_PROCESSOR_CONFIG, maxPixels: 12845056, rescaleFactor: 0.00392156862745098 });
    // transformers' Qwen2VLImageProcessorPil defaults when a folder has no size keys.
    expect(DEFAULT_IMAGE_PROCESSOR_CONFIG).toMatchObject({ minPixels: 56 * 56, maxPixels: 28 * 28 * 1280 });
  });

  test('size.shortest_edge/longest_edge, top-level min/max_pixels over them, the service bounds over both (MAX_PIXELS a ceiling)', () => {
    expect(imageProcessorConfig({ size: { shortest_edge: 1000, longest_edge: 2000000 } })).toMatchObject({ minPixels: 1000, maxPixels: 2000000 });
    expect(imageProcessorConfig({ size: { shortest_edge: 1000, longest_edge: 2000000 }, min_pixels: 4000, max_pixels: 500000 })).toMatchObject({
      minPixels: 4000,
      maxPixels: 500000,
    });
    expect(imageProcessorConfig({ min_pixels: 4000 }, { maxPixels: 50176 })).toMatchObject({ minPixels: 4000, maxPixels: 50176 });
    expect(imageProcessorConfig({})).toEqual(DEFAULT_IMAGE_PROCESSOR_CONFIG);
  });

  test('invalid values are model_error', () => {
    for (const bad of [{ patch_size: 0 }, { image_mean: [0.5, 0.5] }, { image_std: [1, 0, 1] }, { min_pixels: 10, max_pixels: 5 }, { do_normalize: false }]) {
      expect(() => imageProcessorConfig(bad)).toThrow(expect.objectContaining({ kind: 'model_error' }));
    }
  });
});

// ---------------------------------------------------------------------------------------------------

describe('decodeImage', () => {
  const solid = (format: 'gif' | 'tiff' | 'avif' | 'heif' | 'png' | 'jpeg' | 'webp', width = 8, height = 6) => {
    const image = sharp({ create: { width, height, channels: 3, background: { r: 200, g: 30, b: 60 } } });
    if (format === 'heif') return image.heif({ compression: 'av1' }).toBuffer();
    return image.toFormat(format).toBuffer();
  };

  test.each(['gif', 'tiff', 'avif', 'heif'] as const)('%s is unsupported_media naming the accepted types', async (format) => {
    const error = await expectEngineError(decodeImage(await solid(format), LIMITS), 'unsupported_media', 'unsupported_image_type');
    expect(error.message).toContain('image/png, image/jpeg, image/webp');
  });

  test('SVG, BMP, random and empty bytes are refused without a crash', async () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
    await expectEngineError(decodeImage(svg, LIMITS), 'unsupported_media', 'unsupported_image_type');
    const bmp = Buffer.concat([Buffer.from('BM'), Buffer.alloc(60)]);
    await expectEngineError(decodeImage(bmp, LIMITS), 'unsupported_media');
    let seed = 12345;
    const random = Buffer.from(Array.from({ length: 4096 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24) & 255));
    await expectEngineError(decodeImage(random, LIMITS), 'unsupported_media');
    await expectEngineError(decodeImage(Buffer.alloc(0), LIMITS), 'unprocessable', 'empty_image');
  });

  test('truncated or corrupt PNG, JPEG and WebP are unprocessable invalid_image', async () => {
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      const noisy = await sharp(Buffer.from(Array.from({ length: 64 * 48 * 3 }, (_, i) => (i * 7919) & 255)), { raw: { width: 64, height: 48, channels: 3 } })
        .toFormat(format)
        .toBuffer();
      await expectEngineError(decodeImage(noisy.subarray(0, Math.floor(noisy.length / 2)), LIMITS), 'unprocessable', 'invalid_image');
    }
    // A PNG signature followed by garbage.
    const garbage = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(100, 0x42)]);
    await expectEngineError(decodeImage(garbage, LIMITS), 'unprocessable', 'invalid_image');
  });

  test('an image over maxInputPixels is too_large before decoding', async () => {
    // Header declares 100000 x 100000 with no pixel data at all: refused from the header.
    const bomb = makePng(100_000, 100_000, 8, 2, null);
    const error = await expectEngineError(decodeImage(bomb, LIMITS), 'too_large', 'image_too_many_pixels');
    expect(error.message).toContain(String(LIMITS.maxInputPixels));
    // Real images just over a smaller limit, through sharp's header parsing.
    for (const format of ['png', 'jpeg', 'webp'] as const) {
      await expectEngineError(decodeImage(await solid(format, 1001, 1000), { maxInputPixels: 1_000_000 }), 'too_large', 'image_too_many_pixels');
    }
    await expect(decodeImage(await solid('png', 1000, 1000), { maxInputPixels: 1_000_000 })).resolves.toMatchObject({ width: 1000, height: 1000 });
  });

  test('a zero-sized image is empty_image', async () => {
    await expectEngineError(decodeImage(makePng(0, 10, 8, 2, []), LIMITS), 'unprocessable', 'empty_image');
  });

  test('RGBA: alpha is dropped, not composited', async () => {
    const rgba = [10, 20, 30, 0, 40, 50, 60, 128, 70, 80, 90, 255, 255, 255, 255, 0];
    const encoded = [
      makePng(2, 2, 8, 6, rgba),
      await rawImage(rgba, 2, 2, 4).png().toBuffer(),
      await rawImage(rgba, 2, 2, 4).webp({ lossless: true, exact: true }).toBuffer(),
    ];
    for (const bytes of encoded) {
      const decoded = await decodeImage(bytes, LIMITS);
      expect(Array.from(decoded.data)).toEqual([10, 20, 30, 40, 50, 60, 70, 80, 90, 255, 255, 255]);
    }
  });

  test('greyscale and grey+alpha are replicated to RGB', async () => {
    const grey = makePng(2, 2, 8, 0, [0, 100, 200, 255]);
    expect((await sharp(grey).metadata()).channels).toBe(1);
    expect(Array.from((await decodeImage(grey, LIMITS)).data)).toEqual([0, 0, 0, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
    const greyAlpha = makePng(2, 2, 8, 4, [5, 0, 100, 50, 200, 255, 255, 0]);
    expect((await sharp(greyAlpha).metadata()).channels).toBe(2);
    expect(Array.from((await decodeImage(greyAlpha, LIMITS)).data)).toEqual([5, 5, 5, 100, 100, 100, 200, 200, 200, 255, 255, 255]);
  });

  test('16-bit PNGs keep the high byte of each sample', async () => {
    const rgb16 = makePng(2, 1, 16, 2, [0x1234, 0xabcd, 0xff00, 0x00ff, 0x8080, 0x7fff]);
    expect(Array.from((await decodeImage(rgb16, LIMITS)).data)).toEqual([0x12, 0xab, 0xff, 0x00, 0x80, 0x7f]);
    // Greyscale 16-bit: PIL would clamp to 255 (mode I;16); we keep the high byte (docs/preprocessing.md).
    const grey16 = makePng(2, 1, 16, 0, [0x1234, 0x00ff]);
    expect(Array.from((await decodeImage(grey16, LIMITS)).data)).toEqual([0x12, 0x12, 0x12, 0, 0, 0]);
  });

  test('no EXIF auto-rotation and no ICC conversion', async () => {
    const pixels = Array.from({ length: 40 * 20 * 3 }, (_, i) => (i * 31) & 255);
    const plain = await rawImage(pixels, 40, 20, 3).jpeg({ quality: 95 }).toBuffer();
    const rotated = await rawImage(pixels, 40, 20, 3).jpeg({ quality: 95 }).withMetadata({ orientation: 6 }).toBuffer();
    expect((await sharp(rotated).metadata()).orientation).toBe(6);
    const a = await decodeImage(plain, LIMITS);
    const b = await decodeImage(rotated, LIMITS);
    expect([b.width, b.height]).toEqual([40, 20]);
    expect(Buffer.from(b.data).equals(Buffer.from(a.data))).toBe(true);

    // The same JPEG data with and without its Display P3 profile decodes to the same bytes.
    const withProfile = await rawImage(pixels, 40, 20, 3).jpeg({ quality: 95 }).withIccProfile('p3').toBuffer();
    const withoutProfile = stripJpegIcc(withProfile);
    expect((await sharp(withProfile).metadata()).hasProfile).toBe(true);
    expect((await sharp(withoutProfile).metadata()).hasProfile).toBe(false);
    const c = await decodeImage(withProfile, LIMITS);
    const d = await decodeImage(withoutProfile, LIMITS);
    expect(Buffer.from(c.data).equals(Buffer.from(d.data))).toBe(true);
    // sharp's default would have converted P3 to sRGB.
    const managed = await sharp(withProfile).raw().toBuffer();
    expect(managed.equals(Buffer.from(c.data))).toBe(false);
  });

  test('animated WebP: the first frame only', async () => {
    const frame = (red: number) => sharp({ create: { width: 8, height: 6, channels: 3, background: { r: red, g: 7, b: 9 } } }).png().toBuffer();
    const frames = await Promise.all([frame(10), frame(200), frame(90)]);
    const animated = await sharp(frames, { join: { animated: true } }).webp({ lossless: true }).toBuffer();
    expect((await sharp(animated).metadata()).pages).toBe(3);
    const decoded = await decodeImage(animated, LIMITS);
    expect([decoded.width, decoded.height]).toEqual([8, 6]);
    expect(decoded.data.every((value, i) => value === [10, 7, 9][i % 3])).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('resizeBicubic', () => {
  const noise = (width: number, height: number): RgbImage => {
    let seed = width * 7919 + height;
    const data = new Uint8Array(width * height * 3);
    for (let i = 0; i < data.length; i++) data[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    return { width, height, data };
  };

  test("Pillow 13's pass order", () => {
    expect(pillowVerticalFirst(98, 70, 112, 56)).toBe(true); // the 70x98 vector case
    expect(pillowVerticalFirst(150, 100, 140, 112)).toBe(false);
    expect(pillowVerticalFirst(100, 100, 75, 50)).toBe(false); // 50 is not more than 2 * 25
    expect(pillowVerticalFirst(100, 100, 76, 50)).toBe(true);
    expect(pillowVerticalFirst(60, 60, 180, 66)).toBe(false); // height grows
  });

  test('the same size is a copy; a one-axis resize equals the first pass of a two-axis one', () => {
    const image = noise(30, 20);
    const same = resizeBicubic(image, 30, 20);
    expect(same.data).toEqual(image.data);
    expect(same.data).not.toBe(image.data);
    // Height grows: horizontal pass first.
    expect(resizeBicubic(image, 50, 24).data).toEqual(resizeBicubic(resizeBicubic(image, 50, 20), 50, 24).data);
    // Height shrinks by more than twice the width does (here the width grows): vertical pass first.
    expect(resizeBicubic(image, 50, 16).data).toEqual(resizeBicubic(resizeBicubic(image, 30, 16), 50, 16).data);
    expect(resizeBicubic(image, 50, 16).data).not.toEqual(resizeBicubic(resizeBicubic(image, 50, 20), 50, 16).data);
  });

  test('constant images stay constant (coefficients are normalised per output pixel)', () => {
    const flat: RgbImage = { width: 37, height: 23, data: new Uint8Array(37 * 23 * 3).fill(173) };
    for (const [w, h] of [[11, 7], [100, 60], [37, 5], [5, 23]]) {
      expect(resizeBicubic(flat, w, h).data.every((x) => x === 173)).toBe(true);
    }
  });
});

describe('pixelValuesFromRgb', () => {
  test('rows are 2x2 merge blocks row-major; each row channel-major, then temporal, then 14x14', () => {
    const config = imageProcessorConfig({});
    const width = 84;
    const height = 56;
    const data = new Uint8Array(width * height * 3);
    for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) for (let c = 0; c < 3; c++) data[(y * width + x) * 3 + c] = (x * 3 + y * 5 + c * 11) & 255;
    const { pixelValues, gridThw } = pixelValuesFromRgb({ width, height, data }, config);
    expect(gridThw).toEqual([1, 4, 6]);
    const norm = (value: number, c: number) => Math.fround(Math.fround(Math.fround(value * config.rescaleFactor) - Math.fround(config.imageMean[c])) / Math.fround(config.imageStd[c]));
    // The processor's view (gh/2, 2, 14, gw/2, 2, 14) permuted to (gh/2, gw/2, 2, 2, C, T, 14, 14).
    const [, gh, gw] = gridThw;
    let mismatches = 0;
    for (let bh = 0; bh < gh / 2; bh++)
      for (let bw = 0; bw < gw / 2; bw++)
        for (let mh = 0; mh < 2; mh++)
          for (let mw = 0; mw < 2; mw++)
            for (let c = 0; c < 3; c++)
              for (let t = 0; t < 2; t++)
                for (let py = 0; py < 14; py++)
                  for (let px = 0; px < 14; px++) {
                    const row = ((bh * (gw / 2) + bw) * 2 + mh) * 2 + mw;
                    const index = row * 1176 + ((c * 2 + t) * 14 + py) * 14 + px;
                    const y = (bh * 2 + mh) * 14 + py;
                    const x = (bw * 2 + mw) * 14 + px;
                    if (pixelValues[index] !== norm(data[(y * width + x) * 3 + c], c)) mismatches++;
                  }
    expect(mismatches).toBe(0);
    expect(pixelValues.length).toBe(24 * 1176);
  });

  test('refuses sizes that are not multiples of patch * merge', () => {
    expect(() => pixelValuesFromRgb({ width: 30, height: 28, data: new Uint8Array(30 * 28 * 3) }, imageProcessorConfig({}))).toThrow(RangeError);
  });
});
