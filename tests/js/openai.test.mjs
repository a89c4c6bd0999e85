// The `openai` npm package against a real `hearth serve`: chat, streaming, tools, embeddings.
// Run by tests/serve/test_serve_js.py with HEARTH_BASE_URL, HEARTH_API_KEY and HEARTH_MODEL set.
import assert from "node:assert/strict";
import { test } from "node:test";
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: `${process.env.HEARTH_BASE_URL}/v1`,
  apiKey: process.env.HEARTH_API_KEY,
  maxRetries: 0,
});
const model = process.env.HEARTH_MODEL;
const ask = [{ role: "user", content: "Name a colour." }];

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } },
      required: ["city", "unit"],
    },
  },
};

test("chat completion", async () => {
  const r = await client.chat.completions.create({ model, messages: ask, max_tokens: 6 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.model, model);
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(["stop", "length"].includes(r.choices[0].finish_reason));
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
});

test("streaming gives the same text as one answer", async () => {
  const whole = await client.chat.completions.create({ model, messages: ask, max_tokens: 6 });
  const stream = await client.chat.completions.create({
    model,
    messages: ask,
    max_tokens: 6,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    chunks += 1;
    text += chunk.choices[0]?.delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  assert.ok(chunks > 2, `streamed in ${chunks} chunks`);
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
});

test("the stream helper's events and final message", async () => {
  const runner = client.chat.completions.stream({
    model,
    messages: [{ role: "user", content: "Reply with one word: yes or no?" }],
    max_tokens: 8,
  });
  const deltas = [];
  runner.on("content", (delta) => deltas.push(delta));
  const final = await runner.finalChatCompletion();
  assert.ok(deltas.length > 0);
  assert.equal(deltas.join(""), final.choices[0].message.content);
});

test("tools: a forced call parses against the schema, and the result goes back", async () => {
  const messages = [{ role: "user", content: "What is the weather in Paris?" }];
  const r = await client.chat.completions.create({
    model,
    messages,
    tools: [weather],
    tool_choice: { type: "function", function: { name: "get_weather" } },
  });
  const choice = r.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_weather");
  const args = JSON.parse(call.function.arguments);
  assert.equal(typeof args.city, "string");
  assert.ok(["celsius", "fahrenheit"].includes(args.unit));

  const answer = await client.chat.completions.create({
    model,
    max_tokens: 20,
    messages: [
      ...messages,
      choice.message,
      { role: "tool", tool_call_id: call.id, content: JSON.stringify({ city: args.city, sky: "sunny", temp: 21 }) },
    ],
  });
  assert.equal(answer.choices[0].message.tool_calls ?? undefined, undefined);
  assert.ok(answer.choices[0].message.content.length > 0);
});

test("tools: streamed call deltas assemble into the same call", async () => {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Weather in Oslo?" }],
    tools: [weather],
    tool_choice: "required",
    stream: true,
  });
  const calls = {};
  let finish = null;
  for await (const chunk of stream) {
    for (const d of chunk.choices[0]?.delta?.tool_calls ?? []) {
      calls[d.index] ??= { id: d.id, name: "", args: "" };
      calls[d.index].name += d.function?.name ?? "";
      calls[d.index].args += d.function?.arguments ?? "";
    }
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, "tool_calls");
  assert.ok(calls[0].id);
  assert.equal(calls[0].name, "get_weather");
  assert.equal(typeof JSON.parse(calls[0].args).city, "string");
});

test("embeddings: floats, and the SDK's default base64 decoded alike", async () => {
  const floats = await client.embeddings.create({
    model: "usem3",
    input: ["a cat", "a dog"],
    encoding_format: "float",
  });
  assert.deepEqual(
    floats.data.map((d) => d.index),
    [0, 1],
  );
  assert.equal(floats.data[0].embedding.length, 512);
  const norm = Math.hypot(...floats.data[0].embedding);
  assert.ok(Math.abs(norm - 1) < 1e-4, `unit length, got ${norm}`);
  const b64 = await client.embeddings.create({ model: "usem3", input: "a cat" }); // SDK asks base64, decodes
  const a = b64.data[0].embedding;
  const b = floats.data[0].embedding;
  assert.equal(a.length, 512);
  assert.ok(Math.max(...a.map((x, i) => Math.abs(x - b[i]))) < 1e-5);
});

test("errors arrive as the SDK's typed errors", async () => {
  await assert.rejects(client.chat.completions.create({ model: "no-such-model", messages: ask }), (err) => {
    assert.ok(err instanceof OpenAI.NotFoundError);
    assert.equal(err.code, "model_not_found");
    return true;
  });
  const anonymous = new OpenAI({ baseURL: client.baseURL, apiKey: "hth-wrong", maxRetries: 0 });
  await assert.rejects(anonymous.models.list(), OpenAI.AuthenticationError);
});
