// The engine's cache of preprocessed images (IMAGE_CACHE_MB): an image sent again is not decoded,
// resized and normalised again, and what the model is given is the same.
import * as imageProcessing from '../../src/engine/qwen2_vl/image_processing';
import { Engine, GenerateRequest } from '../../src/engine/engine';
import { noiseImage, testEngine } from '../helpers/service';

describe('preprocessed images seen again', () => {
  // No feature cache: every request sends its pixels to the worker, which takes them over.
  const engines: Engine[] = [];
  const engine = (imageCacheBytes: number) => {
    const e = testEngine({ imageCacheBytes, scheduler: { maxBatchSize: 8, maxWaiting: 32, maxPrefillTokens: 4096, featureCacheBytes: 0 } });
    engines.push(e);
    return e;
  };
  afterAll(() => Promise.all(engines.map((e) => e.dispose())));
  afterEach(() => jest.restoreAllMocks());

  const request = (png: Buffer): GenerateRequest => ({ prompt: { template: 'r1', question: 'What is left of the cube?' }, images: [png], maxNewTokens: 6, ignoreEos: true });

  test('are preprocessed once, and the model gets the same pixels every time', async () => {
    const cached = engine(8 << 20);
    const uncached = engine(0);
    const png = await noiseImage(100, 70, 31);
    const spy = jest.spyOn(imageProcessing, 'preprocessImage');
    const first = await cached.generateText(request(png));
    const second = await cached.generateText(request(png));
    expect(spy).toHaveBeenCalledTimes(1);
    expect(second.tokenIds).toEqual(first.tokenIds);
    await cached.generateText(request(await noiseImage(100, 70, 32)));
    expect(spy).toHaveBeenCalledTimes(2);
    spy.mockClear();
    const plain = [await uncached.generateText(request(png)), await uncached.generateText(request(png))];
    expect(spy).toHaveBeenCalledTimes(2);
    expect(plain.map((r) => r.tokenIds)).toEqual([first.tokenIds, first.tokenIds]);
  });

  test('an image that fails to preprocess is not kept', async () => {
    const cached = engine(8 << 20);
    const broken = Buffer.from('\x89PNG\r\n\x1a\n this is not a png');
    for (let i = 0; i < 2; i++) await expect(cached.generateText(request(broken))).rejects.toMatchObject({ kind: expect.any(String) });
  });
});
