"""Float64 numpy references for (modulated) deformable convolution.

Written from the definition (Dai et al., ICCV 2017; Zhu et al., DCNv2, CVPR 2019) as direct
loops over output positions and kernel taps with an explicit bilinear function, not ported
from the kernels:

    out[n, f, ho, wo] = bias[f] + sum_{c in group(f), i, j} weight[f, c', i, j] * m * x_c(h, w)
    h = ho*sh - ph + i*dh + dy,   w = wo*sw - pw + j*dw + dx

with, for the deformable group g of channel c and K = kh*kw, tap t = i*kw + j:
dy = offset[n, g*2K + 2t], dx = offset[n, g*2K + 2t + 1], m = mask[n, g*K + t] (1 without mask).
"""

import math

import numpy as np


def bilinear(img, h, w):
    """Updated (DCNv2) rule: the sample counts when -1 < h < H and -1 < w < W; the four corners
    floor / floor+1 are read with zero padding outside the image. Otherwise (NaN included) 0."""
    H, W = img.shape
    if not (-1 < h < H and -1 < w < W):
        return 0.0
    h0, w0 = math.floor(h), math.floor(w)
    lh, lw = h - h0, w - w0

    def px(y, x):
        return float(img[y, x]) if 0 <= y < H and 0 <= x < W else 0.0

    return (
        (1 - lh) * (1 - lw) * px(h0, w0)
        + (1 - lh) * lw * px(h0, w0 + 1)
        + lh * (1 - lw) * px(h0 + 1, w0)
        + lh * lw * px(h0 + 1, w0 + 1)
    )


def bilinear_old(img, h, w):
    """Old rule of MXNet's _contrib_DeformableConvolution: counts when 0 <= h < H and 0 <= w < W;
    a coordinate at or past the last row / column is snapped to it (replicated)."""
    H, W = img.shape
    if not (0 <= h < H and 0 <= w < W):
        return 0.0
    h0, w0 = math.floor(h), math.floor(w)
    if h0 >= H - 1:
        h, h0 = H - 1.0, H - 1
    if w0 >= W - 1:
        w, w0 = W - 1.0, W - 1
    h1, w1 = min(h0 + 1, H - 1), min(w0 + 1, W - 1)
    lh, lw = h - h0, w - w0
    return (
        (1 - lh) * (1 - lw) * img[h0, w0]
        + (1 - lh) * lw * img[h0, w1]
        + lh * (1 - lw) * img[h1, w0]
        + lh * lw * img[h1, w1]
    )


def out_size(size, k, pad, stride, dilate):
    return (size + 2 * pad - dilate * (k - 1) - 1) // stride + 1


def sample_locations(
    data_shape, offset, kernel, stride=(1, 1), pad=(0, 0), dilate=(1, 1), num_deformable_group=1
):
    """All sampling locations: array (N, dg, kh, kw, Ho, Wo, 2) of (h, w)."""
    N, _, _, _ = data_shape
    kh, kw = kernel
    _, _, Ho, Wo = offset.shape
    dg = num_deformable_group
    loc = np.zeros((N, dg, kh, kw, Ho, Wo, 2))
    for g in range(dg):
        for i in range(kh):
            for j in range(kw):
                t = i * kw + j
                base_h = np.arange(Ho)[:, None] * stride[0] - pad[0] + i * dilate[0]
                base_w = np.arange(Wo)[None, :] * stride[1] - pad[1] + j * dilate[1]
                loc[:, g, i, j, :, :, 0] = base_h + offset[:, g * 2 * kh * kw + 2 * t]
                loc[:, g, i, j, :, :, 1] = base_w + offset[:, g * 2 * kh * kw + 2 * t + 1]
    return loc


def deform_conv2d(
    data,
    offset,
    weight,
    bias=None,
    mask=None,
    stride=(1, 1),
    pad=(0, 0),
    dilate=(1, 1),
    num_group=1,
    num_deformable_group=1,
    sampler=bilinear,
):
    """(Modulated) deformable convolution, float64. Shapes as the op; returns (N, F, Ho, Wo)."""
    data = np.asarray(data, np.float64)
    offset = np.asarray(offset, np.float64)
    weight = np.asarray(weight, np.float64)
    N, C, H, W = data.shape
    F, Cg, kh, kw = weight.shape
    K = kh * kw
    Ho = out_size(H, kh, pad[0], stride[0], dilate[0])
    Wo = out_size(W, kw, pad[1], stride[1], dilate[1])
    assert offset.shape == (N, num_deformable_group * 2 * K, Ho, Wo), offset.shape
    c_per_dg = C // num_deformable_group
    f_per_group = F // num_group
    out = np.zeros((N, F, Ho, Wo))
    for n in range(N):
        for ho in range(Ho):
            for wo in range(Wo):
                # cols[c, i, j]: modulated sample of channel c at tap (i, j)
                cols = np.zeros((C, kh, kw))
                for c in range(C):
                    g = c // c_per_dg
                    for i in range(kh):
                        for j in range(kw):
                            t = i * kw + j
                            dy = offset[n, g * 2 * K + 2 * t, ho, wo]
                            dx = offset[n, g * 2 * K + 2 * t + 1, ho, wo]
                            m = 1.0 if mask is None else float(mask[n, g * K + t, ho, wo])
                            h = ho * stride[0] - pad[0] + i * dilate[0] + dy
                            w = wo * stride[1] - pad[1] + j * dilate[1] + dx
                            cols[c, i, j] = m * sampler(data[n, c], h, w)
                for f in range(F):
                    grp = f // f_per_group
                    out[n, f, ho, wo] = np.sum(weight[f] * cols[grp * Cg : (grp + 1) * Cg])
                    if bias is not None:
                        out[n, f, ho, wo] += bias[f]
    return out
