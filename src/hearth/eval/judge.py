"""LLM-as-judge: a configured model grades an answer against the gold answer (0–1).

Token metrics miss a correct answer in other words ("three hundred forty staff" for "340 employees");
a capable judge does not. Use a strong model — typically a remote one (``remote:<backend>``) — since the
bundled 135M model cannot grade reliably. The judge sees the question, the gold answer and the answer,
and replies with one integer from 0 to 10; a reply without one is no grade (left out of the means).
"""

from __future__ import annotations

import re

PROMPT = (
    "You grade answers. Compare the ANSWER with the GOLD answer to the QUESTION.\n"
    "Reply with one integer from 0 (wrong or missing the fact) to 10 (states the same fact), nothing else.\n\n"
    "QUESTION: {question}\nGOLD: {gold}\nANSWER: {answer}\nGRADE:"
)


def parse_grade(text: str) -> float | None:
    """The first integer 0–10 in the judge's reply, scaled to 0–1; None when there is none."""
    match = re.search(r"\b(10|[0-9])\b", text)
    return int(match.group(1)) / 10 if match else None


def judge_answer(model: str, question: str, gold: str, answer: str, max_tokens: int = 8) -> float | None:
    from hearth.models import backends, generate

    params = generate.sampling(temperature=0, max_tokens=max_tokens, repetition_penalty=1.0)
    prompt = PROMPT.format(question=question, gold=gold, answer=answer or "(no answer)")
    reply = backends.get_chat_model(model).complete([{"role": "user", "content": prompt}], params).text
    return parse_grade(reply)
