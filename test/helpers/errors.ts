import { EngineError } from '../../src/engine/errors';
import { ServiceError } from '../../src/errors';

/** What `fn` throws (undefined when it returns). */
function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** Runs `fn` and checks it throws an EngineError of this kind and code; returns the error. */
export function expectEngineError(fn: () => unknown, kind: string, code: string): EngineError {
  const caught = thrownBy(fn);
  expect(caught).toBeInstanceOf(EngineError);
  expect((caught as EngineError).kind).toBe(kind);
  expect((caught as EngineError).code).toBe(code);
  return caught as EngineError;
}

/** Runs `fn` and checks it throws a ServiceError of this status and code; returns the error. */
export function expectServiceError(fn: () => unknown, status: number, code: string): ServiceError {
  const caught = thrownBy(fn);
  expect(caught).toBeInstanceOf(ServiceError);
  expect((caught as ServiceError).status).toBe(status);
  expect((caught as ServiceError).code).toBe(code);
  return caught as ServiceError;
}
