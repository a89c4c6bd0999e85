// GET /api/kb: the knowledge bases this key may use. POST /api/kb?name=…: upload files into one
// (multipart, field `files`); Hearth indexes them as a job, which GET /api/kb?job=… follows.
import { hearthFetch, json } from "../lib/hearth.js";

export async function GET(request) {
  const job = new URL(request.url).searchParams.get("job");
  const r = await hearthFetch(job ? `/api/jobs/${encodeURIComponent(job)}` : "/api/kb");
  return json(await r.json(), r.status);
}

export async function POST(request) {
  const name = new URL(request.url).searchParams.get("name");
  if (!name) return json({ error: { message: "which knowledge base? add ?name=…" } }, 400);
  const form = await request.formData();
  const r = await hearthFetch(`/api/kb/${encodeURIComponent(name)}/files`, { method: "POST", body: form });
  return json(await r.json(), r.status);
}
