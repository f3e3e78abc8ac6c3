"""Tests for lib.core.initializer: rules as data, missing-only init, shape checks."""

import logging

import mxnet as mx
import numpy as np
import pytest

from lib.core.initializer import (
    DEFAULT_NEW_LAYER_RULES,
    bilinear,
    check_parameter_shapes,
    compare_params,
    constant,
    find_rule,
    infer_param_shapes,
    init_params,
    normal,
    ones,
    zeros,
)


def bilinear_reference(shape):
    """Bilinear upsampling kernel from its definition: (1 - |x/f - c|) (1 - |y/f - c|)."""
    f = np.ceil(shape[3] / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    y, x = np.meshgrid(np.arange(shape[2]), np.arange(shape[3]), indexing="ij")
    kernel = (1 - np.abs(x / f - c)) * (1 - np.abs(y / f - c))
    return np.broadcast_to(kernel, shape)


def tiny_head():
    data = mx.sym.Variable("data")
    x = mx.sym.Convolution(
        data, num_filter=4, kernel=(3, 3), pad=(1, 1), no_bias=True, name="res2a_branch2a"
    )
    x = mx.sym.BatchNorm(x, name="bn2a_branch2a")
    off = mx.sym.Convolution(
        x, num_filter=18, kernel=(3, 3), pad=(1, 1), name="res2a_branch2b_offset"
    )
    x = mx.sym.Concat(x, off)
    x = mx.sym.Convolution(x, num_filter=6, kernel=(1, 1), name="rpn_cls_score")
    return x


def test_infer_param_shapes_excludes_inputs():
    args, auxs = infer_param_shapes(tiny_head(), {"data": (1, 3, 8, 8)})
    assert "data" not in args
    assert args["res2a_branch2b_offset_weight"] == (18, 4, 3, 3)
    assert args["rpn_cls_score_weight"] == (6, 22, 1, 1)
    assert auxs == {"bn2a_branch2a_moving_mean": (4,), "bn2a_branch2a_moving_var": (4,)}


def test_init_fills_only_missing_params_by_first_matching_rule(caplog):
    args, auxs = infer_param_shapes(tiny_head(), {"data": (1, 3, 8, 8)})
    pretrained = {
        "res2a_branch2a_weight": mx.nd.full((4, 3, 3, 3), 7.0),
        "bn2a_branch2a_gamma": mx.nd.full((4,), 2.0),
        "bn2a_branch2a_beta": mx.nd.full((4,), 3.0),
    }
    pre_aux = {"bn2a_branch2a_moving_mean": mx.nd.full((4,), 0.5)}
    mx.random.seed(0)
    with caplog.at_level(logging.INFO, logger="lib.core.initializer"):
        arg, aux = init_params(
            args,
            pretrained,
            pre_aux,
            DEFAULT_NEW_LAYER_RULES + [("*_moving_var", ones())],
            aux_shapes=auxs,
        )
    assert set(pretrained) == {
        "res2a_branch2a_weight",
        "bn2a_branch2a_gamma",
        "bn2a_branch2a_beta",
    }  # inputs not modified
    assert arg["res2a_branch2a_weight"] is pretrained["res2a_branch2a_weight"]
    assert aux["bn2a_branch2a_moving_mean"] is pre_aux["bn2a_branch2a_moving_mean"]
    assert set(arg) == set(args) and set(aux) == set(auxs)
    assert not arg["res2a_branch2b_offset_weight"].asnumpy().any()
    assert not arg["res2a_branch2b_offset_bias"].asnumpy().any()
    assert not arg["rpn_cls_score_bias"].asnumpy().any()
    w = arg["rpn_cls_score_weight"].asnumpy()
    assert w.shape == (6, 22, 1, 1) and 0.005 < w.std() < 0.015 and abs(w.mean()) < 0.005
    assert (aux["bn2a_branch2a_moving_var"].asnumpy() == 1).all()
    assert "rpn_cls_score_weight" in caplog.text and "normal(0.01)" in caplog.text


def test_uncovered_missing_params_are_an_error_listing_them():
    args = {"res2a_branch2a_weight": (4, 3, 3, 3), "conv1_weight": (2, 2), "rpn_x_bias": (3,)}
    with pytest.raises(ValueError, match=r"res2a_branch2a_weight \(4, 3, 3, 3\), conv1_weight"):
        init_params(args, {}, {}, DEFAULT_NEW_LAYER_RULES)
    # covered once pretrained
    arg, _ = init_params(
        args,
        {"res2a_branch2a_weight": mx.nd.ones((4, 3, 3, 3)), "conv1_weight": mx.nd.ones((2, 2))},
        {},
        DEFAULT_NEW_LAYER_RULES,
    )
    assert set(arg) == set(args)


def test_first_rule_wins_and_glob_semantics():
    rules = [("rfcn_*_offset_t_*", constant(3.0)), ("rfcn_*", constant(1.0)), ("*", zeros())]
    shapes = {"rfcn_cls_offset_t_weight": (2,), "rfcn_cls_weight": (2,), "xrfcn_w": (2,)}
    arg, _ = init_params(shapes, {}, {}, rules)
    assert [arg[n].asnumpy()[0] for n in shapes] == [3.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("res5a_branch2b_offset_weight", "zeros"),
        ("rfcn_cls_offset_t_weight", "zeros"),
        ("offset_weight", "zeros"),  # Faster R-CNN DCN RoI offsets
        ("offset_p3_bias", "zeros"),  # FPN DCN RoI offsets
        ("rpn_conv_3x3_weight", "normal"),
        ("rfcn_bbox_weight", "normal"),
        ("fc_new_1_weight", "normal"),
        ("bbox_pred_bias", "zeros"),
        ("fpn_p3_1x1_weight", "normal"),
        ("score_weight", "normal"),
        ("upsampling_weight", "bilinear"),
        ("res4b22_branch2c_weight", None),  # backbone: must come from the pretrained model
        ("bn_conv1_gamma", None),
    ],
)
def test_default_rules(name, expected):
    rule = find_rule(name, DEFAULT_NEW_LAYER_RULES)
    if expected is None:
        assert rule is None
    else:
        qualname = {"zeros": "constant(0.0)", "normal": "normal(0.01)", "bilinear": "from_mx("}
        assert rule[1].__qualname__.startswith(qualname[expected])


def test_bilinear_matches_the_definition():
    shape = (3, 1, 32, 32)  # DeepLab: Deconvolution kernel 32, stride 16, num_group=classes
    np.testing.assert_allclose(
        bilinear()("upsampling_weight", shape).asnumpy(), bilinear_reference(shape), rtol=1e-6
    )
    shape = (1, 1, 3, 3)
    np.testing.assert_allclose(
        bilinear()("u", shape).asnumpy(), bilinear_reference(shape), rtol=1e-6
    )


def test_normal_is_reproducible_with_mx_seed():
    mx.random.seed(5)
    a = normal(0.01)("w", (10,)).asnumpy()
    mx.random.seed(5)
    np.testing.assert_array_equal(a, normal(0.01)("w", (10,)).asnumpy())


def test_check_parameter_shapes_lists_every_problem():
    arg_shapes = {"a": (2, 3), "b": (4,), "c": (1,)}
    aux_shapes = {"m": (4,)}
    arg = {"a": mx.nd.ones((3, 2)), "c": mx.nd.ones((1,)), "offset_weight": mx.nd.ones((9,)),
           "c_test": mx.nd.ones((1,))}  # fmt: skip
    with pytest.raises(ValueError) as e:
        check_parameter_shapes(arg_shapes, aux_shapes, arg, {}, "checkpoint x.params", "net y")
    msg = str(e.value)
    assert msg.startswith("checkpoint x.params does not fit net y")
    assert "missing arg params (1): b" in msg
    # a param the network lacks (a DCN checkpoint's offsets under a plain network) is an error
    assert "arg params the network does not have (1): offset_weight" in msg
    assert "arg a: expected shape (2, 3), got (3, 2)" in msg
    assert "missing aux params (1): m" in msg
    assert "c_test" not in msg and "arg c" not in msg and len(msg.splitlines()) == 5
    check_parameter_shapes(
        arg_shapes,
        aux_shapes,
        {"a": mx.nd.ones((2, 3)), "b": mx.nd.ones((4,)), "c": mx.nd.ones((1,))},
        {"m": mx.nd.ones((4,))},
    )


def test_compare_params_checks_test_params_against_their_param():
    diff = compare_params(
        {"w": (8, 4)},
        {},
        {"w": mx.nd.ones((8, 4)), "w_test": mx.nd.ones((8, 2)), "v_test": mx.nd.ones((1,))},
        {"w": mx.nd.ones((1,))},
    )
    assert diff == {
        "missing": [],
        "unexpected": ["arg:v_test", "aux:w"],
        "mismatched": {"arg:w_test": {"expected": [8, 4], "got": [8, 2]}},
        "test_params": ["arg:w_test"],
    }
