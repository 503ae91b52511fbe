"""What each model of a finished `zoo compare` trained and scored, and whether two comparisons
gave the same numbers (a loaded machine must change wall time, never results).

    .venv/bin/python benchmarks/compare_budget_table.py runs/compare [other/runs/compare]

Per model: images seen / planned, optimizer steps, why training stopped, training seconds, and
the test mask AP, AP50 and box AP from ``models/<name>/metrics.json``. With two folders it also
compares every metric of every model to the last digit and prints which differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def runs_of(folder: Path) -> dict[str, dict[str, Any]]:
    """Model name -> {"summary": seed 0's summary.json, "metrics": its test metrics.json}."""
    out = {}
    for model in sorted(p.name for p in (folder / "models").iterdir() if p.is_dir()):
        out[model] = {"summary": json.loads((folder / "runs" / model / "seed0" / "summary.json").read_text()),
                      "metrics": json.loads((folder / "models" / model / "metrics.json").read_text())}
    return out


def table(folder: Path) -> str:
    rows = ["| model | images seen / planned | steps | stopped | train time (s) | test mask AP | AP50 | box AP |",
            "|---|---:|---:|---|---:|---:|---:|---:|"]
    for model, run in runs_of(folder).items():
        s, m = run["summary"], run["metrics"]
        planned = s["planned_steps"] * (s["images_seen"] // max(1, s["global_step"]))
        rows.append(f"| {model} | {s['images_seen']} / {planned} | {s['global_step']} | {s['stopped_reason']} | "
                    f"{s['train_time_s']:.0f} | {m['segm']['AP']:.4f} | {m['segm']['AP50']:.4f} | "
                    f"{m['bbox']['AP']:.4f} |")
    return "\n".join(rows)


def differences(a: Path, b: Path) -> list[str]:
    """Every (model, section, metric) whose value differs between the two comparisons."""
    ra, rb = runs_of(a), runs_of(b)
    out = [f"{m}: only in one" for m in sorted(set(ra) ^ set(rb))]
    for model in sorted(set(ra) & set(rb)):
        for section in ("segm", "bbox"):
            x, y = ra[model]["metrics"][section], rb[model]["metrics"][section]
            out += [f"{model} {section} {k}: {x[k]!r} vs {y.get(k)!r}" for k in x if x[k] != y.get(k)]
        if ra[model]["summary"]["images_seen"] != rb[model]["summary"]["images_seen"]:
            out.append(f"{model} images_seen differ")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    for folder in args.folders:
        print(f"{folder}\n\n{table(folder)}\n")
    if len(args.folders) == 2:
        diff = differences(*args.folders)
        print("identical: every metric of every model" if not diff else "differ:\n" + "\n".join(diff))


if __name__ == "__main__":
    main()
