"""Render a :class:`~zoo.report.document.Document` as one self-contained HTML page.

Images are embedded as base64 ``data:`` URIs so the page can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from zoo.report.document import Block, Bullets, Code, Document, Figure, Heading, Paragraph, Table

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; }
td.r { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; color: #555; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
code { background: #f6f6f6; padding: 0 0.2em; }
"""


def inline(text: str) -> str:
    """Escape ``text`` and turn the two inline marks (``**bold**``, `` `code` ``) into tags."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def data_uri(path: Path) -> str:
    """The PNG at ``path`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render_table(table: Table) -> str:
    align = table.align or ("l",) * len(table.headers)
    head = "".join(f"<th>{inline(h)}</th>" for h in table.headers)
    body = "\n".join(
        "<tr>" + "".join(f'<td class="{a}">{inline(c)}</td>' for c, a in zip(row, align)) + "</tr>"
        for row in table.rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def render_block(block: Block) -> str:
    """One block as HTML; figures are read from disk and embedded."""
    if isinstance(block, Heading):
        return f"<h{block.level}>{inline(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return render_table(block)
    if isinstance(block, Figure):
        alt = html.escape(block.caption, quote=True)
        return (f'<figure><img alt="{alt}" src="{data_uri(block.path)}">'
                f"<figcaption>{inline(block.caption)}</figcaption></figure>")
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(doc: Document) -> str:
    """The whole page as a string (no external files referenced)."""
    body = "\n".join(render_block(b) for b in doc.blocks)
    title = html.escape(doc.title)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n</body>\n</html>\n")


def write_html(doc: Document, path: Path) -> Path:
    """Write ``doc`` to ``path`` (``report.html``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(doc))
    return path
