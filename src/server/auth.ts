// Admin authentication (docs/api.md, "Admin: training jobs and models"): `Authorization: Bearer
// <ADMIN_TOKEN>`. Without a configured token the admin routes are off (503 admin_disabled)
// whatever the request carries.
// Tokens are compared as SHA-256 digests in constant time (equal lengths, no early exit), and
// never logged: the request log holds the route and status only.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { ServiceError } from '../errors';

const digest = (token: string) => createHash('sha256').update(token, 'utf8').digest();

export function adminAuth(adminToken: string | undefined): RequestHandler {
  const expected = adminToken ? digest(adminToken) : null;
  return (req: Request, res: Response, next: NextFunction) => {
    if (!expected) {
      next(new ServiceError(503, 'admin_disabled', 'the admin routes are disabled: set ADMIN_TOKEN to enable them'));
      return;
    }
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '');
    if (!match) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="admin"');
      next(new ServiceError(401, 'unauthorized', 'send the admin token as "Authorization: Bearer <ADMIN_TOKEN>"'));
      return;
    }
    if (!timingSafeEqual(digest(match[1]), expected)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="admin", error="invalid_token"');
      next(new ServiceError(401, 'unauthorized', 'the admin token is not valid'));
      return;
    }
    next();
  };
}
