import type { NextFunction, Request, Response } from 'express';

/** An error in body-parser's shape (a status and a type), which the error filter answers in the standard shape. */
function bodyError(status: number, type: string, message: string): Error {
  return Object.assign(new Error(message), { status, statusCode: status, type, expose: true });
}

/**
 * How long the whole body of a delivery may take to arrive, counted from when its headers did:
 * GitHub and GitLab send a body at once, and a slow one holds one of its source's few reads
 * (MAX_CONCURRENT_INGEST_READS) that HTTP_REQUEST_TIMEOUT would leave held for much longer.
 * Past it: 408. An object, so that it can be shortened in-process.
 */
export const INGEST_BODY_DEADLINE = { ms: 10_000 };

/** How long, and how many bytes, the rest of a refused body is read and discarded before the connection is dropped. */
const LINGER_MS = 2000;
const LINGER_BYTES = 8 * 1024 * 1024;

/**
 * Discards what is left of a refused request's body, then closes the connection: gracefully once
 * the body ends (nothing unread, so no reset), or at once past LINGER_MS or LINGER_BYTES, so that
 * an endless body holds nothing for long.
 */
function linger(req: Request): void {
  const socket = req.socket;
  let discarded = 0;
  const close = (graceful: boolean) => {
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', onEnd);
    if (graceful) socket.end();
    else socket.destroy();
  };
  const onData = (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > LINGER_BYTES) close(false);
  };
  const onEnd = () => close(true);
  const timer = setTimeout(() => close(false), LINGER_MS).unref();
  if (req.readableEnded) return close(true);
  req.on('data', onData);
  req.once('end', onEnd);
  req.resume();
}

/**
 * Reads the raw body of a delivery to /ingest as a Buffer (any content type, not inflated), at
 * most `limit` bytes. Unlike body-parser, which reads a body past its limit to the end before it
 * answers 413, this answers 413 with `Connection: close` at once, then discards the rest for a
 * bounded time (linger) and drops the connection: a sender of an endless chunked body holds
 * nothing until HTTP_REQUEST_TIMEOUT.
 * Marks the body read, so the JSON parser mounted after it skips the request.
 */
export function ingestBody(limit: number): (req: Request, res: Response, next: NextFunction) => void {
  return (req, res, next) => {
    const refuse = (err: Error) => {
      res.setHeader('Connection', 'close');
      // Node ends the socket of a `Connection: close` answer (res._last) as soon as it is flushed,
      // with the sender's body still unread: the kernel then resets the connection, and the sender
      // sees the reset instead of the answer. linger closes it instead, once the body is drained.
      res.once('prefinish', () => ((res as Response & { _last?: boolean })._last = false));
      res.once('finish', () => linger(req));
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
      clearTimeout(deadline);
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
    const deadline = setTimeout(() => {
      req.pause();
      finish(bodyError(408, 'request.timeout', 'request body not received in time'));
    }, INGEST_BODY_DEADLINE.ms);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  };
}
