"""Testing with given proposals (``TEST.HAS_RPN: false``), the original's second test mode, for
R-FCN, Faster R-CNN and FPN: the roidb's proposal boxes feed the test symbol's ``rois`` input."""

import logging
import pickle

import mxnet as mx
import numpy as np
import pytest

from faster_rcnn.symbols import get_network as rcnn_network
from fpn.symbols import get_network as fpn_network
from lib.core.tester import test_net
from lib.core.trainer import train_net
from lib.dataset.load_data import get_imdb
from lib.dataset.proposals import proposal_file
from rfcn.symbols import get_network as rfcn_network
from tests.e2e.detection import check_detections, make_data, tiny_config

CASES = [
    ("experiments/rfcn/cfgs/synthetic_rfcn.yaml", rfcn_network),
    ("experiments/faster_rcnn/cfgs/synthetic_rcnn.yaml", rcnn_network),
    # FPN: each given RoI pooled on its level; the checkpoint's RPN and P6 go unused
    ("experiments/fpn/cfgs/synthetic_fpn_dcn.yaml", fpn_network),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("cfg_path, get_network", CASES, ids=["rfcn", "faster_rcnn", "fpn_dcn"])
def test_given_proposals(cfg_path, get_network, data_root, tmp_path, caplog):
    cfg = tiny_config(cfg_path, data_root, tmp_path, ["TRAIN.end_epoch=2"])
    net = get_network(cfg.symbol)
    train_net(cfg, net, cfg_path, ctx=[mx.cpu()], seed=0, num_workers=1)
    cfg.TEST.HAS_RPN = False
    imdb = get_imdb(cfg.dataset.dataset, cfg.dataset.test_image_set, cfg.dataset.root_path,
                    cfg.dataset.dataset_path)  # fmt: skip
    path = proposal_file(imdb, cfg.dataset.proposal, cfg.dataset.root_path)
    with pytest.raises(FileNotFoundError, match=f"proposal file {path} does not exist"):
        test_net(cfg, net, cfg_path, epoch=2, ctx=[mx.cpu()], num_workers=1)

    # the gt boxes, jittered, plus random boxes: a different number per image
    rng = np.random.RandomState(0)
    proposals = []
    for i, rec in enumerate(imdb.gt_roidb()):
        gt = rec["boxes"].astype(np.float32)
        jitter = gt + rng.uniform(-3, 3, gt.shape).astype(np.float32)
        x1, y1 = rng.uniform(0, rec["width"] / 2, (2, 5 + i))
        extra = np.stack([x1, y1, x1 + 20, y1 + 20], axis=1).astype(np.float32)
        proposals.append(
            np.clip(np.vstack([gt, jitter, extra]), 0, min(rec["width"], rec["height"]) - 1)
        )
    (tmp_path / "p").mkdir()
    cfg.dataset.proposal = str(tmp_path / "p" / "proposals.pkl")
    with open(cfg.dataset.proposal, "wb") as f:
        pickle.dump(proposals, f)
    results = test_net(cfg, net, cfg_path, epoch=2, ctx=[mx.cpu()], num_workers=1)
    with open(results["detections_file"], "rb") as f:
        all_boxes = pickle.load(f)["all_boxes"]
    check_detections(all_boxes, cfg)
    assert 0.0 <= results["AP50"] <= 1.0
    # every detection is a given proposal moved by the predicted deltas: none far outside them
    for j in range(1, cfg.dataset.NUM_CLASSES):
        for dets, props in zip(all_boxes[j], proposals):
            if len(dets):
                near = np.abs(dets[:, None, :4] - props[None]).max(axis=2).min(axis=1)
                assert (near < 64).all()

    # broken boxes (issue 17): a NaN is an error naming the file and image, before anything
    # is tested; boxes past the image and inverted ones are repaired, with one warning
    broken = [p.copy() for p in proposals]
    broken[1][0, 2] = np.nan
    with open(cfg.dataset.proposal, "wb") as f:
        pickle.dump(broken, f)
    image = imdb.image_set_index[1]
    with pytest.raises(ValueError, match=rf"{cfg.dataset.proposal} .*image 1 \(id {image}\)"):
        test_net(cfg, net, cfg_path, epoch=2, ctx=[mx.cpu()], num_workers=1)
    messy = [
        np.vstack([p, [[-10, -10, rec["width"] + 30, 40], [40, 40, 10, 60]]]).astype(np.float32)
        for p, rec in zip(proposals, imdb.gt_roidb())
    ]
    with open(cfg.dataset.proposal, "wb") as f:
        pickle.dump(messy, f)
    with caplog.at_level(logging.WARNING, logger="lib.dataset.proposals"):
        results = test_net(cfg, net, cfg_path, epoch=2, ctx=[mx.cpu()], num_workers=1)
    assert not results["cached"]  # other (repaired) boxes, other detections
    assert "2 extended past their image and were clipped to it" in caplog.text
    assert "2 inverted (x2 < x1 or y2 < y1)" in caplog.text
    with open(results["detections_file"], "rb") as f:
        check_detections(pickle.load(f)["all_boxes"], cfg)

    with open(cfg.dataset.proposal, "wb") as f:
        pickle.dump(proposals[:1], f)
    with pytest.raises(ValueError, match="must hold a list of 2 arrays"):
        test_net(cfg, net, cfg_path, epoch=2, ctx=[mx.cpu()], num_workers=1)
