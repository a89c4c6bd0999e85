"""Fixtures for the knowledge-base tests: small real documents in every supported format."""

from __future__ import annotations

from pathlib import Path

import pytest
from kb_samples import EN_EXPENSES, EN_VACATION, ZH_CANTEEN, ZH_SECURITY, make_docx, make_pdf


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A folder with one file per format: Markdown, HTML, PDF, DOCX, GBK text, UTF-8 Chinese text."""
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "handbook.md").write_text(
        f"# Employee Handbook\n\n## Vacation\n\n{EN_VACATION}\n\n## Expenses\n\n{EN_EXPENSES}\n", encoding="utf-8"
    )
    (root / "sub" / "security.txt").write_bytes(ZH_SECURITY.encode("gbk"))
    (root / "sub" / "canteen.html").write_text(
        f"<html><head><title>食堂</title><script>var x='不要索引';</script></head>"
        f"<body><h1>后勤</h1><h2>食堂安排</h2><p>{ZH_CANTEEN}</p></body></html>",
        encoding="utf-8",
    )
    make_pdf(
        root / "safety.pdf",
        ["Fire exits are marked in green.\nAssemble in the car park.", "First aid kits are in every kitchen."],
    )
    make_docx(root / "office.docx")
    return root
