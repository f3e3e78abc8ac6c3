"""Faster R-CNN end to end on tiny synthetic images: a few training iterations, then a test pass.

The plain and the deformable CPU networks of the synthetic configs, through the shared trainer
and tester (see :mod:`tests.e2e.detection` for what is checked).
"""

import pytest

from faster_rcnn.symbols import get_network
from tests.e2e.detection import make_data, tiny_config, train_and_test


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize("name", ["synthetic_rcnn", "synthetic_rcnn_dcn"])
def test_train_then_test(name, data_root, tmp_path):
    cfg_path = f"experiments/faster_rcnn/cfgs/{name}.yaml"
    net = get_network(tiny_config(cfg_path, data_root, tmp_path).symbol)
    train_and_test(cfg_path, net, data_root, tmp_path, "fc_new_1_weight", "bbox_pred")
