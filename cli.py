"""The `zoo` command line: parse arguments, call one zoo function. No logic lives here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Train, evaluate and compare instance-segmentation models on fashion photos.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Read, check, convert and describe datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


def _print_version(value: bool) -> None:
    if value:
        from zoo import __version__

        typer.echo(f"zoo {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print zoo's version and exit.")] = False) -> None:
    """Train, evaluate and compare instance-segmentation models on fashion photos."""

DataArg = Annotated[str, typer.Argument(help="Dataset: an iMaterialist folder or a COCO JSON file.")]
ImagesOpt = Annotated[Optional[str], typer.Option("--images", help="Image folder for a COCO JSON.")]
RleBaseOpt = Annotated[int, typer.Option("--rle-base",
                                         help="iMaterialist EncodedPixels start base (1: as Kaggle numbers pixels).")]


def _run(fn, *args, **kwargs):
    """Call a zoo function; user errors (zoo.errors.user_error_types: zoo's own, OS errors on the
    user's paths, Pillow's image-size limit) become one line on stderr and exit code 2."""
    from zoo.errors import one_line, user_error_types

    # Model commands need the registry; `zoo data ...` stays free of torch model imports.
    if fn.__module__.split(".")[1] not in ("data",):
        import zoo.adapters  # noqa: F401  (fills the adapter registry)
    try:
        return fn(*args, **kwargs)
    except user_error_types() as err:
        typer.secho(f"error: {one_line(err)}", fg="red", err=True)
        raise typer.Exit(2) from None


# ---------------------------------------------------------------- data
@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="Output folder (iMaterialist 2019 layout).")],
    n: Annotated[int, typer.Option(help="Number of images.")] = 300,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write the embedded synthetic fashion dataset in the iMaterialist 2019 format."""
    from zoo.data.synth import write_synthetic

    _run(write_synthetic, out, n=n, size=size, seed=seed)


@data_app.command("prepare")
def data_prepare(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="Cache folder to write.")],
    max_size: Annotated[int, typer.Option(help="Longest side of the cached images.")] = 1024,
    workers: Annotated[int, typer.Option(help="Parallel worker processes.")] = 2,
    images: ImagesOpt = None,
    rle_base: RleBaseOpt = 1,
) -> None:
    """Convert a dataset once to a resumable cache at the training size."""
    from zoo.data.prepare import prepare_cache

    _run(prepare_cache, data, out, max_size=max_size, workers=workers, images=images, rle_base=rle_base)


@data_app.command("stats")
def data_stats(data: DataArg, out: Annotated[Optional[Path], typer.Option(help="Folder for PNG charts.")] = None,
               images: ImagesOpt = None) -> None:
    """Images, annotations, per-category counts, masks per image, image sizes."""
    from zoo.data.stats import dataset_stats

    _run(dataset_stats, data, out_dir=out, images=images)


@data_app.command("check")
def data_check(data: DataArg, images: ImagesOpt = None, rle_base: RleBaseOpt = 1) -> None:
    """Validate a dataset; exits non-zero when it finds errors."""
    from zoo.data.check import check_dataset

    n_errors = _run(check_dataset, data, images=images, rle_base=rle_base)
    raise typer.Exit(1 if n_errors else 0)


@data_app.command("export")
def data_export(
    data: DataArg,
    out: Annotated[Path, typer.Option(help="COCO JSON file to write.")],
    format: Annotated[str, typer.Option(help="Output format.")] = "coco",
    max_size: Annotated[Optional[int], typer.Option(help="Resize masks to this longest side.")] = None,
    images: ImagesOpt = None,
    rle_base: RleBaseOpt = 1,
) -> None:
    """Write a dataset as a standard COCO instance file (compressed RLE, attribute_ids, the source's
    image ids): at the original size, the ground truth that zoo's results files refer to."""
    from zoo.data.export import export_coco

    if format != "coco":
        typer.secho(f"error: unknown format {format!r}; supported: coco", fg="red", err=True)
        raise typer.Exit(2)
    _run(export_coco, data, out, max_size=max_size, images=images, rle_base=rle_base)


# ---------------------------------------------------------------- models
@app.command("list")
def list_adapters() -> None:
    """The registered adapters and their default configs."""
    from zoo.build import print_adapters

    _run(print_adapters)


@app.command("train")
def train(
    adapter: Annotated[str, typer.Argument(help="Registered adapter name (see `zoo list`).")],
    data: Annotated[Optional[str], typer.Option(help="Dataset (default: embedded synthetic).")] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML config file.")] = None,
    preset: Annotated[str, typer.Option(help="cpu or gpu.")] = "cpu",
    epochs: Annotated[Optional[int], typer.Option(help="Epochs of every stage.")] = None,
    steps_per_epoch: Annotated[Optional[int], typer.Option(help="Limit steps per epoch.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Use only the first N images.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Run folder (default runs/ADAPTER-TIME).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint; --epochs, "
                                              "--set stages=... extend its plan.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override: key.sub=value (repeatable).")] = None,
) -> None:
    """Train an adapter (staged, checkpointed, resumable; DDP under torchrun)."""
    from zoo.train.api import interrupted_note, train_from_cli

    run = _run(train_from_cli, adapter, data=data, config=config, preset=preset, epochs=epochs,
               steps_per_epoch=steps_per_epoch, batch_size=batch_size, device=device, limit=limit,
               out=out, resume=resume, overrides=set_ or [])
    note = interrupted_note(run, adapter)
    if note:  # Ctrl-C: the run is saved; exit as an interrupted program does (128 + SIGINT)
        typer.secho(note, fg="yellow", err=True)
        raise typer.Exit(130)


@app.command("eval")
def evaluate(
    run: Annotated[Optional[Path], typer.Argument(help="A run folder or checkpoint file to evaluate.")] = None,
    gt: Annotated[Optional[Path], typer.Option(help="Ground truth: COCO JSON, iMaterialist CSV or dataset "
                                                    "folder.")] = None,
    pred: Annotated[Optional[Path], typer.Option(help="Predictions: COCO results JSON, scored COCO dataset JSON "
                                                      "or iMaterialist submission CSV.")] = None,
    data: Annotated[Optional[str], typer.Option(help="Dataset (default: the run's own).")] = None,
    split: Annotated[str, typer.Option(help="val, train or all.")] = "val",
    limit: Annotated[Optional[int], typer.Option(help="Evaluate the first N images.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="metrics.json to write.")] = None,
    backend: Annotated[str, typer.Option(help="faster (faster-coco-eval) or pycocotools.")] = "faster",
    resolution: Annotated[str, typer.Option(help="original (each photo at its own size, the source's ids) "
                                                 "or input (the size the model reads).")] = "original",
    rle_base: RleBaseOpt = 1,
) -> None:
    """Score a run on a dataset, or predictions against a ground-truth file."""
    from zoo.evaluate_run import eval_run
    from zoo.metrics.cli_eval import eval_files

    if run is not None:
        _run(eval_run, run, data=data, split=split, limit=limit, out=out, backend=backend, resolution=resolution)
    elif gt is not None and pred is not None:
        _run(eval_files, gt, pred, out=out, backend=backend, rle_base=rle_base)
    else:
        typer.secho("error: give a RUN folder, or both --gt and --pred", fg="red", err=True)
        raise typer.Exit(2)


@app.command("bench")
def bench(
    target: Annotated[str, typer.Argument(help="Adapter name, run folder or checkpoint file.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    size: Annotated[int, typer.Option(help="Square input side in pixels.")] = 512,
    batch_size: Annotated[int, typer.Option(help="Images per forward.")] = 1,
    iters: Annotated[int, typer.Option(help="Timed iterations.")] = 20,
    warmup: Annotated[int, typer.Option(help="Warm-up iterations.")] = 3,
    amp: Annotated[str, typer.Option(help="none, bf16 or fp16 (CUDA).")] = "none",
    backbone: Annotated[Optional[str], typer.Option(help="Backbone override.")] = None,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads (default: all cores).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="JSON file to write.")] = None,
    runtime: Annotated[str, typer.Option(help="torch, onnxruntime or torchscript (the network exported, "
                                              "post-processing in PyTorch).")] = "torch",
) -> None:
    """Time inference with the one latency protocol shared by every model (TARGET may also be a
    file of `zoo export`)."""
    from zoo.bench import bench_from_cli

    _run(bench_from_cli, target, device=device, size=size, batch_size=batch_size, iters=iters,
         warmup=warmup, amp=amp, backbone=backbone, threads=threads, out=out, runtime=runtime)


@app.command("export")
def export(
    target: Annotated[str, typer.Argument(help="Run folder (or adapter name: fresh weights).")],
    out: Annotated[Path, typer.Option(help="File to write (.onnx, .torchscript).")],
    format: Annotated[str, typer.Option(help="onnx or torchscript.")] = "onnx",
    size: Annotated[Optional[int], typer.Option(help="Square input side in px (default: the model's).")] = None,
    batch: Annotated[int, typer.Option(help="Images per forward.")] = 1,
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset (default 17).")] = None,
) -> None:
    """Export the network part to ONNX or TorchScript; zoo's post-processing stays in PyTorch."""
    from zoo.runtimes import export_from_cli

    _run(export_from_cli, target, fmt=format, out=out, size=size, batch_size=batch, opset=opset)


@app.command("compare")
def compare(
    adapters_: Annotated[Optional[list[str]], typer.Argument(metavar="ADAPTERS", help="Adapters (default: compare.models, the three families).")] = None,
    data: Annotated[Optional[str], typer.Option(help="Dataset (default: embedded synthetic).")] = None,
    runs: Annotated[Optional[list[Path]], typer.Option("--runs", help="Existing run folders to compare.")] = None,
    preset: Annotated[str, typer.Option(help="cpu or gpu.")] = "cpu",
    report: Annotated[str, typer.Option(help="md or html.")] = "md",
    out: Annotated[Path, typer.Option(help="Report folder.")] = Path("runs/compare"),
    size: Annotated[Optional[int], typer.Option(help="Input side in px of every network (default: the preset's: "
                                                     "cpu 128, gpu 512).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override for every run: key.sub=value; compare.KEY=VALUE sets compare options (models, images, select, seeds, budget_minutes, resamples, ...).")] = None,
) -> None:
    """Train (or load) the compared adapters on one split, score and time them, write a report."""
    from zoo.compare import compare_from_cli

    _run(compare_from_cli, adapters_ or [], data=data, runs=runs or [], preset=preset, report=report,
         out=out, overrides=set_ or [], size=size)


@app.command("predict")
def predict(
    run: Annotated[Path, typer.Argument(help="A trained run folder or checkpoint file (best.pt).")],
    inputs: Annotated[list[Path], typer.Argument(help="Images or folders of images.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("runs/predict"),
    score_threshold: Annotated[float, typer.Option(help="Keep detections above this score.")] = 0.5,
    format: Annotated[str, typer.Option(help="coco (results.json and predictions.json) or imaterialist-csv "
                                             "(submission.csv, Kaggle 2019).")] = "coco",
    rle_base: RleBaseOpt = 1,
) -> None:
    """Annotate unlabeled photos: overlays, COCO results and dataset files (or a submission CSV),
    counts and co-occurrence."""
    from zoo.predict import predict_from_cli

    _run(predict_from_cli, run, inputs, out=out, score_threshold=score_threshold, format=format, rle_base=rle_base)


if __name__ == "__main__":
    app()
