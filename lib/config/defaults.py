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
"""

from typing import Any

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
