"""A folder of hostile files next to good ones: every bad file fails with a reason, the good ones are
searchable, and nothing outside the folder is read."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path

import pytest

from hearth.config import Settings
from hearth.kb import collection as kc
from hearth.kb.parse import DOCX_MAX_UNZIPPED

S = Settings()


def _pdf_bomb(path: Path) -> None:
    """One page whose content stream inflates to 80 MB of spaces (over pypdf's 75 MB limit)."""
    stream = zlib.compress(b" " * 80_000_000, 1)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % n + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    path.write_bytes(out.getvalue())


def _docx_bomb(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(DOCX_MAX_UNZIPPED // len(block) + 8):
                f.write(block)


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    d = tmp_path / "inbox"
    d.mkdir()
    (d / "good.md").write_text("# Backups\n\nThe backup runs every night at two o'clock.\n", encoding="utf-8")
    (d / "latin1.txt").write_bytes("Le café naïve ouvre à huit heures, près de la gare.".encode("latin-1"))
    outside = tmp_path / "secret.md"  # a file outside the folder, reached only through a link
    outside.write_text("# Secret\n\nThe vault code is zanzibar-4471.\n", encoding="utf-8")
    (d / "passwd-link.md").symlink_to("/etc/passwd")
    (d / "secret-link.md").symlink_to(outside)
    (d / "inside-link.md").symlink_to(d / "good.md")  # inside the folder: the same document, once
    (d / "loop-a.md").symlink_to(d / "loop-b.md")
    (d / "loop-b.md").symlink_to(d / "loop-a.md")
    (d / "self.md").symlink_to(d / "self.md")
    (d / "escape").symlink_to(tmp_path, target_is_directory=True)  # a linked folder is not entered
    _pdf_bomb(d / "bomb.pdf")
    (d / "notword.docx").write_bytes(_zip({"hello.txt": "not a Word file"}))
    (d / "badxml.docx").write_bytes(_zip({"[Content_Types].xml": "<Types><oops"}))
    _docx_bomb(d / "bomb.docx")
    (d / "binary.md").write_bytes(os.urandom(2048) + b"\0")
    (d / "oneline.txt").write_text("word " * 2_100_000, encoding="utf-8")  # 10.5 MB, one line
    (d / "deep.html").write_text("<html><body>" + "<div>" * 100_000 + "deep" + "</div>" * 100_000, encoding="utf-8")
    return d


def _zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


@pytest.mark.slow
def test_hostile_folder(home: Path, hostile: Path) -> None:
    kc.create("inbox", settings=S)
    rep = kc.add("inbox", [hostile], settings=S)
    reasons = {Path(p).name: r for p, r in rep.failed}
    expected = {
        "passwd-link.md": "outside",
        "secret-link.md": "outside",
        "loop-a.md": "loop",
        "loop-b.md": "loop",
        "self.md": "loop",
        "bomb.pdf": "",  # pypdf stops at its 75 MB limit: no text (or the limit error, by version)
        "notword.docx": "Word",
        "badxml.docx": "Word",
        "bomb.docx": "zip bomb",
        "binary.md": "binary",
        "oneline.txt": "one line",
        "deep.html": "nested",
    }
    assert set(reasons) == set(expected), reasons
    for name, word in expected.items():
        assert word in reasons[name], (name, reasons[name])
    assert sorted(Path(s).name for s in rep.added) == ["good.md", "latin1.txt"]

    assert (
        kc.search("inbox", "when does the backup run", settings=S, threshold=0)
        .results[0]
        .text.startswith("The backup runs")
    )
    latin = kc.search("inbox", "café naïve", settings=S, threshold=0, mode="text").results
    assert latin and "café naïve ouvre à huit heures" in latin[0].text  # Latin-1 decoded right
    # nothing from outside the folder became searchable
    for query in ("root:x:0:0", "vault code zanzibar"):
        for r in kc.search("inbox", query, 10, settings=S, threshold=0).results:
            assert "zanzibar" not in r.text and "root:x" not in r.text
    assert all(str(hostile) in d.source for d in kc.list_docs("inbox"))
