"""Oracle tests of the whole detection test path: the real
:class:`~lib.core.loader.TestLoader`, :func:`~lib.core.tester.pred_eval` (``im_detect``, the
per-class candidates, NMS or soft-NMS, multi-scale merging) and the dataset's own evaluation
(COCO through pycocotools, VOC mAP@0.5).

The network is replaced by :class:`Oracle`, whose outputs are built from the ground truth read
from the annotation files (not from the roidb): one RoI per object at the object's box times the
image's scale (or, without an RPN, the loader's ``rois`` input), zero deltas, and score 1 for the
object's true class. Before answering, it checks what it was given against an independent
preprocessing of the image file (``cv2.imread``, mirrored when the record is flipped,
``cv2.resize`` by a scale computed here): the pixels, and ``im_info``.

The images (~105-160 px) are resized by SCALES ``(190, 300)``, so every image has its own scale
near 1.5 that is neither 1 nor a round number, and padded to the stride 32; batches hold 2
devices x 2 images, so the last of the 2 batches has 1 real image and 3 padding entries. Through
a correct pipeline the oracle's boxes come back within float32 rounding of the annotated ones,
so COCO AP and AP50 are exactly 1 and VOC mAP@0.5 is 1 up to the rounding of its eleven 1/11
terms. Moving a known subset of the boxes off their objects (deltas dx = +-1: a whole box
width, IoU ~0) lowers the metrics to exactly what their definitions give for that recall.
Flips are tested on a mirrored copy of the annotations written here (COCO ``x' = W - x - w``),
evaluated with the flipped copies of the original records (``append_flipped_images``).
"""

from __future__ import annotations

import json
import math
import pickle
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from lib.bbox.bbox_transform import bbox_overlaps_py
from lib.config import default_config
from lib.core.loader import TestLoader
from lib.core.tester import pred_eval
from lib.dataset.load_data import get_imdb
from lib.dataset.synthetic import generate

NUM_IMAGES = 5
SCALE_A = (190, 300)  # image scales 1.43 .. 1.78
SCALE_B = (150, 250)  # the second scale of the multi-scale tests
STRIDE = 32
DEVICES, PER_DEVICE = 2, 2  # 5 images: batches of 4 + (1 + 3 padding)
MEANS = np.array([103.06, 115.90, 123.15], dtype=np.float32)  # B, G, R
GARBAGE = (0.3, -0.2, 0.4, 0.1)  # deltas in the columns a class must not read
FLOAT32_TOL = 1e-3  # boxes pass through float32 RoIs (~2e-5 px at 300 px) and float32 dets


# ---------------------------------------------------------------------------------- the data


@dataclass
class GroundTruth:
    """One image's objects as the annotation file says, 0-based inclusive pixels."""

    boxes: np.ndarray  # (G, 4) float64
    classes: np.ndarray  # (G,) class indices of the imdb
    height: int
    width: int
    extra: np.ndarray  # (E, 4) VOC difficult objects of any class, with their classes below
    extra_classes: np.ndarray


def coco_ground_truth(ann_file: Path, classes: list[str]) -> dict[int, GroundTruth]:
    """image id -> objects, from the json: ``[x, y, w, h]`` is ``(x, y, x + w - 1, y + h - 1)``."""
    data = json.loads(ann_file.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    out = {}
    for im in data["images"]:
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"] and not a["iscrowd"]]
        boxes = [[x, y, x + w - 1, y + h - 1] for x, y, w, h in (a["bbox"] for a in anns)]
        out[im["id"]] = GroundTruth(
            np.array(boxes, dtype=np.float64).reshape(-1, 4),
            np.array([classes.index(names[a["category_id"]]) for a in anns]),
            im["height"], im["width"], np.zeros((0, 4)), np.zeros(0, int),
        )  # fmt: skip
    return out


def voc_ground_truth(xml_file: Path, classes: list[str]) -> GroundTruth:
    """The objects of one VOC xml (1-based corners - 1); difficult ones kept apart."""
    root = ET.parse(xml_file).getroot()
    rows = {False: [], True: []}
    for obj in root.findall("object"):
        box = [float(obj.find("bndbox").findtext(k)) - 1 for k in ("xmin", "ymin", "xmax", "ymax")]
        rows[obj.findtext("difficult") == "1"].append((box, classes.index(obj.findtext("name"))))

    def arrays(items):
        return np.array([b for b, _ in items]).reshape(-1, 4), np.array([c for _, c in items], int)

    (boxes, cls), (extra, extra_cls) = arrays(rows[False]), arrays(rows[True])
    size = root.find("size")
    return GroundTruth(boxes, cls, int(size.findtext("height")), int(size.findtext("width")),
                       extra, extra_cls)  # fmt: skip


def write_mirrored_coco(src: Path, dst: Path) -> None:
    """A copy of the COCO val annotations with every box mirrored: ``x' = W - x - w``."""
    data = json.loads((src / "annotations" / "instances_val.json").read_text())
    widths = {im["id"]: im["width"] for im in data["images"]}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        ann["bbox"] = [widths[ann["image_id"]] - x - w, y, w, h]
        ann.pop("segmentation")
    (dst / "annotations").mkdir(parents=True)
    (dst / "annotations" / "instances_val.json").write_text(json.dumps(data))
    (dst / "images").symlink_to(src / "images")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The synthetic val set in COCO and VOC format, and a mirrored COCO copy."""
    root = tmp_path_factory.mktemp("data")
    generate(root, formats=["coco", "voc"], num_train=1, num_test=NUM_IMAGES, size=128, seed=0)
    write_mirrored_coco(root / "coco", root / "mirrored" / "coco")
    sets = {}
    for name, kind, image_set, path in [
        ("coco", "synthetic", "val", root / "coco"),
        ("voc", "synthetic_voc", "2007_test", root),
        ("mirrored", "synthetic", "val", root / "mirrored" / "coco"),
    ]:
        imdb = get_imdb(kind, image_set, str(root / f"cache_{name}"), str(path))
        assert imdb.num_images == NUM_IMAGES
        if name == "voc":
            ann = Path(imdb.data_path) / "Annotations"
            gts = [voc_ground_truth(ann / f"{i}.xml", imdb.classes) for i in imdb.image_set_index]
        else:
            by_id = coco_ground_truth(path / "annotations" / "instances_val.json", imdb.classes)
            gts = [by_id[i] for i in imdb.image_set_index]
        sets[name] = (imdb, gts)
    imdb, gts = sets["coco"]
    # What the tests rely on: every class present; objects of a class barely overlap (so NMS
    # at 0.3 keeps each); scales that are not 1 and inputs that the stride pads.
    assert set(np.concatenate([g.classes for g in gts])) == {1, 2, 3, 4}
    assert len(sets["voc"][1][1].extra) == 1  # one VOC-difficult object, ignored by VOC
    for g in gts:
        ious = bbox_overlaps_py(g.boxes, g.boxes)
        np.fill_diagonal(ious, 0)
        assert (ious[g.classes[:, None] == g.classes[None]] < 0.03).all()
    scales = [expected_scale(g.height, g.width, SCALE_A) for g in gts]
    assert len(set(scales)) == 4 and all(1.2 < s < 1.8 for s in scales)
    return sets


def expected_scale(height: int, width: int, scale: tuple[int, int]) -> float:
    """Short side to ``scale[0]`` unless the long side would pass ``scale[1]``."""
    s = scale[0] / min(height, width)
    return scale[1] / max(height, width) if round(s * max(height, width)) > scale[1] else s


def network_input(path: str, flipped: bool, s: float) -> np.ndarray:
    """(3, h, w) float32 RGB minus means of the image file, mirrored if flipped, resized by s."""
    im = cv2.imread(path, cv2.IMREAD_COLOR)
    if flipped:
        im = np.ascontiguousarray(im[:, ::-1])
    im = cv2.resize(im, None, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
    return (im[:, :, ::-1].astype(np.float32) - MEANS[::-1]).transpose(2, 0, 1)


# -------------------------------------------------------------------------------- the oracle


def perfect(index: int, k: int, scale_id: int) -> tuple[float, float] | None:
    """Every object at every scale, on its box (dx = 0), score 1."""
    return 0.0, 1.0


class Oracle:
    """Stand-in for :class:`lib.core.tester.Predictor` that knows the ground truth.

    ``plan(index, k, scale_id)`` says what it outputs for object k of image ``index`` at the
    test scale ``scales[scale_id]``: ``(dx, score)`` (a RoI on the object's box, deltas
    ``(dx, 0, 0, 0)`` in the object's class column, ``score`` for that class) or None. Every
    image also gets a background RoI (score 0 for every class); the batch's padding entries
    get a RoI over their whole input scoring 1 for every class, which must not come out.
    """

    def __init__(self, records, gts, num_classes, scales, class_agnostic, has_rpn, plan=perfect):
        self.records, self.gts, self.num_classes = records, gts, num_classes
        self.scales, self.class_agnostic = scales, class_agnostic
        self.has_rpn, self.plan = has_rpn, plan
        self.seen: list[tuple[int, int]] = []  # (image index, scale id) in the order run
        self.batches = 0

    def _scale_of(self, index: int, im_info: np.ndarray) -> tuple[int, float]:
        """The scale the loader used (one of ``self.scales``), checked against ``im_info``."""
        gt = self.gts[index]
        candidates = [expected_scale(gt.height, gt.width, sc) for sc in self.scales]
        matches = [i for i, s in enumerate(candidates) if np.float32(s) == im_info[2]]
        assert len(matches) == 1, (im_info, candidates)
        return matches[0], candidates[matches[0]]

    def _check_input(self, index: int, data: np.ndarray, im_info: np.ndarray, s: float) -> None:
        rec = self.records[index]
        want = network_input(rec["image"], rec["flipped"], s)
        h, w = want.shape[1:]
        padded = [math.ceil(h / STRIDE) * STRIDE, math.ceil(w / STRIDE) * STRIDE]
        assert list(im_info) == [*padded, np.float32(s)]
        assert (h, w) != tuple(padded)  # the stride pads every image here
        np.testing.assert_array_equal(data[:, :h, :w], want)

    def _columns(self, cls: int, dx: float) -> np.ndarray:
        """Deltas of one RoI: (dx, 0, 0, 0) in class ``cls``'s columns, garbage elsewhere."""
        num_reg = 2 if self.class_agnostic else self.num_classes
        deltas = np.tile(GARBAGE, num_reg)
        slot = 1 if self.class_agnostic else cls
        deltas[4 * slot : 4 * slot + 4] = (dx, 0, 0, 0)
        return deltas

    def _image(self, index: int, s: float, scale_id: int, rois_in: np.ndarray | None):
        """(rois (R, 4) in input pixels, scores (R, C), deltas (R, 4 R_cls)) of one image."""
        gt = self.gts[index]
        rows = []
        for k, cls in enumerate(gt.classes):
            out = self.plan(index, k, scale_id)
            if rois_in is not None:  # the proposals of the roidb: the objects, in order
                assert np.abs(rois_in[k] - gt.boxes[k] * s).max() <= 0.5 + 1e-4
                out = out or (0.0, 0.0)
            if out is not None:
                score = np.eye(self.num_classes)[cls] * out[1]
                score[0] = 1 - out[1]
                roi = rois_in[k] if rois_in is not None else gt.boxes[k] * s
                rows.append((roi, score, self._columns(cls, out[0])))
        if rois_in is None:  # a background RoI over the whole image
            rows.append((np.array([0, 0, gt.width * s - 1, gt.height * s - 1]),
                         np.eye(self.num_classes)[0], self._columns(1, 0.0)))  # fmt: skip
        return [np.array(v, dtype=np.float64).reshape(len(rows), -1) for v in zip(*rows)]

    def _padding(self, data_shape) -> list[np.ndarray]:
        scores = np.ones((1, self.num_classes))
        scores[0, 0] = 0
        roi = [[0, 0, data_shape[3] - 1, data_shape[2] - 1]]
        return [np.array(roi, np.float64), scores, self._columns(1, 0.0)[None]]

    def predict(self, batch: mx.io.DataBatch) -> list[dict[str, mx.nd.NDArray]]:
        data = batch.data[0].asnumpy()
        n, real = data.shape[0], data.shape[0] - batch.pad
        assert n == DEVICES * PER_DEVICE and len(batch.roidb_index) == real
        rois_in = None if self.has_rpn else batch.data[1].asnumpy()
        images = []
        for i in range(n):
            if i >= real:
                images.append(self._padding(data.shape))
                continue
            index = int(batch.roidb_index[i])
            scale_id, s = self._scale_of(index, batch.im_info[i])
            self._check_input(index, data[i], batch.im_info[i], s)
            self.seen.append((index, scale_id))
            if rois_in is not None:
                num = batch.num_rois[i]
                assert (rois_in[i, :num, 0] == i % PER_DEVICE).all()  # its index on its device
                assert num == len(self.gts[index].classes)
                images.append(self._image(index, s, scale_id, rois_in[i, :num, 1:]))
            else:
                images.append(self._image(index, s, scale_id, None))
        self.batches += 1
        return [self._device(images[d * PER_DEVICE : (d + 1) * PER_DEVICE], rois_in)
                for d in range(DEVICES)]  # fmt: skip

    def _device(self, images, rois_in) -> dict[str, mx.nd.NDArray]:
        """One device's outputs: images padded with background RoIs to a common R."""
        num = rois_in.shape[1] if rois_in is not None else max(len(im[0]) for im in images)
        rois = np.zeros((len(images), num, 5))
        scores = np.zeros((len(images), num, self.num_classes))
        scores[:, :, 0] = 1
        deltas = np.zeros((len(images), num, images[0][2].shape[1]))
        for j, (r, sc, de) in enumerate(images):
            rois[j, :, 0] = j
            rois[j, : len(r), 1:], scores[j, : len(r)], deltas[j, : len(r)] = r, sc, de
        out = {
            "cls_prob_reshape_output": mx.nd.array(scores),
            "bbox_pred_reshape_output": mx.nd.array(deltas),
        }
        if rois_in is None:
            out["rois_output"] = mx.nd.array(rois.reshape(-1, 5))
        return out


# --------------------------------------------------------------------------------- running


def make_cfg(class_agnostic: bool = True, soft_nms: bool = False):
    cfg = default_config("rfcn")
    cfg.SCALES = [SCALE_A]
    cfg.CLASS_AGNOSTIC = class_agnostic
    cfg.network.PIXEL_MEANS = MEANS.astype(np.float64)
    cfg.network.IMAGE_STRIDE = STRIDE
    cfg.TEST.BATCH_IMAGES = PER_DEVICE
    cfg.TEST.USE_SOFTNMS = soft_nms
    return cfg


def run(data, out_dir, dataset="coco", scales=(SCALE_A,), plan=perfect, class_agnostic=True,
        has_rpn=True, flipped=False, soft_nms=False):  # fmt: skip
    """pred_eval of the oracle over a dataset: (metrics, all_boxes, its ground truth)."""
    imdb, gts = data["mirrored" if flipped else dataset]
    original = data[dataset][0]
    records = original.gt_roidb()
    if flipped:  # the flipped copies of the original records, against mirrored annotations
        records = original.append_flipped_images(records)[NUM_IMAGES:]
    cfg = make_cfg(class_agnostic, soft_nms)
    kwargs = dict(has_rpn=has_rpn, seed=0, num_workers=0, images_per_device=PER_DEVICE)
    loaders = [TestLoader(records, cfg, DEVICES * PER_DEVICE, scale=sc, **kwargs) for sc in scales]
    oracle = Oracle(records, gts, imdb.num_classes, list(scales), class_agnostic, has_rpn, plan)
    try:
        results = pred_eval(oracle, loaders if len(loaders) > 1 else loaders[0], imdb, cfg,
                            str(out_dir), ignore_cache=True)  # fmt: skip
    finally:
        for loader in loaders:
            loader.close()
    assert oracle.batches == 2 * len(scales)
    assert sorted(oracle.seen) == [(i, s) for i in range(NUM_IMAGES) for s in range(len(scales))]
    with open(results["detections_file"], "rb") as f:
        all_boxes = pickle.load(f)["all_boxes"]
    return results, all_boxes, gts


def matches(all_boxes, gts, image: int, k: int) -> np.ndarray:
    """The detections of object k's class in its image that overlap it (IoU > 0.5)."""
    gt = gts[image]
    dets = all_boxes[gt.classes[k]][image]
    iou = bbox_overlaps_py(dets[:, :4], gt.boxes[k : k + 1])[:, 0]
    return dets[iou > 0.5]


def assert_one_detection_per_object(all_boxes, gts, tol: float, scores=None) -> None:
    """Every object found once, within ``tol`` px, nothing else (background and padding)."""
    for image, gt in enumerate(gts):
        for cls in range(1, len(all_boxes)):
            assert len(all_boxes[cls][image]) == (gt.classes == cls).sum(), (image, cls)
        for k in range(len(gt.classes)):
            (det,) = matches(all_boxes, gts, image, k)
            np.testing.assert_allclose(det[:4], gt.boxes[k], rtol=0, atol=tol)
            if scores is not None:
                assert det[4] == pytest.approx(scores(image, k), abs=1e-6)


# ---------------------------------------------------------------------------------- metrics


def coco_ap50(recall_per_class) -> float:
    """COCO AP at IoU 0.5 when each class's true positives all score above its false positives:
    precision 1 at the recall thresholds ``linspace(0, 1, 101)`` up to the class's recall, 0
    beyond (and at t = 0 too for a class without a true positive), averaged over the classes."""
    thresholds = np.linspace(0.0, 1.0, 101)
    return float(np.mean([np.mean(thresholds <= r) if r else 0.0 for r in recall_per_class]))


def voc07_ap(recall: float) -> float:
    """VOC2007 11-point AP of a class with the same ordering: 1/11 per point t <= recall of
    ``arange(0, 1.1, 0.1)`` (none without a true positive)."""
    return sum(1.0 / 11 for t in np.arange(0.0, 1.1, 0.1) if recall >= t) if recall else 0.0


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("class_agnostic", [True, False])
def test_oracle_scores_coco_ap_1(data, tmp_path, class_agnostic):
    results, all_boxes, gts = run(data, tmp_path, class_agnostic=class_agnostic)
    assert results["AP50"] == 1.0 and results["AP"] == 1.0
    assert_one_detection_per_object(all_boxes, gts, FLOAT32_TOL, scores=lambda i, k: 1.0)


def test_oracle_scores_voc_map_1(data, tmp_path):
    results, all_boxes, gts = run(data, tmp_path, dataset="voc", class_agnostic=False)
    # VOC07 11-point AP: eleven terms 1/11 sum to 1 + 2e-16
    assert results["use_07_metric"]
    assert results["mAP@0.5"] == pytest.approx(1.0, abs=1e-12)
    assert results["mAP@0.7"] == pytest.approx(1.0, abs=1e-12)
    assert all(ap == pytest.approx(1.0, abs=1e-12) for ap in results["AP@0.5"].values())
    assert_one_detection_per_object(all_boxes, gts, FLOAT32_TOL)


def shifted(index: int, k: int) -> bool:
    return (index + k) % 2 == 1


def shift_plan(gts):
    """Objects with odd ``index + k`` moved by one box width towards the image centre, score
    0.5; the others on their boxes, score 1."""

    def plan(index, k, scale_id):
        if not shifted(index, k):
            return 0.0, 1.0
        x1, _, x2, _ = gts[index].boxes[k]
        return (1.0 if x1 + x2 < gts[index].width else -1.0), 0.5

    return plan


def check_shifted_boxes_miss(gts) -> None:
    """A box moved by its width (``x2 - x1 + 1/s`` px: the RoI's width in input pixels over s)
    and clipped to the image overlaps no object of its class (difficult ones too) at 0.3."""
    for index, gt in enumerate(gts):
        s = expected_scale(gt.height, gt.width, SCALE_A)
        for k, (x1, y1, x2, y2) in enumerate(gt.boxes):
            if not shifted(index, k):
                continue
            dx = (x2 - x1 + 1 / s) * (1 if x1 + x2 < gt.width else -1)
            box = np.clip([x1 + dx, y1, x2 + dx, y2], 0, [gt.width - 1, gt.height - 1] * 2)
            same = np.vstack([gt.boxes[gt.classes == gt.classes[k]],
                              gt.extra[gt.extra_classes == gt.classes[k]]])  # fmt: skip
            assert bbox_overlaps_py(box[None], same).max() < 0.3


@pytest.mark.parametrize("dataset", ["coco", "voc"])
def test_boxes_moved_off_their_objects_lower_the_metric_as_defined(data, tmp_path, dataset):
    gts = data[dataset][1]
    check_shifted_boxes_miss(gts)
    results, all_boxes, _ = run(data, tmp_path, dataset=dataset, plan=shift_plan(gts),
                                class_agnostic=dataset == "voc")  # fmt: skip
    # per class: the unmoved objects (score 1) are true positives, all before the false ones
    recall = {}
    for cls in range(1, 5):
        hits = [
            not shifted(i, k) for i, g in enumerate(gts) for k in np.flatnonzero(g.classes == cls)
        ]
        recall[cls] = sum(hits) / len(hits)
    assert len(set(recall.values())) == 4  # from 0 (every box of the class moved) to 1
    if dataset == "coco":
        want = coco_ap50(recall.values())
        assert results["AP50"] == pytest.approx(want, abs=1e-12)
        # true positives have IoU ~1 and false ones ~0: the same at every IoU threshold
        assert results["AP"] == pytest.approx(want, abs=1e-12)
        assert results["AP50"] < 0.9
    else:
        names = data["voc"][0].classes
        for cls, r in recall.items():
            assert results["AP@0.5"][names[cls]] == pytest.approx(voc07_ap(r), abs=1e-12)
        want = np.mean([voc07_ap(r) for r in recall.values()])
        assert results["mAP@0.5"] == pytest.approx(want, abs=1e-12)
        assert results["mAP@0.7"] == pytest.approx(want, abs=1e-12)
        assert results["mAP@0.5"] < 0.9
    # the unmoved boxes are still exact
    for image, gt in enumerate(gts):
        for k in range(len(gt.classes)):
            if not shifted(image, k):
                (det,) = matches(all_boxes, gts, image, k)
                np.testing.assert_allclose(det[:4], gt.boxes[k], rtol=0, atol=FLOAT32_TOL)


@pytest.mark.parametrize("has_rpn", [True, False])
def test_flipped_images_are_detected_in_mirrored_coordinates(data, tmp_path, has_rpn):
    """Flipped copies of the records (``append_flipped_images``; the loader mirrors the pixels,
    which the oracle checks) against annotations mirrored here from the json. Without an RPN
    the RoIs are the flipped roidb boxes, which the loader rounds to input pixels."""
    results, all_boxes, gts = run(data, tmp_path, has_rpn=has_rpn, flipped=True)
    assert results["AP50"] == 1.0
    smallest = min(expected_scale(g.height, g.width, SCALE_A) for g in gts)
    tol = FLOAT32_TOL if has_rpn else 0.5 / smallest + FLOAT32_TOL
    assert_one_detection_per_object(all_boxes, gts, tol)
    # the mirrored annotations differ from the originals everywhere (no symmetric box)
    assert all((g.boxes[:, 0] != o.boxes[:, 0]).all() for g, o in zip(gts, data["coco"][1]))


def two_scale_plan(index, k, scale_id):
    """Scale A: the even objects on their boxes, score 0.9. Scale B: every object, moved by
    0.05 of its width, score 0.8 (a duplicate of A's box for the even ones)."""
    if scale_id == 0:
        return (0.0, 0.9) if k % 2 == 0 else None
    return 0.05, 0.8


def b_shift(gt: GroundTruth, k: int) -> float:
    """Scale B's x offset of object k: 0.05 of its RoI width in input pixels, over the scale."""
    s = expected_scale(gt.height, gt.width, SCALE_B)
    return 0.05 * (gt.boxes[k, 2] - gt.boxes[k, 0] + 1 / s)


def test_multi_scale_detections_are_merged_then_suppressed(data, tmp_path):
    results, all_boxes, gts = run(data, tmp_path, scales=(SCALE_A, SCALE_B), plan=two_scale_plan)
    assert results["AP50"] == 1.0
    for image, gt in enumerate(gts):
        for cls in range(1, 5):
            assert len(all_boxes[cls][image]) == (gt.classes == cls).sum()
        for k in range(len(gt.classes)):
            (det,) = matches(all_boxes, gts, image, k)  # the duplicate was suppressed
            want = gt.boxes[k].copy()
            if k % 2 == 0:  # scale A's box won
                assert det[4] == pytest.approx(0.9)
            else:  # only scale B had it
                assert det[4] == pytest.approx(0.8)
                want[[0, 2]] += b_shift(gt, k)
            np.testing.assert_allclose(det[:4], want, rtol=0, atol=FLOAT32_TOL)


def test_soft_nms_keeps_duplicates_with_decayed_scores(data, tmp_path):
    """USE_SOFTNMS (gaussian, sigma 0.6): scale B's duplicate of an even object stays, its score
    0.8 decayed by exp(-iou^2 / 0.6) against scale A's box. Each box of another object of the
    class (IoU < 0.03) decays a score by less than 0.2% more."""
    results, all_boxes, gts = run(data, tmp_path, scales=(SCALE_A, SCALE_B), plan=two_scale_plan,
                                  soft_nms=True)  # fmt: skip
    assert results["AP50"] == 1.0  # every duplicate scores below every true positive
    total = 0
    for image, gt in enumerate(gts):
        for k in range(len(gt.classes)):
            found = matches(all_boxes, gts, image, k)
            total += len(found)
            if k % 2 == 1:
                assert len(found) == 1 and found[0, 4] == pytest.approx(0.8, rel=2e-3)
                continue
            top, dup = found[np.argsort(-found[:, 4])]
            assert top[4] == pytest.approx(0.9, rel=2e-3)
            np.testing.assert_allclose(top[:4], gt.boxes[k], rtol=0, atol=FLOAT32_TOL)
            iou = bbox_overlaps_py(top[None, :4], dup[None, :4])[0, 0]
            assert 0.85 < iou < 0.95
            assert dup[4] == pytest.approx(0.8 * np.exp(-(iou**2) / 0.6), rel=4e-3)
    num_objects = sum(len(g.classes) for g in gts)
    assert total == num_objects + sum((np.arange(len(g.classes)) % 2 == 0).sum() for g in gts)
    assert sum(len(d) for per_class in all_boxes for d in per_class) == total
