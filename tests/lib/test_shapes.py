"""lib.core.shapes: the largest input a batch can have, which every module is first bound at."""

import numpy as np
import pytest

from lib.config import default_config
from lib.core.shapes import max_image_size, max_input_shapes, param_shapes, round_up
from lib.utils.image import resize
from rfcn.symbols import get_network


@pytest.mark.parametrize("stride", [0, 1, 32])
def test_every_resized_image_fits_the_max_shape(stride):
    """Images of any aspect are resized and padded to the stride by the loaders: each must fit
    (H, W) of max_image_size, the stride padding included."""
    cfg = default_config("rfcn")
    cfg.network.IMAGE_STRIDE = stride
    scales = [(600, 1000), (500, 833)]
    height, width = max_image_size(cfg, scales)
    for h, w in [(600, 1000), (375, 500), (480, 640), (333, 500), (100, 1000), (599, 601)]:
        for target, max_size in scales:
            im, _ = resize(np.zeros((h, w, 3), np.uint8), target, max_size, stride=stride)
            assert im.shape[0] <= height and im.shape[1] <= width, (h, w, target, max_size)
    assert (height, width) == ((608, 1024) if stride == 32 else (600, 1000))


def test_max_input_shapes_of_a_batch():
    cfg = default_config("rfcn")
    cfg.network.IMAGE_STRIDE = 32
    shapes = dict(max_input_shapes(cfg, [(600, 1000)], 2, 3, names=["data", "im_info", "rois"]))
    assert shapes == {"data": (6, 3, 608, 1024), "im_info": (6, 3)}  # rois: from the batch
    assert round_up(600, 32) == 608 and round_up(608, 32) == 608 and round_up(7, 0) == 7


def test_param_shapes_leave_out_the_inputs():
    cfg = default_config("rfcn")
    cfg.symbol, cfg.dataset.NUM_CLASSES, cfg.TEST.HAS_RPN = "resnet_v1_50_w16_rfcn", 5, True
    net = get_network(cfg.symbol)
    train_args, train_aux = param_shapes(cfg, net(cfg, is_train=True))
    test_args, test_aux = param_shapes(cfg, net(cfg, is_train=False))
    assert train_args == test_args and train_aux == test_aux  # the same network
    assert not {"data", "im_info", "gt_boxes", "label", "bbox_target"} & set(train_args)
    assert train_args["rfcn_cls_weight"][0] == 5 * 7 * 7
    cfg.TEST.HAS_RPN = False  # a rois input: one RoI is enough to infer the rest
    rois_args, _ = param_shapes(cfg, net(cfg, is_train=False))
    assert set(rois_args) == {k for k in test_args if not k.startswith("rpn_")}
