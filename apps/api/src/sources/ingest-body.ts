import type { NextFunction, Request, Response } from 'express';

/** An error in body-parser's shape (a status and a type), which the error filter answers in the standard shape. */
function bodyError(status: number, type: string, message: string): Error {
  return Object.assign(new Error(message), { status, statusCode: status, type, expose: true });
}

/**
 * Reads the raw body of a delivery to /ingest as a Buffer (any content type, not inflated), at
 * most `limit` bytes. Unlike body-parser, which reads a body past its limit to the end before it
 * answers 413, this stops reading at once and answers 413 with `Connection: close`, then drops the
 * connection: a sender of an endless chunked body holds nothing until HTTP_REQUEST_TIMEOUT.
 * Marks the body read, so the JSON parser mounted after it skips the request.
 */
export function ingestBody(limit: number): (req: Request, res: Response, next: NextFunction) => void {
  return (req, res, next) => {
    const refuse = (err: Error) => {
      res.setHeader('Connection', 'close');
      // Once the 413 is flushed; the rest of the body is never read.
      res.once('finish', () => req.socket.destroy());
      next(err);
    };
    const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
    if (encoding !== 'identity') return refuse(bodyError(415, 'encoding.unsupported', `unsupported content encoding "${encoding}"`));
    const declared = Number(req.headers['content-length']);
    if (declared > limit) return refuse(bodyError(413, 'entity.too.large', 'request entity too large'));

    const chunks: Buffer[] = [];
    let received = 0;
    let done = false;
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      if (err) return refuse(err);
      (req as Request & { _body?: boolean })._body = true;
      req.body = Buffer.concat(chunks, received);
      next();
    };
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received > limit) {
        req.pause();
        return finish(bodyError(413, 'entity.too.large', 'request entity too large'));
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish();
    const onError = (err: Error) => finish(bodyError(400, 'request.aborted', err.message));
    const onClose = () => finish(bodyError(400, 'request.aborted', 'request aborted'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  };
}
