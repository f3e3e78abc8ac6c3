"""Every detector end to end on tiny synthetic images: a few training iterations, then a test.

The plain and the deformable CPU networks of each architecture's synthetic configs, through
the shared trainer and tester (see :mod:`tests.e2e.detection` for what is checked).
"""

import pytest

from faster_rcnn.symbols import get_network as rcnn_network
from fpn.symbols import get_network as fpn_network
from lib.config import load_config
from lib.core.trainer import prepare_synthetic_data
from lib.dataset import synthetic
from rfcn.symbols import get_network as rfcn_network
from tests.e2e.detection import make_data, tiny_config, train_and_test

# (config, registry lookup, a head weight that must train, the bbox-regression layer)
DETECTORS = {
    "synthetic_rfcn": ("rfcn", rfcn_network, "rfcn_cls_weight", "rfcn_bbox"),
    "synthetic_rfcn_dcn": ("rfcn", rfcn_network, "rfcn_cls_weight", "rfcn_bbox"),
    "synthetic_rcnn": ("faster_rcnn", rcnn_network, "fc_new_1_weight", "bbox_pred"),
    "synthetic_rcnn_dcn": ("faster_rcnn", rcnn_network, "fc_new_1_weight", "bbox_pred"),
    "synthetic_fpn": ("fpn", fpn_network, "fpn_p2_weight", "bbox_pred"),
    "synthetic_fpn_dcn": ("fpn", fpn_network, "offset_p2_weight", "bbox_pred"),
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_train_then_test(name, data_root, tmp_path):
    arch, get_network, head_weight, bbox_layer = DETECTORS[name]
    cfg_path = f"experiments/{arch}/cfgs/{name}.yaml"
    net = get_network(tiny_config(cfg_path, data_root, tmp_path).symbol)
    train_and_test(cfg_path, net, data_root, tmp_path, head_weight, bbox_layer)


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
