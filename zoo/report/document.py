"""A report as a flat list of blocks, rendered to Markdown or to one HTML page.

Both renderers walk the same blocks, so ``report.md`` and ``report.html`` always carry the same
content; only the way images travel differs (a relative link beside ``report.md``, a base64
``data:`` URI inside the HTML page).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Union


@dataclass(frozen=True)
class Heading:
    """A section title; ``level`` 1 is the page title."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Running text. ``**bold**`` and `` `code` `` are the only inline marks used."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """An unordered list of short lines."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    """A table of already-formatted cells; ``align`` is ``"l"`` or ``"r"`` per column."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.headers):
                raise ValueError(f"table row {i} has {len(row)} cells, expected {len(self.headers)}")


@dataclass(frozen=True)
class Figure:
    """An image file (PNG) with a caption; ``path`` is absolute or relative to the working dir."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    """A verbatim block (the command line that produced the report)."""

    text: str


Block = Union[Heading, Paragraph, Bullets, Table, Figure, Code]


@dataclass
class Document:
    """An ordered list of blocks with a title."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> "Document":
        self.blocks.extend(blocks)
        return self

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]
