// Predictions generated elsewhere, as uploaded (docs/api.md, "POST /evaluate/predictions"): JSON
// lines, one response each, {"id", "prediction", "sample"?, "completion_tokens"?}. Other fields are
// ignored, so that the lines of GET /evaluate/<id>/predictions can be uploaded as they are. Every
// problem names its line, in a ServiceError (src/errors.ts).
import { invalidInput, ServiceError } from '../errors';
import type { UploadedPrediction } from './runs';

export interface UploadLimits {
  /** Longest response text, in characters. */
  maxPredictionChars: number;
  /** Largest sample number + 1. */
  maxSamples: number;
}

const MAX_ID_CHARS = 1000;
/** Longest uploaded response text, in characters. */
export const MAX_PREDICTION_CHARS = 200_000;

function invalid(line: number, message: string): ServiceError {
  return invalidInput('invalid_predictions', `line ${line}: ${message}`);
}

/** Parse an upload's JSON lines (blank lines skipped, "\r\n" accepted); throws on the first bad line. */
export function parsePredictionLines(text: string, limits: UploadLimits): UploadedPrediction[] {
  const parsed: UploadedPrediction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const raw = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    if (raw.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      throw invalid(line, 'not valid JSON; each line is one object {"id", "prediction"}');
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalid(line, 'not a JSON object; each line is one object {"id", "prediction"}');
    const { id, prediction, sample = 0, completion_tokens: tokens = null } = value as Record<string, unknown>;
    if (typeof id !== 'string' || id === '' || id.length > MAX_ID_CHARS) throw invalid(line, `"id" must be the item's id, a string of 1 to ${MAX_ID_CHARS} characters`);
    if (typeof prediction !== 'string') throw invalid(line, '"prediction" must be the response text, a string');
    if (prediction.length > limits.maxPredictionChars) {
      throw new ServiceError(413, 'prediction_too_long', `line ${line}: the prediction has ${prediction.length} characters, over the limit of ${limits.maxPredictionChars}`);
    }
    if (typeof sample !== 'number' || !Number.isInteger(sample) || sample < 0 || sample >= limits.maxSamples) {
      throw invalid(line, `"sample" must be an integer from 0 to ${limits.maxSamples - 1} (which response of the item this is)`);
    }
    if (tokens !== null && (typeof tokens !== 'number' || !Number.isInteger(tokens) || tokens < 0)) {
      throw invalid(line, '"completion_tokens" must be a non-negative integer or null');
    }
    parsed.push({ line, id, sample, prediction, completionTokens: tokens as number | null });
  }
  return parsed;
}
