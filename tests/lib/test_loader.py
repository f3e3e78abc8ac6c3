"""Image preprocessing (lib.utils.image) and the data iterators (lib.core.loader / seg_loader).

Preprocessing is checked against hand-computed values; the loaders run on a tiny synthetic
COCO / Cityscapes set generated into a temporary directory (images of about 80-120 px).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from lib.config import default_config
from lib.core.loader import (
    AnchorLoader,
    DataLoaderError,
    PyramidAnchorLoader,
    TestLoader,
    gt_boxes_of,
)
from lib.core.seg_loader import TestDataLoader, TrainDataLoader, random_crop
from lib.dataset import load_gt_roidb, load_gt_segdb
from lib.dataset.synthetic import generate
from lib.utils.image import (
    ImageReadError,
    get_image,
    prepare_seg_image,
    read_image,
    resize,
    tensor_vstack,
    transform,
    transform_inverse,
    transform_seg_gt,
)
from lib.utils.prefetch import OrderedPrefetcher

STRIDE = 16
SCALES = [(96, 160)]
ANCHOR_SCALES = (1, 2, 4)  # 16, 32, 64 px anchors: they fit the ~100 px images
RATIOS = (0.5, 1, 2)
A = len(ANCHOR_SCALES) * len(RATIOS)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, formats=("coco", "cityscapes"), num_train=8, num_test=5, seed=0, size=96)
    return root


@pytest.fixture(scope="module")
def roidb(synth: Path) -> list:
    """8 training images followed by their 8 flipped copies."""
    return load_gt_roidb("synthetic", "train", str(synth / "cache"), str(synth), flip=True)


@pytest.fixture(scope="module")
def test_roidb(synth: Path) -> list:
    return load_gt_roidb("synthetic", "val", str(synth / "cache"), str(synth))


@pytest.fixture(scope="module")
def segdb(synth: Path) -> list:
    return load_gt_segdb("synthetic_seg", "train", str(synth / "cache"), str(synth), flip=True)


def det_cfg(scales=SCALES, stride: int = 0):
    cfg = default_config("rfcn")
    cfg.SCALES = list(scales)
    cfg.network.PIXEL_MEANS = np.array([103.06, 115.90, 123.15])
    cfg.network.IMAGE_STRIDE = stride
    cfg.TRAIN.END2END = True
    cfg.TRAIN.RPN_BATCH_SIZE = 64
    return cfg


def feat_fn(data_shape):
    """A stride-16 feature map, as a conv with kernel 3, pad 1, stride 16 gives."""
    _, _, h, w = data_shape
    return (1, 2 * A, (h - 1) // STRIDE + 1, (w - 1) // STRIDE + 1)


def anchor_loader(roidb, cfg=None, **kwargs) -> AnchorLoader:
    kwargs.setdefault("num_workers", 2)
    kwargs.setdefault("seed", 0)
    return AnchorLoader(
        feat_fn, roidb, cfg or det_cfg(), feat_stride=STRIDE, anchor_scales=ANCHOR_SCALES,
        anchor_ratios=RATIOS, **kwargs,
    )  # fmt: skip


def network_input(path: str, flipped: bool, scale: float) -> np.ndarray:
    """(1, 3, h, w) float32 tensor of an image file, computed here from its definition: read as
    BGR, mirrored if flipped, resized by ``scale`` (bilinear), RGB minus the means."""
    im = cv2.imread(path, cv2.IMREAD_COLOR)
    if flipped:
        im = np.ascontiguousarray(im[:, ::-1])
    im = cv2.resize(im, None, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    rgb = im[:, :, ::-1].astype(np.float32) - np.float32([123.15, 115.90, 103.06])
    return rgb.transpose(2, 0, 1)[np.newaxis]


def mirrored_boxes(rec) -> np.ndarray:
    """The record's boxes mirrored in its image: x1' = W - 1 - x2, x2' = W - 1 - x1."""
    x1, y1, x2, y2 = np.asarray(rec["boxes"], dtype=np.float64).T
    return np.stack([rec["width"] - 1 - x2, y1, rec["width"] - 1 - x1, y2], axis=1)


def expected_scale(height: int, width: int, target: int, max_size: int) -> float:
    scale = target / min(height, width)
    return max_size / max(height, width) if round(scale * max(height, width)) > max_size else scale


def all_batches(loader) -> list:
    return list(loader)


# ------------------------------------------------------------------------- image functions


@pytest.mark.parametrize(
    ("shape", "target", "max_size", "want_scale", "want_hw"),
    [
        ((30, 50), 60, 100, 2.0, (60, 100)),  # long side exactly max: short side rules
        ((30, 50), 60, 90, 1.8, (54, 90)),  # long side would be 100 > 90: capped
        ((50, 30), 60, 90, 1.8, (90, 54)),  # vertical image, same rule
        # 12 * 10/7 = 17.14 rounds to 17, not > 17: the short side still rules (np.round test)
        ((7, 12), 10, 17, 10 / 7, (10, 17)),
    ],
)
def test_resize_scale_decision(shape, target, max_size, want_scale, want_hw):
    im = np.zeros(shape + (3,), np.uint8)
    out, scale = resize(im, target, max_size)
    assert scale == pytest.approx(want_scale)
    assert out.shape == want_hw + (3,)
    assert out.dtype == np.uint8


def test_resize_stride_padding():
    im = np.full((30, 50, 3), 7, np.uint8)
    out, scale = resize(im, 40, 1000, stride=32)
    assert scale == pytest.approx(4 / 3)
    assert out.shape == (64, 96, 3)  # 40 x 67 padded up to multiples of 32
    assert (out[:40, :67] == 7).all()
    assert (out[40:] == 0).all() and (out[:, 67:] == 0).all()

    label = np.full((30, 50), 3, np.uint8)  # 2-D labels pad too, with the given value
    out, _ = resize(label, 40, 1000, stride=32, interpolation=cv2.INTER_NEAREST, pad_value=255)
    assert out.shape == (64, 96)
    assert (out[:40, :67] == 3).all() and (out[40:] == 255).all() and (out[:, 67:] == 255).all()


def test_transform_rgb_order_and_means():
    im = np.zeros((2, 3, 3), np.uint8)
    im[..., 0], im[..., 1], im[..., 2] = 10, 20, 30  # B, G, R
    im[1, 2] = (200, 100, 50)
    means = [1.0, 2.0, 3.0]  # listed B, G, R
    tensor = transform(im, means)
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == np.float32
    np.testing.assert_array_equal(tensor[0, :, 0, 0], [30 - 3, 20 - 2, 10 - 1])  # R, G, B
    np.testing.assert_array_equal(tensor[0, :, 1, 2], [50 - 3, 100 - 2, 200 - 1])
    # The inverse gives RGB back (exactly, on integer images).
    np.testing.assert_array_equal(transform_inverse(tensor, means), im[:, :, ::-1])
    np.testing.assert_array_equal(
        transform_inverse(transform(im, [103.06, 115.9, 123.15]), [103.06, 115.9, 123.15]),
        im[:, :, ::-1],
    )


def test_transform_seg_gt_and_tensor_vstack():
    gt = np.array([[0, 255], [18, 3]], np.uint8)
    t = transform_seg_gt(gt)
    assert t.shape == (1, 1, 2, 2) and t.dtype == np.float32
    np.testing.assert_array_equal(t[0, 0], gt)

    a, b = np.ones((1, 3, 2, 4), np.float32), 2 * np.ones((2, 3, 3, 1), np.float32)
    out = tensor_vstack([a, b], pad=-1)
    assert out.shape == (3, 3, 3, 4)
    assert (out[0, :, :2, :] == 1).all() and (out[0, :, 2:, :] == -1).all()
    assert (out[1:, :, :, :1] == 2).all() and (out[1:, :, :, 1:] == -1).all()
    with pytest.raises(ValueError, match="ranks differ"):
        tensor_vstack([a, np.ones((2, 2))])


def test_read_image_errors_name_the_file(tmp_path: Path):
    im = (np.arange(20 * 30 * 3) % 251).astype(np.uint8).reshape(20, 30, 3)
    cv2.imwrite(str(tmp_path / "ok.png"), im)
    np.testing.assert_array_equal(read_image(str(tmp_path / "ok.png")), im)
    np.testing.assert_array_equal(read_image(str(tmp_path / "ok.png"), True), im[:, ::-1])

    missing = tmp_path / "missing.jpg"
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        read_image(str(missing))
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all" * 5)
    with pytest.raises(ImageReadError, match="garbage.jpg"):
        read_image(str(garbage))
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.png"):
        read_image(str(tmp_path / "empty.png"))
    cv2.imwrite(str(tmp_path / "full.jpg"), im)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])  # libjpeg would decode it grey
    with pytest.raises(ImageReadError, match="half.jpg.*truncated"):
        read_image(str(tmp_path / "half.jpg"))
    png = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "half.png").write_bytes(png[: len(png) // 2])  # before libpng complains
    with pytest.raises(ImageReadError, match="half.png is a truncated PNG"):
        read_image(str(tmp_path / "half.png"))
    assert issubclass(ImageReadError, OSError)


def test_get_image_scales_boxes_and_im_info(roidb):
    cfg = det_cfg()
    n = len(roidb) // 2
    tensors, recs = get_image([roidb[0], roidb[n]], cfg, scale_index=0)
    rec = roidb[0]
    s = expected_scale(rec["height"], rec["width"], *SCALES[0])
    for tensor, new in zip(tensors, recs):
        h, w = tensor.shape[2:]
        assert (h, w) == (round(rec["height"] * s), round(rec["width"] * s))
        np.testing.assert_allclose(new["im_info"], [h, w, s], rtol=1e-6)
    np.testing.assert_array_equal(recs[0]["boxes"], np.round(rec["boxes"] * s))
    # Flipped copy: x1' = W - x2 - 1 in the roidb, then scaled like the rest.
    flipped = roidb[n]
    assert flipped["flipped"] and flipped["image"] == rec["image"]
    np.testing.assert_array_equal(flipped["boxes"], mirrored_boxes(rec))
    np.testing.assert_array_equal(recs[1]["boxes"], np.round(mirrored_boxes(rec) * s))
    # and the pixels are those of the mirrored image, exactly
    np.testing.assert_array_equal(tensors[0], network_input(rec["image"], False, s))
    np.testing.assert_array_equal(tensors[1], network_input(rec["image"], True, s))


# ----------------------------------------------------------------------------- AnchorLoader


def test_anchor_loader_shapes_and_targets(roidb):
    cfg = det_cfg()
    loader = anchor_loader(roidb, cfg, shuffle=False)
    assert [d.name for d in loader.provide_data] == ["data", "im_info", "gt_boxes"]
    assert [d.name for d in loader.provide_label] == ["label", "bbox_target", "bbox_weight"]
    batches = all_batches(loader)
    assert len(batches) == len(roidb) == loader.num_batches
    for i, batch in enumerate(batches):
        rec = roidb[i]
        assert batch.index.tolist() == [i]
        data, im_info, gt_boxes = (a.asnumpy() for a in batch.data)
        label, bbox_target, bbox_weight = (a.asnumpy() for a in batch.label)
        s = expected_scale(rec["height"], rec["width"], *SCALES[0])
        h, w = round(rec["height"] * s), round(rec["width"] * s)
        assert data.shape == (1, 3, h, w)
        np.testing.assert_allclose(im_info, [[h, w, s]], rtol=1e-6)
        assert [d.shape for d in batch.provide_data] == [data.shape, (1, 3), gt_boxes.shape]
        want_gt = np.hstack([np.round(rec["boxes"] * s), rec["gt_classes"][:, None]])
        np.testing.assert_array_equal(gt_boxes, want_gt[None].astype(np.float32))
        _, _, fh, fw = feat_fn(data.shape)
        assert label.shape == (1, A * fh * fw)
        assert bbox_target.shape == bbox_weight.shape == (1, 4 * A, fh, fw)
        assert set(np.unique(label)) <= {-1.0, 0.0, 1.0}
        assert (label == 1).sum() > 0, f"no positive anchor for {rec['image']}"
        assert (label != -1).sum() <= cfg.TRAIN.RPN_BATCH_SIZE
        # weights are set exactly on the foreground anchors
        fg = label.reshape(A, fh, fw) == 1
        np.testing.assert_array_equal(bbox_weight.reshape(A, 4, fh, fw)[:, 0], fg.astype(float))
    loader.close()


def test_anchor_loader_flipped_copies(roidb):
    """A flipped record gives the mirrored image's pixels and its boxes mirrored in the original
    image (x1' = W - 1 - x2), then scaled and rounded like any box: exact to the pixel."""
    n = len(roidb) // 2
    rec = roidb[1]
    loader = anchor_loader([rec, roidb[1 + n]], shuffle=False)
    plain, flipped = all_batches(loader)
    s = expected_scale(rec["height"], rec["width"], *SCALES[0])
    want_boxes = {False: np.asarray(rec["boxes"], np.float64), True: mirrored_boxes(rec)}
    for batch, is_flipped in ((plain, False), (flipped, True)):
        data = batch.data[0].asnumpy()
        np.testing.assert_array_equal(data, network_input(rec["image"], is_flipped, s))
        gt = batch.data[2].asnumpy()[0]
        np.testing.assert_array_equal(gt[:, :4], np.round(want_boxes[is_flipped] * s))
        np.testing.assert_array_equal(gt[:, 4], rec["gt_classes"])
    loader.close()


def test_anchor_loader_with_a_symbol_and_infer_shape(roidb):
    data = mx.sym.Variable("data")
    feat = mx.sym.Convolution(data, kernel=(3, 3), stride=(16, 16), pad=(1, 1), num_filter=2 * A)
    loader = AnchorLoader(
        feat, roidb[:2], det_cfg(), feat_stride=STRIDE, anchor_scales=ANCHOR_SCALES,
        anchor_ratios=RATIOS, num_workers=1, seed=0,
    )  # fmt: skip
    batch = next(iter(loader))
    _, _, fh, fw = feat_fn(batch.data[0].shape)
    assert batch.label[0].shape == (1, A * fh * fw)

    max_data, label_shapes = loader.infer_shape()
    assert dict(max_data) == {"data": (1, 3, 96, 160), "im_info": (1, 3), "gt_boxes": (1, 100, 5)}
    assert dict(label_shapes) == {
        "label": (1, A * 6 * 10),
        "bbox_target": (1, 4 * A, 6, 10),
        "bbox_weight": (1, 4 * A, 6, 10),
    }
    _, label_shapes = loader.infer_shape([("data", (2, 3, 64, 48))])
    assert dict(label_shapes)["label"] == (2, A * 4 * 3)


def test_anchor_loader_is_deterministic_with_a_seed(roidb):
    cfg = det_cfg(scales=[(96, 160), (80, 128)])  # random scale per image
    cfg.TRAIN.RPN_BATCH_SIZE = 16  # subsampling actually drops anchors

    def run(seed, workers):
        loader = anchor_loader(roidb, cfg, shuffle=True, seed=seed, num_workers=workers)
        epochs = []
        for _ in range(2):
            epochs.append([(b.index.tolist(), [a.asnumpy() for a in b.data + b.label])
                           for b in loader])  # fmt: skip
            loader.reset()
        loader.close()
        return epochs

    first, again, inline = run(7, 2), run(7, 2), run(7, 0)
    for one, two in ((first, again), (first, inline)):
        for epoch_a, epoch_b in zip(one, two):
            for (idx_a, arrays_a), (idx_b, arrays_b) in zip(epoch_a, epoch_b):
                assert idx_a == idx_b
                for x, y in zip(arrays_a, arrays_b):
                    np.testing.assert_array_equal(x, y)
    order = [[i for idx, _ in epoch for i in idx] for epoch in first]
    assert sorted(order[0]) == list(range(len(roidb)))
    assert order[0] != order[1]  # a new shuffle each epoch
    other = run(8, 2)
    assert [i for idx, _ in other[0] for i in idx] != order[0]


def test_aspect_grouping_batches_same_orientation(roidb):
    horizontal = {i for i, r in enumerate(roidb) if r["width"] >= r["height"]}
    assert 0 < len(horizontal) < len(roidb)  # the synthetic set has both orientations
    for shuffle in (True, False):
        loader = anchor_loader(roidb, batch_size=2, shuffle=shuffle, aspect_grouping=True)
        batches = all_batches(loader)
        assert len(batches) == len(roidb) // 2 == loader.num_batches
        mixed = 0
        for batch in batches:
            idx = batch.index.tolist()
            mixed += len({i in horizontal for i in idx}) > 1
            data = batch.data[0].asnumpy()
            im_info = batch.data[1].asnumpy()
            # padded to the largest image of the batch; im_info keeps each image's own size
            assert data.shape[0] == 2
            assert data.shape[2:] == tuple(im_info[:, :2].max(axis=0).astype(int))
            assert batch.data[2].shape[:1] == (2,) and batch.label[0].shape[0] == 2
        assert mixed <= 1


def test_batches_drive_an_mxnet_module(roidb):
    """The flat batch layout binds, splits over two devices and re-shapes in a plain Module."""
    cfg = det_cfg()
    cfg.TRAIN.END2END = False  # RPN-only training: data is just 'data'
    data = mx.sym.Variable("data")
    score = mx.sym.Convolution(data, kernel=(3, 3), stride=(16, 16), pad=(1, 1), num_filter=2 * A)
    bbox_pred = mx.sym.Convolution(data, kernel=(3, 3), stride=(16, 16), pad=(1, 1),
                                   num_filter=4 * A)  # fmt: skip
    cls = mx.sym.SoftmaxOutput(
        mx.sym.Reshape(score, shape=(0, 2, -1, 0)), mx.sym.Variable("label"), multi_output=True,
        use_ignore=True, ignore_label=-1, normalization="valid",
    )  # fmt: skip
    diff = mx.sym.Variable("bbox_weight") * (bbox_pred - mx.sym.Variable("bbox_target"))
    sym = mx.sym.Group([cls, mx.sym.MakeLoss(mx.sym.smooth_l1(diff, scalar=3.0))])

    loader = anchor_loader(roidb, cfg, batch_size=2, shuffle=True, aspect_grouping=True,
                           ctx=[mx.cpu(0), mx.cpu(1)])  # fmt: skip
    assert [d.name for d in loader.provide_data] == ["data"]
    assert loader.provide_data_single[0][1][0] == 1  # one image per device
    mod = mx.mod.Module(sym, ["data"], ["label", "bbox_target", "bbox_weight"],
                        context=[mx.cpu(0), mx.cpu(1)])  # fmt: skip
    mod.bind(loader.provide_data, loader.provide_label)
    mod.init_params(mx.init.Normal(0.01))
    mod.init_optimizer(optimizer_params={"learning_rate": 0.01})
    shapes = set()
    for batch in loader:
        mod.forward_backward(batch)
        mod.update()
        shapes.add(batch.data[0].shape)
        assert np.isfinite(mod.get_outputs()[1].asnumpy()).all()
    assert len(shapes) > 1  # the module re-shaped between batches


def test_image_without_boxes_gets_background_labels(roidb):
    empty = dict(roidb[0], boxes=np.zeros((0, 4), np.uint16), gt_classes=np.zeros(0, np.int32))
    batch = next(iter(anchor_loader([empty], num_workers=0)))
    label = batch.label[0].asnumpy()
    assert set(np.unique(label)) <= {-1.0, 0.0}
    assert (label == 0).sum() == det_cfg().TRAIN.RPN_BATCH_SIZE
    np.testing.assert_array_equal(batch.data[2].asnumpy(), -np.ones((1, 1, 5)))
    assert batch.label[2].asnumpy().sum() == 0
    np.testing.assert_array_equal(gt_boxes_of(empty), np.zeros((0, 5)))


def test_gt_boxes_padding_rows_in_a_batch(roidb):
    counts = [len(r["boxes"]) for r in roidb[:2]]
    loader = anchor_loader(roidb[:2], batch_size=2, num_workers=0)
    gt = next(iter(loader)).data[2].asnumpy()
    assert gt.shape == (2, max(counts), 5)
    for i, c in enumerate(counts):
        assert (gt[i, :c, 4] > 0).all() and (gt[i, c:] == -1).all()


def _corrupt_copy(roidb, tmp_path: Path, which: int) -> tuple[list, str]:
    bad = tmp_path / "corrupt_0001.jpg"
    bad.write_bytes(b"\x00garbage bytes, not a jpeg" * 10)
    records = [dict(r) for r in roidb[:4]]
    records[which]["image"] = str(bad)
    return records, bad.name


def test_worker_error_propagates_with_the_file_name(roidb, tmp_path: Path):
    records, name = _corrupt_copy(roidb, tmp_path, 2)
    loader = anchor_loader(records, skip_bad_images=False, num_workers=2)
    it = iter(loader)
    next(it), next(it)
    with pytest.raises(OSError, match=name):
        next(it)
    loader.close()

    def broken(data_shape):
        raise RuntimeError("shape inference exploded")

    bad_fn = AnchorLoader(broken, roidb[:2], det_cfg(), num_workers=2, seed=0)
    with pytest.raises(DataLoaderError, match=r"(?s)COCO_train_000000000001\.jpg.*exploded"):
        next(iter(bad_fn))
    bad_fn.close()

    test_loader = TestLoader(records, det_cfg(), batch_size=1, num_workers=2)
    with pytest.raises(OSError, match=name):
        all_batches(test_loader)


def test_training_loader_skips_bad_images_with_a_warning(roidb, tmp_path: Path, caplog):
    records, name = _corrupt_copy(roidb, tmp_path, 1)
    with caplog.at_level(logging.WARNING, logger="lib.core.loader"):
        loader = anchor_loader(records, shuffle=False)
        batches = all_batches(loader)
    assert len(batches) == 4
    assert [b.index.tolist() for b in batches] == [[0], [2], [2], [3]]  # replaced by the next
    assert any(name in r.getMessage() for r in caplog.records)


def test_pyramid_anchor_loader_concatenates_levels(roidb):
    strides = (16, 32)

    def pyramid(data_shape):
        h, w = data_shape[2:]
        return [(1, 2 * 3, -(-h // s), -(-w // s)) for s in strides]

    loader = PyramidAnchorLoader(
        pyramid, roidb[:2], det_cfg(), feat_strides=strides, anchor_scales=(2,), num_workers=0,
        seed=0,
    )  # fmt: skip
    batch = next(iter(loader))
    h, w = batch.data[0].shape[2:]
    cells = sum(-(-h // s) * -(-w // s) for s in strides)
    assert batch.label[0].shape == (1, 3 * cells)
    assert batch.label[1].shape == (1, 12, cells)
    assert (batch.label[0].asnumpy() == 1).sum() > 0
    _, label_shapes = loader.infer_shape([("data", (1, 3, 64, 96))])
    assert dict(label_shapes)["label"] == (1, 3 * (4 * 6 + 2 * 3))


# ------------------------------------------------------------------------------- TestLoader


def test_test_loader_yields_every_image_once(test_roidb):
    cfg = det_cfg(stride=32)
    loader = TestLoader(test_roidb, cfg, batch_size=2, num_workers=2)
    batches = all_batches(loader)
    assert len(batches) == 3 == loader.num_batches  # 5 images: the last batch has one pad
    assert [b.pad for b in batches] == [0, 0, 1]
    seen = [i for b in batches for i in b.roidb_index.tolist()]
    assert seen == list(range(len(test_roidb)))
    for b in batches:
        data, im_info = (a.asnumpy() for a in b.data)
        assert data.shape[0] == 2 and im_info.shape == (2, 3)
        assert [d.shape for d in b.provide_data] == [data.shape, im_info.shape]
        for k, i in enumerate(b.roidb_index):
            rec = test_roidb[i]
            s = expected_scale(rec["height"], rec["width"], *SCALES[0])
            h, w = (-(-round(rec[k2] * s) // 32) * 32 for k2 in ("height", "width"))
            np.testing.assert_allclose(b.im_info[k], [h, w, s], rtol=1e-6)
            np.testing.assert_allclose(im_info[k], b.im_info[k])
            assert b.scales[k] == pytest.approx(s)
        assert data.shape[2:] == tuple(im_info[:, :2].max(axis=0).astype(int))
    np.testing.assert_array_equal(batches[-1].data[1].asnumpy()[1], batches[-1].im_info[0])

    loader.set_scale((64, 100))  # FPN's multi-scale test: another pass at another scale
    assert all(b.im_info[:, :2].min(axis=1).max() == 64 for b in loader)  # short side


def test_test_loader_with_proposals(test_roidb):
    loader = TestLoader(test_roidb[:1], det_cfg(), has_rpn=False, num_workers=0)
    batch = next(iter(loader))
    assert [d.name for d in batch.provide_data] == ["data", "rois"]
    rois = batch.data[1].asnumpy()
    s = batch.scales[0]
    np.testing.assert_array_equal(rois[0, :, 0], 0)
    np.testing.assert_array_equal(rois[0, :, 1:], np.round(test_roidb[0]["boxes"] * s))


def test_prefetcher_keeps_order_and_reraises():
    import time
    from concurrent.futures import ThreadPoolExecutor

    def work(i):
        time.sleep(0.005 * (8 - i))  # later tasks finish first
        if i == 6:
            raise KeyError("task 6")
        return i

    with ThreadPoolExecutor(3) as pool:
        pf = OrderedPrefetcher(work, range(8), pool, depth=4)
        assert [next(pf) for _ in range(6)] == list(range(6))
        with pytest.raises(KeyError, match="task 6"):
            next(pf)
        assert next(pf) == 7
        with pytest.raises(StopIteration):
            next(pf)


def test_size_disagreeing_with_the_annotation_is_an_error(roidb, segdb):
    # Not an unreadable image: the training loaders must raise, not skip it.
    records = [dict(r) for r in roidb[:2]]
    rec = records[1]
    true_size = f"{rec['width']}x{rec['height']}"
    rec["width"] += 7
    message = rf"(?s){rec['image']} is {true_size} .*annotation says {rec['width']}x{rec['height']}"
    loader = anchor_loader(records, num_workers=0)
    with pytest.raises(DataLoaderError, match=message):
        all_batches(loader)
    with pytest.raises(DataLoaderError, match=message):
        all_batches(TestLoader(records, det_cfg(), num_workers=0))
    seg = [dict(segdb[0]), {**segdb[1], "height": segdb[1]["height"] + 3}]
    with pytest.raises(DataLoaderError, match=rf"(?s){seg[1]['image']} is .*annotation says"):
        all_batches(TrainDataLoader(seg, seg_cfg(), batch_size=1, num_workers=0))


# ------------------------------------------------------------------------------ segmentation


def seg_cfg(crop: bool = True):
    cfg = default_config("deeplab")
    cfg.SCALES = [(96, 160), (80, 128)]
    cfg.TRAIN.ENABLE_CROP = crop
    cfg.TRAIN.CROP_HEIGHT, cfg.TRAIN.CROP_WIDTH = 64, 80
    return cfg


def test_segmentation_train_loader_crops(segdb):
    loader = TrainDataLoader(segdb, seg_cfg(), batch_size=2, shuffle=True, seed=3, num_workers=2)
    assert loader.infer_shape()[1] == [("label", (2, 1, 64, 80))]
    batches = all_batches(loader)
    assert len(batches) == len(segdb) // 2
    values = set()
    for batch in batches:
        assert batch.data[0].shape == (2, 3, 64, 80)
        assert batch.label[0].shape == (2, 1, 64, 80)
        values |= set(np.unique(batch.label[0].asnumpy()).tolist())
    assert values <= set(range(19)) | {255}
    assert len(values - {255}) > 1

    again = TrainDataLoader(segdb, seg_cfg(), batch_size=2, shuffle=True, seed=3, num_workers=0)
    for a, b in zip(batches, again):
        np.testing.assert_array_equal(a.data[0].asnumpy(), b.data[0].asnumpy())
        np.testing.assert_array_equal(a.label[0].asnumpy(), b.label[0].asnumpy())


def test_segmentation_without_crop_pads_labels_with_ignore(segdb):
    cfg = seg_cfg(crop=False)
    cfg.SCALES = [(96, 160)]
    loader = TrainDataLoader(segdb[:2], cfg, batch_size=2, num_workers=0)
    batch = next(iter(loader))
    data, label = batch.data[0].asnumpy(), batch.label[0].asnumpy()
    assert data.shape[2:] == label.shape[2:]
    sizes = []
    for rec in segdb[:2]:
        s = expected_scale(rec["height"], rec["width"], 96, 160)
        sizes.append((round(rec["height"] * s), round(rec["width"] * s)))
    assert data.shape[2:] == tuple(np.max(sizes, axis=0))
    for i, (h, w) in enumerate(sizes):
        assert (label[i, 0, h:] == 255).all() and (label[i, 0, :, w:] == 255).all()
        assert (data[i, :, h:] == 0).all() and (data[i, :, :, w:] == 0).all()
    assert sizes[0] != sizes[1]  # so some padding was checked


def test_segmentation_flip_and_crop_padding(segdb):
    n = len(segdb) // 2
    rec, flipped = segdb[0], segdb[n]
    cfg = seg_cfg()
    full = (rec["height"], rec["width"])  # scale 1: no resampling, so flips are exact
    if full[0] > full[1]:
        full = full[::-1]
    im0, lab0, info = prepare_seg_image(rec, cfg, (min(full), max(full)))
    im1, lab1, _ = prepare_seg_image(flipped, cfg, (min(full), max(full)))
    assert info["im_info"][2] == pytest.approx(1.0)
    np.testing.assert_array_equal(im1, im0[..., ::-1])
    np.testing.assert_array_equal(lab1, lab0[..., ::-1])

    rng = np.random.RandomState(0)
    data, label = random_crop(im0, lab0, im0.shape[2] + 10, 20, rng)
    assert data.shape == (1, 3, im0.shape[2] + 10, 20) and label.shape[2:] == data.shape[2:]
    assert (label[..., -10:, :] == 255).all() and (data[..., -10:, :] == 0).all()


def test_segmentation_test_loader(segdb):
    cfg = seg_cfg()
    loader = TestDataLoader(segdb[:3], cfg, batch_size=2, with_label=True, num_workers=2)
    batches = all_batches(loader)
    assert [b.pad for b in batches] == [0, 1]
    assert [i for b in batches for i in b.roidb_index.tolist()] == [0, 1, 2]
    for b in batches:
        assert b.data[0].shape[:2] == (2, 3) and b.label[0].shape[:2] == (2, 1)
        assert b.data[0].shape[2:] == b.label[0].shape[2:]
        for k, i in enumerate(b.roidb_index):
            rec = segdb[i]
            s = expected_scale(rec["height"], rec["width"], 96, 160)
            h, w = round(rec["height"] * s), round(rec["width"] * s)
            np.testing.assert_allclose(b.im_info[k], [h, w, s], rtol=1e-6)
    plain = TestDataLoader(segdb[:1], cfg, num_workers=0)
    assert plain.provide_label == [] and next(iter(plain)).label is None


def test_loader_rejects_bad_arguments(roidb):
    with pytest.raises(ValueError, match="empty"):
        anchor_loader([])
    with pytest.raises(ValueError, match="cannot fill"):
        anchor_loader(roidb[:1], batch_size=2)
    with pytest.raises(ValueError, match="multiple of 2 devices"):
        anchor_loader(roidb, batch_size=3, ctx=[mx.cpu(0), mx.cpu(1)])
    with pytest.raises(TypeError, match="feat_sym"):
        AnchorLoader(42, roidb, det_cfg())
