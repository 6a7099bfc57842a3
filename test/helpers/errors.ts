import { EngineError } from '../../src/engine/errors';
import { ServiceError } from '../../src/errors';

/** Runs `fn` and checks it throws an instance of `type` with these fields; returns the error. */
function expectThrown<T extends Error>(fn: () => unknown, type: new (...args: never[]) => T, fields: Record<string, unknown>): T {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(type);
  expect(caught).toMatchObject(fields);
  return caught as T;
}

/** Runs `fn` and checks it throws an EngineError of this kind and code; returns the error. */
export function expectEngineError(fn: () => unknown, kind: string, code: string): EngineError {
  return expectThrown(fn, EngineError, { kind, code });
}

/** Runs `fn` and checks it throws a ServiceError of this status and code; returns the error. */
export function expectServiceError(fn: () => unknown, status: number, code: string): ServiceError {
  return expectThrown(fn, ServiceError, { status, code });
}
