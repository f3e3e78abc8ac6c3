"""lib.core.seg_tester: from ``softmax_output`` to class maps of the original images, and mIoU.

The oracle test runs the real :class:`~lib.core.seg_loader.TestDataLoader` and
:func:`~lib.core.seg_tester.segment_dataset` over a tiny synthetic Cityscapes set, with a
stand-in predictor whose ``softmax_output`` is the one-hot true label map of each image as the
network would see it: flipped when the record says so, at twice the original size (the loader's
scale), padded to the stride and to the batch. With scale 2 the nearest-neighbour resize back is
exact (pixel ``y`` of the original becomes rows ``2y, 2y+1`` and comes back from row ``2y``), so
the oracle must score exactly mIoU 1; a known corruption must score exactly what the metric
defines, computed here from the label files alone.
"""

import json
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest
from PIL import Image

from lib.config import load_config
from lib.core.seg_loader import TestDataLoader
from lib.core.seg_tester import (
    batch_label_maps,
    resized_size,
    restore_label_map,
    results_path,
    segment_dataset,
)
from lib.dataset.load_data import get_imdb
from lib.dataset.synthetic import generate

CFG = Path(__file__).resolve().parents[2] / "experiments/deeplab/cfgs/synthetic_deeplab.yaml"
FACTOR = 2  # the loader's scale: short side 40 -> 80
HEIGHT, WIDTH = 40, 56  # every test image (non-square: a transposed H / W cannot pass)
STRIDE = 32  # inputs 80 x 112 padded to 96 x 128
NUM_IMAGES = 5
FLIPPED = (1, 3)  # records the loader flips
DEVICE_ROWS = (2, 1)  # a batch of 3 split over two devices as MXNet splits it
IGNORE = 255


# ------------------------------------------------------------------------------ unit tests


def _labels(shape, seed=0, num_classes=5):
    return np.random.default_rng(seed).integers(0, num_classes, shape).astype(np.uint8)


def _network_view(label, factor, canvas, fill=9):
    """``label`` replicated ``factor`` x (a nearest resize by an integer factor), in a padded
    canvas filled with class ``fill``."""
    up = label.repeat(factor, 0).repeat(factor, 1)
    out = np.full(canvas, fill, dtype=np.int64)
    out[: up.shape[0], : up.shape[1]] = up
    return out


def test_restore_crops_the_padding_and_resizes_back():
    label = _labels((5, 7))
    # resized 15 x 21, stride-padded to 32 x 32 (im_info), batch-padded to 32 x 48
    view = _network_view(label, 3, (32, 48))
    size = resized_size(np.float32([32, 32, 3.0]), 5, 7, image_stride=16)
    assert size == (15, 21)
    restored = restore_label_map(view, size, 5, 7)
    assert restored.dtype == np.uint8 and restored.shape == (5, 7)
    np.testing.assert_array_equal(restored, label)
    # without the crop the padding (class 9) would be squeezed into the image
    assert (restore_label_map(view, (32, 48), 5, 7) != label).any()


def test_resized_size_without_stride_is_im_info():
    # no stride padding: im_info holds the exact resized size, whatever the rounding of h * s
    assert resized_size(np.float32([15, 21, 3.0]), 5, 7) == (15, 21)
    assert resized_size(np.float32([480, 640, 0.96]), 500, 667) == (480, 640)
    # stride padding: the resized size, from the original size and the scale
    assert resized_size(np.float32([480, 640, 0.96]), 500, 612, image_stride=32) == (480, 588)


def test_restore_flips_back_after_resizing():
    label = _labels((5, 7), seed=1)
    view = _network_view(label[:, ::-1], 2, (10, 14))  # the loader flips, then resizes
    restored = restore_label_map(view, (10, 14), 5, 7, flipped=True)
    np.testing.assert_array_equal(restored, label)
    assert (restore_label_map(view, (10, 14), 5, 7) != label).any()


def test_restore_is_nearest_neighbour_to_the_original_size():
    pred = _labels((9, 12), seed=2, num_classes=19)
    restored = restore_label_map(pred, (9, 12), 6, 8)
    # nearest neighbour: original pixel (y, x) takes pred[floor(y * 9/6), floor(x * 12/8)]
    ys = np.floor(np.arange(6) * 9 / 6).astype(int)
    xs = np.floor(np.arange(8) * 12 / 8).astype(int)
    np.testing.assert_array_equal(restored, pred[np.ix_(ys, xs)])
    with pytest.raises(ValueError, match="exceeds the network output"):
        restore_label_map(pred, (10, 12), 6, 8)


def test_batch_label_maps_follow_the_devices_in_order():
    prob = np.random.default_rng(3).random((3, 4, 5, 7)).astype(np.float32)
    outputs = [
        {"softmax_output": mx.nd.array(prob[:2])},
        {"softmax_output": mx.nd.array(prob[2:])},
    ]
    maps = batch_label_maps(outputs, 3)
    assert len(maps) == 3 and all(m.shape == (5, 7) for m in maps)
    np.testing.assert_array_equal(np.stack(maps), prob.argmax(axis=1))
    # a padded batch: only the real images
    assert len(batch_label_maps(outputs, 2)) == 2
    with pytest.raises(ValueError, match="hold 3 images, expected 4"):
        batch_label_maps(outputs, 4)


# ---------------------------------------------------------------------------- oracle tests


@pytest.fixture(scope="module")
def seg_set(tmp_path_factory):
    """A 5-image synthetic Cityscapes val set of 40 x 56 images (with its imdb and config)."""
    root = tmp_path_factory.mktemp("data")
    generate(root, formats=["cityscapes"], num_train=1, num_test=NUM_IMAGES, seed=3, size=WIDTH,
             fixed_size=True)  # fmt: skip
    # Crop every val PNG (image and labels) to 40 x 56: one short side, so one exact scale.
    val = [*(root / "cityscapes/leftImg8bit/val").rglob("*.png")]
    val += [*(root / "cityscapes/gtFine/val").rglob("*.png")]
    for path in val:
        im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert cv2.imwrite(str(path), im[:HEIGHT])
    cfg = load_config(CFG, [f"SCALES=[{FACTOR * HEIGHT}, 1000]", f"network.IMAGE_STRIDE={STRIDE}"])
    imdb = get_imdb("synthetic_seg", "val", str(root), str(root), task="segmentation")
    segdb = [dict(rec, flipped=i in FLIPPED) for i, rec in enumerate(imdb.gt_segdb())]
    labels = [np.array(Image.open(rec["seg_cls_path"])) for rec in segdb]
    assert len(segdb) == NUM_IMAGES and all(lb.shape == (HEIGHT, WIDTH) for lb in labels)
    return imdb, segdb, labels, cfg


class OraclePredictor:
    """Stand-in for :class:`lib.core.tester.Predictor`: ``softmax_output`` is the one-hot true
    label map (all zeros on ignored pixels and padding), optionally with class ``a`` relabelled
    as ``b`` everywhere. Reads the label files itself, not the loader's labels."""

    def __init__(self, segdb, num_classes, relabel=None):
        self.segdb = segdb
        self.num_classes = num_classes
        self.relabel = relabel
        self.batches = 0

    def predict(self, batch):
        n, _, height, width = batch.data[0].shape
        assert len(batch.roidb_index) == n - batch.pad
        prob = np.zeros((n, self.num_classes, height, width), dtype=np.float32)
        for row, (index, im_info) in enumerate(zip(batch.roidb_index, batch.im_info)):
            rec = self.segdb[index]
            label = np.array(Image.open(rec["seg_cls_path"]))
            if rec["flipped"]:
                label = label[:, ::-1]
            label = label.repeat(FACTOR, 0).repeat(FACTOR, 1)  # nearest resize by FACTOR
            # im_info: the stride-padded input size and the scale
            padded = [-(-s // STRIDE) * STRIDE for s in label.shape]
            assert list(im_info) == [*padded, FACTOR]
            if self.relabel is not None:
                label = np.where(label == self.relabel[0], self.relabel[1], label)
            ys, xs = np.nonzero(label != IGNORE)
            prob[row, label[ys, xs], ys, xs] = 1.0
        self.batches += 1
        bounds = np.cumsum((0,) + DEVICE_ROWS)
        return [
            {"softmax_output": mx.nd.array(prob[begin:end])}
            for begin, end in zip(bounds[:-1], bounds[1:])
        ]


def _run(seg_set, out_dir, relabel=None, vis=False):
    imdb, segdb, _, cfg = seg_set
    loader = TestDataLoader(segdb, cfg, batch_size=sum(DEVICE_ROWS), num_workers=1)
    oracle = OraclePredictor(segdb, imdb.num_classes, relabel)
    results = segment_dataset(oracle, loader, imdb, cfg, str(out_dir), vis=vis)
    assert oracle.batches == 2  # 3 images + 2 images and 1 pad
    return results


def test_oracle_scores_a_perfect_miou(seg_set, tmp_path):
    imdb, segdb, labels, _ = seg_set
    results = _run(seg_set, tmp_path, vis=True)

    present = sorted(set(np.unique(np.concatenate([lb.ravel() for lb in labels]))) - {IGNORE})
    assert len(present) >= 3
    assert results["meanIU"] == 1.0
    assert results["pixel_accuracy"] == 1.0
    assert results["num_images"] == NUM_IMAGES
    assert results["per_class_iou"] == {
        name: (1.0 if c in present else None) for c, name in enumerate(imdb.classes)
    }
    # the written predictions are the labels themselves (at the original size, unflipped)
    for index, label in zip(imdb.image_set_index, labels):
        pred = np.array(Image.open(imdb.segmentation_result_path(index, str(tmp_path))))
        valid = label != IGNORE
        np.testing.assert_array_equal(pred[valid], label[valid])
        vis = cv2.imread(str(tmp_path / "vis" / index.split("_")[0] / f"{index}.png"))
        assert vis.shape == (HEIGHT, WIDTH, 3)
    saved = json.loads(open(results["results_file"]).read())
    assert results["results_file"] == results_path(str(tmp_path), imdb)
    assert saved["meanIU"] == 1.0 and saved["num_images"] == NUM_IMAGES
    assert saved["per_class_iou"] == results["per_class_iou"]
    np.testing.assert_array_equal(saved["confusion_matrix"], results["confusion_matrix"])


def test_relabelled_class_lowers_miou_as_defined(seg_set, tmp_path):
    """Class a predicted as b everywhere: IoU_a = 0, IoU_b = n_b / (n_a + n_b), others 1."""
    imdb, _, labels, _ = seg_set
    counts = np.bincount(np.concatenate([lb.ravel() for lb in labels]), minlength=256)[:IGNORE]
    present = np.flatnonzero(counts)
    a = int(present[np.argmin(counts[present])])  # the rarest class ...
    b = int(np.argmax(counts))  # ... predicted as the most frequent one
    assert a != b
    expected_iou = {c: 1.0 for c in present}
    expected_iou[a] = 0.0
    expected_iou[b] = counts[b] / (counts[a] + counts[b])

    results = _run(seg_set, tmp_path, relabel=(a, b))
    assert results["meanIU"] == pytest.approx(np.mean(list(expected_iou.values())), abs=1e-12)
    assert results["pixel_accuracy"] == pytest.approx(1 - counts[a] / counts.sum(), abs=1e-12)
    for c, iou in expected_iou.items():
        assert results["per_class_iou"][imdb.classes[c]] == pytest.approx(iou, abs=1e-12)
    conf = results["confusion_matrix"]
    assert conf[a, b] == counts[a] and conf[a, a] == 0 and conf.sum() == counts.sum()


def test_loader_and_dataset_must_agree(seg_set, tmp_path):
    imdb, segdb, _, cfg = seg_set
    loader = TestDataLoader(segdb[:3], cfg, batch_size=1, num_workers=0)
    with pytest.raises(ValueError, match="the test loader has 3 images, the dataset"):
        segment_dataset(OraclePredictor(segdb, imdb.num_classes), loader, imdb, cfg, str(tmp_path))
