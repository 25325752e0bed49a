/**
 * Creates a private file (mode 0600) once, atomically: the content goes to a temporary file that is
 * fsynced and then hard-linked into place, so a reader never sees half a file and an existing file is
 * never overwritten (concurrent starts agree on whichever link came first). Used for the keys a
 * gateway keeps in its data folder (secret.key, worker-call.key). A temporary file left by a process
 * killed mid-write (kill -9) holds a copy of the key: the callers run removeStaleTemps at every start, which removes
 * those whose process is gone.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { processAlive } from '../process-alive.ts';

/** Removes the temporary files of createPrivateFileOnce(path) (`<name>.<pid>.<hex>.tmp` beside it) whose process no longer runs. */
export function removeStaleTemps(path: string): void {
  const name = basename(path);
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(`${name}.`) || !n.endsWith('.tmp')) continue;
    const pid = Number(/^(\d+)\.[0-9a-f]{8}\.tmp$/.exec(n.slice(name.length + 1))?.[1]);
    if (pid && pid !== process.pid && !processAlive(pid)) rmSync(join(dirname(path), n), { force: true });
  }
}

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
