"""The pipeline's batch dimensions: several devices and several images per device.

Several CPU contexts take the multi-device code path (MXNet's executor group splits every
batch over the contexts; the kvstore sums the gradients), so these run without GPUs.
"""

import pickle

import mxnet as mx
import numpy as np
import pytest

from lib.core.checkpoint import load_checkpoint
from lib.core.tester import test_net
from lib.core.trainer import get_context, train_net
from lib.dataset import synthetic
from rfcn.symbols import get_network
from tests.e2e.detection import check_detections, tiny_config

CFG = "experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    # 3 test images: batches of 2 and 4 images leave a padded last batch
    synthetic.generate(root, formats=["coco"], num_train=2, num_test=3, size=128, seed=3)
    return root


def test_two_contexts_with_two_images_each_train_and_test(data_root, tmp_path):
    """2 CPU contexts x 2 images: bind ("Too many slices" before), train, test, evaluate."""
    cfg = tiny_config(CFG, data_root, tmp_path, [
        "cpu_contexts=2", "TRAIN.BATCH_IMAGES=2", "TRAIN.FLIP=true", "TRAIN.end_epoch=2",
        "TEST.BATCH_IMAGES=2",
    ])  # fmt: skip
    ctx = get_context(cfg)
    assert ctx == [mx.cpu(0), mx.cpu(1)]
    net = get_network(cfg.symbol)
    result = train_net(cfg, net, CFG, frequent=1, seed=0, num_workers=1)
    assert len(result.history) == 2
    assert all(np.isfinite(list(epoch.values())).all() for epoch in result.history)
    results = test_net(cfg, net, CFG, epoch=2, num_workers=1)  # 4 images per batch, 3 images
    with open(results["detections_file"], "rb") as f:
        check_detections(pickle.load(f)["all_boxes"], cfg)
    assert 0.0 <= results["AP50"] <= 1.0


def _one_update(data_root, output, overrides):
    cfg = tiny_config(CFG, data_root, output, [
        "TRAIN.end_epoch=1", "TRAIN.SHUFFLE=false", "TRAIN.ASPECT_GROUPING=false", *overrides,
    ])  # fmt: skip
    result = train_net(cfg, get_network(cfg.symbol), CFG, seed=0, num_workers=1)
    arg, aux = load_checkpoint(result.prefix, 1)
    return {k: v.asnumpy() for k, v in arg.items()}


def test_two_contexts_update_as_one_context_with_two_images(data_root, tmp_path):
    """After one update on the same two images, 2 contexts x 1 image and 1 context x 2 images
    give the same parameters: the losses of a device's images are summed, each normalised as
    one image, and gradients are summed over devices (as the original's multi-GPU training)."""
    # the initial parameters: an lr far too small to move a float32 (training refuses lr 0)
    before = _one_update(data_root, tmp_path / "zero", ["TRAIN.lr=1.0e-30"])
    devices = _one_update(data_root, tmp_path / "devices", ["cpu_contexts=2"])
    images = _one_update(data_root, tmp_path / "images", ["TRAIN.BATCH_IMAGES=2"])
    for name, value in images.items():
        np.testing.assert_allclose(devices[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    # the update did move the parameters of every loss: RPN, classification and regression
    for name in ("rpn_cls_score_weight", "rpn_bbox_pred_weight", "rfcn_cls_weight",
                 "rfcn_bbox_weight", "conv_new_1_weight"):  # fmt: skip
        assert not np.allclose(images[name], before[name], rtol=0, atol=1e-7), name


@pytest.mark.parametrize("method", ["gaussian", "linear"])
def test_multi_scale_soft_nms_testing(data_root, tmp_path, method, caplog):
    """Every image at two scales, candidates merged, soft-NMS once: valid detections whose
    scores (rescored, never raised) stay in order."""
    cfg = tiny_config(CFG, data_root, tmp_path, ["TRAIN.end_epoch=2"])
    net = get_network(cfg.symbol)
    train_net(cfg, net, CFG, ctx=[mx.cpu()], seed=0, num_workers=1)
    single = test_net(cfg, net, CFG, epoch=2, ctx=[mx.cpu()], num_workers=1)
    with open(single["detections_file"], "rb") as f:
        single_boxes = pickle.load(f)["all_boxes"]
    cfg.TEST_SCALES = [(128, 160), (192, 240)]
    cfg.TEST.USE_SOFTNMS, cfg.TEST.SOFTNMS_METHOD = True, method
    with caplog.at_level("INFO", logger="lib.core.tester"):
        multi = test_net(cfg, net, CFG, epoch=2, ctx=[mx.cpu()], num_workers=1)
    assert not multi["cached"] and "at 2 scale(s)" in caplog.text
    with open(multi["detections_file"], "rb") as f:
        multi_boxes = pickle.load(f)["all_boxes"]
    check_detections(multi_boxes, cfg)
    # soft-NMS keeps more boxes than NMS (it rescores instead of dropping), over two scales
    count = sum(len(d) for per_class in multi_boxes[1:] for d in per_class)
    assert count > sum(len(d) for per_class in single_boxes[1:] for d in per_class)
    assert 0.0 <= multi["AP50"] <= 1.0
