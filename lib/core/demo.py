"""The demos of every architecture, written once: what a trained network sees in an image.

An architecture's ``demo.py`` (and R-FCN's ``deform_conv_demo.py`` / ``deform_psroi_demo.py``)
calls :func:`demo_main` from its ``main()`` with a kind of picture, its registry lookup and its
models (:class:`DemoSpec`); the arguments, the model lookup, the image loop and the pictures are
here. Kinds:

``detect``         boxes with class names and scores above ``--thresh`` (every detector);
``segment``        the class map, colour-coded and blended over the image, with a legend;
``conv_offsets``   for chosen activation points, the sampling locations of the last three
                   stacked deformable convolutions (res5a-c: 9^3 points), as the original
                   ``deform_conv_demo.py``;
``psroi_offsets``  for boxes, the bins of deformable PS-RoI (or RoI) pooling after their
                   offsets, as the original ``deform_psroi_demo.py``.

A network takes part through its registry entry alone (:mod:`lib.core.network`): ``task``, and
a test symbol with the tester's outputs (detection: ``rois`` / ``cls_prob_reshape`` /
``bbox_pred_reshape``, read by :func:`lib.core.tester.im_detect`; segmentation:
``softmax_output``). A new detector (FPN) gets its demo with a ``demo.py`` of a few lines; the
offset pictures find the deformable layers in any symbol (:mod:`lib.utils.offsets`).

**Models** (:func:`resolve_model`). Without arguments a demo uses the released model under its
original name (``model/rfcn_dcn_coco-0000.params`` with the original demo yaml), else the
latest checkpoint its synthetic config has trained (``output/synthetic/...``), else it stops
with a message naming both files and the command that trains the synthetic model. ``--cfg``
uses that config's own training output (``--epoch``, default the latest), ``--params PREFIX
--epoch N`` any checkpoint.

**Images** (:func:`run_demo`). The images in ``demo/`` or the files and folders given; each is
read as 8-bit BGR (grayscale, 16-bit and 4-channel images are converted by
:func:`lib.utils.image.read_image`) and resized by the config's scale as in testing. A missing
path, an unreadable, truncated or non-image file is skipped with a one-line message naming it,
and the demo goes on; :func:`demo_main` returns non-zero only if no image could be processed.
The first image is run ``--warmup`` times before timing, as the original; the time printed per
image is preprocessing + network + post-processing (not reading or drawing). Pictures are PNGs
in the output folder (printed), named after the images, beside ``results.json`` (per image:
the picture, the size, the time and what was found, boxes in image pixels).

**Points and boxes outside an image.** ``--points`` and ``--boxes`` are in image pixels and one
run may cover images of several sizes, so they are checked per image against its pixel extent
``0 <= x <= width - 1``, ``0 <= y <= height - 1``; nothing is moved silently. A point outside
an image is dropped for that image; a box that only partly covers the image is clipped to it and
a box wholly outside is dropped. Each image's dropped points / boxes are logged (one line naming
them and the image size), written on its picture and in ``results.json`` (``dropped_points`` /
``dropped_boxes``, a clipped RoI's ``given`` box and the entry's ``warnings``). An image left
with no point or box is skipped, with the reason in ``skipped``.

**Bad arguments** stop the demo before the model is loaded, with ``<script>: error: <message>``
naming the option, the allowed range and the value, and exit status 2 (as a missing model does;
``--debug`` shows the traceback, see :mod:`lib.utils.cli`):
``--thresh`` outside [0, 1], a negative ``--warmup`` / ``--epoch`` / ``--gpu`` /
``--offset_group``, ``--num_boxes`` < 1, an output folder that is a file or cannot be created.
The checks that need the model's config (``--offset_group`` beyond the layers' offset groups, a
``--boxes`` class outside ``1 .. NUM_CLASSES - 1``) run once it is resolved, before its
parameters are read. Malformed ``--points`` / ``--boxes`` text is refused by argparse (usage +
message, status 2).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import mxnet as mx
import numpy as np

from lib.config import load_config
from lib.core.checkpoint import latest_epoch, load_param, params_path
from lib.core.seg_tester import batch_label_maps, resized_size, restore_label_map
from lib.core.shapes import max_input_shapes
from lib.core.tester import (
    bind_test_network,
    build_nms,
    class_candidates,
    im_detect,
    rpn_only_params,
    suppress,
    test_inputs,
    test_scales,
)
from lib.core.trainer import checkpoint_prefix
from lib.dataset.load_data import class_names, dataset_palette
from lib.utils import vis
from lib.utils.cli import USER_ERRORS, add_debug_arg, report_user_error
from lib.utils.image import pick_scale, prepare_roi_image, prepare_seg_image, read_image
from lib.utils.offsets import (
    conv_sampling_locations,
    deformable_convolutions,
    deformable_psroi_poolings,
    feature_to_pixel,
    pixel_to_feature,
    psroi_bins,
)

__all__ = [
    "DEFAULT_IMAGES",
    "BoundNetwork",
    "ConvOffsetDemo",
    "DemoModel",
    "DemoReport",
    "DemoSpec",
    "DetectionDemo",
    "ModelNotFoundError",
    "PsroiOffsetDemo",
    "SegmentationDemo",
    "SkipImage",
    "check_options",
    "check_output_dir",
    "collect_images",
    "demo_main",
    "resolve_model",
    "run_demo",
]

logger = logging.getLogger(__name__)

#: The images a demo runs on when none are given.
DEFAULT_IMAGES = Path(__file__).resolve().parents[2] / "demo"
#: What a folder's files must end with to be tried (a file given by name is always tried).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
#: Side of the square panels of the PS-RoI picture (one zoomed panel per RoI).
PSROI_PANEL = 512
#: Activation points of the offset demo without detections, as fractions of (width, height).
DEFAULT_POINT_FRACTIONS = ((0.5, 0.5), (0.25, 0.3), (0.75, 0.3), (0.5, 0.8))


# ------------------------------------------------------------------------------------ models


@dataclasses.dataclass(frozen=True)
class DemoSpec:
    """The models of one demo.

    Attributes:
        name: the output folder, ``output/demo/<name>``.
        title: what the model is, for messages ("Deformable R-FCN").
        released: ``(yaml, symbol, checkpoint prefix)`` of the released model: the original
            demo config, the network it forces, and ``model/<name>`` (epoch 0).
        synthetic: the synthetic config whose training output is used when the released
            model is missing.
        train_script: the driver that trains (and tests) a config of this architecture.
    """

    name: str
    title: str
    released: tuple[str, str, str]
    synthetic: str
    train_script: str

    def train_command(self, cfg_path: str | None = None) -> str:
        return f"python {self.train_script} --cfg {cfg_path or self.synthetic}"

    @classmethod
    def table(
        cls, train_script: str, rows: Mapping[str | None, tuple[str, str, str, str, str, str]]
    ) -> dict[str | None, DemoSpec]:
        """``{flag: DemoSpec}`` from rows ``(name, title, released yaml, released symbol,
        released checkpoint prefix, synthetic yaml)`` sharing one training driver."""
        return {
            flag: cls(name, title, (cfg, symbol, prefix), synthetic, train_script)
            for flag, (name, title, cfg, symbol, prefix, synthetic) in rows.items()
        }


@dataclasses.dataclass
class DemoModel:
    """A loaded config, its network object and the checkpoint to use."""

    cfg: Any
    cfg_path: str
    net: Any
    prefix: str
    epoch: int
    origin: str

    @property
    def params_file(self) -> str:
        return params_path(self.prefix, self.epoch)


class ModelNotFoundError(FileNotFoundError):
    """No checkpoint for a demo; the message names the missing files and how to get one."""


def _load(cfg_path: str, overrides: Sequence[str], symbol: str | None = None) -> Any:
    forced = [f"symbol={symbol}"] if symbol else []
    return load_config(cfg_path, forced + list(overrides))


def resolve_model(
    spec: DemoSpec,
    get_network: Callable[[str], Any],
    cfg_path: str | None = None,
    overrides: Sequence[str] = (),
    params: str | None = None,
    epoch: int | None = None,
) -> DemoModel:
    """The model a demo runs (see the module docstring).

    Args:
        spec: the demo's models.
        get_network: the architecture's registry lookup (``cfg.symbol`` -> network object).
        cfg_path: ``--cfg``; None: the released model's config, or the synthetic one.
        overrides: ``--set KEY=VALUE`` items.
        params: ``--params PREFIX`` of a checkpoint (with ``--cfg``, else the released config).
        epoch: ``--epoch``; default 0 with ``params``, else the latest checkpoint.

    Raises:
        ModelNotFoundError: the checkpoint is missing; the message says how to get one.
    """
    released_cfg, released_symbol, released_prefix = spec.released
    if params is not None:
        symbol = None if cfg_path else released_symbol
        cfg_path = cfg_path or released_cfg
        epoch = 0 if epoch is None else epoch
        if not os.path.isfile(params_path(params, epoch)):
            raise ModelNotFoundError(f"checkpoint {params_path(params, epoch)} does not exist")
        cfg = _load(cfg_path, overrides, symbol)
        return DemoModel(cfg, cfg_path, get_network(cfg.symbol), params, epoch, "given")
    if cfg_path is not None:
        cfg = _load(cfg_path, overrides)
        prefix = checkpoint_prefix(cfg, cfg_path)
        epoch = latest_epoch(prefix) if epoch is None else epoch
        if epoch is None or not os.path.isfile(params_path(prefix, epoch)):
            wanted = params_path(prefix, epoch) if epoch is not None else f"{prefix}-NNNN.params"
            raise ModelNotFoundError(
                f"no checkpoint of {cfg_path}: {wanted} does not exist. Train it with\n"
                f"  {spec.train_command(cfg_path)}\nor give one with --params PREFIX --epoch N."
            )
        return DemoModel(cfg, cfg_path, get_network(cfg.symbol), prefix, epoch, "trained")

    released_file = params_path(released_prefix, 0)
    if os.path.isfile(released_file):
        cfg = _load(released_cfg, overrides, released_symbol)
        net = get_network(cfg.symbol)
        return DemoModel(cfg, released_cfg, net, released_prefix, 0, "released")
    cfg = _load(spec.synthetic, overrides)
    prefix = checkpoint_prefix(cfg, spec.synthetic)
    epoch = latest_epoch(prefix)
    if epoch is not None:
        net = get_network(cfg.symbol)
        return DemoModel(cfg, spec.synthetic, net, prefix, epoch, "synthetic")
    raise ModelNotFoundError(
        f"no {spec.title} model for this demo:\n"
        f"  {released_file} (the released model, whose download links are gone) is missing,\n"
        f"  and {prefix}-NNNN.params (a model trained on the synthetic data) too.\n"
        f"Train the synthetic model (CPU, minutes):\n  {spec.train_command()}\n"
        "then run this demo again: it finds that checkpoint by itself. Or give a model with "
        "--cfg YAML [--params PREFIX --epoch N]."
    )


def demo_context(gpu: int | None) -> mx.Context:
    """``mx.gpu(gpu)``, or the CPU when ``gpu`` is None.

    Raises:
        ValueError: a GPU is asked of a CPU build of MXNet or is not there.
    """
    if gpu is None:
        return mx.cpu()
    if not mx.runtime.Features().is_enabled("CUDA") or gpu >= mx.context.num_gpus():
        raise ValueError(f"--gpu {gpu}: no such GPU for MXNet {mx.__version__} here")
    return mx.gpu(gpu)


# ---------------------------------------------------------------------------------- network


def with_outputs(sym: mx.sym.Symbol, names: Sequence[str]) -> mx.sym.Symbol:
    """``sym`` with the internal outputs ``names`` appended (those it does not show yet)."""
    missing = [n for n in dict.fromkeys(names) if n not in sym.list_outputs()]
    if not missing:
        return sym
    internals = sym.get_internals()
    return mx.sym.Group([sym, *(internals[n] for n in missing)])


class _Replay:
    """A stand-in predictor returning outputs already computed (for :func:`im_detect`)."""

    def __init__(self, outputs: dict[str, mx.nd.NDArray]) -> None:
        self._outputs = [outputs]

    def predict(self, batch: mx.io.DataBatch) -> list[dict[str, mx.nd.NDArray]]:
        del batch
        return self._outputs


class BoundNetwork:
    """A test symbol and its checkpoint bound for one image at a time.

    The module is first bound at the config's scale (:func:`lib.core.shapes.max_input_shapes`),
    which also checks every parameter against the checkpoint before any image is read; other
    input shapes (portrait images, other RoI counts) bind modules sharing its memory.

    Args:
        sym: the symbol (test outputs plus any internals to show).
        cfg: the config.
        arg_params, aux_params: the checkpoint (``load_param(..., process=True)``).
        ctx: the device.
        scale: the (short, max long) scale images are resized to.
        num_rois: rows of the ``rois`` input first bound (networks tested without an RPN).
        source: what the params are, for the error when they do not fit the network.
        unused: params the symbol may leave out (:func:`lib.core.tester.rpn_only_params`).
    """

    def __init__(
        self,
        sym: mx.sym.Symbol,
        cfg: Any,
        arg_params: dict,
        aux_params: dict,
        ctx: mx.Context,
        scale: tuple[int, int],
        num_rois: int = 1,
        source: str = "the checkpoint",
        unused: Collection[str] = (),
    ) -> None:
        self.sym = sym
        self.data_names, self.label_names = test_inputs(sym)
        max_shapes = max_input_shapes(cfg, [scale], 1, 1, names=self.data_names)
        if "rois" in self.data_names:
            max_shapes.append(("rois", (1, num_rois, 5)))
        self._predictor = bind_test_network(
            sym, arg_params, aux_params, ctx, max_shapes,
            [mx.io.DataDesc(n, s) for n, s in max_shapes], source=source,
            network=f"the network of symbol {cfg.symbol!r}", unused=unused,
        )  # fmt: skip

    def predict(
        self, arrays: Mapping[str, np.ndarray], **attrs: Any
    ) -> tuple[mx.io.DataBatch, dict[str, mx.nd.NDArray]]:
        """Forward one image: ``arrays`` by input name; ``attrs`` are set on the batch
        (``im_info``, ``image_sizes``, ``num_rois`` for :func:`im_detect`)."""
        data = [np.ascontiguousarray(arrays[n], dtype=np.float32) for n in self.data_names]
        batch = mx.io.DataBatch(
            data=[mx.nd.array(a) for a in data],
            label=None,
            pad=0,
            provide_data=[mx.io.DataDesc(n, a.shape) for n, a in zip(self.data_names, data)],
        )
        for key, value in attrs.items():
            setattr(batch, key, value)
        with warnings.catch_warnings():
            # a new input shape binds a module without labels: MXNet warns that the test
            # symbol's softmax_label (DeepLab) gets no shape, which it infers from the data
            warnings.filterwarnings("ignore", "Data provided by label_shapes", UserWarning)
            return batch, self._predictor.predict(batch)[0]


def _record(image: np.ndarray) -> dict[str, Any]:
    """A test record of an in-memory image (its size is the annotation's)."""
    return {
        "image": "<memory>",
        "height": image.shape[0],
        "width": image.shape[1],
        "flipped": False,
    }


def _bgr(rgb: Sequence[int]) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


# ------------------------------------------------------------------------------------ tasks


@dataclasses.dataclass
class Inference:
    """What a task found in one image.

    Attributes:
        result: the task's findings (detections, a class map, sampling points, bins).
        outputs: the network outputs by name.
        im_info: ``[height, width, scale]`` of the network input.
        dropped: the given points / boxes not used for this image (outside it).
        warnings: one line each, logged by :func:`run_demo` with the image's path and written
            to its ``results.json`` entry.
    """

    result: Any
    outputs: dict[str, mx.nd.NDArray]
    im_info: np.ndarray
    dropped: list[tuple[float, ...]] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)


class SkipImage(Exception):
    """Raised by a task's ``infer`` when an image has nothing to show; :func:`run_demo` skips
    the image with the message as the reason."""


def _fmt(values: Sequence[float]) -> str:
    """(1000.0, 50.5) -> '(1000, 50.5)'."""
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def inside_image(point: Sequence[float], width: int, height: int) -> bool:
    """Whether ``(x, y)`` lies on the image's pixel grid, ``0 <= x <= width - 1`` and
    ``0 <= y <= height - 1`` (pixel centres, as the boxes of ``results.json``)."""
    x, y = point
    return bool(0 <= x <= width - 1 and 0 <= y <= height - 1)


class _ImageDemo:
    """What the detection and segmentation demos share: the network bound for one image at a
    time at :meth:`input_scale`, with the class names of ``kind``.

    Args:
        model: the model.
        ctx: the device.
        thresh: detections: the lowest score shown.
        extra_outputs: internal outputs to show besides the test outputs (the offset demos').
        params: the checkpoint already loaded (else it is loaded).
    """

    kind: str

    def __init__(
        self,
        model: DemoModel,
        ctx: mx.Context,
        thresh: float = 0.7,
        extra_outputs: Sequence[str] = (),
        params: tuple[dict, dict] | None = None,
    ) -> None:
        cfg = self.cfg = model.cfg
        if model.net.task != self.kind:
            raise ValueError(f"{cfg.symbol} is a {model.net.task} network; this demo shows "
                             f"{self.kind}")  # fmt: skip
        self.thresh = float(thresh)
        self.scale = self.input_scale(cfg)
        sym = with_outputs(model.net(cfg, is_train=False), extra_outputs)
        arg, aux = params or load_param(model.prefix, model.epoch, process=True)
        self.network = BoundNetwork(sym, cfg, arg, aux, ctx, self.scale,
                                    source=f"checkpoint {model.params_file}")  # fmt: skip
        self.names = class_names(cfg, self.kind)

    @staticmethod
    def input_scale(cfg: Any) -> tuple[int, int]:
        """The (short, max long) size images are resized to, as in testing."""
        raise NotImplementedError


class DetectionDemo(_ImageDemo):
    """Detections of one image: ``(class, score, (x1, y1, x2, y2))`` in image pixels.

    The test pipeline's steps (:mod:`lib.core.tester`) at the first test scale: the network,
    :func:`im_detect` (boxes decoded and scaled back to the image), the boxes of each class
    above ``thresh``, NMS (or soft-NMS) and ``TEST.max_per_image``.
    """

    kind = "detection"

    @staticmethod
    def input_scale(cfg: Any) -> tuple[int, int]:
        return test_scales(cfg)[0]

    @functools.cached_property
    def nms(self) -> Callable[[np.ndarray], Any]:
        return build_nms(self.cfg.TEST, self.cfg.TEST.max_per_image)

    def infer(self, image: np.ndarray) -> Inference:
        cfg = self.cfg
        tensor, rec = prepare_roi_image(_record(image), cfg, self.scale, image)
        im_info = rec["im_info"][np.newaxis]
        batch, outputs = self.network.predict(
            {"data": tensor, "im_info": im_info},
            im_info=im_info,
            image_sizes=np.array([image.shape[:2]]),
        )
        [(scores, boxes)] = im_detect(_Replay(outputs), batch, self.network.data_names)
        candidates = class_candidates(
            scores, boxes, cfg.dataset.NUM_CLASSES, cfg.CLASS_AGNOSTIC, self.thresh
        )
        per_class = suppress(candidates, self.nms, cfg.TEST.max_per_image)
        dets = [
            (cls, float(d[4]), tuple(float(v) for v in d[:4]))
            for cls, found in enumerate(per_class)
            for d in found
        ]
        dets.sort(key=lambda d: -d[1])
        return Inference(dets, outputs, rec["im_info"])

    def draw(self, image: np.ndarray, inference: Inference) -> np.ndarray:
        return vis.draw_detections(image, inference.result, self.names)

    def describe(self, inference: Inference) -> dict[str, Any]:
        return {
            "detections": [
                {"class": self.names[c], "score": round(s, 4), "box": [round(v, 1) for v in b]}
                for c, s, b in inference.result
            ]
        }

    def summary(self, inference: Inference) -> str:
        found = [f"{self.names[c]} {s:.2f}" for c, s, _ in inference.result[:5]]
        more = len(inference.result) - len(found)
        return f"{len(inference.result)} detections" + (
            f" ({', '.join(found)}{', ...' if more else ''})" if found else ""
        )


class SegmentationDemo(_ImageDemo):
    """The class map of one image, in image pixels, as :mod:`lib.core.seg_tester` makes it."""

    kind = "segmentation"

    @staticmethod
    def input_scale(cfg: Any) -> tuple[int, int]:
        return pick_scale(cfg.SCALES, 0)

    @property
    def palette(self) -> np.ndarray:
        """(256, 3) RGB class colours (Cityscapes' for Cityscapes-format data)."""
        return dataset_palette(self.cfg.dataset.dataset)

    def infer(self, image: np.ndarray) -> Inference:
        height, width = image.shape[:2]
        tensor, _, rec = prepare_seg_image(_record(image), self.cfg, self.scale, image,
                                           with_label=False)  # fmt: skip
        _, outputs = self.network.predict({"data": tensor})
        (label_map,) = batch_label_maps([outputs], 1)
        size = resized_size(rec["im_info"], height, width, self.cfg.network.IMAGE_STRIDE)
        return Inference(restore_label_map(label_map, size, height, width), outputs,
                         rec["im_info"])  # fmt: skip

    def _shares(self, label_map: np.ndarray) -> list[tuple[int, float]]:
        """``(class, share of the pixels)`` of the classes present, largest first."""
        counts = np.bincount(label_map.ravel(), minlength=len(self.names))
        order = np.argsort(-counts, kind="stable")
        return [(int(c), counts[c] / label_map.size) for c in order if counts[c] > 0]

    def draw(self, image: np.ndarray, inference: Inference) -> np.ndarray:
        picture = vis.blend_label_map(image, inference.result, self.palette)
        entries = [
            (_bgr(self.palette[c]), f"{self.names[c]} {100 * share:.0f}%")
            for c, share in self._shares(inference.result)
        ]
        return np.hstack([picture, vis.legend_panel(entries, picture.shape[0], title="classes")])

    def describe(self, inference: Inference) -> dict[str, Any]:
        shares = self._shares(inference.result)
        return {"classes": {self.names[c]: round(float(s), 4) for c, s in shares}}

    def summary(self, inference: Inference) -> str:
        shares = self._shares(inference.result)[:4]
        return "classes " + ", ".join(f"{self.names[c]} {100 * s:.0f}%" for c, s in shares)


BASE_TASKS = {"detection": DetectionDemo, "segmentation": SegmentationDemo}


def _panel_scale(image: np.ndarray) -> float:
    """Display scale of one panel of a 2-column offset picture (at most 2048 wide in all)."""
    return vis.display_scale(*image.shape[:2], max_side=1024)


def _with_caption(panels: Sequence[np.ndarray], lines: Sequence[str]) -> np.ndarray:
    picture = vis.grid(panels, columns=2)
    return np.vstack([picture, vis.caption_bar(picture.shape[1], lines)])


class ConvOffsetDemo:
    """Where stacked deformable convolutions sample, for chosen activation points.

    The last ``levels`` deformable convolutions of the network (res5a-c) are followed down from
    an activation of the last one (:func:`lib.utils.offsets.conv_sampling_locations`): 9^3 =
    729 points for three 3x3 layers, drawn on the image (red) around the activation (green).
    With several offset groups (the detectors have 4) the points of ``group`` are drawn.
    Points: ``points`` in image pixels, or the centres of the best detections (a detector) or
    fixed points (:data:`DEFAULT_POINT_FRACTIONS`), 4 in all. Given points outside an image are
    dropped for that image (:func:`inside_image`), and an image with none left is skipped
    (:class:`SkipImage`).

    Raises:
        ValueError: the network has no deformable convolution, or ``group`` is not one of the
            offset groups of its layers (before the checkpoint is read).
    """

    kind = "conv_offsets"

    def __init__(
        self,
        model: DemoModel,
        ctx: mx.Context,
        thresh: float = 0.7,
        points: Sequence[tuple[float, float]] | None = None,
        group: int = 0,
        levels: int = 3,
    ) -> None:
        cfg = model.cfg
        layers = deformable_convolutions(model.net(cfg, is_train=False))
        if not layers:
            raise ValueError(f"{cfg.symbol} has no deformable convolution to show")
        self.layers = layers[-levels:]
        groups = max(layer.groups for layer in self.layers)
        if not 0 <= group < groups:
            raise ValueError(
                f"--offset_group must be in [0, {groups - 1}] ({cfg.symbol}'s "
                f"{', '.join(la.name for la in self.layers)} have {groups} offset group"
                f"{'s' if groups > 1 else ''}), got {group}"
            )
        self.group = group
        self.points = list(points) if points else None
        base = BASE_TASKS[model.net.task]
        self.base = base(model, ctx, thresh, extra_outputs=[layer.output for layer in self.layers])
        self.names = self.base.names

    def _default_points(self, image: np.ndarray, found: Any) -> list[tuple[float, float]]:
        height, width = image.shape[:2]
        points = []
        if self.base.kind == "detection":
            points = [((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for _, _, b in found[:3]]
        for fx, fy in DEFAULT_POINT_FRACTIONS[: 4 - len(points)]:
            points.append((fx * (width - 1), fy * (height - 1)))
        return points

    def _given_points(
        self, image: np.ndarray
    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]], list[str]]:
        """``(points inside the image, points dropped, warning lines)`` of the given points."""
        height, width = image.shape[:2]
        kept = [p for p in self.points if inside_image(p, width, height)]
        dropped = [p for p in self.points if not inside_image(p, width, height)]
        listed = ", ".join(_fmt(p) for p in dropped)
        if not kept:
            raise SkipImage(f"all --points are outside the image ({width}x{height}): {listed}")
        notes = [f"--points outside the image ({width}x{height}) dropped: {listed}"]
        return kept, dropped, notes if dropped else []

    def infer(self, image: np.ndarray) -> Inference:
        points, dropped, notes = [], [], []
        if self.points:  # before the network runs: an image without points is skipped
            points, dropped, notes = self._given_points(image)
        inference = self.base.infer(image)
        offsets = [inference.outputs[layer.output][0].asnumpy() for layer in self.layers]
        map_h, map_w = offsets[0].shape[1:]
        im_scale = float(inference.im_info[2])
        stride = 2.0 ** round(math.log2(float(inference.im_info[1]) / map_w))
        samples = []
        for x, y in points or self._default_points(image, inference.result):
            col = int(np.clip(np.round(pixel_to_feature(x * im_scale, stride)), 0, map_w - 1))
            row = int(np.clip(np.round(pixel_to_feature(y * im_scale, stride)), 0, map_h - 1))
            yx = conv_sampling_locations(self.layers, offsets, (row, col), self.group)
            centre = feature_to_pixel(np.array([col, row], np.float64), stride) / im_scale
            samples.append((tuple(centre), feature_to_pixel(yx[:, ::-1], stride) / im_scale))
        return Inference(samples, inference.outputs, inference.im_info, dropped, notes)

    def draw(self, image: np.ndarray, inference: Inference) -> np.ndarray:
        scale = _panel_scale(image)
        base = vis.resize_for_display(image, scale)
        panels = [vis.draw_points(base, pts, centre, scale) for centre, pts in inference.result]
        names = ", ".join(layer.name for layer in self.layers)
        groups = self.layers[-1].groups
        group = f"offset group {self.group} of {groups}" if groups > 1 else "one offset group"
        counts = "/".join(str(len(pts)) for _, pts in inference.result)
        return _with_caption(panels, [
            f"Sampling locations (red) of {names} for the activation (green): "
            f"{counts} points; {group}.",
            "Each sampling point of a layer is followed to the 9 points of the layer below "
            "(its kernel, dilation and learned offsets).",
            *inference.warnings,  # the points dropped
        ])  # fmt: skip

    def describe(self, inference: Inference) -> dict[str, Any]:
        return {
            "layers": [layer.name for layer in self.layers],
            "group": self.group,
            "points": [
                {"activation": [round(v, 1) for v in c], "samples": len(p)}
                for c, p in inference.result
            ],
            "dropped_points": [list(p) for p in inference.dropped],
        }

    def summary(self, inference: Inference) -> str:
        counts = ", ".join(str(len(p)) for _, p in inference.result)
        return f"{len(inference.result)} activation points, sampling points {counts}"


class PsroiOffsetDemo:
    """The bins of deformable (PS-)RoI pooling for boxes, after their learned offsets.

    Boxes: ``boxes`` (image pixels, with an optional class), or the best detections of the
    network itself. They are fed as RoIs to the network tested without its RPN
    (``TEST.HAS_RPN`` off), whose deformable pooling node (the class-specific one, R-FCN's
    ``psroipooled_cls_rois``, when there is one) shows its offsets
    (:func:`lib.utils.offsets.psroi_bins`). A box without a class takes the class the
    network scores highest for it. Given boxes are checked per image: one partly outside is
    clipped to the image, one wholly outside dropped, and an image with none left is skipped
    (:class:`SkipImage`).

    Raises:
        ValueError: the network has no deformable RoI pooling, a box's class is not one of the
            model's object classes ``1 .. NUM_CLASSES - 1``, or there are neither boxes nor an
            RPN; all before the checkpoint is read.
    """

    kind = "psroi_offsets"

    def __init__(
        self,
        model: DemoModel,
        ctx: mx.Context,
        thresh: float = 0.7,
        boxes: Sequence[tuple[Sequence[float], int | None]] | None = None,
        num_boxes: int = 4,
    ) -> None:
        cfg = model.cfg
        if model.net.task != "detection":
            raise ValueError(f"{cfg.symbol} is a {model.net.task} network: no RoI pooling")
        rois_cfg = copy.deepcopy(cfg)
        rois_cfg.TEST.HAS_RPN = False
        sym = model.net(rois_cfg, is_train=False)
        layers = deformable_psroi_poolings(sym)
        if not layers:
            raise ValueError(f"{cfg.symbol} has no deformable (PS-)RoI pooling to show")
        num_classes = cfg.dataset.NUM_CLASSES
        self.layer = next((la for la in layers if la.output_dim == num_classes), layers[0])
        self.names = class_names(cfg, "detection")
        for box, cls in boxes or ():
            if cls is not None and not 1 <= cls < num_classes:
                known = f" ({', '.join(self.names[1:])})" if num_classes <= 21 else ""
                raise ValueError(
                    f"--boxes: class {cls} of box {_fmt(box)} is out of range: the object "
                    f"classes of {cfg.symbol} are 1..{num_classes - 1}{known}"
                )
        if not boxes and not cfg.TEST.HAS_RPN:
            raise ValueError(
                f"{cfg.symbol} has no RPN (TEST.HAS_RPN is off): give the boxes to show "
                "with --boxes 'x1,y1,x2,y2[,class];...'"
            )
        params = load_param(model.prefix, model.epoch, process=True)
        self.scale = test_scales(cfg)[0]
        self.cfg = rois_cfg
        self.network = BoundNetwork(
            with_outputs(sym, [self.layer.output]),
            rois_cfg,
            *params,
            ctx,
            self.scale,
            num_rois=max(len(boxes or ()), num_boxes),
            source=f"checkpoint {model.params_file}",
            unused=rpn_only_params(rois_cfg, model.net),
        )
        self.boxes = list(boxes) if boxes else None
        self.num_boxes = num_boxes
        self.detector = None
        if self.boxes is None:
            self.detector = DetectionDemo(model, ctx, thresh, params=params)

    def _given_boxes(self, image: np.ndarray) -> tuple[list[tuple], list[tuple], list[str]]:
        """``(chosen, dropped, warning lines)`` of the given boxes on this image: ``chosen`` as
        ``(class or None, None, box inside the image, given box if clipped else None)``."""
        height, width = image.shape[:2]
        chosen, dropped, clipped = [], [], []
        for box, cls in self.boxes:
            x1, y1, x2, y2 = (float(v) for v in box)
            if x1 > width - 1 or y1 > height - 1 or x2 < 0 or y2 < 0:
                dropped.append((x1, y1, x2, y2))
                continue
            inside = (max(x1, 0.0), max(y1, 0.0), min(x2, width - 1.0), min(y2, height - 1.0))
            given = None if inside == (x1, y1, x2, y2) else (x1, y1, x2, y2)
            if given:
                clipped.append(f"{_fmt(given)} -> {_fmt(inside)}")
            chosen.append((cls, None, inside, given))
        size = f"{width}x{height}"
        if not chosen:
            listed = ", ".join(_fmt(b) for b in dropped)
            raise SkipImage(f"all --boxes are outside the image ({size}): {listed}")
        notes = []
        if dropped:
            listed = ", ".join(_fmt(b) for b in dropped)
            notes.append(f"--boxes outside the image ({size}) dropped: {listed}")
        if clipped:
            notes.append(f"--boxes clipped to the image ({size}): {', '.join(clipped)}")
        return chosen, dropped, notes

    def infer(self, image: np.ndarray) -> Inference:
        dropped, notes = [], []
        if self.boxes is not None:
            chosen, dropped, notes = self._given_boxes(image)
        else:
            found = self.detector.infer(image).result[: self.num_boxes]
            chosen = [(cls, score, box, None) for cls, score, box in found]
        if not chosen:
            return Inference([], {}, np.zeros(3))
        tensor, rec = prepare_roi_image(_record(image), self.cfg, self.scale, image)
        im_scale = float(rec["im_info"][2])
        rois = np.array([[0.0, *(np.asarray(b, np.float64) * im_scale)] for _, _, b, _ in chosen])
        batch, outputs = self.network.predict(
            {"data": tensor, "rois": rois[np.newaxis]},
            im_info=rec["im_info"][np.newaxis],
            image_sizes=np.array([image.shape[:2]]),
            num_rois=[len(rois)],
        )
        trans = outputs[self.layer.output].asnumpy()
        probs = outputs["cls_prob_reshape_output"][0].asnumpy()
        shown = []
        for n, (cls, score, box, given) in enumerate(chosen):
            if cls is None:
                cls = int(np.argmax(probs[n, 1:])) + 1
            score = float(probs[n, cls]) if score is None else score
            layer = self.layer.for_roi(rois[n, 1:])  # FPN: the RoI's pyramid level
            bins = psroi_bins(layer, rois[n, 1:], trans[n], cls) / im_scale
            shown.append((cls, score, box, bins, given))
        return Inference(shown, outputs, rec["im_info"], dropped, notes)

    def _panel(self, image: np.ndarray, shown: tuple) -> np.ndarray:
        """One RoI and its bins, zoomed: the region around both, on a square panel."""
        cls, score, box, bins, _ = shown
        extent = np.concatenate([np.reshape(box, (1, 4)), bins.reshape(-1, 4)])
        margin = 0.25 * max(box[2] - box[0], box[3] - box[1], 8.0)
        height, width = image.shape[:2]
        x0 = int(np.clip(extent[:, 0].min() - margin, 0, width - 1))
        y0 = int(np.clip(extent[:, 1].min() - margin, 0, height - 1))
        x1 = int(np.clip(extent[:, 2].max() + margin, x0 + 1, width))
        y1 = int(np.clip(extent[:, 3].max() + margin, y0 + 1, height))
        scale = PSROI_PANEL / max(x1 - x0, y1 - y0)
        shift = np.array([x0, y0, x0, y0], np.float64)
        panel = vis.draw_psroi_bins(vis.resize_for_display(image[y0:y1, x0:x1], scale),
                                    np.subtract(box, shift), bins - shift, scale)  # fmt: skip
        lx, ly = (int(round(v)) for v in (np.subtract(box, shift)[:2] * scale))
        vis.draw_label(panel, f"{self.names[cls]} {score:.2f}", lx, ly, vis.class_colour(cls), 0.6)
        return vis.letterbox(panel, PSROI_PANEL, PSROI_PANEL)

    def draw(self, image: np.ndarray, inference: Inference) -> np.ndarray:
        panels = [self._panel(image, shown) for shown in inference.result]
        if not panels:  # nothing to show: the image itself, and the caption says so
            scale = PSROI_PANEL / max(image.shape[:2])
            panels = [vis.letterbox(vis.resize_for_display(image, scale), PSROI_PANEL,
                                    PSROI_PANEL)]  # fmt: skip
        k, layer = self.layer.pooled_size, self.layer
        source = "--boxes" if self.boxes is not None else "the network's best detections"
        return _with_caption(panels, [
            f"{layer.name}: the {k}x{k} bins of each RoI (orange), moved by the learned offsets "
            f"({layer.trans} x trans_std {layer.trans_std:g} x RoI size) of the box's class; "
            "bin colours run red to magenta down the rows and red to yellow along the columns.",
            f"RoIs: {source}" + ("" if inference.result else " (none here)") + ".",
            *inference.warnings,  # the boxes clipped or dropped
        ])  # fmt: skip

    def describe(self, inference: Inference) -> dict[str, Any]:
        rois = []
        for c, s, b, _, given in inference.result:
            roi = {"class": self.names[c], "score": round(s, 4), "box": [round(v, 1) for v in b]}
            if given is not None:
                roi["given"] = list(given)  # clipped to the image
            rois.append(roi)
        return {
            "layer": self.layer.name,
            "rois": rois,
            "dropped_boxes": [list(b) for b in inference.dropped],
        }

    def summary(self, inference: Inference) -> str:
        names = ", ".join(self.names[c] for c, *_ in inference.result)
        return f"{len(inference.result)} RoIs ({names})" if names else "no box to show"


# ------------------------------------------------------------------------------------ images


def collect_images(paths: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The files to try, and ``(path, reason)`` for paths that give none.

    A folder gives its files with an image extension (:data:`IMAGE_EXTENSIONS`), sorted; a file
    is tried whatever its name.
    """
    files: list[str] = []
    problems: list[tuple[str, str]] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, name)
                for name in os.listdir(path)
                if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
                and os.path.isfile(os.path.join(path, name))
            )
            if not found:
                problems.append((path, "the folder holds no image file"))
            files += found
        elif os.path.exists(path):
            files.append(path)
        else:
            problems.append((path, "no such file or folder"))
    return files, problems


@dataclasses.dataclass
class DemoReport:
    """What :func:`run_demo` did: ``written`` and ``skipped`` entries as in ``results.json``."""

    out_dir: str
    results_file: str
    written: list[dict[str, Any]]
    skipped: list[dict[str, str]]

    @property
    def ok(self) -> bool:
        """Whether at least one image was processed."""
        return bool(self.written)


def _output_path(out_dir: str, image_path: str, used: set[str]) -> str:
    stem = Path(image_path).stem or "image"
    name, k = f"{stem}.png", 2
    while name in used:
        name, k = f"{stem}_{k}.png", k + 1
    used.add(name)
    return os.path.join(out_dir, name)


def run_demo(task: Any, paths: Sequence[str], out_dir: str, warmup: int = 2) -> DemoReport:
    """Runs ``task`` (a ``*Demo`` object) on every image of ``paths``; see the module docstring.

    Returns:
        The report; ``results.json`` in ``out_dir`` holds the same.

    Raises:
        ValueError: ``warmup`` is negative, or ``out_dir`` cannot be made a folder
            (:func:`check_output_dir`); before any image is read.
    """
    if warmup < 0:
        raise ValueError(f"--warmup must be >= 0, got {warmup}")
    check_output_dir(out_dir)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as err:  # what check_output_dir cannot foresee (root, races)
        raise ValueError(f"cannot create the output folder {out_dir}: {err.strerror}") from err
    files, problems = collect_images(paths)
    skipped = [{"image": p, "reason": r} for p, r in problems]
    for path, reason in problems:
        logger.warning("skipping %s: %s", path, reason)
    written: list[dict[str, Any]] = []
    used: set[str] = set()
    warm = warmup <= 0
    for path in files:
        try:
            image = read_image(path)
        except (OSError, ValueError, cv2.error) as err:
            logger.warning("skipping %s: %s", path, err)
            skipped.append({"image": path, "reason": str(err)})
            continue
        try:
            if not warm:
                for _ in range(warmup):
                    task.infer(image)
                warm = True
            tic = time.perf_counter()
            inference = task.infer(image)
            seconds = time.perf_counter() - tic
            picture = task.draw(image, inference)
            png = vis.write_png(_output_path(out_dir, path, used), picture)
        except SkipImage as err:  # nothing to show here (e.g. every --points outside it)
            logger.warning("skipping %s: %s", path, err)
            skipped.append({"image": path, "reason": str(err)})
            continue
        except Exception as err:  # one bad image must not end the demo
            logger.debug("failure on %s", path, exc_info=True)
            reason = f"{type(err).__name__}: {err}"
            logger.warning("skipping %s: %s", path, reason)
            skipped.append({"image": path, "reason": reason})
            continue
        height, width = image.shape[:2]
        for warning in inference.warnings:
            logger.warning("%s: %s", path, warning)
        logger.info("%s (%dx%d): %s in %.3f s -> %s", path, width, height,
                    task.summary(inference), seconds, png)  # fmt: skip
        entry = {"image": path, "output": png, "width": width, "height": height,
                 "seconds": round(seconds, 4)}  # fmt: skip
        entry.update(task.describe(inference))
        if inference.warnings:
            entry["warnings"] = list(inference.warnings)
        written.append(entry)
    results_file = os.path.join(out_dir, "results.json")
    with open(results_file, "w", encoding="utf-8") as f:
        json.dump({"written": written, "skipped": skipped}, f, indent=1)
    logger.info("%d picture(s) in %s, %d input(s) skipped", len(written), out_dir, len(skipped))
    return DemoReport(out_dir, results_file, written, skipped)


# -------------------------------------------------------------------------------------- CLI


def _points(text: str) -> list[tuple[float, float]]:
    """'x,y;x,y' -> [(x, y), ...] (finite numbers)."""
    try:
        points = [tuple(float(v) for v in p.split(",")) for p in text.split(";") if p.strip()]
    except ValueError:
        points = []
    if not points or any(len(p) != 2 or not all(map(math.isfinite, p)) for p in points):
        raise argparse.ArgumentTypeError(f"points must be 'x,y;x,y;...', got {text!r}")
    return points


def _boxes(text: str) -> list[tuple[tuple[float, ...], int | None]]:
    """'x1,y1,x2,y2[,class];...' -> [((x1, y1, x2, y2), class or None), ...]: finite
    coordinates with x1 <= x2 and y1 <= y2, an integer class (its range is the model's)."""
    boxes = []
    for part in (p for p in text.split(";") if p.strip()):
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError:
            values = []
        if len(values) not in (4, 5) or not all(map(math.isfinite, values)):
            raise argparse.ArgumentTypeError(
                f"boxes must be 'x1,y1,x2,y2[,class];...', got {text!r}"
            )
        x1, y1, x2, y2 = values[:4]
        if x1 > x2 or y1 > y2:
            raise argparse.ArgumentTypeError(f"box {part!r} must have x1 <= x2 and y1 <= y2")
        if len(values) == 5 and not values[4].is_integer():
            raise argparse.ArgumentTypeError(f"the class of box {part!r} must be an integer")
        boxes.append((tuple(values[:4]), int(values[4]) if len(values) == 5 else None))
    return boxes


#: Numeric options and their allowed ``(lowest, highest)`` values (None: no bound).
OPTION_RANGES: dict[str, tuple[float | None, float | None]] = {
    "thresh": (0.0, 1.0),
    "warmup": (0, None),
    "epoch": (0, None),
    "gpu": (0, None),
    "num_boxes": (1, None),
    "offset_group": (0, None),  # the highest is the network's (ConvOffsetDemo)
}


def check_options(args: argparse.Namespace) -> None:
    """Refuses numeric options outside :data:`OPTION_RANGES` (those not given are skipped).

    Raises:
        ValueError: naming the option, the allowed range and the value.
    """
    for name, (low, high) in OPTION_RANGES.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        # written so that NaN fails too
        if not ((low is None or value >= low) and (high is None or value <= high)):
            allowed = f"in [{low:g}, {high:g}]" if high is not None else f">= {low:g}"
            raise ValueError(f"--{name} must be {allowed}, got {value:g}")


def check_output_dir(out_dir: str) -> None:
    """Refuses an output folder that is a file or cannot be created or written; creates nothing.

    Raises:
        ValueError: the message names the folder and what is in the way.
    """
    path = os.path.abspath(out_dir)
    if os.path.lexists(path) and not os.path.isdir(path):
        what = "a broken link" if not os.path.exists(path) else "a file, not a folder"
        raise ValueError(f"output folder {out_dir} (--out): it exists and is {what}")
    parent = path
    while not os.path.lexists(parent):  # the nearest existing folder, where it is created
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(
            f"output folder {out_dir} (--out) cannot be created: {parent} is not a folder"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        action = "written" if parent == path else "created"
        raise ValueError(
            f"output folder {out_dir} (--out) cannot be {action}: {parent} is not writable"
        )


def _make_task(kind: str, model: DemoModel, ctx: mx.Context, args: argparse.Namespace) -> Any:
    if kind == "conv_offsets":
        return ConvOffsetDemo(model, ctx, args.thresh, args.points, args.offset_group)
    if kind == "psroi_offsets":
        return PsroiOffsetDemo(model, ctx, args.thresh, args.boxes, args.num_boxes)
    return BASE_TASKS[model.net.task](model, ctx, args.thresh)


KINDS = ("detect", "segment", "conv_offsets", "psroi_offsets")

#: The options of every demo ("all") and of a kind: (flag, ``add_argument`` keywords).
_ARGUMENTS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "all": (
        ("--cfg", {"help": "a config whose training output to use (default: the released "
                   "model, else the synthetic one)"}),
        ("--set", {"dest": "overrides", "action": "append", "metavar": "KEY=VALUE",
                   "help": "override a config key (repeatable)"}),
        ("--params", {"metavar": "PREFIX", "help": "a checkpoint PREFIX-NNNN.params (with "
                      "--epoch, default 0)"}),
        ("--epoch", {"type": int, "help": "checkpoint epoch (default: the latest)"}),
        ("--out", {"help": "output folder (default: output/demo/<model>)"}),
        ("--thresh", {"type": float, "default": 0.7,
                      "help": "detections: lowest score shown (default %(default)s)"}),
        ("--gpu", {"type": int, "help": "run on this GPU (default: the CPU)"}),
        ("--warmup", {"type": int, "default": 2,
                      "help": "untimed runs on the first image (default %(default)s)"}),
    ),
    "conv_offsets": (
        ("--points", {"type": _points, "help": "activation points 'x,y;x,y' in image pixels "
                      "(default: the best detections, then fixed points)"}),
        ("--offset_group", {"type": int, "default": 0,
                            "help": "offset group drawn (default %(default)s)"}),
    ),
    "psroi_offsets": (
        ("--boxes", {"type": _boxes, "help": "boxes 'x1,y1,x2,y2[,class];...' in image pixels "
                     "(default: the best detections)"}),
        ("--num_boxes", {"type": int, "default": 4,
                         "help": "detections shown (default %(default)s)"}),
    ),
}  # fmt: skip


def demo_main(
    kind: str,
    specs: Mapping[str | None, DemoSpec],
    get_network: Callable[[str], Any],
    description: str,
    argv: Sequence[str] | None = None,
) -> int:
    """A demo's command line (see the module docstring); returns the exit status.

    Args:
        kind: one of :data:`KINDS`.
        specs: the models: ``specs[None]`` by default, ``specs[flag]`` with ``--<flag>``
            (``--rfcn_only``).
        get_network: the architecture's registry lookup.
        description: the ``--help`` text.
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        0 when at least one picture was written; 1 when no image could be processed; 2 when
        there is no model (the message says how to get one), the model does not fit the demo,
        or an option is out of range or the output folder unusable (checked first).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "images",
        nargs="*",
        help=f"image files or folders (default: the images in {DEFAULT_IMAGES})",
    )
    for flag, spec in specs.items():
        if flag:
            parser.add_argument(f"--{flag}", action="store_true", help=f"the {spec.title} model")
    for flag, options in _ARGUMENTS["all"] + _ARGUMENTS.get(kind, ()):
        parser.add_argument(flag, **options)
    add_debug_arg(parser)
    args = parser.parse_args(argv)

    # one line per image: not MXNet's "Subgraph backend MKLDNN is activated" per binding
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    demo_logger = logging.getLogger(__name__)
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stdout, format="%(message)s", level=logging.WARNING)
    demo_logger.setLevel(logging.INFO)
    chosen = next((s for f, s in specs.items() if f and getattr(args, f)), specs[None])
    name = chosen.name if args.cfg is None else f"{Path(args.cfg).stem}_{kind}"
    out_dir = args.out or os.path.join("output", "demo", name)
    try:
        check_options(args)  # the arguments first: no model is loaded for nothing
        check_output_dir(out_dir)
        model = resolve_model(chosen, get_network, args.cfg, args.overrides or (), args.params,
                              args.epoch)  # fmt: skip
        ctx = demo_context(args.gpu)
        task = _make_task(kind, model, ctx, args)
        demo_logger.info("%s demo: %s model %s (%s, config %s) on %s; pictures go to %s",
                         kind, model.origin, model.params_file, model.cfg.symbol,
                         model.cfg_path, ctx, out_dir)  # fmt: skip
        report = run_demo(task, args.images or [str(DEFAULT_IMAGES)], out_dir, args.warmup)
    except USER_ERRORS as err:
        if args.debug:
            raise
        report_user_error(err)
        return 2
    return 0 if report.ok else 1
