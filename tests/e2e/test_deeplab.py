"""DeepLab end to end on tiny synthetic Cityscapes-format images: a few training iterations
through the shared trainer, then the shared tester (segment_dataset).

Checks finite, falling losses, parameters that change (frozen BN and the fixed upsampling
kernel do not), and a written, complete evaluation: one prediction PNG per image of the image's
size, a results JSON whose mean IoU is the mean of its per-class IoUs."""

import json

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from deeplab.symbols import get_network
from lib.config import load_config
from lib.core.checkpoint import load_checkpoint
from lib.core.tester import test_net
from lib.core.trainer import train_net
from lib.dataset import synthetic
from lib.dataset.load_data import get_imdb

EPOCHS = 6


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    synthetic.generate(root, formats=["cityscapes"], num_train=2, num_test=2, size=128, seed=5)
    return root


@pytest.mark.parametrize("name", ["synthetic_deeplab", "synthetic_deeplab_dcn"])
def test_train_then_test(name, data_root, tmp_path):
    cfg_path = f"experiments/deeplab/cfgs/{name}.yaml"
    cfg = load_config(
        cfg_path,
        [
            f"output_path={tmp_path}",
            f"dataset.root_path={data_root}",
            f"dataset.dataset_path={data_root / 'cityscapes'}",
            "SCALES=[[96, 160]]",
            "TRAIN.FLIP=false",
            "TRAIN.lr=0.01",
            "TRAIN.warmup=false",
            "TRAIN.lr_step=''",
            f"TRAIN.end_epoch={EPOCHS}",
        ],
    )
    net = get_network(cfg.symbol)
    result = train_net(cfg, net, cfg_path, ctx=[mx.cpu()], frequent=1, seed=0, num_workers=1)
    losses = [epoch["FCNLogLoss"] for epoch in result.history]
    assert len(losses) == EPOCHS and np.all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses

    first, _ = load_checkpoint(result.prefix, 1)
    last, _ = load_checkpoint(result.prefix, EPOCHS)
    for key in ("score_weight", "fc6_weight", "res4a_branch2c_weight"):
        assert not np.allclose(first[key].asnumpy(), last[key].asnumpy()), key
    for key in ("bn2a_branch2a_gamma", "upsampling_weight"):  # frozen BN, fixed bilinear kernel
        assert np.array_equal(first[key].asnumpy(), last[key].asnumpy()), key
    assert not any(k.endswith("_test") for k in last)  # no bbox weights in a segmentation net

    results = test_net(cfg, net, cfg_path, epoch=EPOCHS, ctx=[mx.cpu()], num_workers=1)
    with open(results["results_file"]) as f:
        saved = json.load(f)
    ious = [v for v in saved["per_class_iou"].values() if v is not None]
    assert ious and saved["meanIU"] == pytest.approx(np.mean(ious))
    assert 0.0 <= saved["meanIU"] <= 1.0 and saved["num_images"] == 2
    imdb = get_imdb(cfg.dataset.dataset, cfg.dataset.test_image_set, cfg.dataset.root_path,
                    cfg.dataset.dataset_path, task="segmentation")  # fmt: skip
    out_dir = tmp_path / name / cfg.dataset.test_image_set
    for index, rec in zip(imdb.image_set_index, imdb.gt_segdb()):
        pred = Image.open(imdb.segmentation_result_path(index, str(out_dir)))
        assert pred.size == (rec["width"], rec["height"])
        assert set(np.unique(np.array(pred))) <= set(range(cfg.dataset.NUM_CLASSES))
