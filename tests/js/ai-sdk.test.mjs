// The Vercel AI SDK (`ai` + `@ai-sdk/openai-compatible`) against a real `hearth serve`:
// streamText, grounded streamText with citations, generateObject with a schema, tool calling.
// Run by tests/serve/test_serve_js.py with HEARTH_BASE_URL, HEARTH_API_KEY, HEARTH_MODEL, HEARTH_KB set.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

// Hearth's citations come as an extra top-level field; this hands them to the SDK as provider metadata.
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

const hearth = createOpenAICompatible({
  name: "hearth",
  baseURL: `${process.env.HEARTH_BASE_URL}/v1`,
  apiKey: process.env.HEARTH_API_KEY,
  includeUsage: true,
  supportsStructuredOutputs: true, // Hearth constrains decoding to the JSON schema
  metadataExtractor: citations,
});
const model = hearth(process.env.HEARTH_MODEL);

test("streamText streams text, finish reason and usage", async () => {
  const result = streamText({ model, prompt: "Name a colour.", maxOutputTokens: 6, maxRetries: 0 });
  const parts = [];
  for await (const text of result.textStream) parts.push(text);
  assert.ok(parts.length > 1, `streamed in ${parts.length} parts`);
  assert.equal(parts.join(""), await result.text);
  assert.ok(["stop", "length"].includes(await result.finishReason));
  const usage = await result.usage;
  assert.ok(usage.outputTokens > 0 && usage.outputTokens <= 6 && usage.inputTokens > 0);
});

test("grounded streamText: the answer cites the knowledge base's document", async () => {
  const result = streamText({
    model,
    prompt: "When is the Zorblax festival held?",
    maxOutputTokens: 40,
    maxRetries: 0,
    providerOptions: { hearth: { hearth: { kb: [process.env.HEARTH_KB] } } }, // body field `hearth`
  });
  const text = await result.text;
  const cited = (await result.providerMetadata)?.hearth?.citations;
  assert.ok(Array.isArray(cited) && cited.length > 0, "citations came back");
  assert.ok(cited[0].source.endsWith("zorblax.md"), cited[0].source);
  assert.match(cited[0].text, /March/);
  assert.match(text, /\[1\]/); // the answer's sources refer to the citations by number
});

test("generateObject fills a schema", async () => {
  const { object, finishReason } = await generateObject({
    model,
    schema: z.object({ city: z.string(), country: z.string(), population: z.number().int() }),
    prompt: "Describe Paris as JSON with its city name, country and population.",
    maxOutputTokens: 60,
    maxRetries: 0,
  });
  assert.equal(finishReason, "stop");
  assert.equal(typeof object.city, "string");
  assert.equal(typeof object.country, "string");
  assert.ok(Number.isInteger(object.population));
});

test("tool calling: the SDK runs the tool and the model answers with its result", async () => {
  const seen = [];
  const result = await generateText({
    model,
    prompt: "What is the weather in Paris?",
    maxOutputTokens: 30,
    maxRetries: 0,
    tools: {
      weather: tool({
        description: "The weather in a city",
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
          seen.push(city);
          return { city, sky: "sunny", celsius: 21 };
        },
      }),
    },
    // call the tool first, then answer in words
    prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? { type: "tool", toolName: "weather" } : "none" }),
    stopWhen: stepCountIs(2),
  });
  assert.equal(result.steps.length, 2);
  const [call] = result.steps[0].toolCalls;
  assert.equal(call.toolName, "weather");
  assert.equal(typeof call.input.city, "string");
  assert.deepEqual(seen, [call.input.city]);
  assert.equal(result.steps[0].toolResults[0].output.sky, "sunny");
  assert.equal(result.steps[0].finishReason, "tool-calls");
  assert.ok(result.text.length > 0);
});

test("a wrong key is an API error, not a hang", async () => {
  const anonymous = createOpenAICompatible({ name: "hearth", baseURL: `${process.env.HEARTH_BASE_URL}/v1`, apiKey: "hth-wrong" });
  await assert.rejects(generateText({ model: anonymous(process.env.HEARTH_MODEL), prompt: "hi", maxRetries: 0 }), (err) => {
    assert.equal(err.statusCode, 401);
    return true;
  });
});
