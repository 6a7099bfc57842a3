// The engine as the service's configuration describes it: one place that maps configuration
// fields to EngineOptions, shared by the server (src/server/main.ts) and the CLI (src/cli/evaluate.ts).
import type { loadConfig } from '../config';
import { Engine } from './engine';

export function engineFromConfig(config: ReturnType<typeof loadConfig>): Engine {
  return new Engine({
    modelRoots: config.modelRoots,
    modelFolders: config.modelFolders,
    defaultModel: config.defaultModel,
    dtype: config.dtype,
    threads: config.threads,
    executionProviders: config.executionProviders,
    promptCacheBytes: config.promptCacheBytes,
    imageCacheBytes: config.imageCacheBytes,
    scheduler: {
      maxBatchSize: config.maxBatchSize,
      maxWaiting: config.maxQueue,
      maxPrefillTokens: config.maxPrefillTokens,
      decodeCallBudgetMs: config.decodeCallBudgetMs,
      maxDecodeStepsPerCall: config.maxDecodeStepsPerCall,
      featureCacheBytes: config.featureCacheBytes,
    },
    memoryBudgetBytes: config.memoryBudgetBytes,
    maxPixels: config.maxPixels,
    minPixels: config.minPixels,
    maxInputPixels: config.maxInputPixels,
    defaultMaxNewTokens: config.defaultMaxNewTokens,
    maxNewTokensCap: config.maxNewTokens,
    maxPromptTokens: config.maxPromptTokens,
    requestTimeoutMs: config.requestTimeoutMs,
    remoteModels: config.remoteModels,
    remote: { maxInFlight: config.remoteMaxInFlight, timeoutMs: config.remoteTimeoutMs },
  });
}
