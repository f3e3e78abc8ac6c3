"""A short end-to-end run of a detector on tiny synthetic images, shared by the e2e tests.

Trains the CPU network of a synthetic config from scratch for a few epochs over the same two
128-px images, checks what a working pipeline must give (finite losses that fall, parameters
that change, frozen BN that stays frozen, ``*_test`` bbox weights in the checkpoints), then
tests the last checkpoint and checks the detections themselves: one list per class and image,
boxes inside their images, scores in descending order per class, and a COCO evaluation.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np

from lib.config import load_config
from lib.core.checkpoint import load_checkpoint
from lib.core.tester import test_net
from lib.core.trainer import train_net
from lib.dataset import synthetic
from lib.dataset.load_data import get_imdb

EPOCHS = 8
REPO = Path(__file__).resolve().parents[2]
LOSSES = ("RPNLogLoss", "RPNL1Loss", "RCNNLogLoss", "RCNNL1Loss")


def make_data(root: Path) -> Path:
    """Two train and two val 128-px scenes in COCO format under ``root``."""
    synthetic.generate(root, formats=["coco"], num_train=2, num_test=2, size=128, seed=3)
    return root


def tiny_overrides(data_root: Path, output: Path) -> list[str]:
    """The ``--set`` items shrinking a synthetic config to seconds: one scale, no flips, few
    proposals, the tiny data of :func:`make_data`."""
    return [
        f"output_path={output}",
        f"dataset.root_path={data_root}",
        f"dataset.dataset_path={data_root / 'coco'}",
        "SCALES=[[128, 160]]",
        "TRAIN.FLIP=false",
        "TRAIN.lr=0.01",
        "TRAIN.warmup=false",
        "TRAIN.lr_step=''",
        f"TRAIN.end_epoch={EPOCHS}",
        "TRAIN.RPN_BATCH_SIZE=64",
        "TRAIN.RPN_PRE_NMS_TOP_N=200",
        "TRAIN.RPN_POST_NMS_TOP_N=50",
        "TRAIN.BATCH_ROIS_OHEM=32",
        "TEST.RPN_PRE_NMS_TOP_N=200",
        "TEST.RPN_POST_NMS_TOP_N=30",
    ]


def tiny_config(cfg_path: str, data_root: Path, output: Path, extra: Sequence[str] = ()) -> Any:
    """The synthetic config shrunk to seconds (:func:`tiny_overrides`), plus ``extra``."""
    return load_config(cfg_path, tiny_overrides(data_root, output) + list(extra))


def train_and_test(cfg_path: str, net: Any, data_root: Path, output: Path,
                   head_weight: str, bbox_weight: str) -> dict[str, Any]:  # fmt: skip
    """Runs the short training and test of ``net`` and asserts the properties above."""
    cfg = tiny_config(cfg_path, data_root, output)
    result = train_net(cfg, net, cfg_path, ctx=[mx.cpu()], frequent=1, seed=0, num_workers=1)

    assert result.begin_epoch == 0 and result.end_epoch == EPOCHS
    assert len(result.history) == EPOCHS
    totals = []
    for epoch in result.history:
        values = [epoch[k] for k in LOSSES]
        assert np.all(np.isfinite(values)), epoch
        totals.append(sum(values))
    assert np.mean(totals[-2:]) < np.mean(totals[:2]), totals

    first, _ = load_checkpoint(result.prefix, 1)
    last, _ = load_checkpoint(result.prefix, EPOCHS)
    for key in ("rpn_cls_score_weight", head_weight, "res4a_branch2c_weight"):
        assert not np.allclose(first[key].asnumpy(), last[key].asnumpy()), key
    # the *_test weights de-normalise with the config's BBOX_STDS / BBOX_MEANS, per (class,
    # coordinate) output channel (R-FCN: 49 position-sensitive channels each)
    assert cfg.TRAIN.BBOX_NORMALIZATION_PRECOMPUTED
    weight, bias = last[f"{bbox_weight}_weight"].asnumpy(), last[f"{bbox_weight}_bias"].asnumpy()
    repeat = net.bbox_pred_spec.spatial_repeat
    stds = np.repeat(np.tile(cfg.TRAIN.BBOX_STDS, len(bias) // (4 * repeat)), repeat)
    means = np.repeat(np.tile(cfg.TRAIN.BBOX_MEANS, len(bias) // (4 * repeat)), repeat)
    np.testing.assert_allclose(
        last[f"{bbox_weight}_weight_test"].asnumpy(),
        weight * stds.reshape((-1,) + (1,) * (weight.ndim - 1)),
        rtol=1e-6,
    )
    np.testing.assert_allclose(last[f"{bbox_weight}_bias_test"].asnumpy(), bias * stds + means,
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    # frozen BN stays frozen (FIXED_PARAMS gamma, beta)
    assert np.array_equal(
        first["bn2a_branch2a_gamma"].asnumpy(), last["bn2a_branch2a_gamma"].asnumpy()
    )

    results = test_net(cfg, net, cfg_path, epoch=result.end_epoch, ctx=[mx.cpu()], num_workers=1)
    with open(results["detections_file"], "rb") as f:
        all_boxes = pickle.load(f)["all_boxes"]
    check_detections(all_boxes, cfg)
    assert 0.0 <= results["AP50"] <= 1.0
    return results


def check_detections(all_boxes: list, cfg: Any) -> None:
    """One (N, 5) array per class and test image; boxes inside the image; scores sorted."""
    imdb = get_imdb(cfg.dataset.dataset, cfg.dataset.test_image_set, cfg.dataset.root_path,
                    cfg.dataset.dataset_path)  # fmt: skip
    sizes = [(r["width"], r["height"]) for r in imdb.gt_roidb()]
    assert len(all_boxes) == cfg.dataset.NUM_CLASSES
    assert all(len(per_class) == len(sizes) for per_class in all_boxes)
    assert sum(len(d) for per_class in all_boxes[1:] for d in per_class) > 0
    for per_class in all_boxes:
        for dets, (width, height) in zip(per_class, sizes):
            assert dets.shape[1:] == (5,)
            x1, y1, x2, y2, score = dets.T
            assert (x1 >= 0).all() and (y1 >= 0).all(), dets
            assert (x2 <= width - 1).all() and (y2 <= height - 1).all(), dets
            assert (x1 <= x2).all() and (y1 <= y2).all(), dets
            assert (np.diff(score) <= 0).all(), "scores of a class are not in descending order"
