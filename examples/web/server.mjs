// `npm start`: the production build (dist/) and the /api functions on one port, for running the app
// anywhere Node runs. On Vercel, the platform serves dist/ and runs api/*.js itself.
import { createReadStream, existsSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { handleApi } from "./lib/node.js";

const dist = fileURLToPath(new URL("./dist/", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml" };

const server = createServer(async (req, res) => {
  if (await handleApi(req, res)) return;
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname)).replace(/^(\.\.[/\\])+/, "");
  let file = join(dist, path);
  if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) file = join(dist, "index.html");
  res.writeHead(200, { "Content-Type": types[extname(file)] ?? "application/octet-stream" });
  createReadStream(file).pipe(res);
});

const port = Number(process.env.PORT || 3000);
server.listen(port, process.env.HOST || "127.0.0.1", () => {
  console.log(`Hearth web example on http://${process.env.HOST || "127.0.0.1"}:${port} → ${process.env.HEARTH_BASE_URL}`);
});
