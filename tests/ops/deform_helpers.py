"""Shared inputs and gradient checks for the deformable convolution tests."""

import mxnet as mx
import numpy as np

import lib.ops as ops
from tests.ops import reference as ref

# The torchvision-style awkward case: asymmetric kernel / stride / pad / dilation, 2 weight groups,
# 3 deformable groups (C = 6 is divisible by both).
CFG = dict(
    kernel=(3, 2), stride=(2, 1), pad=(1, 2), dilate=(2, 1), num_group=2, num_deformable_group=3
)
N, C, H, W, F = 3, 6, 6, 5, 4


def output_hw(h, w, cfg):
    kh, kw = cfg["kernel"]
    return (
        ref.out_size(h, kh, cfg["pad"][0], cfg["stride"][0], cfg["dilate"][0]),
        ref.out_size(w, kw, cfg["pad"][1], cfg["stride"][1], cfg["dilate"][1]),
    )


def make_inputs(seed=0, n=N, c=C, h=H, w=W, f=F, cfg=CFG, modulated=False):
    """data, offset, mask (or None), weight, bias in float64.

    Offsets are a random integer plus U(0.1, 0.9): sampling points never sit on a grid line
    (where the bilinear sample is not differentiable), and they fall inside, outside and in
    the border bands (-1, 0) and (H-1, H) of the image.
    """
    rng = np.random.default_rng(seed)
    kh, kw = cfg["kernel"]
    dg, K = cfg["num_deformable_group"], kh * kw
    ho, wo = output_hw(h, w, cfg)
    data = rng.standard_normal((n, c, h, w))
    shape = (n, dg * 2 * K, ho, wo)
    offset = rng.integers(-3, 3, size=shape) + rng.uniform(0.1, 0.9, size=shape)
    mask = rng.uniform(0.2, 1.8, size=(n, dg * K, ho, wo)) if modulated else None
    weight = rng.standard_normal((f, c // cfg["num_group"], kh, kw))
    bias = rng.standard_normal(f)
    return data, offset, mask, weight, bias


def reference(data, offset, mask, weight, bias, cfg=CFG):
    return ref.deform_conv2d(
        data,
        offset,
        weight,
        bias,
        mask=mask,
        stride=cfg["stride"],
        pad=cfg["pad"],
        dilate=cfg["dilate"],
        num_group=cfg["num_group"],
        num_deformable_group=cfg["num_deformable_group"],
    )


def op_fn(num_filter, modulated, no_bias, **attrs):
    """A function of NDArrays (data, offset, [mask], weight, [bias]) calling our op."""

    def fn(*arrays):
        arrays = list(arrays)
        data, offset = arrays[:2]
        mask = arrays[2] if modulated else None
        rest = arrays[3:] if modulated else arrays[2:]
        weight, bias = rest[0], (None if no_bias else rest[1])
        if modulated:
            return ops.modulated_deformable_convolution(
                data, offset, mask, weight, bias, num_filter=num_filter, no_bias=no_bias, **attrs
            )
        return ops.deformable_convolution(
            data, offset, weight, bias, num_filter=num_filter, no_bias=no_bias, **attrs
        )

    return fn


def operands(data, offset, mask, weight, bias):
    return [a for a in (data, offset, mask, weight, bias) if a is not None]


def forward(fn, arrays, dtype=np.float64):
    return fn(*[mx.nd.array(a, dtype=dtype) for a in arrays]).asnumpy()


def autograd(fn, arrays, head, dtype=np.float64):
    """Output and input gradients of sum(fn(*arrays) * head) via mx.autograd."""
    nds = [mx.nd.array(a, dtype=dtype) for a in arrays]
    for x in nds:
        x.attach_grad()
    with mx.autograd.record():
        out = fn(*nds)
    out.backward(mx.nd.array(head, dtype=dtype))
    return out.asnumpy(), [x.grad.asnumpy() for x in nds]


def central_differences(fn, arrays, head, eps=1e-6, max_elements=None, seed=0):
    """Numerical gradients of sum(fn(*arrays) * head) in float64 by central differences.

    Runs fn once as a symbol bound to an executor and perturbs its argument arrays in place
    (much faster than building NDArrays per evaluation). With max_elements, inputs larger than
    that are checked on a random subset of elements (the others are NaN in the result).
    """
    names = [f"x{k}" for k in range(len(arrays))]
    sym = fn(*[mx.sym.var(n) for n in names])
    args = {n: mx.nd.array(a, dtype=np.float64) for n, a in zip(names, arrays)}
    exe = sym.bind(mx.cpu(), args=args, grad_req="null")
    rng = np.random.default_rng(seed)

    def value():
        return float((exe.forward(is_train=False)[0].asnumpy() * head).sum())

    grads = []
    for n, a in zip(names, arrays):
        g = np.full(a.shape, np.nan)
        flat = np.arange(a.size)
        if max_elements is not None and a.size > max_elements:
            flat = rng.choice(a.size, size=max_elements, replace=False)
        x = args[n]
        for f in flat:
            idx = np.unravel_index(f, a.shape)
            orig = float(a[idx])
            x[idx] = orig + eps
            plus = value()
            x[idx] = orig - eps
            minus = value()
            x[idx] = orig
            g[idx] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def assert_grads_close(got, numeric, names, rtol=1e-6, atol=1e-7):
    for name, a, b in zip(names, got, numeric):
        checked = ~np.isnan(b)
        assert checked.any(), name
        np.testing.assert_allclose(a[checked], b[checked], rtol=rtol, atol=atol, err_msg=name)


def offsets_for_targets(target_h, target_w, cfg=CFG):
    """Offsets (N, dg*2K, Ho, Wo) that move every sample to the given absolute locations
    (arrays (N, dg, K, Ho, Wo))."""
    kh, kw = cfg["kernel"]
    (sh, sw), (ph, pw), (dh, dw) = cfg["stride"], cfg["pad"], cfg["dilate"]
    n, dg, k, ho, wo = target_h.shape
    i, j = np.arange(k) // kw, np.arange(k) % kw
    base_h = (np.arange(ho)[None, :] * sh - ph + i[:, None] * dh)[:, :, None]
    base_w = (np.arange(wo)[None, :] * sw - pw + j[:, None] * dw)[:, None, :]
    off = np.empty((n, dg, k, 2, ho, wo))
    off[:, :, :, 0] = target_h - base_h
    off[:, :, :, 1] = target_w - base_w
    return off.reshape(n, dg * 2 * k, ho, wo)
