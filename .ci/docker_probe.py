"""What .ci/docker-check asks of the Hearth container, from the host, over HTTP (standard library only).

``first``: /health answers; chat is refused without a key and streams an answer with one; a document
uploaded through the API is ingested and found by search. ``again`` (after the container was replaced,
same volume): the key still works and the document is still found, without uploading it again.
Each failure exits non-zero with what was expected and what came back.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
import uuid

KB = "ci-docker"
# A made-up fact: only the uploaded document can make search find it.
DOC = "# Lighthouse keeping\n\nThe lighthouse on Quillon Island is painted teal and its lamp turns every 17 seconds.\n"
QUERY = "What colour is the Quillon Island lighthouse?"


class Failed(Exception):
    pass


def call(base: str, method: str, path: str, key: str | None, body: bytes | None = None, ctype: str = "") -> tuple:
    req = urllib.request.Request(base + path, data=body, method=method)
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def expect(ok: bool, what: str, got: object) -> None:
    if not ok:
        raise Failed(f"{what}: got {str(got)[:400]}")
    print(f"  ok  {what}")


def health(base: str) -> None:
    status, body = call(base, "GET", "/health", None)
    expect(status == 200 and json.loads(body).get("status") == "ok", "/health answers without a key", (status, body))


def chat(base: str, key: str) -> None:
    payload = {"model": "smollm2", "stream": True, "max_tokens": 24, "messages": [{"role": "user", "content": "Hi!"}]}
    data = json.dumps(payload).encode()
    status, body = call(base, "POST", "/v1/chat/completions", None, data, "application/json")
    expect(status == 401, "chat without a key is refused (401)", (status, body))
    status, body = call(base, "POST", "/v1/chat/completions", "hth-not-a-key", data, "application/json")
    expect(status == 401, "chat with a wrong key is refused (401)", (status, body))
    started = time.monotonic()
    status, body = call(base, "POST", "/v1/chat/completions", key, data, "application/json")
    lines = [ln[6:] for ln in body.decode().splitlines() if ln.startswith("data: ")]
    chunks = [json.loads(ln) for ln in lines if ln != "[DONE]"]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c.get("choices"))
    expect(
        status == 200 and lines[-1:] == ["[DONE]"] and len(chunks) > 2 and text.strip(),
        f"chat with the key streams an answer ({len(chunks)} chunks in {time.monotonic() - started:.1f} s: {text!r})",
        (status, body[:400]),
    )


def wait_job(base: str, key: str, job: dict) -> dict:
    deadline = time.monotonic() + 300
    while job.get("status") in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(1)
        status, body = call(base, "GET", f"/api/jobs/{job['id']}", key)
        job = json.loads(body) if status == 200 else {"status": f"HTTP {status}", "error": body}
    return job


def search(base: str, key: str) -> None:
    data = json.dumps({"query": QUERY, "k": 3}).encode()
    status, body = call(base, "POST", f"/api/kb/{KB}/search", key, data, "application/json")
    results = json.loads(body).get("results", []) if status == 200 else []
    expect(
        any("teal" in r["text"] for r in results),
        f"search finds the uploaded document ({results[0]['source'] if results else 'nothing'})",
        (status, body[:400]),
    )


def upload(base: str, key: str) -> None:
    status, body = call(base, "POST", "/api/kb", key, json.dumps({"name": KB}).encode(), "application/json")
    expect(status == 201, f"knowledge base '{KB}' created", (status, body))
    boundary = uuid.uuid4().hex
    form = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="lighthouse.md"\r\n'
        f"Content-Type: text/markdown\r\n\r\n{DOC}\r\n--{boundary}--\r\n"
    ).encode()
    status, body = call(base, "POST", f"/api/kb/{KB}/files", key, form, f"multipart/form-data; boundary={boundary}")
    expect(status == 202, "document uploaded (ingest job started)", (status, body))
    job = wait_job(base, key, json.loads(body))
    expect(job.get("status") == "done", "ingest job done", job)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["first", "again"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    try:
        health(args.url)
        if args.phase == "first":
            chat(args.url, args.key)
            upload(args.url, args.key)
        else:
            status, body = call(args.url, "GET", "/api/kb", args.key)
            expect(
                status == 200 and KB in body.decode(),
                f"the key from the first start still works; '{KB}' listed",
                (status, body),
            )
        search(args.url, args.key)
    except Failed as exc:
        print(f"FAILED {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
