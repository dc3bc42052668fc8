// The operator dashboard under /ui: one static page, its script and stylesheet, served with a strict
// Content-Security-Policy. The page calls the public /v1 API with the key the operator types in; the server keeps
// no UI session, and nothing here needs a build step.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Hono } from 'hono';
import { secureHeaders } from 'hono/secure-headers';

const assetDir = join(import.meta.dirname, 'ui');

// A fixed list, read once: no request path ever reaches the file system.
const assetTypes = {
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
  'icon.svg': 'image/svg+xml',
} as const;

interface Asset {
  body: string;
  contentType: string;
  etag: string;
}

function loadAsset(file: string, contentType: string): Asset {
  const body = readFileSync(join(assetDir, file), 'utf8');
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, contentType, etag };
}

// The page's script is a file and every value it shows goes in through textContent, so the policy can forbid
// inline script and style, and require Trusted Types so that an HTML sink can never be reached by accident.
const contentSecurityPolicy = {
  defaultSrc: ["'none'"],
  scriptSrc: ["'self'"],
  styleSrc: ["'self'"],
  imgSrc: ["'self'"],
  connectSrc: ["'self'"],
  baseUri: ["'none'"],
  formAction: ["'none'"],
  frameAncestors: ["'none'"],
  requireTrustedTypesFor: ["'script'"],
  trustedTypes: ["'none'"],
};

export function createUiApp() {
  const page = loadAsset('index.html', 'text/html; charset=utf-8');
  const assets = new Map(Object.entries(assetTypes).map(([file, type]) => [file, loadAsset(file, type)]));
  const ui = new Hono();

  ui.use(secureHeaders({ contentSecurityPolicy, strictTransportSecurity: false, referrerPolicy: 'no-referrer' }));

  const send = (request: Request, asset: Asset) => {
    // Revalidate every time: the files change with a deploy, and a 304 costs one round trip.
    const headers = { 'content-type': asset.contentType, 'cache-control': 'no-cache', etag: asset.etag };
    if (request.headers.get('if-none-match') === asset.etag) return new Response(null, { status: 304, headers });
    return new Response(asset.body, { status: 200, headers });
  };

  // The list and the batch page are the same document; its script routes on the path.
  ui.get('/', (c) => send(c.req.raw, page));
  // A route of '/' under /ui matches only /ui; the trailing-slash form gets the same page.
  ui.get('/*', (c, next) => (c.req.path === '/ui/' ? send(c.req.raw, page) : next()));
  ui.get('/batch/:id', (c) => send(c.req.raw, page));
  ui.get('/assets/:file', async (c, next) => {
    const asset = assets.get(c.req.param('file'));
    return asset ? send(c.req.raw, asset) : next();
  });
  return ui;
}
