"""Segmentation inference and evaluation (DeepLab): :func:`segment_dataset`.

The test network's ``softmax_output`` holds per-pixel class probabilities at the network input
resolution; :func:`segment_dataset` turns them into one class map per image, in original-image
pixels, and scores the set with the dataset's own metric. Layouts, per batch of
:class:`lib.core.seg_loader.TestDataLoader`:

=======================  ================================================================
``batch.data[0]``        (N, 3, H, W) float32: the images resized (short side
                         ``SCALES[0]``), padded at the bottom / right to
                         ``network.IMAGE_STRIDE`` and to the largest image of the batch;
                         flipped records flipped
``batch.im_info``        (n, 3) float32 ``[h_i, w_i, scale]`` of the n = N - ``batch.pad``
                         real images: their input size (stride-padded, not batch-padded)
``batch.roidb_index``    (n,) int64: the records of the real images
``predictor.predict()``  one ``{output name: NDArray}`` per device; device d holds rows
                         ``[s_d, s_{d+1})`` of the batch (MXNet splits it along axis 0)
``softmax_output``       (N_d, C, H, W) float32 on device d: class probabilities
=======================  ================================================================

Per real image (:func:`batch_label_maps`, :func:`restore_label_map`): the argmax over the C
classes (computed on the device), cropped to the resized image (``im_info[:2]`` without the
stride padding), resized to the record's original ``height x width`` with nearest-neighbour
interpolation and, for a flipped record, flipped back, so it lies on the ground-truth label.

The class maps are written as the dataset's palette PNGs (``imdb.segmentation_result_path``,
``output_dir/results/...``) as they are produced, so the set is never held in memory (full
Cityscapes val would take 1 GB); ``imdb.evaluate_segmentations`` then reads them back and sums
ONE confusion matrix over the set (255 ignored), from which the per-class IoU, mean IoU and
pixel accuracy follow (:mod:`lib.evaluation.seg_eval`). They are logged and written to
``<output_dir>/<imdb.name>_segmentation_results.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import mxnet as mx
import numpy as np
from tqdm import tqdm

from lib.dataset.imdb import write_label_png
from lib.dataset.voc_seg import voc_palette
from lib.evaluation.seg_eval import pixel_accuracy
from lib.utils.image import read_image

__all__ = [
    "OUTPUT_NAME",
    "batch_label_maps",
    "restore_label_map",
    "resized_size",
    "results_path",
    "segment_dataset",
]

logger = logging.getLogger(__name__)

#: The test symbol's output read here: per-pixel class probabilities (N, C, H, W).
OUTPUT_NAME = "softmax_output"
#: Weight of the class colour over the image in the ``vis`` PNGs.
VIS_ALPHA = 0.5


def results_path(output_dir: str, imdb: Any) -> str:
    """Where :func:`segment_dataset` writes its metrics (``imdb.name`` + a fixed suffix)."""
    return os.path.join(output_dir, f"{imdb.name}_segmentation_results.json")


def batch_label_maps(
    outputs: Sequence[Mapping[str, mx.nd.NDArray]], num_images: int
) -> list[np.ndarray]:
    """Class maps of the first ``num_images`` rows of a batch, from the devices' outputs.

    Args:
        outputs: ``predictor.predict(batch)``: per device ``{'softmax_output': (N_d, C, H, W)}``,
            the devices' rows in batch order.
        num_images: the real images of the batch (its size minus ``batch.pad``).

    Returns:
        ``num_images`` (H, W) int64 maps of the most probable class, at the input resolution
        (padding included).
    """
    maps: list[np.ndarray] = []
    for out in outputs:
        if len(maps) == num_images:
            break
        prob = out[OUTPUT_NAME]
        rows = min(prob.shape[0], num_images - len(maps))
        # argmax where the probabilities are (the GPU): C times less to copy to the host
        best = mx.nd.argmax(prob[:rows], axis=1).asnumpy()
        maps.extend(best[i].astype(np.int64) for i in range(rows))
    if len(maps) != num_images:
        raise ValueError(f"the devices' outputs hold {len(maps)} images, expected {num_images}")
    return maps


def resized_size(
    im_info: Sequence[float], height: int, width: int, image_stride: int = 0
) -> tuple[int, int]:
    """(h, w) of the resized image inside a network input described by ``im_info``.

    ``im_info[:2]`` is the resized size, padded up to ``image_stride`` when that is set; the
    padding is then cut off with the size the resize produced (``cv2.resize`` rounds
    ``side * scale`` to the nearest integer).
    """
    h, w = int(im_info[0]), int(im_info[1])
    if image_stride and image_stride > 1:
        scale = float(im_info[2])
        h = min(h, int(np.rint(height * scale)))
        w = min(w, int(np.rint(width * scale)))
    return h, w


def restore_label_map(
    label_map: np.ndarray,
    size: tuple[int, int],
    height: int,
    width: int,
    flipped: bool = False,
) -> np.ndarray:
    """A class map at the network input -> the class map of the original image.

    Args:
        label_map: (H, W) classes at the input resolution, padding included.
        size: (h, w) of the resized image in it (:func:`resized_size`); the rest is padding.
        height, width: size of the original image.
        flipped: the image was flipped horizontally before resizing; flip the result back.

    Returns:
        (height, width) uint8 class map: the crop resized with nearest-neighbour interpolation
        (resizing the crop undoes the loader's resize, then the flip undoes its flip, the inverse
        of the loader's flip-then-resize).
    """
    h, w = size
    if h > label_map.shape[0] or w > label_map.shape[1]:
        raise ValueError(f"image size {(h, w)} exceeds the network output {label_map.shape}")
    crop = np.ascontiguousarray(label_map[:h, :w], dtype=np.uint8)
    if (h, w) != (height, width):
        crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_NEAREST)  # dsize (w, h)
    return np.ascontiguousarray(crop[:, ::-1]) if flipped else crop


def _write_vis(path: str, image_path: str, label_map: np.ndarray, palette: np.ndarray) -> None:
    """The original image blended with the class colours (``VIS_ALPHA``), as a PNG."""
    image = read_image(image_path).astype(np.float32)
    colour = palette[label_map][:, :, ::-1].astype(np.float32)  # RGB palette -> BGR
    blend = (1 - VIS_ALPHA) * image + VIS_ALPHA * colour
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, np.clip(np.round(blend), 0, 255).astype(np.uint8)):
        raise OSError(f"cannot write {path}")


def segment_dataset(
    predictor: Any,
    test_data: Any,
    imdb: Any,
    cfg: Any,
    output_dir: str,
    *,
    vis: bool = False,
) -> dict[str, Any]:
    """Segment every image of ``test_data`` and evaluate with one confusion matrix over the set.

    Args:
        predictor: the bound test network (:class:`lib.core.tester.Predictor`, or anything whose
            ``predict(batch)`` returns one ``{'softmax_output': NDArray}`` per device).
        test_data: a :class:`~lib.core.seg_loader.TestDataLoader` over ``imdb.gt_segdb()``
            (in that order: ``batch.roidb_index`` is the image's index in the dataset).
        imdb: the dataset (``name``, ``classes``, ``num_images``, ``image_set_index``,
            ``segmentation_result_path``, ``palette``, ``evaluate_segmentations``).
        cfg: config (``network.IMAGE_STRIDE``).
        output_dir: receives ``results/`` (the predicted label PNGs), the results JSON and,
            with ``vis``, ``vis/`` (the images blended 1:1 with their predicted class colours).
        vis: also write the blended colour PNGs.

    Returns:
        ``{'meanIU', 'pixel_accuracy', 'per_class_iou' {class: IoU or None}, 'num_images',
        'confusion_matrix' (C, C) int64 (rows ground truth), 'results_file'}``. A class absent
        from both the ground truth and the predictions has IoU None (NaN in the logs) and is
        left out of the mean.

    Raises:
        ValueError: the loader and the dataset disagree on the images, or an image is missing
            from the loader's batches.
    """
    num_images = imdb.num_images
    if getattr(test_data, "size", num_images) != num_images:
        raise ValueError(
            f"the test loader has {test_data.size} images, the dataset {imdb.name} {num_images}"
        )
    segdb = test_data.segdb
    stride = int(cfg.network.IMAGE_STRIDE or 0)
    palette = imdb.palette()
    vis_palette = palette if palette is not None else voc_palette()
    results_dir = os.path.join(output_dir, "results")
    done = np.zeros(num_images, dtype=bool)
    t_net = t_post = 0.0
    progress = tqdm(total=num_images, desc=f"segment {imdb.name}", unit="im", disable=None)
    for batch in test_data:
        tic = time.time()
        indices = [int(i) for i in batch.roidb_index]
        maps = batch_label_maps(predictor.predict(batch), len(indices))
        t_net += time.time() - tic
        tic = time.time()
        for index, label_map, im_info in zip(indices, maps, batch.im_info):
            rec = segdb[index]
            height, width = int(rec["height"]), int(rec["width"])
            pred = restore_label_map(
                label_map,
                resized_size(im_info, height, width, stride),
                height,
                width,
                flipped=bool(rec.get("flipped", False)),
            )
            image_id = imdb.image_set_index[index]
            res_path = imdb.segmentation_result_path(image_id, output_dir)
            write_label_png(res_path, pred, palette)
            if vis:
                rel = os.path.relpath(res_path, results_dir)
                rel = os.path.basename(rel) if rel.startswith(os.pardir) else rel
                _write_vis(os.path.join(output_dir, "vis", rel), rec["image"], pred, vis_palette)
            done[index] = True
        t_post += time.time() - tic
        progress.update(len(indices))
    progress.close()
    if not done.all():
        missing = [imdb.image_set_index[i] for i in np.flatnonzero(~done)[:5]]
        raise ValueError(
            f"{int((~done).sum())} images of {imdb.name} were not segmented, e.g. {missing}"
        )
    logger.info(
        "segmented %d images: net %.3fs/im, post-processing %.3fs/im",
        num_images,
        t_net / max(num_images, 1),
        t_post / max(num_images, 1),
    )

    # Reads the PNGs back: one confusion matrix over the set; logs per-class IoU and the mean.
    evaluation = imdb.evaluate_segmentations(None, output_dir)
    conf = np.asarray(evaluation["confusion_matrix"])
    iou = np.asarray(evaluation["IU_array"], dtype=np.float64)
    results: dict[str, Any] = {
        "meanIU": float(evaluation["meanIU"]),
        "pixel_accuracy": pixel_accuracy(conf),
        "per_class_iou": {
            name: None if math.isnan(v) else float(v) for name, v in zip(imdb.classes, iou)
        },
        "num_images": int(num_images),
    }
    path = results_path(output_dir, imdb)
    os.makedirs(output_dir, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"dataset": imdb.name, **results, "confusion_matrix": conf.tolist()}, f, indent=1)
    os.replace(path + ".tmp", path)
    logger.info(
        "%s: mean IoU %.4f, pixel accuracy %.4f over %d images; results in %s",
        imdb.name,
        results["meanIU"],
        results["pixel_accuracy"],
        num_images,
        path,
    )
    results["confusion_matrix"] = conf
    results["results_file"] = path
    return results
