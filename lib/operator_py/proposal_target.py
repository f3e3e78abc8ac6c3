"""R-CNN training targets for the RPN proposals (``op_type='proposal_target'``).

Inputs, for the B = ``batch_images`` images of one device: ``rois`` (B * N, 5) ``(batch
index b, x1, y1, x2, y2)`` from the proposal layer, image after image (rows ``[b * N, (b + 1) *
N)`` belong to image b, the layout of both proposal ops), and ``gt_boxes`` (B * G, 5) ``(x1, y1,
x2, y2, class)``: the loader's (B, G, 5) reshaped to (-1, 5), so rows ``[b * G, (b + 1) * G)``
belong to image b. Each image is sampled on its own: its gt boxes are appended to its
proposals, then :func:`sample_rois` picks foreground RoIs (IoU >= ``fg_thresh`` with a gt) and
background RoIs (IoU in ``[bg_thresh_lo, bg_thresh_hi)``) and computes their regression targets.

Outputs, image after image: ``rois_output`` (B * R, 5) (batch index kept), ``label`` (B * R,),
``bbox_target`` (B * R, 4 * num_classes) and ``bbox_weight`` (B * R, 4 * num_classes), with
R = ``batch_rois / batch_images`` RoIs per image (``TRAIN.BATCH_ROIS`` counts the RoIs of a
device's batch, as the original) or, when ``batch_rois == -1`` (R-FCN and FPN with OHEM),
R = N + G: every proposal and gt is kept (an image with fewer than G real gt rows repeats some
of its background RoIs to fill its R rows).

``num_classes`` is the number of *regression* classes: 2 for class-agnostic regression (the
target goes to slot 1), else the number of classes (slot = class).

Differences from the original: the configuration arrives as explicit attributes (``fg_thresh``,
``bg_thresh_hi``, ``bg_thresh_lo``, ``bbox_means``, ``bbox_stds``, ``bbox_weights``,
``bbox_normalization_precomputed``, ``class_agnostic``) instead of a pickled config;
``batch_rois / batch_images`` is an integer division; several images per device; an image
without gt boxes gets background labels instead of a crash; gt rows of class <= 0 are treated
as padding (neither candidates nor targets), and so are rows of a class >= ``num_classes`` with
class-specific regression (no slot for their targets; logged as a warning); a short sample is
filled up by repeating its background RoIs in order (the original drew random RoIs); attributes
and input shapes are checked when the symbol is built and bound, never in ``forward`` (see
:mod:`lib.operator_py.base`). See :func:`proposal_target_symbol` for building it from a config.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import mxnet as mx
import numpy as np
from easydict import EasyDict

from lib.bbox.bbox_regression import expand_bbox_regression_targets
from lib.bbox.bbox_transform import bbox_overlaps, bbox_transform
from lib.config.defaults import COUNT, FRACTION, Int, Num
from lib.operator_py.base import (
    CheckedProp,
    bool_attr,
    check_attrs,
    float_attr,
    floats_attr,
    int_attr,
    known,
)

logger = logging.getLogger(__name__)

# Defaults of the explicit attributes (the original config defaults).
DEFAULT_BBOX_MEANS = (0.0, 0.0, 0.0, 0.0)
DEFAULT_BBOX_STDS = (0.1, 0.1, 0.2, 0.2)
DEFAULT_BBOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def sample_rois(
    rois: np.ndarray,
    fg_rois_per_image: int,
    rois_per_image: int,
    num_classes: int,
    gt_boxes: np.ndarray | None = None,
    *,
    labels: np.ndarray | None = None,
    overlaps: np.ndarray | None = None,
    bbox_targets: np.ndarray | None = None,
    fg_thresh: float = 0.5,
    bg_thresh_hi: float = 0.5,
    bg_thresh_lo: float = 0.0,
    bbox_means: Sequence[float] = DEFAULT_BBOX_MEANS,
    bbox_stds: Sequence[float] = DEFAULT_BBOX_STDS,
    bbox_weights: Sequence[float] = DEFAULT_BBOX_WEIGHTS,
    normalize_targets: bool = True,
    class_agnostic: bool = False,
    rng: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sample foreground / background RoIs of one image and build their targets.

    Either ``gt_boxes`` is given (targets are computed against the best-overlapping gt) or the
    precomputed ``labels``, ``overlaps`` and ``bbox_targets`` (rows ``(class, dx, dy, dw, dh)``,
    already normalised) of a proposal roidb.

    Up to ``fg_rois_per_image`` foreground RoIs (IoU >= ``fg_thresh``) are drawn without
    replacement, then background RoIs (``bg_thresh_lo <= IoU < bg_thresh_hi``) fill up to
    ``rois_per_image``; if there are still too few, random RoIs are repeated (as background).
    Foreground RoIs come first in the output.

    Args:
        rois: (N, 5) ``(batch index, x1, y1, x2, y2)``.
        fg_rois_per_image: maximum number of foreground RoIs.
        rois_per_image: number of output RoIs.
        num_classes: regression classes (2 when ``class_agnostic``).
        gt_boxes: (G, 5) ``(x1, y1, x2, y2, class)``.
        labels, overlaps, bbox_targets: precomputed per-RoI class, max IoU and targets.
        fg_thresh, bg_thresh_hi, bg_thresh_lo: IoU thresholds (TRAIN.FG_THRESH, ...).
        bbox_means, bbox_stds: target normalisation, ``(t - means) / stds``.
        bbox_weights: regression weights of a foreground RoI (TRAIN.BBOX_WEIGHTS).
        normalize_targets: apply the normalisation (TRAIN.BBOX_NORMALIZATION_PRECOMPUTED).
        class_agnostic: targets go to slot 1 of 2 (CLASS_AGNOSTIC).
        rng: ``np.random.RandomState`` / ``Generator``; ``None`` uses ``np.random``.

    Returns:
        ``(rois, labels, bbox_targets, bbox_weights)``: (R, 5), (R,), (R, 4 * num_classes) and
        (R, 4 * num_classes), R = ``rois_per_image``; background labels are 0.
    """
    rng = np.random if rng is None else rng
    rois = np.asarray(rois)
    rois_per_image = int(rois_per_image)
    fg_rois_per_image = int(fg_rois_per_image)
    if labels is None:
        if gt_boxes is None:
            raise ValueError("sample_rois: pass gt_boxes or precomputed labels/overlaps/targets")
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64)
        if gt_boxes.shape[0] > 0:
            all_overlaps = bbox_overlaps(
                rois[:, 1:5].astype(np.float64), gt_boxes[:, :4].astype(np.float64)
            )
            gt_assignment = all_overlaps.argmax(axis=1)
            overlaps = all_overlaps.max(axis=1)
            labels = gt_boxes[gt_assignment, 4]
        else:
            gt_assignment = np.zeros(rois.shape[0], dtype=np.int64)
            overlaps = np.zeros(rois.shape[0])
            labels = np.zeros(rois.shape[0])
    elif overlaps is None or bbox_targets is None:
        raise ValueError("sample_rois: precomputed labels need overlaps and bbox_targets too")

    fg_indexes = np.where(overlaps >= fg_thresh)[0]
    fg_this_image = min(fg_rois_per_image, fg_indexes.size)
    if fg_indexes.size > fg_this_image:
        fg_indexes = rng.choice(fg_indexes, size=fg_this_image, replace=False)

    bg_indexes = np.where((overlaps < bg_thresh_hi) & (overlaps >= bg_thresh_lo))[0]
    bg_this_image = min(rois_per_image - fg_this_image, bg_indexes.size)
    if bg_indexes.size > bg_this_image:
        bg_indexes = rng.choice(bg_indexes, size=bg_this_image, replace=False)

    keep = np.append(fg_indexes, bg_indexes).astype(np.int64)
    # Fill up to a fixed minibatch size by repeating the background RoIs (or, without any,
    # all RoIs) in order; the repeats are labelled background below.
    if keep.shape[0] < rois_per_image:
        pool = bg_indexes if bg_indexes.size else np.arange(rois.shape[0])
        keep = np.append(keep, np.resize(pool, rois_per_image - keep.shape[0]))

    labels = np.array(labels[keep], dtype=np.float32)
    labels[fg_this_image:] = 0
    rois = rois[keep]

    if bbox_targets is not None:
        target_data = np.asarray(bbox_targets)[keep, :]
    else:
        targets = np.zeros((keep.shape[0], 4))
        if gt_boxes.shape[0] > 0:
            targets = bbox_transform(rois[:, 1:5], gt_boxes[gt_assignment[keep], :4])
        if normalize_targets:
            targets = (targets - np.asarray(bbox_means)) / np.asarray(bbox_stds)
        target_data = np.hstack((labels[:, None], targets))

    cfg = EasyDict(CLASS_AGNOSTIC=class_agnostic, TRAIN=EasyDict(BBOX_WEIGHTS=bbox_weights))
    expanded, weights = expand_bbox_regression_targets(target_data, num_classes, cfg)
    return rois.astype(np.float32), labels, expanded, weights


class ProposalTargetOperator(mx.operator.CustomOp):
    """Forward: append gt boxes to the proposals and :func:`sample_rois`."""

    def __init__(
        self,
        num_classes: int,
        batch_images: int,
        batch_rois: int,
        fg_fraction: float,
        sample_kwargs: dict[str, Any],
    ) -> None:
        super().__init__()
        self._num_classes = num_classes
        self._batch_images = batch_images
        self._batch_rois = batch_rois
        self._fg_fraction = fg_fraction
        self._sample_kwargs = sample_kwargs

    def forward(self, is_train, req, in_data, out_data, aux):
        # ProposalTargetProp checked that both inputs split evenly over the images, and the
        # attributes (batch_rois a multiple of batch_images, fg_fraction in [0, 1]).
        all_rois = in_data[0].asnumpy()
        all_gt = in_data[1].asnumpy()
        num_images = self._batch_images
        rois_of_image = all_rois.shape[0] // num_images
        gt_per_image = all_gt.reshape(num_images, -1, 5)
        outputs: list[list[np.ndarray]] = [[], [], [], []]
        for b in range(num_images):
            # By position, not by the batch index column: each image then has its N >= 1
            # rows, so the sample (and the output size) never depends on the data.
            rois = all_rois[b * rois_of_image : (b + 1) * rois_of_image]
            if self._batch_rois == -1:
                rois_per_image = rois_of_image + gt_per_image.shape[1]
                fg_rois_per_image = rois_per_image
            else:
                rois_per_image = self._batch_rois // num_images
                fg_rois_per_image = int(np.round(self._fg_fraction * rois_per_image))
            gt_boxes = self._real_gt(gt_per_image[b])
            gt_rois = np.hstack((np.full((gt_boxes.shape[0], 1), b, dtype=rois.dtype),
                                 gt_boxes[:, :4]))  # fmt: skip
            sampled = sample_rois(
                np.vstack((rois, gt_rois)),
                fg_rois_per_image,
                rois_per_image,
                self._num_classes,
                gt_boxes,
                **self._sample_kwargs,
            )
            for out, value in zip(outputs, sampled):
                out.append(value)
        for i, values in enumerate(outputs):
            self.assign(out_data[i], req[i], mx.nd.array(np.concatenate(values)))

    def _real_gt(self, gt_boxes: np.ndarray) -> np.ndarray:
        """The gt rows of one image that are objects: class > 0 (lower rows are padding) and,
        with class-specific regression, < num_classes (a larger id has no target slot: the
        row is dropped with a warning instead of failing in forward)."""
        gt_boxes = gt_boxes[gt_boxes[:, 4] > 0]
        if not self._sample_kwargs["class_agnostic"]:
            unknown = gt_boxes[:, 4] >= self._num_classes
            if unknown.any():
                logger.warning(
                    "proposal_target: ignoring gt boxes of classes %s (num_classes=%d)",
                    sorted(set(gt_boxes[unknown, 4].tolist())),
                    self._num_classes,
                )
                gt_boxes = gt_boxes[~unknown]
        return gt_boxes

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        for i in range(len(in_grad)):
            self.assign(in_grad[i], req[i], 0)


@mx.operator.register("proposal_target")
class ProposalTargetProp(CheckedProp):
    """Attributes: the original's ``num_classes, batch_images, batch_rois, fg_fraction`` plus
    the config values listed in the module docstring (see :meth:`parse`)."""

    op_type = "proposal_target"
    arguments = ("rois", "gt_boxes")

    def parse(
        self,
        num_classes: str,
        batch_images: str,
        batch_rois: str,
        fg_fraction: str = "0.25",
        fg_thresh: str = "0.5",
        bg_thresh_hi: str = "0.5",
        bg_thresh_lo: str = "0.0",
        bbox_means: str = str(DEFAULT_BBOX_MEANS),
        bbox_stds: str = str(DEFAULT_BBOX_STDS),
        bbox_weights: str = str(DEFAULT_BBOX_WEIGHTS),
        bbox_normalization_precomputed: str = "False",
        class_agnostic: str = "False",
    ) -> None:
        """``num_classes`` (regression classes) >= 2; ``batch_images`` >= 1; ``batch_rois``
        -1 or a multiple of ``batch_images``; fractions and IoU thresholds in [0, 1]; four
        finite ``bbox_means``, four ``bbox_stds`` > 0, four ``bbox_weights`` >= 0."""
        self._num_classes = int_attr("num_classes", num_classes, Int(min=2))
        self._batch_images = int_attr("batch_images", batch_images, COUNT)
        self._batch_rois = int_attr("batch_rois", batch_rois, Int(min=1, also=(-1,)))
        if self._batch_rois != -1 and self._batch_rois % self._batch_images:
            raise ValueError(
                f"attribute batch_rois must be -1 or a multiple of batch_images "
                f"({self._batch_images}), got {batch_rois!r}"
            )
        self._fg_fraction = float_attr("fg_fraction", fg_fraction, FRACTION)
        agnostic = bool_attr("class_agnostic", class_agnostic)
        if agnostic and self._num_classes != 2:
            raise ValueError(
                f"attribute num_classes must be 2 with class_agnostic regression, got "
                f"{num_classes!r}"
            )
        self._sample_kwargs = {
            "fg_thresh": float_attr("fg_thresh", fg_thresh, FRACTION),
            "bg_thresh_hi": float_attr("bg_thresh_hi", bg_thresh_hi, FRACTION),
            "bg_thresh_lo": float_attr("bg_thresh_lo", bg_thresh_lo, FRACTION),
            "bbox_means": floats_attr("bbox_means", bbox_means, Num(), length=4),
            "bbox_stds": floats_attr("bbox_stds", bbox_stds, Num(above=0), length=4),
            "bbox_weights": floats_attr("bbox_weights", bbox_weights, Num(min=0), length=4),
            "normalize_targets": bool_attr(
                "bbox_normalization_precomputed", bbox_normalization_precomputed
            ),
            "class_agnostic": agnostic,
        }

    def list_outputs(self):
        return ["rois_output", "label", "bbox_target", "bbox_weight"]

    def infer_shape(self, in_shape):
        rois_shape, gt_boxes_shape = in_shape[0], in_shape[1]
        self.expect_shape("rois", rois_shape, (None, 5), "(B * N, 5)")
        self.expect_shape("gt_boxes", gt_boxes_shape, (None, 5), "(B * G, 5)")
        images = self._batch_images
        for name, shape in (("rois", rois_shape), ("gt_boxes", gt_boxes_shape)):
            if shape and shape[0] > 0 and shape[0] % images:
                self.fail(
                    f"{name} has {shape[0]} rows, which do not split over batch_images={images} "
                    "images"
                )
        if self._batch_rois != -1:
            num = self._batch_rois
        elif known(rois_shape) and known(gt_boxes_shape):
            num = rois_shape[0] + gt_boxes_shape[0]  # per image N + G, for B images
        else:  # partial inference: not known yet
            return in_shape, [()] * 4, []
        c4 = 4 * self._num_classes
        return [rois_shape, gt_boxes_shape], [(num, 5), (num,), (num, c4), (num, c4)], []

    def create_operator(self, ctx, shapes, dtypes):
        return ProposalTargetOperator(
            self._num_classes,
            self._batch_images,
            self._batch_rois,
            self._fg_fraction,
            self._sample_kwargs,
        )


def proposal_target_symbol(
    cfg: Any,
    rois: mx.sym.Symbol,
    gt_boxes: mx.sym.Symbol,
    num_reg_classes: int,
    name: str | None = None,
) -> mx.sym.Symbol:
    """``proposal_target`` configured from ``cfg`` (TRAIN.* and CLASS_AGNOSTIC).

    Args:
        cfg: the experiment config.
        rois: (B * N, 5) proposals of the ``TRAIN.BATCH_IMAGES`` images.
        gt_boxes: (B * G, 5) gt boxes (the loader's (B, G, 5) reshaped with ``shape=(-1, 5)``).
        num_reg_classes: 2 when ``cfg.CLASS_AGNOSTIC`` else ``dataset.NUM_CLASSES``.
        name: layer name.

    Returns:
        The 4-output symbol ``rois_output, label, bbox_target, bbox_weight``.

    Raises:
        ValueError: a value out of the op's range, e.g. ``proposal_target: attribute
            batch_images must be an integer >= 1, got '0'``.
    """
    train = cfg.TRAIN

    def floats(values: Sequence[float]) -> tuple[float, ...]:
        return tuple(float(v) for v in values)

    attrs = dict(
        num_classes=int(num_reg_classes),
        batch_images=int(train.BATCH_IMAGES),
        batch_rois=int(train.BATCH_ROIS),
        fg_fraction=float(train.FG_FRACTION),
        fg_thresh=float(train.FG_THRESH),
        bg_thresh_hi=float(train.BG_THRESH_HI),
        bg_thresh_lo=float(train.BG_THRESH_LO),
        bbox_means=floats(train.BBOX_MEANS),
        bbox_stds=floats(train.BBOX_STDS),
        bbox_weights=floats(train.BBOX_WEIGHTS),
        bbox_normalization_precomputed=bool(train.BBOX_NORMALIZATION_PRECOMPUTED),
        class_agnostic=bool(cfg.CLASS_AGNOSTIC),
    )
    check_attrs(ProposalTargetProp, attrs)
    return mx.sym.Custom(
        rois=rois, gt_boxes=gt_boxes, op_type="proposal_target", name=name, **attrs
    )
