import { EngineError } from '../../src/engine/errors';

/** Runs `fn` and checks it throws an EngineError of this kind and code; returns the error. */
export function expectEngineError(fn: () => unknown, kind: string, code: string): EngineError {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(EngineError);
  expect((caught as EngineError).kind).toBe(kind);
  expect((caught as EngineError).code).toBe(code);
  return caught as EngineError;
}
