"""Every configuration key the project knows, with its default and a one-line comment.

This is the single place where config keys are declared (detectron2 style). An experiment yaml
may only set keys that appear here; `lib.config.load_config` rejects anything else.

The key spellings are the original Deformable ConvNets ones (the yaml files are the
compatibility interface), so the casing is mixed on purpose. The tree below holds the
detection defaults of the original `rfcn/config/config.py` (identical to faster_rcnn's), plus
the keys that the original FPN and DeepLab config files or the original yamls add on top.

Values are written in their loaded form where that reads well (`SCALES` as a list of tuples) and
as plain lists where the loader turns them into arrays (`PIXEL_MEANS`, `BBOX_WEIGHTS`); every
leaf passes through the same conversion table as yaml values on each load, so a load always
returns fresh objects and never aliases this module's data. Do not mutate these dicts.

`ARCH_DEFAULTS` holds the per-architecture deltas, as data: a nested dict per architecture that
is merged over `DEFAULTS` before the yaml. Only DeepLab differs (its original config.py has other
defaults); the three detection architectures share `DEFAULTS` unchanged.

`DOMAINS` (at the end) states the values each key may take and `RULES` the conditions between
keys; `load_config` checks both on every load, so this file is the one place to read (and
change) what a config may hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

DEFAULTS: dict[str, Any] = {
    # Free-form tag the original yamls carry ("mxnet"); not read by the code.
    "MXNET_VERSION": "",
    # Root of the output tree; logs and checkpoints go to <output_path>/<cfg name>/<image_set>/.
    "output_path": "",
    # Network builder name, looked up in the architecture's SYMBOLS registry.
    "symbol": "",
    # Comma-separated GPU ids ("0,1,2,3"); the empty string means run on the CPU.
    "gpus": "",
    # CPU contexts when gpus is empty; > 1 splits each batch over several CPU contexts exactly
    # as over several GPUs (the multi-device code path, testable without GPUs).
    "cpu_contexts": 1,
    # Box regression predicts one class-agnostic box (R-FCN) instead of one box per class.
    "CLASS_AGNOSTIC": True,
    # Training scales as (short side, max long side) pairs; yaml may write a single [600, 1000].
    "SCALES": [(600, 1000)],
    # Test scales, (short side, max long side) pairs: every image is detected at each and the
    # detections are merged before NMS. Empty: SCALES[0] (single-scale, as R-FCN's original).
    "TEST_SCALES": [],
    "default": {
        # Log training speed and metrics every `frequent` batches.
        "frequent": 20,
        # MXNet kvstore type used by Module.fit ('device', 'local', ...).
        "kvstore": "device",
    },
    "network": {
        # Prefix of the pretrained backbone checkpoint (<prefix>-<epoch>.params).
        "pretrained": "",
        # Epoch number of the pretrained checkpoint.
        "pretrained_epoch": 0,
        # Per-channel means subtracted from the image, in B, G, R order; loaded as np.ndarray.
        "PIXEL_MEANS": [0.0, 0.0, 0.0],
        # Pad images with zeros to a multiple of this stride (0: no padding; FPN uses 32).
        "IMAGE_STRIDE": 0,
        # Stride of the RPN feature map; a list of strides for FPN ([4, 8, 16, 32, 64]).
        "RPN_FEAT_STRIDE": 16,
        # Stride of the feature map the RoI pooling reads.
        "RCNN_FEAT_STRIDE": 16,
        # Parameters whose names contain any of these substrings are frozen during training.
        "FIXED_PARAMS": ["gamma", "beta"],
        # Frozen-parameter substrings for the shared layers in alternate training.
        "FIXED_PARAMS_SHARED": ["gamma", "beta"],
        # Anchor scales, in units of the feature stride; loaded as a tuple.
        "ANCHOR_SCALES": (8, 16, 32),
        # Anchor aspect ratios (height / width); loaded as a tuple.
        "ANCHOR_RATIOS": (0.5, 1, 2),
        # Anchors per feature-map location; must equal len(ANCHOR_SCALES) * len(ANCHOR_RATIOS).
        "NUM_ANCHORS": 9,
    },
    "dataset": {
        # Dataset class name (PascalVOC, coco, CityScape, synthetic, ...).
        "dataset": "PascalVOC",
        # Training image set(s); several are joined with '+' (2007_trainval+2012_trainval).
        "image_set": "2007_trainval",
        # Image set used by test.py.
        "test_image_set": "2007_test",
        # Root for caches and proposal files.
        "root_path": "./data",
        # Directory that holds the dataset itself.
        "dataset_path": "./data/VOCdevkit",
        # Number of classes, background included.
        "NUM_CLASSES": 21,
        # Class names, in the network's class order; empty: the dataset's own (COCO json
        # categories, VOC's 20, Cityscapes' 19). Detection lists the object classes only (the
        # background is class 0; a leading '__background__' is accepted), so NUM_CLASSES must
        # be len(CLASSES) + 1; segmentation lists all NUM_CLASSES. A VOC-format tree takes its
        # class list from here; a COCO json's categories must match it. The demos draw these.
        "CLASSES": [],
        # Source of RoIs when a stage does not run its own RPN ('rpn', 'selective_search').
        "proposal": "rpn",
        # Cityscapes label directory name (gtFine or gtCoarse); segmentation only.
        "annotation_prefix": "gtFine",
    },
    "TRAIN": {
        # Base learning rate.
        "lr": 0.0,
        # Epochs at which lr is multiplied by lr_factor, comma-separated ('4,6'; may be fractional).
        "lr_step": "",
        # Factor applied to lr at each lr_step.
        "lr_factor": 0.1,
        # Use a constant warmup_lr for the first warmup_step iterations.
        "warmup": False,
        # Learning rate during warmup.
        "warmup_lr": 0.0,
        # Number of warmup iterations.
        "warmup_step": 0,
        # SGD momentum.
        "momentum": 0.9,
        # Weight decay.
        "wd": 0.0005,
        # First epoch to train (a checkpoint of this epoch is loaded when RESUME is set).
        "begin_epoch": 0,
        # Training stops after this epoch.
        "end_epoch": 0,
        # Checkpoint file prefix inside the output directory.
        "model_prefix": "",
        # Four-step alternate training (the original's train_alternate.py).
        "ALTERNATE": {
            # Images per device for the RPN stages.
            "RPN_BATCH_IMAGES": 0,
            # Images per device for the R-CNN / R-FCN stages.
            "RCNN_BATCH_IMAGES": 0,
            # Stage 1 RPN: learning rate, lr_step string, number of epochs.
            "rpn1_lr": 0.0,
            "rpn1_lr_step": "",
            "rpn1_epoch": 0,
            # Stage 1 R-FCN: learning rate, lr_step string, number of epochs.
            "rfcn1_lr": 0.0,
            "rfcn1_lr_step": "",
            "rfcn1_epoch": 0,
            # Stage 2 RPN: learning rate, lr_step string, number of epochs.
            "rpn2_lr": 0.0,
            "rpn2_lr_step": "",
            "rpn2_epoch": 0,
            # Stage 2 R-FCN: learning rate, lr_step string, number of epochs.
            "rfcn2_lr": 0.0,
            "rfcn2_lr_step": "",
            "rfcn2_epoch": 0,
            # Optional stage 3 RPN: learning rate, lr_step string, number of epochs.
            "rpn3_lr": 0.0,
            "rpn3_lr_step": "",
            "rpn3_epoch": 0,
        },
        # Resume from <model_prefix>-<begin_epoch> with its optimizer states.
        "RESUME": False,
        # Add horizontally flipped copies of the training images.
        "FLIP": True,
        # Shuffle the training images every epoch.
        "SHUFFLE": True,
        # Online hard example mining over the RoIs.
        "ENABLE_OHEM": False,
        # Images per device (2 for R-CNN stages, 1 for RPN and end-to-end).
        "BATCH_IMAGES": 2,
        # End-to-end training (changes the anchor loader and the metrics).
        "END2END": False,
        # Group images of similar aspect ratio into the same batch.
        "ASPECT_GROUPING": True,
        # Segmentation: train on random crops of CROP_HEIGHT x CROP_WIDTH.
        "ENABLE_CROP": False,
        # Segmentation crop height in pixels.
        "CROP_HEIGHT": 768,
        # Segmentation crop width in pixels.
        "CROP_WIDTH": 1024,
        # RoIs sampled per image for the R-CNN head (-1: keep all, used with OHEM).
        "BATCH_ROIS": 128,
        # RoIs kept per image by OHEM.
        "BATCH_ROIS_OHEM": 128,
        # Fraction of sampled RoIs that are foreground.
        "FG_FRACTION": 0.25,
        # IoU at or above which a RoI is foreground.
        "FG_THRESH": 0.5,
        # RoIs with IoU in [BG_THRESH_LO, BG_THRESH_HI) are background.
        "BG_THRESH_HI": 0.5,
        "BG_THRESH_LO": 0.0,
        # Minimum IoU with a ground-truth box for a RoI to get regression targets.
        "BBOX_REGRESSION_THRESH": 0.5,
        # Weights of the (dx, dy, dw, dh) R-CNN regression targets; loaded as np.ndarray.
        "BBOX_WEIGHTS": [1.0, 1.0, 1.0, 1.0],
        # Anchors sampled per image for the RPN loss.
        "RPN_BATCH_SIZE": 256,
        # Fraction of sampled anchors that are foreground.
        "RPN_FG_FRACTION": 0.5,
        # Anchors with IoU at or above this are positive.
        "RPN_POSITIVE_OVERLAP": 0.7,
        # Anchors with IoU below this are negative.
        "RPN_NEGATIVE_OVERLAP": 0.3,
        # Let the negative rule overwrite positive labels (the original's clobber option).
        "RPN_CLOBBER_POSITIVES": False,
        # Weights of the RPN regression targets.
        "RPN_BBOX_WEIGHTS": (1.0, 1.0, 1.0, 1.0),
        # Weight of positive anchors in the RPN loss; -1 means uniform.
        "RPN_POSITIVE_WEIGHT": -1.0,
        # Use the C++ Proposal operator instead of the Python one.
        "CXX_PROPOSAL": True,
        # NMS threshold on RPN proposals during training.
        "RPN_NMS_THRESH": 0.7,
        # Proposals kept before NMS during training.
        "RPN_PRE_NMS_TOP_N": 12000,
        # Proposals kept after NMS during training.
        "RPN_POST_NMS_TOP_N": 2000,
        # Minimum proposal side in input pixels (the original default is RPN_FEAT_STRIDE).
        "RPN_MIN_SIZE": 16,
        # Normalise regression targets with the fixed BBOX_MEANS / BBOX_STDS below.
        "BBOX_NORMALIZATION_PRECOMPUTED": False,
        # Means of the regression targets.
        "BBOX_MEANS": (0.0, 0.0, 0.0, 0.0),
        # Standard deviations of the regression targets.
        "BBOX_STDS": (0.1, 0.1, 0.2, 0.2),
    },
    "TEST": {
        # Generate proposals with the network's own RPN (otherwise read dataset.proposal RoIs).
        "HAS_RPN": False,
        # Images per device.
        "BATCH_IMAGES": 1,
        # Use the C++ Proposal operator instead of the Python one.
        "CXX_PROPOSAL": True,
        # NMS threshold on RPN proposals.
        "RPN_NMS_THRESH": 0.7,
        # Proposals kept before NMS.
        "RPN_PRE_NMS_TOP_N": 6000,
        # Proposals kept after NMS.
        "RPN_POST_NMS_TOP_N": 300,
        # Minimum proposal side in input pixels.
        "RPN_MIN_SIZE": 16,
        # The same four settings when generating proposals for alternate training.
        "PROPOSAL_NMS_THRESH": 0.7,
        "PROPOSAL_PRE_NMS_TOP_N": 20000,
        "PROPOSAL_POST_NMS_TOP_N": 2000,
        "PROPOSAL_MIN_SIZE": 16,
        # Per-class NMS threshold on the final detections.
        "NMS": 0.3,
        # Use soft-NMS instead of NMS on the final detections (every detector).
        "USE_SOFTNMS": False,
        # Soft-NMS: 'gaussian' (score * exp(-iou^2 / SOFTNMS_THRESH), the original FPN's) or
        # 'linear' (score * (1 - iou) where iou > SOFTNMS_THRESH).
        "SOFTNMS_METHOD": "gaussian",
        # Soft-NMS sigma (gaussian) or IoU threshold (linear).
        "SOFTNMS_THRESH": 0.6,
        # Detections kept per image over all classes.
        "max_per_image": 300,
        # Epoch of the checkpoint to test.
        "test_epoch": 0,
    },
}

# Per-architecture default deltas, merged over DEFAULTS (same keys only) before the yaml.
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "rfcn": {},
    "faster_rcnn": {},
    # The original fpn/config/config.py's multi-scale test default.
    "fpn": {"TEST_SCALES": [(600, 1000)]},
    # The original deeplab/config/config.py, where it differs from the detection defaults.
    "deeplab": {
        "SCALES": [(360, 600)],
        "default": {"frequent": 1000},
        "network": {
            "pretrained": "../model/pretrained_model/resnet_v1-101",
            "PIXEL_MEANS": [103.06, 115.90, 123.15],
            "FIXED_PARAMS": ["conv1", "bn_conv1", "res2", "bn2", "gamma", "beta"],
        },
        "dataset": {
            "dataset": "cityscapes",
            "image_set": "leftImg8bit_train",
            "test_image_set": "leftImg8bit_val",
            "root_path": "../data",
            "dataset_path": "../data/cityscapes",
            "NUM_CLASSES": 19,
        },
        "TRAIN": {"model_prefix": "deeplab", "BATCH_IMAGES": 1},
    },
}

# How load_config picks an architecture when none is given: the first substring found in the
# config's `symbol` wins (FPN names also contain "rcnn", so "fpn" comes first); otherwise "rfcn"
# (the detection defaults, which also cover the offset demos deform_conv_demo / deform_psroi_demo).
ARCH_BY_SYMBOL: tuple[tuple[str, str], ...] = (
    ("deeplab", "deeplab"),
    ("fpn", "fpn"),
    ("rcnn", "faster_rcnn"),
)
DEFAULT_ARCH = "rfcn"

# Keys the code of an architecture never reads. Setting one of them (to a value other than its
# default) is logged as a warning when the config is loaded: it has no effect. (The original
# yamls set several, e.g. the alternate-training schedule, so they are not rejected.)
# MXNET_VERSION is a free-form tag of the original yamls, never read and never reported.
_DETECTION_UNUSED: tuple[str, ...] = (
    "network.RCNN_FEAT_STRIDE",  # the single-scale heads pool the stride-16 map
    "network.FIXED_PARAMS_SHARED",  # alternate training (not ported)
    "TRAIN.ALTERNATE",
    "TEST.PROPOSAL_NMS_THRESH",
    "TEST.PROPOSAL_PRE_NMS_TOP_N",
    "TEST.PROPOSAL_POST_NMS_TOP_N",
    "TEST.PROPOSAL_MIN_SIZE",
    "TRAIN.RPN_POSITIVE_WEIGHT",  # unused in the original too
    "TRAIN.BBOX_REGRESSION_THRESH",  # proposal-roidb training (not ported)
    "TRAIN.ENABLE_CROP",  # segmentation only
    "TRAIN.CROP_HEIGHT",
    "TRAIN.CROP_WIDTH",
    "dataset.annotation_prefix",
)
UNUSED_KEYS: dict[str, tuple[str, ...]] = {
    "rfcn": _DETECTION_UNUSED,
    "faster_rcnn": _DETECTION_UNUSED,
    "fpn": _DETECTION_UNUSED,
    "deeplab": (
        "CLASS_AGNOSTIC",
        "TEST_SCALES",
        "network.RPN_FEAT_STRIDE",
        "network.RCNN_FEAT_STRIDE",
        "network.FIXED_PARAMS_SHARED",
        "network.ANCHOR_SCALES",
        "network.ANCHOR_RATIOS",
        "network.NUM_ANCHORS",
        "dataset.proposal",
        "TRAIN.ALTERNATE",
        "TRAIN.ENABLE_OHEM",
        "TRAIN.END2END",
        "TRAIN.ASPECT_GROUPING",
        "TRAIN.BATCH_ROIS",
        "TRAIN.BATCH_ROIS_OHEM",
        "TRAIN.FG_FRACTION",
        "TRAIN.FG_THRESH",
        "TRAIN.BG_THRESH_HI",
        "TRAIN.BG_THRESH_LO",
        "TRAIN.BBOX_REGRESSION_THRESH",
        "TRAIN.BBOX_WEIGHTS",
        "TRAIN.RPN_BATCH_SIZE",
        "TRAIN.RPN_FG_FRACTION",
        "TRAIN.RPN_POSITIVE_OVERLAP",
        "TRAIN.RPN_NEGATIVE_OVERLAP",
        "TRAIN.RPN_CLOBBER_POSITIVES",
        "TRAIN.RPN_BBOX_WEIGHTS",
        "TRAIN.RPN_POSITIVE_WEIGHT",
        "TRAIN.CXX_PROPOSAL",
        "TRAIN.RPN_NMS_THRESH",
        "TRAIN.RPN_PRE_NMS_TOP_N",
        "TRAIN.RPN_POST_NMS_TOP_N",
        "TRAIN.RPN_MIN_SIZE",
        "TRAIN.BBOX_NORMALIZATION_PRECOMPUTED",
        "TRAIN.BBOX_MEANS",
        "TRAIN.BBOX_STDS",
        "TEST.HAS_RPN",
        "TEST.CXX_PROPOSAL",
        "TEST.RPN_NMS_THRESH",
        "TEST.RPN_PRE_NMS_TOP_N",
        "TEST.RPN_POST_NMS_TOP_N",
        "TEST.RPN_MIN_SIZE",
        "TEST.PROPOSAL_NMS_THRESH",
        "TEST.PROPOSAL_PRE_NMS_TOP_N",
        "TEST.PROPOSAL_POST_NMS_TOP_N",
        "TEST.PROPOSAL_MIN_SIZE",
        "TEST.NMS",
        "TEST.USE_SOFTNMS",
        "TEST.SOFTNMS_METHOD",
        "TEST.SOFTNMS_THRESH",
        "TEST.max_per_image",
    ),
}


# ---------------------------------------------------------------------------------------------
# Domains: the values each key may take, checked by `load_config` after all layers are merged
# (a config that passes must not crash or silently misbehave later, e.g. in a custom op on an
# engine thread). Types are checked first (see lib/config/__init__.py), so a domain only sees
# values of its key's type. Keys without an entry are free-form strings or booleans; a test
# keeps every numeric key in this table.


def _num(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Num:
    """Finite numbers from ``min`` (or above ``above``) up to ``max`` (or below ``below``);
    also the special values in ``also``. ``note`` explains the special values."""

    min: float | None = None
    max: float | None = None
    above: float | None = None
    below: float | None = None
    also: tuple[float, ...] = ()
    note: str = ""

    noun: ClassVar[str] = "a number"
    nouns: ClassVar[str] = "numbers"

    def _is_kind(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def check(self, value: Any) -> bool:
        if not self._is_kind(value):
            return False
        if value in self.also:
            return True
        # Written so that NaN fails every bound.
        return (
            math.isfinite(value)
            and (self.min is None or value >= self.min)
            and (self.max is None or value <= self.max)
            and (self.above is None or value > self.above)
            and (self.below is None or value < self.below)
        )

    def _bounds(self) -> str:
        low = f"[{_num(self.min)}" if self.min is not None else None
        if self.above is not None:
            low = f"({_num(self.above)}"
        high = f"{_num(self.max)}]" if self.max is not None else None
        if self.below is not None:
            high = f"{_num(self.below)})"
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return ""

    def describe(self, plural: bool = False) -> str:
        bounds = self._bounds()
        noun = self.nouns if plural else self.noun
        if not bounds and type(self) is Num:
            noun = "finite numbers" if plural else "a finite number"
        text = f"{noun} {bounds}".strip()
        if self.also:
            text += ", or " + " or ".join(_num(v) for v in self.also)
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Int(Num):
    """Integers in a range (see :class:`Num`)."""

    noun: ClassVar[str] = "an integer"
    nouns: ClassVar[str] = "integers"

    def _is_kind(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Each:
    """Every element of a sequence (nested ones too, as SCALES' pairs) in ``item``; a scalar
    is checked as one element (RPN_FEAT_STRIDE is one stride or a list of them)."""

    item: Any

    def check(self, value: Any) -> bool:
        return all(self.item.check(v) for v in _elements(value))

    def describe(self, plural: bool = True) -> str:
        return self.item.describe(plural=True)


def _elements(value: Any) -> list:
    if hasattr(value, "tolist") and not isinstance(value, str):  # np.ndarray
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _elements(v)]
    return [value]


@dataclass(frozen=True)
class OneOf:
    """One of a few strings."""

    choices: tuple[str, ...]

    def check(self, value: Any) -> bool:
        return value in self.choices

    def describe(self, plural: bool = False) -> str:
        names = [repr(c) for c in self.choices]
        if len(names) == 2:
            return " or ".join(names)
        return "one of " + ", ".join(names)


@dataclass(frozen=True)
class Words:
    """A string that ``parse`` accepts (it raises ValueError on a malformed one), described as
    ``text``; without ``parse``, any non-blank string (a blank FIXED_PARAMS entry would be a
    substring of every parameter name and freeze them all)."""

    text: str
    parse: Callable[[str], Any] | None = None

    def check(self, value: Any) -> bool:
        if not isinstance(value, str):
            return False
        if self.parse is None:
            return bool(value.strip())
        try:
            self.parse(value)
        except ValueError:
            return False
        return True

    def describe(self, plural: bool = False) -> str:
        return self.text


def _epochs(text: str) -> list[float]:
    """'4,6' -> [4.0, 6.0]: increasing epochs > 0 (lib/core/lr_scheduler.py's steps)."""
    epochs = [float(e) for e in text.split(",") if e.strip()]
    if not all(math.isfinite(e) and e > 0 for e in epochs) or epochs != sorted(set(epochs)):
        raise ValueError(text)
    return epochs


def _gpu_ids(text: str) -> list[int]:
    """'0,1' -> [0, 1]: distinct ids >= 0, as lib/core/trainer.py's get_context reads them."""
    ids = [int(g) for g in text.split(",") if g.strip()]
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(text)
    return ids


COUNT = Int(min=1)
NON_NEGATIVE_INT = Int(min=0)
NON_NEGATIVE = Num(min=0)
FRACTION = Num(min=0, max=1)  # also IoU thresholds
NO_LIMIT_OR_COUNT = Int(min=-1, note="-1 or 0: no limit")
LR_STEPS = Words("comma-separated increasing epochs > 0 (e.g. '4,6'), or '' for none", _epochs)
NAMES = Each(Words("non-empty strings"))

DOMAINS: dict[str, Any] = {
    "gpus": Words("comma-separated distinct GPU ids >= 0 (e.g. '0,1'), or '' (CPU)", _gpu_ids),
    "cpu_contexts": COUNT,
    "SCALES": Each(COUNT),
    "TEST_SCALES": Each(COUNT),
    "default.frequent": COUNT,  # the Speedometer logs every `frequent` batches (a modulo)
    "network.pretrained_epoch": NON_NEGATIVE_INT,
    "network.PIXEL_MEANS": Each(Num()),
    "network.IMAGE_STRIDE": NON_NEGATIVE_INT,  # 0: no padding
    "network.RPN_FEAT_STRIDE": Each(COUNT),
    "network.RCNN_FEAT_STRIDE": COUNT,
    "network.FIXED_PARAMS": NAMES,
    "network.FIXED_PARAMS_SHARED": NAMES,
    "network.ANCHOR_SCALES": Each(Num(above=0)),
    "network.ANCHOR_RATIOS": Each(Num(above=0)),
    "network.NUM_ANCHORS": COUNT,
    "dataset.NUM_CLASSES": Int(min=2),  # detection: background + 1; segmentation: 2 labels
    "TRAIN.lr": NON_NEGATIVE,  # test and demo configs leave 0; the trainer refuses 0 itself
    "TRAIN.lr_step": LR_STEPS,
    "TRAIN.lr_factor": Num(above=0, max=1),  # the scheduler only decreases the lr
    "TRAIN.warmup_lr": NON_NEGATIVE,
    "TRAIN.warmup_step": NON_NEGATIVE_INT,
    "TRAIN.momentum": Num(min=0, below=1),
    "TRAIN.wd": NON_NEGATIVE,
    "TRAIN.begin_epoch": NON_NEGATIVE_INT,
    "TRAIN.end_epoch": NON_NEGATIVE_INT,
    # Alternate training is not ported; its image counts default to 0 (unset).
    "TRAIN.ALTERNATE.RPN_BATCH_IMAGES": NON_NEGATIVE_INT,
    "TRAIN.ALTERNATE.RCNN_BATCH_IMAGES": NON_NEGATIVE_INT,
    **{
        f"TRAIN.ALTERNATE.{stage}_{key}": domain
        for stage in ("rpn1", "rfcn1", "rpn2", "rfcn2", "rpn3")
        for key, domain in (
            ("lr", NON_NEGATIVE),
            ("lr_step", LR_STEPS),
            ("epoch", NON_NEGATIVE_INT),
        )
    },
    "TRAIN.BATCH_IMAGES": COUNT,
    "TRAIN.CROP_HEIGHT": COUNT,
    "TRAIN.CROP_WIDTH": COUNT,
    "TRAIN.BATCH_ROIS": Int(min=1, also=(-1,), note="every proposal and gt box"),
    "TRAIN.BATCH_ROIS_OHEM": COUNT,
    "TRAIN.FG_FRACTION": FRACTION,
    "TRAIN.FG_THRESH": FRACTION,
    "TRAIN.BG_THRESH_HI": FRACTION,
    "TRAIN.BG_THRESH_LO": FRACTION,
    "TRAIN.BBOX_REGRESSION_THRESH": FRACTION,
    "TRAIN.BBOX_WEIGHTS": Each(NON_NEGATIVE),
    # lib/rpn/rpn.py reads -1 as "keep all", but the RPN loss is scaled by 1 / RPN_BATCH_SIZE,
    # which -1 would turn into gradient ascent.
    "TRAIN.RPN_BATCH_SIZE": COUNT,
    "TRAIN.RPN_FG_FRACTION": FRACTION,
    "TRAIN.RPN_POSITIVE_OVERLAP": FRACTION,
    "TRAIN.RPN_NEGATIVE_OVERLAP": FRACTION,
    "TRAIN.RPN_BBOX_WEIGHTS": Each(NON_NEGATIVE),
    "TRAIN.RPN_POSITIVE_WEIGHT": Num(min=0, max=1, also=(-1,), note="uniform"),
    # The proposal ops (Python and C++) take <= 0 as "no limit" before NMS; after NMS they
    # output exactly POST_NMS_TOP_N rows per image, so that needs >= 1.
    "TRAIN.RPN_NMS_THRESH": FRACTION,
    "TRAIN.RPN_PRE_NMS_TOP_N": NO_LIMIT_OR_COUNT,
    "TRAIN.RPN_POST_NMS_TOP_N": COUNT,
    "TRAIN.RPN_MIN_SIZE": NON_NEGATIVE_INT,
    "TRAIN.BBOX_MEANS": Each(Num()),
    "TRAIN.BBOX_STDS": Each(Num(above=0)),
    "TEST.BATCH_IMAGES": COUNT,
    "TEST.RPN_NMS_THRESH": FRACTION,
    "TEST.RPN_PRE_NMS_TOP_N": NO_LIMIT_OR_COUNT,
    "TEST.RPN_POST_NMS_TOP_N": COUNT,
    "TEST.RPN_MIN_SIZE": NON_NEGATIVE_INT,
    "TEST.PROPOSAL_NMS_THRESH": FRACTION,
    "TEST.PROPOSAL_PRE_NMS_TOP_N": NO_LIMIT_OR_COUNT,
    "TEST.PROPOSAL_POST_NMS_TOP_N": COUNT,
    "TEST.PROPOSAL_MIN_SIZE": NON_NEGATIVE_INT,
    "TEST.NMS": FRACTION,
    "TEST.SOFTNMS_METHOD": OneOf(("gaussian", "linear")),
    "TEST.SOFTNMS_THRESH": Num(above=0),  # gaussian sigma; linear: an IoU (RULES)
    "TEST.max_per_image": NO_LIMIT_OR_COUNT,  # lib/core/tester.py: <= 0 keeps everything
    "TEST.test_epoch": NON_NEGATIVE_INT,
}


@dataclass(frozen=True)
class Rule:
    """A condition on several keys, checked after DOMAINS; the error names ``keys[0]``."""

    keys: tuple[str, ...]
    holds: Callable[..., bool]  # called with the keys' values, in order
    expected: str


RULES: tuple[Rule, ...] = (
    # The original asserts it: a device's BATCH_ROIS are split evenly over its images.
    Rule(
        ("TRAIN.BATCH_ROIS", "TRAIN.BATCH_IMAGES"),
        lambda rois, images: rois == -1 or rois % images == 0,
        "-1 or a multiple of TRAIN.BATCH_IMAGES",
    ),
    Rule(
        ("TRAIN.BG_THRESH_LO", "TRAIN.BG_THRESH_HI"),
        lambda lo, hi: lo <= hi,
        "TRAIN.BG_THRESH_LO <= TRAIN.BG_THRESH_HI",
    ),
    # Above it, a RoI could be sampled both as foreground and as background.
    Rule(
        ("TRAIN.BG_THRESH_HI", "TRAIN.FG_THRESH"),
        lambda bg, fg: bg <= fg,
        "TRAIN.BG_THRESH_HI <= TRAIN.FG_THRESH",
    ),
    Rule(
        ("TRAIN.RPN_NEGATIVE_OVERLAP", "TRAIN.RPN_POSITIVE_OVERLAP"),
        lambda neg, pos: neg <= pos,
        "TRAIN.RPN_NEGATIVE_OVERLAP <= TRAIN.RPN_POSITIVE_OVERLAP",
    ),
    Rule(
        ("network.NUM_ANCHORS", "network.ANCHOR_SCALES", "network.ANCHOR_RATIOS"),
        lambda num, scales, ratios: num == len(scales) * len(ratios),
        "len(ANCHOR_SCALES) * len(ANCHOR_RATIOS)",
    ),
    Rule(
        ("TEST.SOFTNMS_THRESH", "TEST.SOFTNMS_METHOD"),
        lambda thresh, method: method != "linear" or thresh <= 1,
        "an IoU <= 1 for TEST.SOFTNMS_METHOD 'linear'",
    ),
)
