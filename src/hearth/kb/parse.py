"""Parse: turn a file (Markdown, text, HTML, PDF, DOCX) into sections of text that keep their structure.

A section is a run of text under one heading path (``("Guide", "Install")``) and, for PDFs, one page.
The chunker never merges sections, so every chunk knows its heading path and page. Encodings are
detected (UTF-8, UTF-16, GBK/GB18030, Big5, Latin-1 ...) because Chinese companies still keep many
files in GB encodings; a Western text that is not UTF-8 is read as Windows-1252 (the superset of
Latin-1) when that decodes it. Every failure raises ``DataError`` with the reason, so the ingest job
can report it and go on with the rest of the batch; hostile files (zip bombs in .docx, PDF streams
that expand without end, one 10 MB line, HTML nested thousands deep) are refused with a reason too.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from hearth.errors import DataError

TEXT_SUFFIXES = {".txt", ".text", ".log", ".csv", ".tsv", ".rst"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdx"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | {".pdf", ".docx"}
DOCX_MAX_UNZIPPED = 256 * 1024 * 1024  # a .docx expanding beyond this is a zip bomb, not a document
MAX_LINE_CHARS = 1_000_000  # one line longer than this is a data dump (minified JSON, a log blob), not prose
MAX_HTML_DEPTH = 256  # browsers cap nesting near here too; deeper trees are generated, not written


@dataclass
class Section:
    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None  # 1-based page number (PDF only)


@dataclass
class ParsedDoc:
    title: str
    kind: str  # markdown | text | html | pdf | docx
    sections: list[Section] = field(default_factory=list)

    @property
    def n_chars(self) -> int:
        return sum(len(s.text) for s in self.sections)


def parse_file(path: Path, data: bytes | None = None) -> ParsedDoc:
    """Parse one file by its suffix; raises DataError (with the reason) when it cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path.name}: unsupported file type '{suffix or '(none)'}'", f"supported: {', '.join(sorted(SUFFIXES))}"
        )
    if data is None:
        data = path.read_bytes()
    if not data.strip():
        raise DataError(f"{path.name}: the file is empty", "nothing to index; add text to it or leave it out")
    if suffix == ".pdf":
        doc = parse_pdf(data, path.stem)
    elif suffix == ".docx":
        doc = parse_docx(data, path.stem)
    elif suffix in HTML_SUFFIXES:
        doc = parse_html(decode_text(data, path.name), path.stem)
    elif suffix in MARKDOWN_SUFFIXES:
        doc = parse_markdown(_check_lines(decode_text(data, path.name), path.name), path.stem)
    else:
        doc = parse_text(_check_lines(decode_text(data, path.name), path.name), path.stem)
    doc.sections = [s for s in doc.sections if s.text.strip()]
    if not doc.sections:
        raise DataError(
            f"{path.name}: no text could be extracted", "scanned PDFs need OCR first; other files may be empty"
        )
    return doc


# ---------------------------------------------------------------------------------------------
# text encodings


def decode_text(data: bytes, name: str = "file") -> str:
    """Bytes → str, detecting the encoding; refuses binary data that merely has a text suffix."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    head = data[:8192]
    # NUL bytes never occur in text in any 8-bit or multi-byte encoding we accept.
    if b"\x00" in head:
        raise DataError(
            f"{name}: looks like a binary file, not text", "check the file; rename it if its suffix is wrong"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        raise DataError(
            f"{name}: looks like a binary file, not text (no text encoding fits)",
            "check the file; rename it if its suffix is wrong",
        )
    encoding = best.encoding.lower()
    # charset-normalizer often names a subset (gb2312, gbk) or a sibling; GB18030 is the superset of
    # both and decodes every valid GBK file, so prefer it whenever a Chinese GB codec was detected.
    if encoding in {"gb2312", "gbk", "gb18030", "hz"}:
        encoding = "gb18030"
    elif any(m.encoding == "cp1252" and m.chaos <= best.chaos for m in matches):
        # a short Latin-1 file ("Café naïve") fits many single-byte code pages equally well, and the
        # first named may be cp1250 ("Café naďve") or an Arabic one; when Windows-1252 (the superset of
        # Latin-1) fits as well as the best, it is the likeliest. Cyrillic or Greek text fits its own
        # code page better, so it keeps it.
        encoding = "cp1252"
    text = data.decode(encoding, errors="replace")
    if _control_ratio(text) > 0.05:
        raise DataError(
            f"{name}: looks like a binary file, not text", "check the file; rename it if its suffix is wrong"
        )
    return text


def _check_lines(text: str, name: str) -> str:
    longest = max((len(line) for line in text.splitlines()), default=0)
    if longest > MAX_LINE_CHARS:
        raise DataError(
            f"{name}: one line is {longest:,} characters long (over {MAX_LINE_CHARS:,}): data, not prose",
            "convert it to text with line breaks (or leave it out of the knowledge base)",
        )
    return text


def _control_ratio(text: str) -> float:
    sample = text[:4096]
    bad = sum(1 for c in sample if (ord(c) < 32 and c not in "\t\n\r\f") or c == "\ufffd")
    return bad / max(1, len(sample))


# ---------------------------------------------------------------------------------------------
# formats


def parse_text(text: str, stem: str) -> ParsedDoc:
    return ParsedDoc(title=stem, kind="text", sections=[Section(text.strip())])


def parse_markdown(text: str, stem: str) -> ParsedDoc:
    """Headings become the heading path; everything between two headings is one section."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    lines = text.splitlines()
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    title = ""
    i = 0
    body_start = 0  # source line where the current section's body starts

    def flush(end: int) -> None:
        body = "\n".join(lines[body_start:end]).strip()
        if body:
            sections.append(Section(body, tuple(h for _, h in stack)))

    while i < len(tokens):
        tok = tokens[i]
        if tok.type == "heading_open" and tok.map:
            flush(tok.map[0])
            level = int(tok.tag[1:])
            heading = tokens[i + 1].content.strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
            title = title or (heading if level == 1 else "")
            body_start = tok.map[1]
            i += 3  # heading_open, inline, heading_close
            continue
        i += 1
    flush(len(lines))
    return ParsedDoc(title=title or stem, kind="markdown", sections=sections)


_HEADING_TAGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCK_TAGS = {
    "p", "div", "li", "ul", "ol", "br", "tr", "td", "th", "table", "pre", "blockquote", "dd", "dt", "dl",
    "section", "article", "header", "footer", "hr", "title", "caption", "figcaption",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head"}


def parse_html(html: str, stem: str) -> ParsedDoc:
    """Walk the DOM in order: h1–h6 set the heading path, block elements break lines, scripts are dropped."""
    from selectolax.lexbor import LexborHTMLParser

    if _nesting(html) > MAX_HTML_DEPTH:
        raise DataError(
            f"{stem}: HTML nested over {MAX_HTML_DEPTH} elements deep", "a generated or hostile page; save it as text"
        )
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title")
    title = title_node.text(strip=True) if title_node else ""
    root = tree.body or tree.root
    if root is None:
        return ParsedDoc(title=title or stem, kind="html")
    for node in root.css(",".join(_SKIP_TAGS)):
        node.decompose()
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    buf: list[str] = []

    def flush() -> None:
        body = re.sub(r"[ \t\r\f\v]+", " ", "".join(buf))
        body = re.sub(r"\s*\n\s*", "\n", body).strip()
        if body:
            sections.append(Section(body, tuple(h for _, h in stack)))
        buf.clear()

    for node in root.traverse(include_text=False):
        tag = node.tag
        if tag in _HEADING_TAGS:
            flush()
            level = _HEADING_TAGS[tag]
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, re.sub(r"\s+", " ", node.text(deep=True)).strip()))
            continue
        if _inside_heading(node):
            continue
        if tag in _BLOCK_TAGS:
            buf.append("\n")
        # text directly owned by this element (deep=False); children are visited by traverse()
        own = node.text(deep=False)
        if own:
            buf.append(own)
    flush()
    if not title and stack:
        title = stack[0][1]
    return ParsedDoc(title=title or stem, kind="html", sections=sections)


_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^>]*?(/?)>")
_VOID = {
    "br",
    "hr",
    "img",
    "input",
    "meta",
    "link",
    "area",
    "base",
    "col",
    "embed",
    "source",
    "track",
    "wbr",
    "p",
    "li",
}


def _nesting(html: str) -> int:
    """Deepest element nesting, counted from the tags (void and auto-closing tags do not nest)."""
    depth = deepest = 0
    for m in _TAG.finditer(html):
        closing, tag, self_closing = m.group(1), m.group(2).lower(), m.group(3)
        if tag in _VOID or self_closing:
            continue
        depth = max(0, depth - 1) if closing else depth + 1
        deepest = max(deepest, depth)
    return deepest


def _inside_heading(node: object) -> bool:
    parent = getattr(node, "parent", None)
    while parent is not None:
        if parent.tag in _HEADING_TAGS:
            return True
        parent = parent.parent
    return False


def parse_pdf(data: bytes, stem: str) -> ParsedDoc:
    """One section per page; encrypted PDFs are opened with the empty password or refused."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except Exception:
                ok = 0
            if not ok:
                raise DataError(
                    f"{stem}.pdf: the PDF is encrypted with a password", "save an unencrypted copy and add that"
                )
        meta_title = ""
        try:
            meta_title = (reader.metadata.title or "") if reader.metadata else ""
        except Exception:  # broken metadata must not lose the text
            meta_title = ""
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            sections.append(Section(text.strip(), (), number))
    except DataError:
        raise
    except LimitReachedError as exc:
        raise DataError(
            f"{stem}.pdf: a stream in the PDF expands beyond pypdf's safety limit ({exc})",
            "a damaged or hostile PDF; print it to a new PDF and add that",
        ) from None
    except (PyPdfError, ValueError, KeyError, TypeError, OSError, RecursionError) as exc:
        raise DataError(
            f"{stem}.pdf: cannot read the PDF ({exc})", "the file may be truncated or damaged; export it again"
        ) from None
    return ParsedDoc(title=meta_title.strip() or stem, kind="pdf", sections=sections)


def parse_docx(data: bytes, stem: str) -> ParsedDoc:
    """Paragraph styles 'Heading N' / 'Title' set the heading path; tables are read row by row."""
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError
    from lxml.etree import LxmlError

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
        if unzipped > DOCX_MAX_UNZIPPED:
            raise DataError(
                f"{stem}.docx: expands to {unzipped / 1e6:,.0f} MB (over {DOCX_MAX_UNZIPPED // 2**20} MB): a zip bomb",
                "a hostile or broken file; open it in Word and save a new copy",
            )
        document = docx.Document(io.BytesIO(data))
    except DataError:
        raise
    except (zipfile.BadZipFile, PackageNotFoundError, LxmlError, KeyError, ValueError) as exc:
        raise DataError(
            f"{stem}.docx: cannot read the Word file ({type(exc).__name__}: {str(exc)[:200]})",
            "the file may be damaged; save it again from Word",
        ) from None
    title = (document.core_properties.title or "").strip()
    stack: list[tuple[int, str]] = []
    sections: list[Section] = []
    buf: list[str] = []

    def flush() -> None:
        body = "\n".join(buf).strip()
        if body:
            sections.append(Section(body, tuple(h for _, h in stack)))
        buf.clear()

    for para in document.paragraphs:
        style = (para.style.name if para.style is not None else "") or ""
        text = para.text.strip()
        level = _docx_heading_level(style)
        if level and text:
            flush()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, text))
            title = title or (text if level <= 1 else "")
        elif text:
            buf.append(text)
    flush()
    for table in document.tables:
        rows = [" | ".join(cell.text.strip() for cell in row.cells) for row in table.rows]
        body = "\n".join(r for r in rows if r.strip(" |"))
        if body:
            sections.append(Section(body, ()))
    return ParsedDoc(title=title or stem, kind="docx", sections=sections)


def _docx_heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.match(r"(?:Heading|标题)\s*(\d)", style)
    return int(m.group(1)) if m else 0
