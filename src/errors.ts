// The service's expected failures: a request, a file or the service's state that does not allow an
// operation, with the HTTP status, the snake_case code and the message of the error envelope
// (docs/api.md, "Errors"). Every layer outside the engine throws it (server, benchmarks, training,
// CLIs); the engine keeps its own EngineError (src/engine/errors.ts), whose kinds the server maps
// to statuses. Both become the envelope in one place: toServiceError in src/server/errors.ts.

export class ServiceError extends Error {
  constructor(
    /** HTTP status of the envelope, e.g. 400 for a bad request, 503 while shutting down. */
    readonly status: number,
    /** snake_case code for the envelope, e.g. `unknown_split`. */
    readonly code: string,
    message: string,
    /** Seconds after which a retry may succeed (the Retry-After header). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'ServiceError';
  }
}

export function isServiceError(error: unknown): error is ServiceError {
  return error instanceof ServiceError;
}

/** A request or input that is wrong in itself (400). */
export function invalidInput(code: string, message: string): ServiceError {
  return new ServiceError(400, code, message);
}

/** Something the request names that does not exist (404). */
export function notFound(code: string, message: string): ServiceError {
  return new ServiceError(404, code, message);
}

/** Well-formed but unusable data, e.g. a malformed data set file (422). */
export function unprocessable(code: string, message: string): ServiceError {
  return new ServiceError(422, code, message);
}

/** The operation does not fit the current state, e.g. cancelling a finished run (409). */
export function conflict(code: string, message: string): ServiceError {
  return new ServiceError(409, code, message);
}

/** The service is shutting down and takes no new work (503, retry after 5 s). */
export function shuttingDown(what: string): ServiceError {
  return new ServiceError(503, 'shutting_down', `the server is shutting down and takes no new ${what}`, 5);
}
