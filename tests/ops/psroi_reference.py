"""Float64 numpy references for PSROIPooling and DeformablePSROIPooling.

Written from the operator definitions (R-FCN, arXiv:1605.06409; Deformable ConvNets,
arXiv:1703.06211, position-sensitive RoI pooling with per-part offsets) as straight loops,
not ported from the kernels. Conventions both ops share with MXNet's contrib operators:

* rois are ``[batch_index, x1, y1, x2, y2]`` in image pixels; corners are rounded to whole
  pixels and the end corner is inclusive (``+1``) before scaling by ``spatial_scale``;
* output channel ``ctop`` of bin ``(ph, pw)`` reads data channel
  ``(ctop * group + gh) * group + gw`` with ``gh = floor(ph * group / pooled)`` (the
  position-sensitive score map of that bin);
* ``spatial_scale`` and ``trans_std`` are float32 parameters (as in contrib), so they are
  rounded to float32 here too.
"""

import math

import numpy as np


def _f32(v):
    return float(np.float32(v))


def _round_half_away(v):
    # C's round(): halves go away from zero (numpy's round goes to even).
    return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)


def _group_index(p, group, pooled):
    return min(max(math.floor(p * group / pooled), 0), group - 1)


def psroi_pooling(data, rois, spatial_scale, output_dim, pooled_size, group_size=0):
    """Position-sensitive RoI average pooling (R-FCN).

    Bin (ph, pw) of a roi covers the whole pixels
    ``[floor(start + ph * bin), ceil(start + (ph + 1) * bin))`` clipped to the image, where
    ``start = round(y1) * scale`` and ``bin = max((round(y2) + 1) * scale - start, 0.1) / pooled``;
    the output is the mean of the bin's pixels in the bin's score map, 0 for an empty bin.

    Returns:
        (output, area): output (R, output_dim, pooled, pooled) and the pixel count of each bin
        (used by :func:`psroi_pooling_backward`).
    """
    data = np.asarray(data, np.float64)
    rois = np.asarray(rois, np.float64)
    group = group_size if group_size > 0 else pooled_size
    scale = _f32(spatial_scale)
    _, _, height, width = data.shape
    num_rois = rois.shape[0]
    out = np.zeros((num_rois, output_dim, pooled_size, pooled_size))
    area = np.zeros_like(out)
    for n in range(num_rois):
        b = int(rois[n, 0])
        x1, y1, x2, y2 = (_round_half_away(v) for v in rois[n, 1:])
        start_w, start_h = x1 * scale, y1 * scale
        roi_w = max((x2 + 1) * scale - start_w, 0.1)
        roi_h = max((y2 + 1) * scale - start_h, 0.1)
        bin_w, bin_h = roi_w / pooled_size, roi_h / pooled_size
        for ctop in range(output_dim):
            for ph in range(pooled_size):
                for pw in range(pooled_size):
                    hs = min(max(math.floor(ph * bin_h + start_h), 0), height)
                    he = min(max(math.ceil((ph + 1) * bin_h + start_h), 0), height)
                    ws = min(max(math.floor(pw * bin_w + start_w), 0), width)
                    we = min(max(math.ceil((pw + 1) * bin_w + start_w), 0), width)
                    if he <= hs or we <= ws:
                        continue
                    gh = _group_index(ph, group, pooled_size)
                    gw = _group_index(pw, group, pooled_size)
                    c = (ctop * group + gh) * group + gw
                    out[n, ctop, ph, pw] = data[b, c, hs:he, ws:we].mean()
                    area[n, ctop, ph, pw] = (he - hs) * (we - ws)
    return out, area


def psroi_pooling_backward(
    data_shape, rois, grad_out, spatial_scale, output_dim, pooled_size, group_size=0
):
    """Gradient of :func:`psroi_pooling` w.r.t. data (each bin pixel gets grad / area)."""
    rois = np.asarray(rois, np.float64)
    group = group_size if group_size > 0 else pooled_size
    scale = _f32(spatial_scale)
    _, _, height, width = data_shape
    grad = np.zeros(data_shape)
    for n in range(rois.shape[0]):
        b = int(rois[n, 0])
        x1, y1, x2, y2 = (_round_half_away(v) for v in rois[n, 1:])
        start_w, start_h = x1 * scale, y1 * scale
        roi_w = max((x2 + 1) * scale - start_w, 0.1)
        roi_h = max((y2 + 1) * scale - start_h, 0.1)
        bin_w, bin_h = roi_w / pooled_size, roi_h / pooled_size
        for ctop in range(output_dim):
            for ph in range(pooled_size):
                for pw in range(pooled_size):
                    hs = min(max(math.floor(ph * bin_h + start_h), 0), height)
                    he = min(max(math.ceil((ph + 1) * bin_h + start_h), 0), height)
                    ws = min(max(math.floor(pw * bin_w + start_w), 0), width)
                    we = min(max(math.ceil((pw + 1) * bin_w + start_w), 0), width)
                    if he <= hs or we <= ws:
                        continue
                    gh = _group_index(ph, group, pooled_size)
                    gw = _group_index(pw, group, pooled_size)
                    c = (ctop * group + gh) * group + gw
                    g = grad_out[n, ctop, ph, pw] / ((he - hs) * (we - ws))
                    grad[b, c, hs:he, ws:we] += g
    return grad


def _bilinear(plane, h, w):
    """Bilinear value of ``plane`` at (h, w), 0 <= h <= H-1, 0 <= w <= W-1."""
    h0, w0 = math.floor(h), math.floor(w)
    h1, w1 = math.ceil(h), math.ceil(w)
    dh, dw = h - h0, w - w0
    return (
        (1 - dh) * (1 - dw) * plane[h0, w0]
        + (1 - dh) * dw * plane[h0, w1]
        + dh * (1 - dw) * plane[h1, w0]
        + dh * dw * plane[h1, w1]
    )


def _dpsroi_raw_samples(
    rois,
    trans,
    n,
    ctop,
    ph,
    pw,
    spatial_scale,
    output_dim,
    group,
    pooled,
    part,
    sample_per_part,
    trans_std,
):
    """Yields (h, w, c, class, part_h, part_w, roi_w, roi_h) for every sample point of one bin,
    before the outside test and the clamping."""
    scale = _f32(spatial_scale)
    x1, y1, x2, y2 = (_round_half_away(v) for v in rois[n, 1:])
    start_w, start_h = x1 * scale - 0.5, y1 * scale - 0.5
    roi_w = max((x2 + 1) * scale - 0.5 - start_w, 0.1)
    roi_h = max((y2 + 1) * scale - 0.5 - start_h, 0.1)
    bin_w, bin_h = roi_w / pooled, roi_h / pooled
    sub_w, sub_h = bin_w / sample_per_part, bin_h / sample_per_part
    part_h = math.floor(ph / pooled * part)
    part_w = math.floor(pw / pooled * part)
    cls, tx, ty = 0, 0.0, 0.0
    if trans is not None:
        num_classes = trans.shape[1] // 2
        cls = ctop // (output_dim // num_classes)
        tx = trans[n, 2 * cls, part_h, part_w] * _f32(trans_std)
        ty = trans[n, 2 * cls + 1, part_h, part_w] * _f32(trans_std)
    # Samples at the top-left corners of the sub-bins, shifted by the part's offset.
    wstart = pw * bin_w + start_w + tx * roi_w
    hstart = ph * bin_h + start_h + ty * roi_h
    gh = _group_index(ph, group, pooled)
    gw = _group_index(pw, group, pooled)
    c = (ctop * group + gh) * group + gw
    for ih in range(sample_per_part):
        for iw in range(sample_per_part):
            yield (hstart + ih * sub_h, wstart + iw * sub_w, c, cls, part_h, part_w, roi_w, roi_h)


def _dpsroi_samples(
    rois,
    trans,
    n,
    ctop,
    ph,
    pw,
    spatial_scale,
    output_dim,
    group,
    pooled,
    part,
    sample_per_part,
    trans_std,
    height,
    width,
):
    """Yields (h, w, c, class, part_h, part_w, roi_w, roi_h) per counted sample of one bin."""
    for h, w, *rest in _dpsroi_raw_samples(
        rois,
        trans,
        n,
        ctop,
        ph,
        pw,
        spatial_scale,
        output_dim,
        group,
        pooled,
        part,
        sample_per_part,
        trans_std,
    ):
        # Points more than half a pixel outside the map are not counted; the rest are
        # clamped onto the map.
        if not (-0.5 <= w <= width - 0.5 and -0.5 <= h <= height - 0.5):
            continue
        yield (min(max(h, 0.0), height - 1.0), min(max(w, 0.0), width - 1.0), *rest)


def dpsroi_sample_points(
    rois,
    trans,
    spatial_scale,
    output_dim,
    group_size,
    pooled_size,
    part_size=0,
    sample_per_part=1,
    trans_std=0.0,
    no_trans=False,
):
    """All sample points (before the outside test and clamping) as a list of
    (roi, class, part_h, part_w, h, w): used to keep numeric gradients away from kinks."""
    rois = np.asarray(rois, np.float64)
    trans = None if no_trans else np.asarray(trans, np.float64)
    part = part_size if part_size > 0 else pooled_size
    points = []
    for n in range(rois.shape[0]):
        for ctop in range(output_dim):
            for ph in range(pooled_size):
                for pw in range(pooled_size):
                    for h, w, _, cls, part_h, part_w, _, _ in _dpsroi_raw_samples(
                        rois,
                        trans,
                        n,
                        ctop,
                        ph,
                        pw,
                        spatial_scale,
                        output_dim,
                        group_size,
                        pooled_size,
                        part,
                        sample_per_part,
                        trans_std,
                    ):
                        points.append((n, cls, part_h, part_w, h, w))
    return points


def deformable_psroi_pooling(
    data,
    rois,
    trans,
    spatial_scale,
    output_dim,
    group_size,
    pooled_size,
    part_size=0,
    sample_per_part=1,
    trans_std=0.0,
    no_trans=False,
):
    """Deformable position-sensitive RoI pooling.

    Each bin is the mean of ``sample_per_part**2`` bilinear samples at the top-left corners of
    its sub-bins, shifted by ``trans * trans_std * roi_size``; ``trans`` has channels
    ``(x, y)`` per class and ``part_size x part_size`` parts. Returns (output, count).
    """
    data = np.asarray(data, np.float64)
    rois = np.asarray(rois, np.float64)
    trans = None if no_trans else np.asarray(trans, np.float64)
    part = part_size if part_size > 0 else pooled_size
    _, _, height, width = data.shape
    num_rois = rois.shape[0]
    out = np.zeros((num_rois, output_dim, pooled_size, pooled_size))
    count = np.zeros_like(out)
    for n in range(num_rois):
        b = int(rois[n, 0])
        for ctop in range(output_dim):
            for ph in range(pooled_size):
                for pw in range(pooled_size):
                    vals = [
                        _bilinear(data[b, s[2]], s[0], s[1])
                        for s in _dpsroi_samples(
                            rois,
                            trans,
                            n,
                            ctop,
                            ph,
                            pw,
                            spatial_scale,
                            output_dim,
                            group_size,
                            pooled_size,
                            part,
                            sample_per_part,
                            trans_std,
                            height,
                            width,
                        )
                    ]
                    if vals:
                        out[n, ctop, ph, pw] = sum(vals) / len(vals)
                        count[n, ctop, ph, pw] = len(vals)
    return out, count


def deformable_psroi_pooling_backward(
    data,
    rois,
    trans,
    grad_out,
    spatial_scale,
    output_dim,
    group_size,
    pooled_size,
    part_size=0,
    sample_per_part=1,
    trans_std=0.0,
    no_trans=False,
):
    """Gradients (data, trans) of :func:`deformable_psroi_pooling`.

    The trans gradient is the derivative of the bilinear value w.r.t. the sample position
    (one-sided at whole-pixel coordinates: ``ceil == floor`` there, so it is 0, as in contrib),
    times ``trans_std * roi_size``.
    """
    data = np.asarray(data, np.float64)
    rois = np.asarray(rois, np.float64)
    trans_arr = None if no_trans else np.asarray(trans, np.float64)
    part = part_size if part_size > 0 else pooled_size
    _, _, height, width = data.shape
    grad_data = np.zeros_like(data)
    grad_trans = None if no_trans else np.zeros_like(trans_arr)
    for n in range(rois.shape[0]):
        b = int(rois[n, 0])
        for ctop in range(output_dim):
            for ph in range(pooled_size):
                for pw in range(pooled_size):
                    samples = list(
                        _dpsroi_samples(
                            rois,
                            trans_arr,
                            n,
                            ctop,
                            ph,
                            pw,
                            spatial_scale,
                            output_dim,
                            group_size,
                            pooled_size,
                            part,
                            sample_per_part,
                            trans_std,
                            height,
                            width,
                        )
                    )
                    if not samples:
                        continue
                    g = grad_out[n, ctop, ph, pw] / len(samples)
                    for h, w, c, cls, part_h, part_w, roi_w, roi_h in samples:
                        h0, w0 = math.floor(h), math.floor(w)
                        h1, w1 = math.ceil(h), math.ceil(w)
                        dh, dw = h - h0, w - w0
                        grad_data[b, c, h0, w0] += (1 - dh) * (1 - dw) * g
                        grad_data[b, c, h0, w1] += (1 - dh) * dw * g
                        grad_data[b, c, h1, w0] += dh * (1 - dw) * g
                        grad_data[b, c, h1, w1] += dh * dw * g
                        if no_trans:
                            continue
                        p = data[b, c]
                        d_dw = (1 - dh) * (p[h0, w1] - p[h0, w0]) + dh * (p[h1, w1] - p[h1, w0])
                        d_dh = (1 - dw) * (p[h1, w0] - p[h0, w0]) + dw * (p[h1, w1] - p[h0, w1])
                        std = _f32(trans_std)
                        grad_trans[n, 2 * cls, part_h, part_w] += d_dw * g * std * roi_w
                        grad_trans[n, 2 * cls + 1, part_h, part_w] += d_dh * g * std * roi_h
    return grad_data, grad_trans
