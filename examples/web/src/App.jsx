import { useChat } from "@ai-sdk/react";
import { DefaultChatTransport } from "ai";
import { useEffect, useState } from "react";

const transport = new DefaultChatTransport({ api: "/api/chat" });

export default function App() {
  const [kbs, setKbs] = useState([]);
  const [kb, setKb] = useState("");
  const [input, setInput] = useState("");
  const { messages, sendMessage, status, error } = useChat({ transport });

  const loadKbs = async () => {
    const r = await fetch("/api/kb");
    const list = r.ok ? await r.json() : [];
    setKbs(list);
    setKb((current) => current || list[0]?.name || "");
  };
  useEffect(() => {
    loadKbs();
  }, []);

  const ask = (event) => {
    event.preventDefault();
    if (!input.trim()) return;
    sendMessage({ text: input }, { body: { kb } }); // the picked knowledge base rides along to /api/chat
    setInput("");
  };

  return (
    <div className="app">
      <aside>
        <h1>Hearth</h1>
        <label htmlFor="kb">Knowledge base</label>
        <select id="kb" value={kb} onChange={(e) => setKb(e.target.value)}>
          <option value="">none (plain chat)</option>
          {kbs.map((k) => (
            <option key={k.name} value={k.name}>
              {k.name}
            </option>
          ))}
        </select>
        <Upload kb={kb} onDone={loadKbs} />
      </aside>
      <main>
        <ol className="messages" aria-label="Conversation">
          {messages.map((m) => (
            <Message key={m.id} message={m} />
          ))}
        </ol>
        {error && <p className="error">{error.message}</p>}
        <form onSubmit={ask} className="ask">
          <input
            aria-label="Question"
            value={input}
            placeholder={kb ? `Ask about ${kb}…` : "Ask anything…"}
            onChange={(e) => setInput(e.target.value)}
          />
          <button type="submit" disabled={status === "submitted" || status === "streaming"}>
            Send
          </button>
        </form>
      </main>
    </div>
  );
}

// Hearth ends a grounded answer with a "Sources:" list; the citations carry the same sources, so the
// app shows them as links instead and turns each [n] in the text into a link to its source.
function Message({ message }) {
  const citations = message.metadata?.citations ?? [];
  let text = message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");
  if (citations.length) text = text.split("\n\nSources:\n")[0];
  const anchor = (n) => `${message.id}-source-${n}`;
  const pieces = text.split(/(\[\d+\])/g).map((piece, i) => {
    const n = Number(piece.match(/^\[(\d+)\]$/)?.[1]);
    return citations.some((c) => c.n === n) ? (
      <a key={i} href={`#${anchor(n)}`} className="cite">
        {piece}
      </a>
    ) : (
      piece
    );
  });
  return (
    <li className={message.role}>
      <div className="text">{pieces}</div>
      {citations.length > 0 && (
        <ol className="sources" aria-label="Sources">
          {citations.map((c) => (
            <li key={c.n} id={anchor(c.n)}>
              <a href={`#${anchor(c.n)}`} title={c.text}>
                [{c.n}] {c.source.split("/").pop()}
                {c.headings.length ? ` › ${c.headings.join(" › ")}` : ""}
                {c.page ? `, p. ${c.page}` : ""}
              </a>
              <blockquote>{c.text}</blockquote>
            </li>
          ))}
        </ol>
      )}
    </li>
  );
}

function Upload({ kb, onDone }) {
  const [state, setState] = useState("");
  const upload = async (event) => {
    event.preventDefault();
    const files = event.target.elements.files.files;
    if (!kb || files.length === 0) return setState("pick a knowledge base and a file");
    const form = new FormData();
    for (const f of files) form.append("files", f);
    setState("uploading…");
    const r = await fetch(`/api/kb?name=${encodeURIComponent(kb)}`, { method: "POST", body: form });
    let job = await r.json();
    if (!r.ok) return setState(job.error?.message ?? `upload failed (${r.status})`);
    while (!["done", "failed", "cancelled"].includes(job.status)) {
      setState(`indexing… ${job.status}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
      job = await (await fetch(`/api/kb?job=${encodeURIComponent(job.id)}`)).json();
    }
    setState(job.status === "done" ? `indexed ${[...files].map((f) => f.name).join(", ")}` : `ingest ${job.status}`);
    event.target.reset();
    onDone();
  };
  return (
    <form onSubmit={upload} className="upload">
      <label htmlFor="files">Add a document</label>
      <input id="files" name="files" type="file" multiple />
      <button type="submit" disabled={!kb}>
        Upload
      </button>
      <p role="status">{state}</p>
    </form>
  );
}
