/**
 * A static server for the demo page and the browser tests, on 127.0.0.1 only: pages need http
 * (file:// pages get no navigator.gpu and no ES modules) and weights come by fetch from the same
 * origin. Serves exactly four folders, read-only:
 *   /web/      web/ (page, styles), then dist/web/ (the bundled demo script)
 *   /browser/  dist/browser/ (the library bundle)
 *   /weights/  weights/ (.safetensors, .json, .png only)
 *   /test/     test/browser/*.html and dist/test-browser/ (only with `tests: true`)
 * `npm run demo:web` runs it; `node dist/web/server.js --port 8080` picks the port.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { existsSync, statSync, createReadStream } from 'node:fs';
import { extname, join, normalize, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AddressInfo } from 'node:net';
import { packageRoot } from '../weights/bundled.js';

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.svg': 'image/svg+xml',
  '.safetensors': 'application/octet-stream',
  '.ts': 'text/plain; charset=utf-8',
};

export { packageRoot };

export interface WebServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export interface ServeOptions {
  port?: number;
  root?: string;
  /** Also serve the browser test page under /test/. */
  tests?: boolean;
}

/** Starts the server on 127.0.0.1 (port 0: any free port). */
export async function startServer(opts: ServeOptions = {}): Promise<WebServer> {
  const root = opts.root ?? packageRoot();
  const mounts: [string, string[], RegExp?][] = [
    ['/web/', [join(root, 'web'), join(root, 'dist', 'web')]],
    ['/browser/', [join(root, 'dist', 'browser')]],
    ['/weights/', [join(root, 'weights')], /\.(safetensors|json|png)$/],
  ];
  if (opts.tests) mounts.push(['/test/', [join(root, 'test', 'browser'), join(root, 'dist', 'test-browser')], /\.(html|js|map)$/]);

  const resolve = (urlPath: string): string | null => {
    for (const [prefix, dirs, allow] of mounts) {
      if (!urlPath.startsWith(prefix)) continue;
      const rel = urlPath.slice(prefix.length) || 'index.html';
      if (allow && !allow.test(rel)) return null;
      for (const dir of dirs) {
        const file = normalize(join(dir, rel));
        // No way out of the folder (.., encoded or not), and only plain files.
        if (!file.startsWith(dir + sep)) return null;
        if (existsSync(file) && statSync(file).isFile()) return file;
      }
    }
    return null;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    } catch {
      res.writeHead(400).end('bad request');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/' || path === '/web') {
      res.writeHead(302, { location: '/web/' }).end();
      return;
    }
    const file = resolve(path);
    if (!file) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
      return;
    }
    res.writeHead(200, {
      'content-type': MIME[extname(file)] ?? 'application/octet-stream',
      'content-length': statSync(file).size,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  };

  const server = createServer(handle);
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(opts.port ?? 0, '127.0.0.1', () => ok());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}

// `node dist/web/server.js [--port N]`
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : Number(process.env.PORT ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`--port must be an integer in [0, 65535], got ${process.argv[i + 1]}`);
    process.exit(2);
  }
  const root = packageRoot();
  if (!existsSync(join(root, 'dist', 'browser', 'canet-gpu.js')) || !existsSync(join(root, 'dist', 'web', 'demo.js'))) {
    console.error('dist/browser or dist/web is missing: run `npm run build` first (npm run demo:web does).');
    process.exit(1);
  }
  const s = await startServer({ port, root });
  console.log(`canet-gpu demo: ${s.url}/web/  (Ctrl-C stops; needs a browser with WebGPU)`);
}
