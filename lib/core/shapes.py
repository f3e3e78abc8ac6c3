"""The largest input shapes of a batch: the one place that computes them.

A module is bound once at its maximal input shapes (``MutableModule(max_data_shapes=...)``);
smaller batches then bind modules that share its memory. The loaders (pre-binding for
training), the tester's ``Predictor`` and ``lib.tools.inspect_model`` all take their shapes
from :func:`max_input_shapes`, so they agree on the three things that decide them:

* the image size: the largest short side and the largest long side over the scales (training
  ``SCALES`` or the test scales), each rounded up to ``network.IMAGE_STRIDE``. A landscape
  shape, as the original: portrait images exceed it in height and bind another module;
* the batch: ``images_per_device * num_devices`` images. MXNet's executor group splits a batch
  over the devices along axis 0, so a module's shapes are those of the whole batch;
* the inputs the symbol has (``data``, ``im_info``, ``gt_boxes``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "INPUT_NAMES",
    "MAX_GT",
    "is_input",
    "max_image_size",
    "max_input_shapes",
    "param_shapes",
    "round_up",
]

#: Rows of ``gt_boxes`` the training modules are first bound with (the original's 100).
MAX_GT = 100

Shape = tuple[int, ...]


def round_up(value: int, stride: int) -> int:
    """``value`` rounded up to a multiple of ``stride`` (``stride`` 0 or 1: unchanged)."""
    return -(-int(value) // stride) * stride if stride and stride > 1 else int(value)


def max_image_size(cfg: Any, scales: Iterable[Sequence[int]] | None = None) -> tuple[int, int]:
    """(height, width) of the largest network input over ``scales`` (default ``cfg.SCALES``).

    Args:
        cfg: the config (``network.IMAGE_STRIDE``, ``SCALES``).
        scales: ``(short side, max long side)`` pairs.
    """
    scales = list(cfg.SCALES if scales is None else scales)
    if not scales:
        raise ValueError("max_image_size: no scales given")
    stride = int(cfg.network.IMAGE_STRIDE or 0)
    height = max(int(s[0]) for s in scales)
    width = max(int(s[1]) for s in scales)
    return round_up(height, stride), round_up(width, stride)


def max_input_shapes(
    cfg: Any,
    scales: Iterable[Sequence[int]] | None = None,
    images_per_device: int = 1,
    num_devices: int = 1,
    names: Sequence[str] = ("data", "im_info"),
    max_gt: int = MAX_GT,
    image_size: tuple[int, int] | None = None,
) -> list[tuple[str, Shape]]:
    """``[(name, shape)]`` of the largest batch, for the input ``names`` a symbol has.

    Args:
        cfg: the config.
        scales: the scales the batch may be resized to (default ``cfg.SCALES``).
        images_per_device: ``TRAIN.BATCH_IMAGES`` or ``TEST.BATCH_IMAGES``.
        num_devices: the number of contexts the batch is split over.
        names: among ``data`` (B, 3, H, W), ``im_info`` (B, 3), ``gt_boxes`` (B, max_gt, 5);
            other names are left out (their shape comes from the first batch).
        max_gt: rows of ``gt_boxes``.
        image_size: (H, W) instead of the one from ``scales`` (segmentation crops).
    """
    if images_per_device < 1 or num_devices < 1:
        raise ValueError(
            f"images_per_device ({images_per_device}) and num_devices ({num_devices}) must be >= 1"
        )
    batch = images_per_device * num_devices
    height, width = max_image_size(cfg, scales) if image_size is None else image_size
    shapes = {
        "data": (batch, 3, int(height), int(width)),
        "im_info": (batch, 3),
        "gt_boxes": (batch, int(max_gt), 5),
    }
    return [(name, shapes[name]) for name in names if name in shapes]


#: Network inputs that are not parameters (besides any ``*_label``).
INPUT_NAMES = frozenset(
    {"data", "im_info", "gt_boxes", "label", "bbox_target", "bbox_weight", "rois"}
)


def is_input(name: str) -> bool:
    """Whether an argument of a network is an input (data or label), not a parameter."""
    return name in INPUT_NAMES or name.endswith("_label")


def param_shapes(cfg: Any, sym: Any) -> tuple[dict[str, Shape], dict[str, Shape]]:
    """``(arg_shapes, aux_shapes)`` of the parameters of ``sym`` (a training or test symbol).

    Inferred for one image at ``SCALES[0]`` (the parameters' shapes do not depend on the image
    size): ``data``, ``im_info`` and ``gt_boxes`` from :func:`max_input_shapes`, one RoI for a
    ``rois`` input (given proposals); labels follow from the data.

    Raises:
        ValueError: a parameter's shape cannot be inferred.
    """
    args = sym.list_arguments()
    shapes = dict(max_input_shapes(cfg, cfg.SCALES[:1], names=args))
    if "rois" in args:
        shapes["rois"] = (1, 5)
    arg_shapes, _, aux_shapes = sym.infer_shape_partial(**shapes)
    unknown = [n for n, s in zip(args, arg_shapes) if not s or 0 in s]
    if unknown:
        raise ValueError(f"cannot infer the shapes of {unknown} from inputs {shapes}")
    return (
        {n: tuple(s) for n, s in zip(args, arg_shapes) if not is_input(n)},
        {n: tuple(s) for n, s in zip(sym.list_auxiliary_states(), aux_shapes)},
    )
