"""Render a :class:`~zoo.report.document.Document` as GitHub-flavoured Markdown."""

from __future__ import annotations

import os
from pathlib import Path

from zoo.report.document import Block, Bullets, Code, Document, Figure, Heading, Paragraph, Table


def _cell(text: str) -> str:
    # A bare "|" would end the cell early; newlines would end the row.
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(table: Table) -> str:
    """A pipe table; right-aligned columns get ``---:`` so numbers line up in renderers."""
    align = table.align or ("l",) * len(table.headers)
    lines = ["| " + " | ".join(_cell(h) for h in table.headers) + " |",
             "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def _link(path: Path, base: Path) -> str:
    # Links are relative to the report's folder and use "/" so the folder can be moved or zipped.
    rel = os.path.relpath(Path(path).resolve(), base.resolve())
    return Path(rel).as_posix().replace(" ", "%20")


def render_block(block: Block, base: Path) -> str:
    """One block as Markdown; image links relative to ``base`` (the report's folder)."""
    if isinstance(block, Heading):
        return "#" * block.level + " " + block.text
    if isinstance(block, Paragraph):
        return block.text
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items)
    if isinstance(block, Table):
        return render_table(block)
    if isinstance(block, Figure):
        alt = block.caption.replace("[", "(").replace("]", ")")
        return f"![{alt}]({_link(block.path, base)})\n\n*{block.caption}*"
    if isinstance(block, Code):
        return "```\n" + block.text + "\n```"
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(doc: Document, base: Path) -> str:
    """The whole document; ``base`` is the folder ``report.md`` is written to."""
    parts = [f"# {doc.title}"] + [render_block(b, base) for b in doc.blocks]
    return "\n\n".join(parts) + "\n"


def write_markdown(doc: Document, path: Path) -> Path:
    """Write ``doc`` to ``path`` (``report.md``); every figure must already exist beside it."""
    missing = [str(f.path) for f in doc.figures() if not Path(f.path).is_file()]
    if missing:
        raise FileNotFoundError(f"report figures missing: {', '.join(missing)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(doc, path.parent))
    return path
