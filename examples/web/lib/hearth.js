// Server-side only: where Hearth is and the key to it. The browser never sees HEARTH_API_KEY;
// it talks to this app's /api routes, which call Hearth with the key.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";

export const baseURL = () => (process.env.HEARTH_BASE_URL ?? "http://127.0.0.1:8000").replace(/\/+$/, "");
const key = () => process.env.HEARTH_API_KEY;

// Hearth returns a grounded answer's citations as an extra top-level field of the response (the last
// chunk, when streamed); this hands them to the AI SDK as provider metadata.
const citations = {
  async extractMetadata({ parsedBody }) {
    return parsedBody?.citations ? { hearth: { citations: parsedBody.citations } } : undefined;
  },
  createStreamExtractor() {
    let found;
    return {
      processChunk(chunk) {
        if (chunk?.citations) found = chunk.citations;
      },
      buildMetadata: () => (found ? { hearth: { citations: found } } : undefined),
    };
  },
};

export function hearth() {
  return createOpenAICompatible({
    name: "hearth",
    baseURL: `${baseURL()}/v1`,
    apiKey: key(),
    includeUsage: true,
    supportsStructuredOutputs: true,
    metadataExtractor: citations,
  });
}

// The Hearth API (/api/...) with the key added; errors keep Hearth's status and message.
export async function hearthFetch(path, init = {}) {
  const headers = new Headers(init.headers);
  if (key()) headers.set("Authorization", `Bearer ${key()}`);
  return fetch(`${baseURL()}${path}`, { ...init, headers });
}

export function json(data, status = 200) {
  return Response.json(data, { status });
}
