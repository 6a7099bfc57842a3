// Errors the engine reports about its inputs or its state. The engine knows nothing of HTTP: each
// error carries a `kind`, and the server maps kinds to status codes in one place.

export type EngineErrorKind =
  | 'invalid_input' // the request itself is wrong (400)
  | 'unsupported_media' // an image type we do not accept (415)
  | 'too_large' // an input over a configured limit (413)
  | 'unprocessable' // well-formed but unusable, e.g. an image that decodes to nothing (422)
  | 'not_found' // an unknown model, run or data set (404)
  | 'conflict' // the operation does not fit the current state, e.g. cancelling a finished run (409)
  | 'overloaded' // queue full or shutting down (429/503, retry later)
  | 'timeout' // the request's deadline passed
  | 'cancelled' // the caller went away
  | 'model_error' // a model folder or graph is broken (startup/load error)
  | 'remote_unavailable' // a remote model's endpoint refused, failed or broke off (502)
  | 'remote_timeout'; // a remote model's endpoint did not answer in time (504)

export class EngineError extends Error {
  readonly kind: EngineErrorKind;
  /** snake_case code for the error envelope, e.g. `image_aspect_ratio`. */
  readonly code: string;
  /** Seconds after which a retry may succeed (overload only). */
  readonly retryAfterSeconds?: number;

  constructor(kind: EngineErrorKind, code: string, message: string, options?: { retryAfterSeconds?: number; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EngineError';
    this.kind = kind;
    this.code = code;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

export function isEngineError(error: unknown): error is EngineError {
  return error instanceof EngineError;
}
