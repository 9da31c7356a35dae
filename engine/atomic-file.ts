/**
 * Atomic file writes (Node only), for everything the project persists: tuning tables, weights,
 * checkpoints, images. The bytes go to a temporary file in the target's directory, are flushed to
 * disk (fsync), and only then renamed over the target. A crash or error at any point leaves the
 * target either with its old content or with the complete new content, never half a file.
 */
// `promises` is used as an object (fsp.rename, not an imported binding) so the fault-injection
// tests can make one step fail and check what is left behind.
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';

/** Temporary files start with this, so a directory listing shows what an interrupted write left. */
export const TEMP_PREFIX = '.canet-tmp-';

/**
 * Writes `bytes` to `path` atomically (temporary file in the same directory, fsync, rename). The
 * temporary file must be in the same directory: rename is only atomic within one file system.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const dir = dirname(path);
  await removeStaleTemps(dir, basename(path));
  // Random suffix and exclusive create ('wx'): concurrent writers never share a temporary file.
  const temp = join(dir, `${TEMP_PREFIX}${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}`);
  let handle: Awaited<ReturnType<typeof fsp.open>> | undefined;
  try {
    handle = await fsp.open(temp, 'wx', 0o644);
    await handle.writeFile(bytes);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await fsp.rename(temp, path);
  } catch (e) {
    if (handle) await handle.close().catch(() => {});
    await fsp.unlink(temp).catch(() => {}); // absent if open failed or the rename went through
    throw e;
  }
  await syncDirectory(dir);
}

/**
 * Deletes temporary files of earlier writes to `name` in `dir` whose process is gone (a run
 * killed mid-write leaves one; the target itself was never touched). Live writers' files stay.
 */
async function removeStaleTemps(dir: string, name: string): Promise<void> {
  let entries: string[];
  try {
    entries = await fsp.readdir(dir);
  } catch {
    return;
  }
  const prefix = `${TEMP_PREFIX}${name}.`;
  for (const f of entries) {
    if (!f.startsWith(prefix)) continue;
    const pid = Number(f.slice(prefix.length).split('.')[0]);
    if (!Number.isInteger(pid) || pid === process.pid || processAlive(pid)) continue;
    await fsp.unlink(join(dir, f)).catch(() => {});
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists but is not ours to signal.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function syncDirectory(dir: string): Promise<void> {
  // Linux needs the directory fsync'd for the rename to be durable; Windows cannot open a
  // directory this way and some file systems refuse fsync on one. The data is already in place
  // and renamed, so failing here would report an error for a write that succeeded.
  let handle: Awaited<ReturnType<typeof fsp.open>> | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    /* best effort, see above */
  } finally {
    await handle?.close().catch(() => {});
  }
}
