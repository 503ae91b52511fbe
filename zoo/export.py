"""`zoo export`: a model's network part as an ONNX or TorchScript file.

What is exported is ``adapter.run_model`` (the latency protocol's network phase: resizing,
normalising, the network up to its dense per-candidate outputs) as a function of one tensor,
``images`` float32 ``[B, 3, S, S]`` in ``[0, 1]`` (the protocol's preprocessed photos, stacked).
Score filtering, NMS, mask assembly and pasting stay zoo's ``adapter.postprocess`` in PyTorch,
shared by every runtime, so an exported file plus zoo's post-processing gives the model's
predictions. ``run_model``'s output (a dataclass of tensors, lists, dicts and sizes) is flattened
into the file's outputs; the structure and the non-tensor values (which depend only on the input
shape) are written into the file's metadata (ONNX ``metadata_props`` / TorchScript extra file
``zoo.json``), with what the post-processing needs to be rebuilt (the run folder, or the adapter
name and config of a freshly built model).

ONNX files are written by the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``),
the one that exports every registered adapter: the dynamo exporter (torch 2.14) exports YOLACT's
and the UNet's ``run_model`` but not Mask R-CNN's (``torch.export`` cannot guard on the
data-dependent proposal count in ``batched_nms``). TorchScript files are ``torch.jit.trace``.
Either file is checked after export: on the photos it was traced with and on others, its outputs
are compared with PyTorch's (``check`` in the metadata).

The input shape is fixed (``--size``, ``--batch``): ``run_model`` takes a list of images, so the
traced graph splits its input into that many, and the shape-dependent parts of ``run_model``
(resize factors, letterboxing, the per-image sizes it returns) are traced for that shape.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo.adapter import Adapter
from zoo.errors import UserError
from zoo.latency import default_threads, make_photos, preprocess

FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIXES: dict[str, str] = {"onnx": ".onnx", "torchscript": ".torchscript"}
METADATA_KEY = "zoo"
DEFAULT_OPSET = 17
EXTRA_HINT = "install the export extra: pip install 'zoo[export]' (onnx, onnxruntime)"


def require_onnx(what: str = "onnx") -> None:
    """A one-line error naming the ``export`` extra when onnx/onnxruntime are not installed."""
    for module in ("onnx", "onnxruntime") if what == "onnx" else (what,):
        try:
            importlib.import_module(module)
        except ImportError:
            raise UserError(f"{module} is not installed; {EXTRA_HINT}") from None


# ---------------------------------------------------------------- run_model output <-> tensors
def flatten_raw(raw: Any, path: str = "raw") -> tuple[list[Tensor], list[str], Any]:
    """``raw`` (tensors in dataclasses, dicts, lists and tuples; ints, floats, strings, None) as its
    tensors in a fixed order, their dotted names, and a JSON-ready spec of the rest (see
    :func:`unflatten_raw`)."""
    if isinstance(raw, Tensor):
        return [raw], [path], {"tensor": 0}
    if raw is None or isinstance(raw, (bool, int, float, str)):
        return [], [], {"value": raw}
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        items = [(f.name, getattr(raw, f.name)) for f in dataclasses.fields(raw)]
        kind = {"dataclass": f"{type(raw).__module__}:{type(raw).__qualname__}"}
    elif isinstance(raw, dict):
        if not all(isinstance(k, str) for k in raw):
            raise TypeError(f"{path}: only string-keyed dicts can be exported")
        items, kind = list(raw.items()), {"dict": True}
    elif isinstance(raw, (list, tuple)):
        items, kind = [(str(i), v) for i, v in enumerate(raw)], {"list" if isinstance(raw, list) else "tuple": True}
    else:
        raise TypeError(f"{path}: {type(raw).__name__} cannot be exported (tensors, containers and numbers can)")
    tensors: list[Tensor] = []
    names: list[str] = []
    children = []
    for key, value in items:
        sub_t, sub_n, sub_spec = flatten_raw(value, f"{path}.{key}")
        children.append([key, _shift(sub_spec, len(tensors))])
        tensors += sub_t
        names += sub_n
    return tensors, names, {**kind, "items": children}


def _shift(spec: Any, offset: int) -> Any:
    """``spec`` with its tensor indices moved by ``offset``."""
    if "tensor" in spec:
        return {"tensor": spec["tensor"] + offset}
    if "items" in spec:
        return {**spec, "items": [[k, _shift(s, offset)] for k, s in spec["items"]]}
    return spec


def unflatten_raw(spec: Any, tensors: list[Tensor]) -> Any:
    """The ``run_model`` output that :func:`flatten_raw` described by ``spec``, with ``tensors``."""
    if "tensor" in spec:
        return tensors[spec["tensor"]]
    if "value" in spec:
        return spec["value"]
    values = [(k, unflatten_raw(s, tensors)) for k, s in spec["items"]]
    if "dataclass" in spec:
        module, qualname = spec["dataclass"].split(":")
        cls: Any = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        return cls(**dict(values))
    if "dict" in spec:
        return dict(values)
    items = [v for _, v in values]
    return items if "list" in spec else tuple(items)


class NetworkGraph(nn.Module):
    """``adapter.run_model`` as a module of one tensor: ``images`` float32 ``[B, 3, H, W]`` in
    ``[0, 1]`` -> the tensors of its output, in :func:`flatten_raw` order."""

    def __init__(self, adapter: Adapter) -> None:
        super().__init__()
        self.adapter = adapter

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        tensors, _, _ = flatten_raw(self.adapter.run_model(list(images.unbind(0))))
        # An output computed without the input (YOLACT's anchors for the fixed size) cannot be a
        # traced graph's output; a zero that depends on the input makes it one.
        zero = images.reshape(-1)[:1].sum() * 0
        return tuple(t + zero.to(t.dtype) for t in tensors)


def example_images(size: int, batch_size: int = 1, seed: int = 0) -> Tensor:
    """float32 ``[B, 3, size, size]`` in ``[0, 1]``: the latency protocol's synthetic photos."""
    return torch.stack(preprocess(make_photos(batch_size, size, seed=seed), torch.device("cpu")))


# ---------------------------------------------------------------- writing files
def export_network(adapter: Adapter, fmt: str, out: Path, *, size: int, batch_size: int = 1,
                   opset: int | None = None, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``adapter.run_model`` for ``[batch_size, 3, size, size]`` inputs to ``out`` as ``fmt``.

    Returns the metadata stored in the file: ``format``, ``adapter``, ``input_shape``, ``spec``, ``outputs`` (names), ``exporter``, ``opset``, ``torch``, ``source`` (how
    to rebuild the post-processing) and ``check`` (see :func:`check_export`).
    """
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if min(size, batch_size) < 1:
        raise UserError(f"--size and --batch must be >= 1, got {size} and {batch_size}")
    if fmt == "onnx":
        require_onnx()
    adapter = adapter.eval().cpu()
    example = example_images(size, batch_size)
    with torch.inference_mode():
        _, names, spec = flatten_raw(adapter.run_model(list(example.unbind(0))))
    meta = {"format": fmt, "adapter": adapter.name, "input_shape": list(example.shape),
            "spec": spec, "outputs": names, "torch": torch.__version__, "source": source or {}}
    graph = NetworkGraph(adapter).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings: sizes become constants of the fixed input shape
        if fmt == "onnx":
            meta.update(exporter="torch.onnx.export(dynamo=False)", opset=opset or DEFAULT_OPSET)
            torch.onnx.export(graph, (example,), str(out), dynamo=False, opset_version=meta["opset"],
                              input_names=["images"], output_names=names)
            runner: Any = load_network(out, meta)
        else:
            meta.update(exporter="torch.jit.trace", opset=None)
            runner = traced = torch.jit.trace(graph, (example,), check_trace=False)
    meta["check"] = check_export(adapter, runner, size=size, batch_size=batch_size)
    if fmt == "onnx":
        _write_onnx_metadata(out, meta)
    else:
        torch.jit.save(traced, str(out), _extra_files={"zoo.json": json.dumps(meta)})
    return meta


def _write_onnx_metadata(path: Path, meta: dict[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta)
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict[str, Any]:
    """The metadata :func:`export_network` stored in an exported file (one-line error if none)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    if path.suffix == ".onnx":
        require_onnx("onnx")
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        text = props.get(METADATA_KEY)
    else:
        extra = {"zoo.json": ""}
        try:
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except RuntimeError as err:
            raise UserError(f"{path}: not an ONNX (.onnx) or TorchScript file ({str(err).splitlines()[0]})") from None
        text = extra["zoo.json"] or None
    if not text:
        raise UserError(f"{path}: not written by zoo export (no {METADATA_KEY!r} metadata)")
    return json.loads(text)


# ---------------------------------------------------------------- running files
class OnnxNetwork:
    """An exported ONNX file on onnxruntime: ``images`` ``[B, 3, H, W]`` -> its output tensors.

    CPU: ``CPUExecutionProvider`` with ``threads`` intra-op threads (default: the cores this
    process may use, as the latency protocol gives torch); CUDA: ``CUDAExecutionProvider``
    (an error when this onnxruntime has none). Outputs come back as torch tensors on ``device``.
    """

    runtime = "onnxruntime"

    def __init__(self, path: Path, device: torch.device, threads: int | None = None) -> None:
        require_onnx()
        import onnxruntime as ort

        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise UserError("onnxruntime has no CUDA provider here; pip install onnxruntime-gpu, or use --device cpu")
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
        else:
            providers = ["CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()  # as many as torch gets on the CPU
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's concern
        # Idle intra-op threads would spin after each run and take the cores from the PyTorch
        # post-processing that follows it.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.device = device

    def __call__(self, images: Tensor) -> list[Tensor]:
        outs = self.session.run(None, {"images": images.detach().cpu().numpy()})
        return [torch.from_numpy(np.ascontiguousarray(o)).to(self.device) for o in outs]


class TorchScriptNetwork:
    """An exported TorchScript file: ``images`` ``[B, 3, H, W]`` -> its output tensors on ``device``."""

    runtime = "torchscript"

    def __init__(self, path: Path, device: torch.device) -> None:
        self.module = torch.jit.load(str(path), map_location=device).eval()
        self.device = device

    def __call__(self, images: Tensor) -> list[Tensor]:
        return list(self.module(images.to(self.device)))


def load_network(path: Path, meta: dict[str, Any], device: str | torch.device = "cpu",
                 threads: int | None = None) -> OnnxNetwork | TorchScriptNetwork:
    """The runner of an exported file (its format from ``meta``)."""
    dev = torch.device(device)
    return OnnxNetwork(path, dev, threads) if meta["format"] == "onnx" else TorchScriptNetwork(path, dev)


def check_export(adapter: Adapter, runner: Any, *, size: int, batch_size: int = 1,
                 seeds: tuple[int, ...] = (0, 1)) -> dict[str, Any]:
    """Compare the exported network with ``adapter.run_model`` on photos of each seed (0: the
    photos it was traced on; others: new content through the same graph).

    Returns ``max_abs_diff`` (over every output element), ``photos_seeds`` and ``outputs``;
    an output count or shape that differs from PyTorch's is an error (the graph is wrong).
    """
    worst = 0.0
    for seed in seeds:
        images = example_images(size, batch_size, seed)
        with torch.inference_mode():
            want, names, _ = flatten_raw(adapter.run_model(list(images.unbind(0))))
            got = list(runner(images))
        if len(got) != len(want):
            raise UserError(f"exported {adapter.name} network gives {len(got)} outputs, PyTorch {len(want)}")
        for name, a, b in zip(names, want, got):
            if tuple(a.shape) != tuple(b.shape):
                raise UserError(f"exported {adapter.name} network: {name} has shape {tuple(b.shape)} on photos "
                                f"of seed {seed}, PyTorch {tuple(a.shape)}")
            if a.numel():
                worst = max(worst, float((a.float() - b.float().to(a.device)).abs().max()))
    return {"max_abs_diff": worst, "photos_seeds": list(seeds), "outputs": len(names)}


# ---------------------------------------------------------------- an exported file as an adapter
class ExportedAdapter(Adapter):
    """A model whose network phase (``run_model``) runs an exported file on its runtime, and whose
    ``postprocess`` is the PyTorch adapter's: what the latency protocol and ``predict`` call.

    ``images`` must have the exported shape: ``input_shape[0]`` images ``[3, S, S]``.
    """

    def __init__(self, adapter: Adapter, network: OnnxNetwork | TorchScriptNetwork, meta: dict[str, Any]) -> None:
        super().__init__(adapter.cfg, adapter.num_classes)
        self.inner = adapter
        self.network = network
        self.meta = meta
        self.name = adapter.name
        self.backbone_option = adapter.backbone_option
        self.runtime = network.runtime

    def run_model(self, images: list[Tensor]) -> Any:
        """The exported network on B images ``[3, S, S]`` in ``[0, 1]``; the adapter's raw output."""
        b, _, s, _ = self.meta["input_shape"]
        if len(images) != b or any(tuple(im.shape) != (3, s, s) for im in images):
            shapes = ", ".join(str(tuple(im.shape)) for im in images[:3])
            raise UserError(f"the exported {self.name} network takes {b} image(s) [3, {s}, {s}]; got {shapes}: "
                            f"export it with --size/--batch for these photos")
        return unflatten_raw(self.meta["spec"], self.network(torch.stack(images)))

    def postprocess(self, raw: Any, sizes: list[tuple[int, int]]) -> list:
        return self.inner.postprocess(raw, sizes)

    def forward(self, images: list[Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        raise UserError("an exported model does not train; train the PyTorch run")

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return self.inner.param_groups()
