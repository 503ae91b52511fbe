"""Every family's attribute head really learns: trained through the harness on a few synthetic
images (whose patterns, lengths and cuts are drawn so they can be seen), the mean per-attribute
F1 of its predictions on the ground-truth instances it finds (mask IoU >= 0.5, same category)
beats the strongest head that predicts, for each category, its most frequent attributes.

The baseline is computed here, on the same matched instances: for every k, predict the k
attributes most frequent in the training images' instances of the category; the best k is the
baseline. Such a head gets the attributes a category always has (a-line skirts, single-breasted
shirts) right, and the pattern of only the commonest fabric, so beating it means the model reads
the image.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from zoo.adapter import available_adapters, get_adapter
from zoo.attributes import attribute_f1, best_threshold, matched_attributes
from zoo.train.api import load_train_config, train
from zoo.train.run import load_run
from zoo.train.validate import choose_attribute_threshold
from zoo.transforms import to_model_input

IMAGES, SIZE = 10, 128  # one figure per image; val_fraction 0.2 leaves 8 training images
# Per family: the CPU preset with the schedule shrunk to fit about 40 s on 2 cores.
RUNS = {
    "maskrcnn": {"steps_per_epoch": 35, "stages.0.epochs": 2},
    "yolact": {"steps_per_epoch": 60, "stages.0.epochs": 2},
    "unet": {"steps_per_epoch": 60, "stages.0.epochs": 2},
}
MARGIN = 0.05  # the model's F1 must beat the baseline's by this much
MIN_MATCHED = 1 / 3  # and be measured on at least this share of the instances that carry attributes


def baseline_f1(train_targets: list[dict], labels: torch.Tensor, truth: torch.Tensor, space) -> float:
    """Best mean per-attribute F1 of "the k most frequent attributes of the category", over k."""
    counts: dict[int, Counter] = {}
    for t in train_targets:
        for lab, attrs in zip(t["labels"].tolist(), t["attributes"]):
            counts.setdefault(lab, Counter()).update(attrs)
    best = 0.0
    for k in range(0, len(space) + 1):
        guess = [[a for a, _ in counts.get(lab, Counter()).most_common(k)] for lab in labels.tolist()]
        best = max(best, float(attribute_f1(space.multi_hot(guess).bool(), truth.bool())))
    return best


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in available_adapters() if get_adapter(n).predicts_attributes])
def test_attribute_head_beats_the_most_frequent_attributes(name: str, tmp_path: Path, recipe_overrides: list[str]) -> None:
    from zoo.data.synth import write_synthetic

    data = write_synthetic(tmp_path / "synth", n=IMAGES, size=SIZE, seed=0, max_people=1)
    overrides = {"data.source": str(data), "data.max_size": SIZE, "data.val_fraction": 0.2, "eval_limit": 2,
                 "seed": 0, "device": "cpu", **RUNS.get(name, {})}
    cfg = load_train_config(name, overrides=[f"{k}={json.dumps(v)}" for k, v in overrides.items()] + recipe_overrides)
    run = load_run(train(cfg, tmp_path / "run"), which="last")
    header = (run.path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"loss_attributes", "attr_threshold", "attr_F1"} <= set(header)  # the run logs the head and its threshold
    space = run.adapter.attribute_space
    assert space is not None and len(space) == 92  # the iMaterialist 2019 vocabulary

    samples = [run.dataset[i] for i in run.split["train"]]
    targets = [t for _, t in samples]
    torch.manual_seed(0)
    preds = [run.adapter.predict([to_model_input(im)])[0] for im, _ in samples]
    probs, truth, labels = matched_attributes(preds, targets, space)
    teaching = sum(int(space.trains_on(t["labels"], t["attributes"]).sum()) for t in targets)
    # The model's own decisions: ids above the threshold it chose on its validation images.
    decided = probs > float(run.adapter.attribute_threshold)
    model = float(attribute_f1(decided, truth.bool()))
    baseline = baseline_f1(targets, labels, truth, space)
    threshold = round(baseline + MARGIN, 4)
    print(f"{name}: matched {len(labels)} of {teaching} attributed instances, attribute threshold "
          f"{float(run.adapter.attribute_threshold):.2f}, F1 {model:.3f}, most-frequent baseline {baseline:.3f}")
    print(f"learning-figure: {name} attribute_F1={model:.4f} threshold={threshold}")
    assert len(labels) >= MIN_MATCHED * teaching, f"{name} found too few garments to measure attributes on"
    assert model >= threshold, f"{name}: attribute F1 {model:.3f} does not beat the baseline {baseline:.3f} + {MARGIN}"
    # Validation's threshold choice, run on these images: it sets the one with the best F1 here.
    chosen = choose_attribute_threshold(run.adapter, run.dataset, run.split["train"], 1, torch.device("cpu"))
    assert chosen["attr_threshold"] == best_threshold(probs, truth)[0]
    assert float(run.adapter.attribute_threshold) == pytest.approx(chosen["attr_threshold"])  # a float32 buffer
    assert chosen["attr_F1"] >= model - 1e-6


def test_attribute_f1_is_sklearn_macro_f1_over_the_attributes_present() -> None:
    from sklearn.metrics import f1_score

    g = torch.Generator().manual_seed(0)
    truth = torch.rand(40, 6, generator=g) > 0.6
    truth[:, 5] = False  # an attribute nobody has ...
    probs = torch.rand(40, 6, generator=g)
    probs[:, 5] = 0.0  # ... and nobody predicts: left out of the mean
    for t in (0.3, 0.5, 0.7):
        present = [j for j in range(6) if truth[:, j].any() or (probs[:, j] > t).any()]
        expected = f1_score(truth[:, present].numpy(), (probs[:, present] > t).numpy(), average="macro",
                            zero_division=0)
        assert float(attribute_f1(probs > t, truth)) == pytest.approx(expected)
    grid = (0.3, 0.5, 0.7)
    scores = [float(attribute_f1(probs > t, truth)) for t in grid]
    assert best_threshold(probs, truth, grid) == (grid[scores.index(max(scores))], pytest.approx(max(scores)))
