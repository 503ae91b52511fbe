"""The report's attribute section: Fashionpedia's AP with mask IoU and attribute F1 beside mask AP,
and F1 per attribute, for every model, from the ``"attributes"`` entry of each ``metrics.json``
(:func:`zoo.metrics.attributes.attribute_metrics`). A model that predicts no attributes shows
``-``; without attributes in the ground truth the section is left out."""

from __future__ import annotations

from typing import Any, Sequence

from zoo.report.collect import ModelResult
from zoo.report.document import Heading, Paragraph, Table

NOT_PREDICTED = "-"
MAX_ATTRIBUTE_ROWS = 40  # the most frequent attributes shown; metrics.json holds them all
SUMMARY_KEYS = (("AP (IoU+F1)", "iou_f1", "AP"), ("AP50 (IoU .50, F1 .50)", "iou_f1", "AP_IOU50_F150"),
                ("AP75 (IoU .75, F1 .75)", "iou_f1", "AP_IOU75_F175"), ("AP (IoU only)", "iou", "AP"),
                ("AP (F1 only)", "f1", "AP"))


def _fmt(value: Any) -> str:
    return "n/a" if value is None or float(value) < 0 else f"{float(value):.3f}"


def scored_attributes(r: ModelResult) -> dict[str, Any] | None:
    """The model's attribute scores, or ``None`` when it predicts no attributes."""
    entry = r.metrics.get("attributes")
    return entry if entry and entry.get("scored") else None


def data_has_attributes(results: Sequence[ModelResult]) -> bool:
    """Whether the scored ground truth carries attributes (any model's metrics has the entry)."""
    return any(r.metrics.get("attributes") is not None for r in results)


def attribute_verdict(results: Sequence[ModelResult]) -> list[str]:
    """The verdict's line on AP (IoU+F1) when the data has attributes (none otherwise)."""
    if not data_has_attributes(results):
        return []
    scored = [(r, scored_attributes(r)["iou_f1"]["AP"]) for r in results if scored_attributes(r)]
    if not scored:
        return ["No model predicts attributes, so none has an AP (IoU+F1), Fashionpedia's measure."]
    top = max(v for _, v in scored)
    best = [r.label for r, v in scored if _fmt(v) == _fmt(top)]
    who = f"a tie between {', '.join(f'**{n}**' for n in best)}" if len(best) > 1 else f"**{best[0]}**"
    line = f"Most accurate by AP (IoU+F1), mask and attributes together as Fashionpedia scores them: {who} " \
           f"(AP (IoU+F1) {_fmt(top)})."
    missing = [r.label for r in results if not scored_attributes(r)]
    if missing:
        line += f" Not scored (no attribute predictions): {', '.join(missing)}."
    return [line]


def attribute_summary_table(results: Sequence[ModelResult]) -> Table:
    """Per model: mask AP, then the attribute-aware APs and the mean attribute F1 (``-``: the model
    predicts no attributes)."""
    rows = []
    for r in results:
        a = scored_attributes(r)
        cells = [_fmt(a[v][k]) if a else NOT_PREDICTED for _, v, k in SUMMARY_KEYS]
        rows.append((r.label, _fmt(r.metrics["segm"]["AP"]), *cells, _fmt(a["mean_f1"]) if a else NOT_PREDICTED))
    headers = ("model", "mask AP", *(h for h, _, _ in SUMMARY_KEYS), "mean attribute F1")
    return Table(headers, tuple(rows), ("l",) + ("r",) * (len(headers) - 1))


def per_attribute_table(results: Sequence[ModelResult]) -> Table | None:
    """F1 per attribute (rows: the attributes ground truths carry, most frequent first), one column
    per model; ``None`` when no model predicts attributes."""
    scored = [scored_attributes(r) for r in results]
    first = next((a for a in scored if a), None)
    if first is None:
        return None
    names = sorted((n for n, row in first["per_attribute"].items() if row["n_gt"] > 0),
                   key=lambda n: (-first["per_attribute"][n]["n_gt"], n))[:MAX_ATTRIBUTE_ROWS]
    rows = tuple((n, str(first["per_attribute"][n]["n_gt"]),
                  *(_fmt(a["per_attribute"][n]["f1"]) if a and n in a["per_attribute"] else NOT_PREDICTED
                    for a in scored)) for n in names)
    return Table(("attribute", "instances", *(r.label for r in results)), rows, ("l", "r") + ("r",) * len(results))


def attribute_blocks(results: Sequence[ModelResult]) -> list[Any]:
    """The section (heading, explanation, tables); empty when the ground truth has no attributes."""
    if not data_has_attributes(results):
        return []
    first = next((scored_attributes(r) for r in results if scored_attributes(r)), None)
    blocks: list[Any] = [Heading("Attributes"), Paragraph(
        "AP (IoU+F1) is Fashionpedia's measure: a detection is a true positive only when its mask IoU "
        "and the F1 of its attribute set against the ground truth's both reach their thresholds (IoU "
        ".50:.95 by F1 .50:.95, averaged), computed as the official Fashionpedia evaluator does. "
        + (f"F1 applies to the categories with attributes ({'; '.join(first['categories_with_f1'])}); the others "
           "are scored on mask IoU alone. " if first else "")
        + f"`{NOT_PREDICTED}`: the model predicts no attributes."), attribute_summary_table(results)]
    table = per_attribute_table(results)
    if table is not None:
        blocks += [Paragraph(f"F1 per attribute over the ground truths matched at mask IoU >= 0.5 (n/a: neither "
                             f"carried nor predicted there); the {MAX_ATTRIBUTE_ROWS} most frequent attributes, "
                             "`instances` = ground truths carrying them."), table]
    return blocks
