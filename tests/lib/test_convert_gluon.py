"""Gluon ResNet-v1 -> original names: same features as Gluon (random weights, no download)."""

import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon.model_zoo import vision

from lib.symbols.resnet_v1 import resnet_v1
from lib.tools.convert_gluon_resnet import (
    GLUON_MEAN_RGB,
    GLUON_STD_RGB,
    PIXEL_MEANS_RGB,
    convert_gluon_net,
    fold_input_normalization,
    main,
)

DEPTH = 50
SIZE = 64


@pytest.fixture(scope="module")
def gluon_net(tmp_path_factory):
    """A randomly initialised resnet50_v1 with random BN statistics and conv biases, saved."""
    mx.random.seed(0)
    net = vision.resnet50_v1(pretrained=False)
    net.initialize(mx.init.Xavier(magnitude=2.0), ctx=mx.cpu())
    net(mx.nd.zeros((1, 3, SIZE, SIZE)))  # materialise the deferred shapes
    rng = np.random.RandomState(0)
    for name, param in net.collect_params().items():
        shape = param.shape
        if name.endswith("gamma"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, shape)))
        elif name.endswith(("beta", "bias", "running_mean")):
            param.set_data(mx.nd.array(rng.normal(0, 0.2, shape)))
        elif name.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 2.0, shape)))
    path = tmp_path_factory.mktemp("gluon") / "resnet50_v1.params"
    net.save_parameters(str(path))
    return net, str(path)


def gluon_features(net, x):
    """Gluon's ``features`` up to the last stage (before the global pooling), inference BN."""
    for block in list(net.features)[:-1]:
        x = block(x)
    return x.asnumpy()


def our_forward(arg, aux, x, output="res5c_relu", **stem):
    (sym,) = resnet_v1(
        mx.sym.var("data"), depth=DEPTH, res5_stride=2, res5_dilate=1, stages_out=(5,), **stem
    )
    sym = sym.get_internals()[f"{output}_output"]
    args = {k: v for k, v in arg.items() if k in sym.list_arguments()}
    args["data"] = x
    auxs = {k: v for k, v in aux.items() if k in sym.list_auxiliary_states()}
    exe = sym.bind(mx.cpu(), args, aux_states=auxs, grad_req="null")
    return exe.forward(is_train=False)[0].asnumpy()


def rel_diff(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def test_converted_names_and_shapes_match_the_symbol(gluon_net):
    net, _ = gluon_net
    arg, aux = convert_gluon_net(net, DEPTH)
    (sym,) = resnet_v1(mx.sym.var("data"), depth=DEPTH, res5_stride=2, res5_dilate=1)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=(1, 3, SIZE, SIZE))
    expected_args = dict(zip(sym.list_arguments(), arg_shapes))
    del expected_args["data"]
    assert {k: v.shape for k, v in arg.items()} == expected_args
    assert {k: v.shape for k, v in aux.items()} == dict(
        zip(sym.list_auxiliary_states(), aux_shapes)
    )
    assert "res4b5_branch2c_weight" in arg and "res4f_branch2c_weight" not in arg


def test_features_match_gluon_with_gluon_pooling(gluon_net, tmp_path):
    """Our symbol built with Gluon's pool1 (pad 1, floor) reproduces Gluon's features."""
    net, path = gluon_net
    out = tmp_path / "resnet_v1_50-0000.params"
    main(["--depth", "50", "--gluon-params", path, "--out", str(out), "--no-fold-input"])
    saved = mx.nd.load(str(out))
    arg = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    assert len(arg) + len(aux) == len(saved)

    x = mx.nd.array(np.random.RandomState(1).uniform(-1, 1, (1, 3, SIZE, SIZE)))
    reference = gluon_features(net, x)
    ours = our_forward(arg, aux, x, pool1_pad=1, pool1_convention="valid")
    assert ours.shape == reference.shape == (1, 2048, 2, 2)
    assert rel_diff(ours, reference) < 1e-4


def test_original_pool1_differs_from_gluon(gluon_net):
    """The original pool1 (pad 0, ceil) has Gluon's output size on an even conv1 map, but its
    windows are shifted by one conv1 pixel, so the values differ."""
    net, _ = gluon_net
    arg, aux = convert_gluon_net(net, DEPTH)
    x = mx.nd.array(np.random.RandomState(2).uniform(-1, 1, (1, 3, SIZE, SIZE)))
    gluon_pool = list(net.features)[3](
        list(net.features)[2](list(net.features)[1](next(iter(net.features))(x)))
    ).asnumpy()
    ours_pool = our_forward(arg, aux, x, output="pool1")
    assert ours_pool.shape == gluon_pool.shape == (1, 64, 16, 16)
    assert rel_diff(ours_pool, gluon_pool) > 1e-2
    # what our pool computes: the max over rows/cols 2i..2i+2 of conv1_relu
    relu = our_forward(arg, aux, x, output="conv1_relu")[0]
    padded = np.pad(relu, ((0, 0), (0, 1), (0, 1)))  # 'full' clips the last window
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    np.testing.assert_allclose(ours_pool[0], windows[:, ::2, ::2].max(axis=(-2, -1)))


def test_fold_input_normalization(gluon_net):
    """pixels - PIXEL_MEANS through the folded stem == Gluon on normalised pixels, in the
    interior of the bn_conv1 map (conv1 windows that do not reach the zero padding)."""
    net, _ = gluon_net
    arg, aux = fold_input_normalization(*convert_gluon_net(net, DEPTH))
    pixels = np.random.RandomState(3).uniform(0, 255, (1, 3, SIZE, SIZE))
    mean = np.asarray(GLUON_MEAN_RGB)[None, :, None, None]
    std = np.asarray(GLUON_STD_RGB)[None, :, None, None]
    gluon_in = mx.nd.array((pixels / 255 - mean) / std)
    ours_in = mx.nd.array(pixels - np.asarray(PIXEL_MEANS_RGB)[None, :, None, None])

    reference = list(net.features)[1](next(iter(net.features))(gluon_in)).asnumpy()
    ours = our_forward(arg, aux, ours_in, output="bn_conv1")
    # output i reads input rows 2i-3..2i+3: inside [0, 63] for 2 <= i <= 30
    inner = (slice(None), slice(None), slice(2, 31), slice(2, 31))
    assert rel_diff(ours[inner], reference[inner]) < 1e-4
    assert rel_diff(ours, reference) > 1e-3  # the border differs, as documented


def test_rejects_wrong_depth(gluon_net):
    net, _ = gluon_net
    with pytest.raises(ValueError, match="ResNet-101"):
        convert_gluon_net(net, 101)
