"""`hearth chat`: one question, or an interactive conversation, streamed from any model."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import typer
from rich.console import Console

HELP = "commands: /reset (forget the conversation), /temp 0.7 (set temperature), /exit"


def register(app: typer.Typer) -> None:
    @app.command("chat")
    def chat(
        question: str = typer.Argument(None, help="ask once and exit; leave out for an interactive chat"),
        model: str = typer.Option(None, "-m", "--model", help="model name, path, base+adapter, or remote:<backend>"),
        engine: str = typer.Option(
            None, "--engine", help="how a local model runs (default: the models layer's choice)"
        ),
        system: str = typer.Option(None, "--system", help="system prompt"),
        temperature: float = typer.Option(None, "--temperature", "-t", help="0 = greedy"),
        top_p: float = typer.Option(None, "--top-p"),
        top_k: int = typer.Option(None, "--top-k"),
        max_tokens: int = typer.Option(None, "--max-tokens"),
        seed: int = typer.Option(None, "--seed"),
        repetition_penalty: float = typer.Option(None, "--repetition-penalty"),
        stop: list[str] = typer.Option(None, "--stop", help="stop at this string (repeatable)"),
        kb: list[str] = typer.Option(
            None, "--kb", help="answer from this knowledge-base collection, citing sources (repeatable)"
        ),
        tools: bool = typer.Option(False, "--tools", help="let the model call tools (built-ins and mcp_servers)"),
        local: bool = typer.Option(
            False, "--local", help="answer in this process even when a `hearth serve` is running (default: use it)"
        ),
    ) -> None:
        """Chat with a model, streaming tokens as they come."""
        from hearth import config
        from hearth.agent.engine import ChatRequest, Conversation
        from hearth.cli import via_server
        from hearth.models import stream as generate

        settings = config.settings()
        params = generate.sampling(
            settings.generation,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_tokens=max_tokens,
            seed=seed,
            repetition_penalty=repetition_penalty,
            stop=stop or None,
        )
        messages = [{"role": "system", "content": system}] if system else []
        request = ChatRequest(messages, model=model, engine=engine, params=params, kb=kb or [], server_tools=tools)
        # A running server has the model loaded already: ask it, unless the request needs this process
        # (a path on this machine, tools run here, a chosen engine) or --local says so.
        url = None if local or not via_server.can_serve(request) else via_server.running_server(settings)
        if url is None:
            # An engine this process starts serves this one conversation: one slot is ready in ~0.4 s,
            # eight (the server's default) in ~0.9 s, their KV cache being 8x larger (bench/cli.py).
            settings = settings.model_copy(update={"engine": settings.engine.model_copy(update={"slots": 1})})
        conversation: Any = (
            via_server.ServerConversation(url, request, settings) if url else Conversation(request, settings)
        )
        console = Console()

        def answer(text: str) -> None:
            for delta in conversation.ask(text):
                for r in delta.tool_results or []:
                    console.print(f"⚙ {r['name']}({r['arguments']}) → {r['content'][:200]}", style="dim", markup=False)
                console.print(delta.text, end="", markup=False, highlight=False, soft_wrap=True)
            console.print()

        if question:
            answer(question)
            return
        console.print(f"[bold]{model or settings.model}[/] — {HELP}")
        while True:
            try:
                text = console.input("[bold cyan]you>[/] ").strip()
            except EOFError:
                break
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                conversation.reset()
                console.print("[dim]conversation cleared[/]")
                continue
            if text.startswith("/temp"):
                try:
                    params = generate.sampling(params, temperature=float(text.split()[1]))
                    conversation.request = replace(conversation.request, params=params)
                    console.print(f"[dim]temperature = {params.temperature}[/]")
                except (IndexError, ValueError):
                    console.print("[red]write it like /temp 0.7[/]")
                continue
            if text.startswith("/"):
                console.print(HELP)
                continue
            answer(text)
