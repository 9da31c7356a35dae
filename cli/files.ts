/** File-system helpers of the CLI whose errors name the path and say what is wrong, in words. */
import { mkdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { UsageError } from './args.js';

/**
 * Creates the output folder `path` (and missing parents) for `flag`, one level at a time.
 * Node's recursive mkdir never settles under /proc (it retries the ENOENT forever), and reports a
 * file in the way as a bare EEXIST: here each problem is a UsageError naming the path.
 */
export async function ensureOutputDir(path: string, flag = '--out'): Promise<void> {
  const missing: string[] = [];
  let at = resolve(path);
  for (;;) {
    const s = await stat(at).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return null;
      throw new UsageError(`${flag} ${path}: cannot use ${at} (${e.code ?? e.message})`);
    });
    if (s) {
      if (!s.isDirectory()) throw new UsageError(`${flag} ${path}: ${at === resolve(path) ? 'is a file, not a folder' : `${at} is a file, not a folder`}`);
      break;
    }
    missing.push(at);
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  for (const dir of missing.reverse()) {
    try {
      await mkdir(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && (await stat(dir).catch(() => null))?.isDirectory()) continue; // made meanwhile
      const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOENT' ? 'this file system does not allow creating folders there' : code === 'EROFS' ? 'read-only file system' : (code ?? (e as Error).message);
      throw new UsageError(`${flag} ${path}: cannot create the folder ${dir} (${why})`);
    }
  }
}
