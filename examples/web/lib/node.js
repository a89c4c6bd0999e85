// Runs the /api functions (Web Request → Response, as Vercel runs them) inside a plain Node server:
// `npm start` (server.mjs) and `npm run dev` (vite.config.js) both use this.
import { Readable } from "node:stream";
import * as chat from "../api/chat.js";
import * as kb from "../api/kb.js";

const routes = { "/api/chat": chat, "/api/kb": kb };

// Returns false when the request is not for an /api route (the caller serves it otherwise).
export async function handleApi(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  const route = routes[url.pathname];
  if (!route) return false;
  const handler = route[req.method];
  if (!handler) {
    res.writeHead(405, { Allow: Object.keys(route).join(", ") }).end();
    return true;
  }
  const body = req.method === "GET" || req.method === "HEAD" ? undefined : Readable.toWeb(req);
  const request = new Request(url, { method: req.method, headers: req.headers, body, duplex: "half" });
  try {
    const response = await handler(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    if (response.body) Readable.fromWeb(response.body).pipe(res);
    else res.end();
  } catch (error) {
    res.writeHead(502, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ error: { message: `Hearth did not answer: ${error.message}` } }));
  }
  return true;
}
