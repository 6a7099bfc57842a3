// The service's MAX_PIXELS is a ceiling: a model trained on smaller images keeps its own bound.
import { imageProcessorConfig } from '../../src/engine/qwen2_vl/image_processing';

const SERVICE = { maxPixels: 401408, minPixels: 3136 };

describe("the service's image bounds applied to a model folder", () => {
  test('a model with a larger own bound gets the service bound (unchanged behaviour)', () => {
    expect(imageProcessorConfig({ max_pixels: 12845056 }, SERVICE)).toMatchObject({ maxPixels: 401408, minPixels: 3136 });
  });

  test('a model with a smaller own bound keeps it; MIN_PIXELS never exceeds the maximum', () => {
    expect(imageProcessorConfig({ max_pixels: 28224 }, SERVICE)).toMatchObject({ maxPixels: 28224, minPixels: 3136 });
    expect(imageProcessorConfig({ max_pixels: 3000 }, SERVICE)).toMatchObject({ maxPixels: 3000, minPixels: 3000 });
    const json = { max_pixels: 28224, size: { shortest_edge: 3136, longest_edge: 28224 } };
    expect(imageProcessorConfig(json, SERVICE)).toMatchObject({ maxPixels: 28224, minPixels: 3136 });
  });

  test('no service bounds: the folder decides', () => {
    expect(imageProcessorConfig({ max_pixels: 28224, min_pixels: 1000 }, {})).toMatchObject({ maxPixels: 28224, minPixels: 1000 });
  });
});
