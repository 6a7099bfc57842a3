// EXECUTION_PROVIDERS (docs/configuration.md): the configuration's parsing, and the providers
// reaching every ONNX session through the registry and the model worker: cpu named explicitly
// serves as before; a provider this onnxruntime-node build does not have stops the model's load
// with a message naming it and the providers it has.
import { EXECUTION_PROVIDER_NAMES, loadConfig, parseExecutionProviders } from '../../src/config';
import { EngineError } from '../../src/engine/errors';
import { knownExecutionProviders } from '../../src/engine/onnx/ort';
import { testEngine } from '../helpers/service';

describe('EXECUTION_PROVIDERS', () => {
  test('parsing: an ordered list of known names, cpu by default', () => {
    expect(loadConfig({}).executionProviders).toEqual(['cpu']);
    expect(loadConfig({ EXECUTION_PROVIDERS: ' CUDA, cpu ' }).executionProviders).toEqual(['cuda', 'cpu']);
    expect(parseExecutionProviders('tensorrt,cuda,cpu')).toEqual(['tensorrt', 'cuda', 'cpu']);
    expect(() => parseExecutionProviders('gpu')).toThrow('invalid configuration: EXECUTION_PROVIDERS "gpu" is not one of cpu, cuda, tensorrt, webgpu, dml, coreml');
    expect(() => parseExecutionProviders(' , ')).toThrow(/EXECUTION_PROVIDERS is empty/);
    expect(() => parseExecutionProviders('cpu,cpu')).toThrow(/names a provider twice/);
    expect(() => loadConfig({ EXECUTION_PROVIDERS: 'cuda,gpu' })).toThrow(/EXECUTION_PROVIDERS "gpu"/);
  });

  test('cpu named explicitly serves as the default does', async () => {
    const engine = testEngine({ executionProviders: ['cpu'] });
    try {
      const result = await engine.generateText({ prompt: { template: 'raw', question: 'Hello' }, images: [], maxNewTokens: 3 });
      expect(result.usage.completionTokens).toBeGreaterThan(0);
    } finally {
      await engine.dispose();
    }
  });

  test('a provider this build lacks stops the load with a message naming it', async () => {
    const known = knownExecutionProviders();
    expect(known).toContain('cpu');
    const missing = EXECUTION_PROVIDER_NAMES.find((name) => !known.includes(name));
    expect(missing).toBeDefined();
    const engine = testEngine({ executionProviders: [missing!, 'cpu'] });
    try {
      const error = await engine.generateText({ prompt: { template: 'raw', question: 'Hello' }, images: [], maxNewTokens: 3 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(EngineError);
      expect(error).toMatchObject({ kind: 'model_error', code: 'execution_provider_unknown' });
      expect((error as Error).message).toBe(`EXECUTION_PROVIDERS: ${missing} not known to this onnxruntime-node build (known: ${known.join(', ')})`);
    } finally {
      await engine.dispose();
    }
  });
});
