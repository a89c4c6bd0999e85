"""The torch lane's schedule (``GenerationQueue._interleave``): admitted requests take turns a token at a time,
and one that joins gets its first token before anyone's next one. The producers are plain generators that
record the order in which the lane runs them; a semaphore decides when the older requests may go on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

from hearth.serve.queue import GenerationQueue


def test_a_request_that_joins_gets_its_first_token_before_the_others_next() -> None:
    q = GenerationQueue()
    ran: list[str] = []
    hold = threading.Event()  # keeps the lane busy until the four older requests are all queued
    gate = threading.Semaphore(0)  # one permit = one more token for an older request

    def blocker() -> Iterator[str]:
        hold.wait()
        yield "blocker"

    def older(name: str, tokens: int) -> Callable[[], Iterator[str]]:
        def produce() -> Iterator[str]:
            for i in range(tokens):
                if i:  # the first token is free; later ones wait for the test
                    gate.acquire()
                ran.append(name)
                yield name

        return produce

    def joining() -> Iterator[str]:
        ran.append("new")
        yield "new"

    async def queued(n: int) -> None:
        while q._torch_jobs.qsize() < n:
            await asyncio.sleep(0.01)

    async def drain(stream) -> None:
        async for _ in stream:
            pass

    async def main() -> None:
        busy = q.stream(q.admit(), blocker)
        started = asyncio.ensure_future(busy.__anext__())
        while q.running == 0:  # the lane took it and waits in its first step
            await asyncio.sleep(0.01)
        olds = [q.stream(q.admit(), older(f"old{k}", 5)) for k in range(4)]
        firsts = [asyncio.ensure_future(s.__anext__()) for s in olds]
        await queued(4)
        hold.set()
        await asyncio.gather(started, *firsts)  # four requests decoding in turn; the lane waits at the gate
        new = q.stream(q.admit(), joining)
        first = asyncio.ensure_future(new.__anext__())
        await queued(1)  # queued while an older request is mid-token
        for _ in range(4 * 4):
            gate.release()
        assert await first == "new"
        await asyncio.gather(*(drain(s) for s in [busy, *olds, new]))

    asyncio.run(asyncio.wait_for(main(), 60))
    assert ran[:4] == ["old0", "old1", "old2", "old3"]
    after = ran[4:]  # what ran once the new request was queued
    # the token in progress finishes, then the newcomer's first (in plain turns: the rest of the round first)
    assert after.index("new") == 1, after
    assert sorted(after) == sorted(["new"] + [f"old{k}" for k in range(4) for _ in range(4)])
    assert q.pending == 0
