"""Report rendering: Markdown tables and links, the self-contained HTML page, the Pareto front."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.report.document import Bullets, Code, Document, Figure, Heading, Paragraph, Table
from zoo.report.html import render_html
from zoo.report.markdown import render_markdown, write_markdown
from zoo.report.pareto import pareto_front


def _png(path: Path, color: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 12, 3), color, dtype=np.uint8)).save(path)
    return path


def _doc(tmp_path: Path) -> Document:
    doc = Document("Model comparison")
    doc.add(Heading("Summary"),
            Paragraph("mask AP of **maskrcnn** is higher; see `report.md`."),
            Table(("model", "mask AP"), (("maskrcnn", "0.412"), ("a|b", "0.100")), ("l", "r")),
            Bullets(("one", "two")),
            Figure(_png(tmp_path / "out" / "chart.png", (255, 0, 0)), "AP vs latency"),
            Figure(_png(tmp_path / "out" / "eval" / "unet" / "pr.png", (0, 255, 0)), "PR curve [unet]"),
            Code("zoo compare --report md"))
    return doc


def test_markdown_tables_links_and_escaping(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    text = write_markdown(doc, tmp_path / "out" / "report.md").read_text()
    assert text.startswith("# Model comparison\n")
    assert "| model | mask AP |\n|:---|---:|\n| maskrcnn | 0.412 |" in text
    assert "| a\\|b | 0.100 |" in text  # the pipe inside a cell is escaped
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links == ["chart.png", "eval/unet/pr.png"]  # relative to the report's folder
    for link in links:
        assert (tmp_path / "out" / link).is_file()
    assert "```\nzoo compare --report md\n```" in text


def test_markdown_refuses_missing_figures(tmp_path: Path) -> None:
    doc = Document("x").add(Figure(tmp_path / "nope.png", "missing"))
    with pytest.raises(FileNotFoundError, match="nope.png"):
        write_markdown(doc, tmp_path / "report.md")


def test_html_is_self_contained(tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    page = render_html(doc)
    assert page.count("<img") == 2
    srcs = re.findall(r'src="([^"]+)"', page)
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    # The embedded bytes are the PNG on disk, byte for byte.
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == (tmp_path / "out" / "chart.png").read_bytes()
    assert "<strong>maskrcnn</strong>" in page and "<code>report.md</code>" in page
    assert '<td class="r">0.412</td>' in page and "a|b" in page
    assert "<h2>Summary</h2>" in page
    # The same content as the Markdown: every table cell appears in both.
    md = render_markdown(doc, tmp_path / "out")
    for cell in ("maskrcnn", "0.412", "0.100", "AP vs latency"):
        assert cell in md and cell in page


def test_table_rejects_ragged_rows() -> None:
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        Table(("a", "b"), (("1",),))


@pytest.mark.parametrize(
    ("latency", "ap", "front"),
    [
        ([10, 20, 30], [0.1, 0.3, 0.2], [0, 1]),  # slowest is beaten by the middle one
        ([30, 20, 10], [0.3, 0.2, 0.1], [2, 1, 0]),  # a clean trade-off: all on the front
        ([10, 10, 40], [0.2, 0.4, 0.1], [1]),  # tie on latency: the more accurate dominates
        ([5, 50], [0.5, 0.6], [0, 1]),
        ([5, float("nan"), 9], [0.1, 0.9, 0.2], [0, 2]),  # NaN never on the front
    ],
)
def test_pareto_front(latency: list[float], ap: list[float], front: list[int]) -> None:
    assert pareto_front(latency, ap) == front


def test_pareto_front_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        lat, acc = rng.uniform(1, 100, 7), rng.uniform(0, 1, 7)
        dominated = {i for i in range(7) for j in range(7)
                     if j != i and lat[j] <= lat[i] and acc[j] >= acc[i] and (lat[j] < lat[i] or acc[j] > acc[i])}
        assert set(pareto_front(lat, acc)) == set(range(7)) - dominated
