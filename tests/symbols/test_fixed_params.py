"""``network.FIXED_PARAMS`` of the original configs freeze what the original froze: every
argument whose name *contains* one of the substrings (``'res2'`` freezes ``res2a_branch1_weight``,
``'gamma'`` every BN scale), in every architecture."""

import pytest

from deeplab.symbols import get_network as deeplab_network
from faster_rcnn.symbols import get_network as rcnn_network
from fpn.symbols import get_network as fpn_network
from lib.core.module import fixed_param_names
from rfcn.symbols import get_network as rfcn_network
from tests.symbols import gate

CASES = {
    "resnet_v1_101_rfcn_dcn__train": (
        rfcn_network,
        {"conv1_weight", "res2a_branch1_weight", "bn5c_branch2c_gamma"},
        {"res3a_branch1_weight", "res5a_branch2b_offset_weight", "rfcn_cls_weight"},
    ),
    "resnet_v1_101_rcnn_dcn__train": (
        rcnn_network,
        {"conv1_weight", "res2a_branch1_weight", "bn5c_branch2c_gamma"},
        {"res3a_branch1_weight", "offset_weight", "fc_new_1_weight"},
    ),
    "resnet_v1_101_fpn_dcn_rcnn__train": (
        fpn_network,
        {"conv1_weight", "res2a_branch1_weight", "bn5c_branch2c_gamma"},
        {"res3b3_branch2b_offset_weight", "fpn_p2_1x1_weight", "offset_p2_weight"},
    ),
    "resnet_v1_101_deeplab_dcn__train": (
        deeplab_network,
        {"conv1_weight", "res2c_branch2b_weight", "bn5c_branch2c_gamma"},
        {"res3a_branch1_weight", "res5a_branch2b_offset_weight", "fc6_weight"},
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fixed_params_follow_substring_semantics(case):
    get_network, frozen, free = CASES[case]
    ref, _sym, cfg = gate.load_case(case, get_network)
    params = [name for name, _ in ref["arg_params"]]
    fixed = set(fixed_param_names(params, cfg.network.FIXED_PARAMS))
    # FIXED_PARAMS [conv1, bn_conv1, res2, bn2, gamma, beta]: any name containing one of them
    assert fixed == {n for n in params if any(s in n for s in cfg.network.FIXED_PARAMS)}
    assert frozen <= fixed
    assert not fixed & free
