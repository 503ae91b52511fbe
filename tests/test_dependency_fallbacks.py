"""What zoo does when an optional library feature is missing: the same numbers by another path,
with a warning, instead of a crash."""

from __future__ import annotations

import faster_coco_eval
import numpy as np
import pytest

from test_report_bootstrap import make_data
from zoo.report.bootstrap import bootstrap_ap


def test_bootstrap_falls_back_to_pycocotools_when_faster_coco_eval_internals_are_missing(monkeypatch) -> None:
    gt, res = make_data(12, seed=3)
    fast = bootstrap_ap(gt, res, n_resamples=6, seed=1)

    class WithoutSeparateEval(faster_coco_eval.COCOeval_faster):  # a release without the private option
        def __init__(self, *args, separate_eval: bool = False, **kwargs):
            if separate_eval:
                raise TypeError("__init__() got an unexpected keyword argument 'separate_eval'")
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(faster_coco_eval, "COCOeval_faster", WithoutSeparateEval)
    with pytest.warns(UserWarning, match="scores each resample with pycocotools"):
        fallback = bootstrap_ap(gt, res, n_resamples=6, seed=1)
    for name in res:
        np.testing.assert_allclose(fallback.samples[name], fast.samples[name], atol=1e-12)
        assert fallback.models[name] == fast.models[name]
