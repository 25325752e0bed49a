/**
 * Creates a private file (mode 0600) once, atomically: the content goes to a temporary file that is
 * fsynced and then hard-linked into place, so a reader never sees half a file and an existing file is
 * never overwritten (concurrent starts agree on whichever link came first). Used for the keys a
 * gateway keeps in its data folder (secret.key, worker-call.key).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, rmSync, writeSync } from 'node:fs';

/** Writes `content` to `path` unless a file is there already; answers whether this call wrote it. Other errors are thrown. */
export function createPrivateFileOnce(path: string, content: string): boolean {
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = openSync(temp, 'wx', 0o600);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    linkSync(temp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(temp, { force: true });
  }
}
