"""What the comparison report says: its sections, tables and figures, built from the results.

Numbers are formatted by the functions here only (AP to 3 decimals, milliseconds to 1), so a
reader (or a test) can match every cell to the metrics files it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from zoo.report.attributes import attribute_blocks, attribute_verdict
from zoo.report.bootstrap import BootstrapResult, Interval
from zoo.report.collect import DERIVED_MARK, ModelResult, resolution_of, resolution_table
from zoo.report.document import Bullets, Code, Document, Figure, Heading, Paragraph, Table
from zoo.report.pareto import pareto_front
from zoo.report.seeds import SEED_Z, holds_against_seeds, seed_means_line

SUMMARY_HEADERS = ("model", "backbone", "input (px)", "params (M)", "train time (s)", "mask AP", "AP50",
                   "AP75", "APs", "APm", "APl", "box AP", "mIoU", "latency median (ms)", "latency p90 (ms)",
                   "images/s", "peak mem (MB)", "device")
SEGM_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
LATENCY_HEADERS = ("model", "median (ms)", "median interval", "p90 (ms)", "p90 interval", "pre (ms)",
                   "network (ms)", "post (ms)", "images/s", "peak mem (MB)")
DERIVED_NOTE = (f"{DERIVED_MARK} instances derived from a semantic map: connected components of the per-category "
                "probability map, scored by mean probability times its margin over the threshold; the model "
                "never predicts instances, so touching garments of one category are one instance.")
NOT_LEARNED_AP50 = 0.01  # below this mask AP50 a model is reported as not having learned


def fmt_ap(value: Any) -> str:
    """AP-like fraction to 3 decimals; COCO's -1 (undefined) and missing values as ``n/a``."""
    if value is None or float(value) < 0:
        return "n/a"
    return f"{float(value):.3f}"


def fmt_num(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}"


def fmt_interval(iv: Interval, digits: int = 3) -> str:
    """``[low, high]``; a bound that is not 0 never prints as 0 (more digits until it shows)."""
    return f"[{_bound(iv.low, digits)}, {_bound(iv.high, digits)}]"


def _bound(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    while value != 0 and float(text) == 0 and digits < 8:
        digits += 1
        text = f"{value:.{digits}f}"
    return text


@dataclass
class Context:
    """What was compared: shown in the report's last section."""

    dataset: str
    n_images: int
    n_train: int
    n_val: int
    seed: int
    split: str
    device: str
    command: str
    preset: str
    versions: dict[str, str]
    notes: list[str] = field(default_factory=list)
    n_resamples: int = 0
    gallery_score: float = 0.5  # the gallery draws predictions scoring at least this
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase of the comparison
    scored: str = "validation"  # which images were scored: "test" (held out), "validation" or "--data"
    seeds: dict[str, Any] | None = None  # seeds.json of a comparison with compare.seeds > 1


@dataclass
class Figures:
    """Paths of the report's charts (``None`` = not drawn)."""

    ap_latency: Path | None = None
    per_category: Path | None = None
    pr_curves: Path | None = None
    differences: Path | None = None
    loss: Path | None = None
    gallery: Path | None = None


def summary_row(r: ModelResult) -> tuple[str, ...]:
    """One row of the summary table (see :data:`SUMMARY_HEADERS`)."""
    segm, box, bench = r.metrics["segm"], r.metrics.get("bbox", {}), r.bench
    size = str(r.input_size) + (f" (net {r.network_size})" if r.network_size else "")
    params = bench.get("params")
    return (r.label, r.backbone, size, fmt_num(params / 1e6 if params else None, 2), fmt_num(r.train_time_s),
            *(fmt_ap(segm.get(k)) for k in SEGM_KEYS), fmt_ap(box.get("AP")),
            fmt_ap(r.metrics.get("semantic", {}).get("mIoU")), fmt_num(bench.get("ms_median")),
            fmt_num(bench.get("ms_p90")), fmt_num(bench.get("images_per_s")),
            fmt_num(bench.get("peak_mem_mb"), 0), str(bench.get("device", "-")))


def verdict(results: Sequence[ModelResult], boot: BootstrapResult | None,
            seeds: dict[str, Any] | None = None) -> list[str]:
    """The report's first lines: who is most accurate by mask AP and, separately, by mIoU, who is
    fastest, which gaps are real. Models whose instances are derived from a semantic map carry
    the marker, and the mask AP line says so when such a model leads. With ``seeds`` (several
    training seeds per model) a gap is real only when it also holds against their spread
    (:mod:`zoo.report.seeds`)."""
    ap = [r.metrics["segm"]["AP"] for r in results]
    ms = [r.bench["ms_median"] for r in results]
    best = max(range(len(results)), key=lambda i: ap[i])
    fast = min(range(len(results)), key=lambda i: ms[i])
    tied = [r.label for r, v in zip(results, ap) if fmt_ap(v) == fmt_ap(ap[best])]
    if len(tied) > 1:
        top = f"Most accurate by mask AP: a tie between {', '.join(f'**{n}**' for n in tied)} (mask AP {fmt_ap(ap[best])})."
    else:
        top = (f"Most accurate by mask AP: **{results[best].label}** (mask AP {fmt_ap(ap[best])}, "
               f"AP50 {fmt_ap(results[best].metrics['segm']['AP50'])}).")
        if not results[best].instance_native:
            top += " Its instances are derived from a semantic map, not predicted as instances."
        if boot is not None:
            # bootstrap_ap stores every ordered pair, so (best, other) is always there.
            lead = results[best].name
            gaps = {r.label: boot.differences.get((lead, r.name)) for r in results if r.name != lead}
            level = [name for name, iv in gaps.items() if iv is not None and not iv.excludes_zero]
            if level:
                top += (f" Its lead over {', '.join(f'**{n}**' for n in level)} is not real: the "
                        f"{int(round(boot.confidence * 100))}% bootstrap interval of the difference includes 0.")
    lines = [top, *miou_line(results), *attribute_verdict(results),
             f"Fastest: **{results[fast].label}** ({fmt_num(ms[fast])} ms median per image, "
             f"{fmt_num(results[fast].bench['images_per_s'])} images/s).",
             "On the accuracy/latency Pareto front: "
             + ", ".join(f"**{results[i].label}**" for i in pareto_front(ms, ap)) + "."]
    idle = [r for r in results if r.metrics["segm"]["AP50"] < NOT_LEARNED_AP50]
    if idle:
        lines.append(f"Did not learn (mask AP50 below {NOT_LEARNED_AP50}): "
                     + ", ".join(f"**{r.label}** ({fmt_ap(r.metrics['segm']['AP50'])})" for r in idle)
                     + ". Such numbers describe the training budget, not the architecture.")
    if boot is not None and len(results) > 1:
        label = {r.name: r.label for r in results}
        real = [(a, b, iv) for (a, b), iv in boot.differences.items() if iv.excludes_zero and iv.estimate > 0]
        if seeds is not None:
            lines.append(seed_means_line(seeds, label))
            within = [(a, b) for a, b, _ in real if not holds_against_seeds(seeds, a, b)]
            real = [(a, b, iv) for a, b, iv in real if holds_against_seeds(seeds, a, b)]
            if within:
                lines.append("Within training-seed variance (the bootstrap interval excludes 0, but the difference "
                             f"of seed means is under {SEED_Z:g} standard errors): "
                             + "; ".join(f"{label.get(a, a)} vs {label.get(b, b)}" for a, b in within) + ".")
        against = "95% bootstrap interval excludes 0" + (" and it holds across training seeds" if seeds else "")
        if real:
            lines.append(f"Real differences in mask AP ({against}): "
                         + "; ".join(f"{label.get(a, a)} > {label.get(b, b)} by {iv.estimate:.3f} {fmt_interval(iv)}"
                                     for a, b, iv in real) + ".")
        else:
            lines.append(f"No difference in mask AP is real ({against} for none).")
    if any(not r.instance_native for r in results):
        lines.append(DERIVED_NOTE)
    return lines


def miou_line(results: Sequence[ModelResult]) -> list[str]:
    """The verdict's mIoU line (the semantic maps built from each model's instances); none when
    no model has an mIoU."""
    scored = [(r, r.metrics.get("semantic", {}).get("mIoU")) for r in results]
    scored = [(r, float(v)) for r, v in scored if v is not None and float(v) >= 0]
    if not scored:
        return []
    top = max(v for _, v in scored)
    best = [r.label for r, v in scored if fmt_ap(v) == fmt_ap(top)]
    who = (f"a tie between {', '.join(f'**{n}**' for n in best)}" if len(best) > 1 else f"**{best[0]}**")
    return [f"Most accurate by mIoU (semantic maps): {who} (mIoU {fmt_ap(top)})."]


def derived_note(results: Sequence[ModelResult]) -> list[Paragraph]:
    """The footnote under a table that shows a model marked as derived (none otherwise)."""
    return [Paragraph(DERIVED_NOTE)] if any(not r.instance_native for r in results) else []


def latency_table(results: Sequence[ModelResult]) -> Table:
    """Per model: median and p90 ms per image with their intervals (``n/a`` when the protocol
    recorded none), the three phases (medians), images/s and peak memory, from ``bench.json``."""
    def interval(values: Any) -> str:
        return "n/a" if not values else f"[{fmt_num(values[0])}, {fmt_num(values[1])}]"

    from zoo.runtimes import runtimes_of

    runtimes = runtimes_of([r.bench for r in results])  # compare.runtimes: one more column each
    headers = LATENCY_HEADERS + tuple(f"median on {rt} (ms)" for rt in runtimes)
    rows = tuple((r.label, fmt_num(b.get("ms_median")), interval(b.get("ms_median_ci")), fmt_num(b.get("ms_p90")),
                  interval(b.get("ms_p90_ci")), fmt_num(b.get("preprocess_ms"), 2), fmt_num(b.get("model_ms")),
                  fmt_num(b.get("postprocess_ms")), fmt_num(b.get("images_per_s")), fmt_num(b.get("peak_mem_mb"), 0),
                  *(fmt_num(b.get("runtimes", {}).get(rt, {}).get("ms_median")) for rt in runtimes))
                 for r, b in ((r, r.bench) for r in results))
    return Table(headers, rows, ("l",) + ("r",) * (len(headers) - 1))


def latency_text(results: Sequence[ModelResult], scored: str = "validation") -> Paragraph:
    """How the latency table was measured, read from the first model's ``bench.json``;
    ``scored``: which images the photos were drawn from (:attr:`Context.scored`)."""
    b = results[0].bench
    how = (f"Timed interleaved: round-robin blocks of {b.get('block')} iteration(s), the first model rotating each "
           f"round, so load drift falls on every model alike; {b.get('iters')} timed iterations per model on the same "
           f"{b.get('photos')} {scored} photos resized to {b.get('size')} px (longer side)."
           if b.get("protocol") == "interleaved" else
           f"Timed one model after another, {b.get('iters')} iterations each, on synthetic {b.get('size')} px photos.")
    pct = int(round(float(b.get("confidence", 0.95)) * 100))
    return Paragraph(how + " Phases, the same for every model: pre = photo to float tensor on the device; network = "
                     "`run_model` (resizing, normalising, the network up to its per-candidate outputs; Mask R-CNN's "
                     "proposal NMS belongs to its two-stage network); post = `postprocess` (score filtering, NMS, "
                     "per-detection mask assembly, i.e. Mask R-CNN's mask head on the kept boxes, YOLACT's "
                     "prototype combination, a semantic map's connected components, and pasting at the photo's "
                     f"size). Milliseconds per image; intervals are {pct}% order-statistic intervals over the "
                     f"iterations; phase columns are medians, so they need not add up to the median total. "
                     f"Device: {b.get('device_name', b.get('device'))}, {b.get('threads')} threads."
                     + (" Peak memory is the process's peak resident memory with every model loaded, so it is "
                        "the same for all of them." if b.get("peak_mem_kind") == "rss_peak_all_models_loaded" else ""))


def bootstrap_tables(results: Sequence[ModelResult], boot: BootstrapResult, scored: str = "validation") -> list[Any]:
    """Blocks for the bootstrap section: per-model intervals and pairwise differences over the
    ``scored`` images."""
    pct = int(round(boot.confidence * 100))
    per_model = Table(("model", "mask AP", f"{pct}% interval"),
                      tuple((r.label, fmt_ap(boot.models[r.name].estimate), fmt_interval(boot.models[r.name]))
                            for r in results), ("l", "r", "r"))
    rows = []
    for i, ra in enumerate(results):
        for rb in results[i + 1:]:
            iv = boot.differences[(ra.name, rb.name)]
            a, b = ra.label, rb.label
            if iv.excludes_zero:
                word = f"yes: {a if iv.estimate > 0 else b} is better"
            else:
                word = "no (interval includes 0)"
            rows.append((f"{a} - {b}", f"{iv.estimate:+.3f}", fmt_interval(iv), word))
    pairs = Table(("difference", "mask AP difference", f"{pct}% interval", "real?"), tuple(rows), ("l", "r", "r", "l"))
    text = Paragraph(f"The {scored} images were resampled with replacement {boot.n_resamples} times "
                     f"({boot.n_images} images each); every resample was scored for every model with the same "
                     "evaluator, so the differences are paired. A difference is real when its interval excludes 0.")
    return [text, per_model, pairs]


def per_category_table(results: Sequence[ModelResult]) -> Table:
    """Categories with ground truth in the validation images, mask AP of each model side by side."""
    first = results[0].metrics["per_category"]
    cats = sorted((c for c, row in first.items() if row.get("n_gt", 0) > 0), key=lambda c: -first[c]["n_gt"])
    rows = tuple((c, str(first[c]["n_gt"]), *(fmt_ap(r.metrics["per_category"].get(c, {}).get("AP"))
                                               for r in results)) for c in cats)
    return Table(("category", "instances", *(r.label for r in results)), rows, ("l", "r") + ("r",) * len(results))


def training_table(results: Sequence[ModelResult]) -> Table:
    rows = []
    for r in results:
        s = r.summary
        rows.append((r.label, str(s.get("epochs", "-")), str(s.get("global_step", "-")), fmt_num(s.get("final_loss"), 3),
                     str(s.get("stopped_reason", "-")), fmt_num(r.train_time_s)))
    return Table(("model", "epochs", "steps", "final train loss", "stopped", "train time (s)"), tuple(rows),
                 ("l", "r", "r", "r", "l", "r"))


def context_blocks(ctx: Context, results: Sequence[ModelResult]) -> list[Any]:
    items = [f"Dataset: {ctx.dataset}",
             f"Split: {ctx.split}, seed {ctx.seed}: {ctx.n_train} training images; every model scored on "
             f"the same {ctx.n_val} {ctx.scored} images",
             f"Preset: {ctx.preset}", f"Device: {ctx.device}",
             *(f"Run {r.name}: `{r.run_dir}`" for r in results), *ctx.notes]
    if ctx.timings:
        items.append("Time spent: " + ", ".join(f"{k} {v:.0f} s" for k, v in ctx.timings.items()))
    versions = Table(("package", "version"), tuple(sorted(ctx.versions.items())), ("l", "l"))
    return [Bullets(tuple(items)), versions, Paragraph("Command line:"), Code(ctx.command)]


def build_document(results: Sequence[ModelResult], boot: BootstrapResult | None, figs: Figures,
                   ctx: Context, title: str = "Model comparison") -> Document:
    """The full report: verdict, tables, charts, gallery and what was compared."""
    doc = Document(title)
    doc.add(Bullets(tuple(verdict(results, boot, ctx.seeds))), Heading("Summary"),
            Table(SUMMARY_HEADERS, tuple(summary_row(r) for r in results), ("l", "l", "l") + ("r",) * 14 + ("l",)),
            *derived_note(results),
            Paragraph(f"Mask and box AP are COCO AP@[.50:.95] on the {ctx.scored} images, scored "
                      f"{resolution_of(results[0].metrics)}; APs/APm/APl by object "
                      "area; mIoU of the semantic map built from each model's instances. Latency: one image at "
                      "the input size, median and 90th percentile over the timed iterations."))
    at_input = resolution_table(list(results))
    if at_input is not None:
        doc.add(Paragraph("The same predictions scored at the input size instead of each photo's own size "
                          "(what per-epoch validation does): the difference is what that would over- or "
                          "understate."), at_input, *derived_note(results))
    doc.add(*attribute_blocks(results))
    from zoo.runtimes import runtimes_note

    doc.add(Heading("Latency"), latency_table(results), *derived_note(results), latency_text(results, ctx.scored),
            *(Paragraph(text) for text in runtimes_note([r.bench for r in results])))
    if figs.ap_latency:
        doc.add(Heading("Accuracy vs latency"), Figure(figs.ap_latency, "Mask AP against median latency; "
                                                       "error bars are 95% bootstrap intervals"))
    if boot is not None:
        doc.add(Heading("Are the differences real?"), *bootstrap_tables(results, boot, ctx.scored), *derived_note(results))
        if figs.differences:
            doc.add(Figure(figs.differences, "Pairwise mask AP differences with 95% bootstrap intervals"))
    doc.add(Heading("Per-category mask AP"), per_category_table(results), *derived_note(results))
    if figs.per_category:
        doc.add(Figure(figs.per_category, "Per-category mask AP, models side by side"))
    doc.add(Heading("Precision-recall curves"))
    if figs.pr_curves:
        doc.add(Figure(figs.pr_curves, "Mask precision-recall over all categories, every model"))
    for r in results:
        doc.add(Figure(r.eval_dir / "pr_per_category.png", f"{r.name}: mask precision-recall per category"))
    doc.add(Heading("Confusion matrices"),
            Paragraph("Instances matched to ground truth by mask IoU >= 0.5 (predictions above the score threshold)."))
    for r in results:
        doc.add(Figure(r.eval_dir / "confusion.png", f"{r.name}: confusion matrix"))
    doc.add(Heading("Training"), training_table(results), *derived_note(results))
    if figs.loss:
        doc.add(Figure(figs.loss, "Training loss per step and validation loss per epoch (metrics.csv of each run)"))
    if figs.gallery:
        doc.add(Heading("Gallery"), Figure(figs.gallery, f"The same {ctx.scored} images for every model: "
                                           "ground truth in green, predictions in red (score >= "
                                           f"{ctx.gallery_score:g})"))
    doc.add(Heading("What was compared"), *context_blocks(ctx, results))
    return doc
