"""R-FCN end to end on tiny synthetic images: a few training iterations, then a test pass.

Trains the CPU networks of the synthetic configs (plain and deformable) from scratch for eight
epochs over the same two 128-px images (16 iterations, a few seconds), checks that the losses
are finite and fall (mean of the last two epochs below the first two), that the
parameters changed and the checkpoints carry the ``*_test`` bbox weights, then tests the last
checkpoint and checks that the detections file was written and evaluated.
"""

import pickle

import mxnet as mx
import numpy as np
import pytest

from lib.config import load_config
from lib.core.checkpoint import load_checkpoint
from lib.dataset import synthetic
from rfcn.test import test_net
from rfcn.train_end2end import prepare_synthetic_data, train_net

EPOCHS = 8
LOSSES = ("RPNLogLoss", "RPNL1Loss", "RCNNLogLoss", "RCNNL1Loss")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic.generate(root, formats=["coco"], num_train=2, num_test=2, size=128, seed=3)
    return root


@pytest.mark.parametrize("name", ["synthetic_rfcn", "synthetic_rfcn_dcn"])
def test_train_then_test(name, data_root, tmp_path):
    cfg_path = f"experiments/rfcn/cfgs/{name}.yaml"
    cfg = load_config(
        cfg_path,
        [
            f"output_path={tmp_path}",
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
            f"TEST.test_epoch={EPOCHS}",
        ],
    )
    result = train_net(cfg, cfg_path, ctx=[mx.cpu()], frequent=1, seed=0, num_workers=1)

    assert len(result.history) == EPOCHS
    totals = []
    for epoch in result.history:
        values = [epoch[k] for k in LOSSES]
        assert np.all(np.isfinite(values)), epoch
        totals.append(sum(values))
    assert np.mean(totals[-2:]) < np.mean(totals[:2]), totals

    first, _ = load_checkpoint(result.prefix, 1)
    last, _ = load_checkpoint(result.prefix, EPOCHS)
    for key in ("rpn_cls_score_weight", "rfcn_cls_weight", "res4a_branch2c_weight"):
        assert not np.allclose(first[key].asnumpy(), last[key].asnumpy()), key
    for key in ("rfcn_bbox_weight_test", "rfcn_bbox_bias_test"):
        assert last[key].shape == last[key[: -len("_test")]].shape
    # frozen BN stays frozen (FIXED_PARAMS gamma, beta)
    assert np.array_equal(
        first["bn2a_branch2a_gamma"].asnumpy(), last["bn2a_branch2a_gamma"].asnumpy()
    )

    results = test_net(cfg, cfg_path, ctx=[mx.cpu()], num_workers=1)
    with open(results["detections_file"], "rb") as f:
        all_boxes = pickle.load(f)
    assert len(all_boxes) == cfg.dataset.NUM_CLASSES
    assert all(len(per_class) == 2 for per_class in all_boxes)
    assert all(d.shape[1:] == (5,) for per_class in all_boxes for d in per_class)
    assert "AP50" in results and 0.0 <= results["AP50"] <= 1.0


def test_synthetic_data_is_generated_when_missing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(synthetic, "generate", lambda root: calls.append(root))
    path = tmp_path / "data" / "synthetic" / "coco"
    cfg = load_config("experiments/rfcn/cfgs/synthetic_rfcn.yaml", [f"dataset.dataset_path={path}"])
    prepare_synthetic_data(cfg)
    assert calls == [path.parent]  # the generator's root holds coco/, VOCdevkit/, cityscapes/

    meta = synthetic.meta_path(path.parent)
    meta.parent.mkdir(parents=True)
    meta.write_text("{}")
    prepare_synthetic_data(cfg)  # present: never regenerated (whatever its parameters)
    cfg.dataset.dataset = "coco"
    prepare_synthetic_data(cfg)
    assert len(calls) == 1
