// POST /api/chat: the AI SDK's UI message stream, answered by Hearth (grounded in `kb` when one is picked).
import { convertToModelMessages, streamText } from "ai";
import { hearth } from "../lib/hearth.js";

export async function POST(request) {
  const { messages, kb, model } = await request.json();
  const result = streamText({
    model: hearth()(model || process.env.HEARTH_MODEL || "smollm2"),
    messages: await convertToModelMessages(messages),
    maxOutputTokens: Number(process.env.HEARTH_MAX_TOKENS || 256),
    maxRetries: 0,
    // Hearth's own request field: `hearth: {kb: [...]}` grounds the answer in those knowledge bases
    providerOptions: kb ? { hearth: { hearth: { kb: [kb] } } } : undefined,
  });
  return result.toUIMessageStreamResponse({
    // the citations arrive with the step's end; they become the message's metadata in useChat
    messageMetadata: ({ part }) =>
      part.type === "finish-step" ? { citations: part.providerMetadata?.hearth?.citations ?? [] } : undefined,
    onError: (error) => error?.responseBody ?? String(error?.message ?? error),
  });
}
