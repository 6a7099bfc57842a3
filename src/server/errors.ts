// One error body shape and one function mapping errors to it (docs/api.md, "Errors"):
// {"error": {"code": "<snake_case>", "message": "<what was wrong and how to fix it>"}}.
// The service's own expected failures are ServiceErrors (src/errors.ts) already; the engine's
// EngineError kinds, zod, multer, body-parser and storage errors become one here.
// 5xx bodies never carry internals; the full error goes to the log instead.
import type { Response } from 'express';
import { MulterError } from 'multer';
import { ZodError } from 'zod';
import { EngineError, EngineErrorKind } from '../engine/errors';
import { ServiceError } from '../errors';

const KIND_STATUS: Record<EngineErrorKind, number> = {
  invalid_input: 400,
  unsupported_media: 415,
  too_large: 413,
  unprocessable: 422,
  not_found: 404,
  conflict: 409,
  overloaded: 429,
  timeout: 503,
  cancelled: 499,
  model_error: 500,
  remote_unavailable: 502,
  remote_timeout: 504,
};

const MAX_MESSAGE = 500;

// Error codes of SQLite (better-sqlite3's SqliteError, extended codes included) and of Node's fs.
const STORAGE_FULL = /^(SQLITE_FULL|ENOSPC|EDQUOT)$/;
const STORAGE_UNAVAILABLE = /^(SQLITE_(READONLY|IOERR|CANTOPEN|BUSY|LOCKED)(_\w+)?|EROFS|EIO|EACCES|EPERM|ENOTDIR)$/;

function clip(message: string): string {
  return message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE)}...` : message;
}

/** A readable, size-capped summary of zod issues naming each offending field. */
export function describeZodError(error: ZodError): string {
  const parts = error.issues.slice(0, 5).map((issue) => {
    const field = issue.path.length ? issue.path.join('.') : 'body';
    return `${field}: ${issue.message}`;
  });
  if (error.issues.length > 5) parts.push(`and ${error.issues.length - 5} more`);
  return parts.join('; ');
}

/** Any error as the ServiceError whose status, code and message the response carries. */
export function toServiceError(error: unknown): ServiceError {
  if (error instanceof ServiceError) return error.message.length > MAX_MESSAGE ? new ServiceError(error.status, error.code, clip(error.message), error.retryAfterSeconds) : error;
  if (error instanceof EngineError) {
    let status = KIND_STATUS[error.kind];
    if (error.kind === 'overloaded' && error.code === 'shutting_down') status = 503;
    if (error.kind === 'model_error') {
      // A broken or unloadable model is the server's problem; the message names the model and
      // file, which the operator needs and which holds no secrets.
      return new ServiceError(500, error.code, clip(error.message));
    }
    const retry = error.retryAfterSeconds ?? (status === 429 || status === 503 ? 1 : undefined);
    return new ServiceError(status, error.code, clip(error.message), retry);
  }
  if (error instanceof ZodError) return new ServiceError(400, 'invalid_request', clip(describeZodError(error)));
  if (error instanceof MulterError) {
    switch (error.code) {
      case 'LIMIT_FILE_SIZE':
        return new ServiceError(413, 'image_too_large', 'the image file is larger than the configured limit (MAX_IMAGE_BYTES)');
      case 'LIMIT_FIELD_VALUE':
        return new ServiceError(413, 'field_too_large', `form field "${error.field ?? ''}" is too long`);
      case 'LIMIT_UNEXPECTED_FILE':
        return new ServiceError(400, 'unexpected_file', `unexpected file field "${error.field ?? ''}"; send one image in the field "image"`);
      default:
        return new ServiceError(400, 'invalid_multipart', `invalid multipart body: ${error.message}`);
    }
  }
  const e = error as { type?: string; status?: number; message?: string; code?: unknown };
  // The server's own storage failing (a full disk, a read-only or broken volume) is neither the
  // client's fault nor a bug: 503 with Retry-After. The message names no paths; the log has them.
  if (typeof e?.code === 'string') {
    if (STORAGE_FULL.test(e.code)) return new ServiceError(503, 'storage_full', 'the server has no storage space left for this request; try again later', 30);
    if (STORAGE_UNAVAILABLE.test(e.code)) return new ServiceError(503, 'storage_unavailable', 'the server cannot use its storage at the moment; try again later', 30);
  }
  // body-parser errors carry a type and an HTTP status.
  if (e?.type === 'entity.too.large') return new ServiceError(413, 'body_too_large', 'the request body is larger than the configured limit');
  if (e?.type === 'entity.parse.failed') return new ServiceError(400, 'invalid_json', 'the request body is not valid JSON');
  if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') return new ServiceError(415, 'unsupported_encoding', clip(e.message ?? 'unsupported body encoding'));
  if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) return new ServiceError(e.status, 'bad_request', clip(e.message ?? 'bad request'));
  return new ServiceError(500, 'internal_error', 'internal server error');
}

export function errorBody(error: ServiceError) {
  return { error: { code: error.code, message: error.message } };
}

export function sendError(res: Response, error: ServiceError): void {
  if (res.headersSent) return;
  if (error.retryAfterSeconds !== undefined) res.setHeader('Retry-After', String(error.retryAfterSeconds));
  res.status(error.status).json(errorBody(error));
}
