// The service's MAX_PIXELS is a ceiling: a model trained on smaller images keeps its own bound.
import { serviceImageBounds } from '../../src/engine/registry';
import { imageProcessorConfig } from '../../src/engine/qwen2_vl/image_processing';

describe('serviceImageBounds', () => {
  test('a model with a larger own bound gets the service bound (unchanged behaviour)', () => {
    expect(serviceImageBounds({ maxPixels: 12845056 }, { maxPixels: 401408, minPixels: 3136 })).toEqual({ maxPixels: 401408, minPixels: 3136 });
  });

  test('a model with a smaller own bound keeps it; MIN_PIXELS never exceeds the maximum', () => {
    expect(serviceImageBounds({ maxPixels: 28224 }, { maxPixels: 401408, minPixels: 3136 })).toEqual({ maxPixels: 28224, minPixels: 3136 });
    expect(serviceImageBounds({ maxPixels: 3000 }, { maxPixels: 401408, minPixels: 3136 })).toEqual({ maxPixels: 3000, minPixels: 3000 });
    const json = { max_pixels: 28224, size: { shortest_edge: 3136, longest_edge: 28224 } };
    const config = imageProcessorConfig(json, serviceImageBounds(imageProcessorConfig(json), { maxPixels: 401408, minPixels: 3136 }));
    expect(config).toMatchObject({ maxPixels: 28224, minPixels: 3136 });
  });

  test('no service bounds: the folder decides', () => {
    expect(serviceImageBounds({ maxPixels: 28224 }, {})).toEqual({ maxPixels: undefined, minPixels: undefined });
  });
});
