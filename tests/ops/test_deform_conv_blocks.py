"""Gluon blocks (lib.ops.gluon) and Module training with the library's deformable convolutions."""

import mxnet as mx
import numpy as np
import pytest

import lib.ops as ops
from lib.ops.gluon import DeformableConvolution, ModulatedDeformableConvolution

BLOCKS = [DeformableConvolution, ModulatedDeformableConvolution]


@pytest.mark.parametrize("cls", BLOCKS)
def test_block_equals_plain_convolution_at_init(cls):
    net = cls(
        8,
        kernel_size=(3, 2),
        strides=(2, 1),
        padding=(1, 1),
        dilation=(2, 1),
        groups=2,
        num_deformable_group=2,
        prefix="dc_",
    )
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(3, 4, 9, 7))
    y = net(x)
    dense = mx.nd.Convolution(
        x,
        net.weight.data(),
        net.bias.data(),
        kernel=(3, 2),
        stride=(2, 1),
        pad=(1, 1),
        dilate=(2, 1),
        num_group=2,
        num_filter=8,
    )
    np.testing.assert_allclose(y.asnumpy(), dense.asnumpy(), rtol=1e-5, atol=1e-5)
    assert net.weight.shape == (8, 2, 3, 2)  # in_channels inferred at the first forward
    per_tap = 3 if cls is ModulatedDeformableConvolution else 2
    assert net.offset_weight.shape == (2 * per_tap * 6, 4, 3, 2)
    assert sorted(net.collect_params()) == [
        "dc_bias",
        "dc_offset_bias",
        "dc_offset_weight",
        "dc_weight",
    ]


@pytest.mark.parametrize("cls", BLOCKS)
def test_block_hybridizes_exports_and_loads_back(cls, tmp_path):
    net = cls(4, kernel_size=3, padding=1, in_channels=3, use_bias=False, prefix="dcn_")
    net.initialize(mx.init.Xavier())
    # Non-zero offsets (and mask logits) so the deformable path matters.
    net.offset_weight.set_data(mx.nd.random.normal(scale=0.3, shape=net.offset_weight.shape))
    x = mx.nd.random.uniform(shape=(2, 3, 6, 5))
    eager = net(x)
    net.hybridize()
    hybrid = net(x)
    np.testing.assert_allclose(hybrid.asnumpy(), eager.asnumpy(), rtol=1e-5, atol=1e-6)
    net.export(str(tmp_path / "net"))
    loaded = mx.gluon.SymbolBlock.imports(
        str(tmp_path / "net-symbol.json"), ["data"], str(tmp_path / "net-0000.params")
    )
    np.testing.assert_allclose(loaded(x).asnumpy(), eager.asnumpy(), rtol=1e-5, atol=1e-6)


def test_block_trains_offsets():
    net = ModulatedDeformableConvolution(2, kernel_size=3, padding=1, prefix="m_")
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.uniform(shape=(2, 3, 5, 5))
    with mx.autograd.record():
        loss = (net(x) ** 2).sum()
    loss.backward()
    for p in net.collect_params().values():
        assert np.isfinite(p.grad().asnumpy()).all()
    assert np.abs(net.offset_weight.grad().asnumpy()).sum() > 0


def test_module_trains_with_sgd():
    ops.load()
    data = mx.sym.var("data")
    offset = mx.sym.Convolution(data, num_filter=2 * 9, kernel=(3, 3), pad=(1, 1), name="offset")
    mask = (
        mx.sym.sigmoid(
            mx.sym.Convolution(data, num_filter=9, kernel=(3, 3), pad=(1, 1), name="mask")
        )
        * 2
    )
    conv = ops.modulated_deformable_convolution(
        data, offset, mask, kernel=(3, 3), pad=(1, 1), num_filter=4, name="dcn"
    )
    pooled = mx.sym.mean(mx.sym.relu(conv), axis=(2, 3))
    out = mx.sym.LinearRegressionOutput(
        mx.sym.FullyConnected(pooled, num_hidden=1, name="fc"), name="reg"
    )
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(8, 3, 6, 6)).astype(np.float32)
    y = x.mean(axis=(1, 2, 3))[:, None] * 3
    it = mx.io.NDArrayIter(x, y, batch_size=4, label_name="reg_label")
    mod = mx.mod.Module(out, data_names=["data"], label_names=["reg_label"], context=mx.cpu())
    mod.bind(it.provide_data, it.provide_label)
    mod.init_params(mx.init.Xavier())
    mod.init_optimizer(optimizer="sgd", optimizer_params={"learning_rate": 0.05})
    metric = mx.metric.MSE()

    def epoch_loss(train):
        it.reset()
        metric.reset()
        for batch in it:
            mod.forward(batch, is_train=train)
            mod.update_metric(metric, batch.label)
            if train:
                mod.backward()
                mod.update()
        return metric.get()[1]

    before = epoch_loss(False)
    for _ in range(15):
        epoch_loss(True)
    after = epoch_loss(False)
    assert after < 0.5 * before, (before, after)
    arg, _ = mod.get_params()
    assert np.isfinite(arg["dcn_weight"].asnumpy()).all()
