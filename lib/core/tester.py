"""Detection inference and evaluation shared by the detectors (R-FCN, Faster R-CNN, FPN).

:class:`Predictor` runs a test symbol bound in a :class:`~lib.core.module.MutableModule` (one
bound module per input shape). :func:`im_detect` turns one batch of network outputs into
per-image class scores and decoded boxes, in original-image pixels. :func:`pred_eval` runs a
whole test set: per class, the boxes scoring above ``thresh`` go through NMS (``TEST.NMS``, or
any ``dets -> keep`` / ``dets -> rescored dets`` function, e.g. soft-NMS), then the best
``max_per_image`` detections over all classes are kept; the detections are pickled to
``<output_dir>/<imdb.name>_detections.pkl`` and scored by the dataset's own metric
(``imdb.evaluate_detections``: COCO AP through pycocotools, VOC mAP), which is logged.

The test symbol's outputs are found by name: ``rois_output`` (R, 5) ``(batch, x1, y1, x2, y2)``
(or the ``rois`` input when the symbol reads precomputed proposals), ``cls_prob_reshape_output``
(1, R, C) and ``bbox_pred_reshape_output`` (1, R, 4 * R_cls) holding de-normalised deltas (the
checkpoint's ``*_test`` weights, loaded with ``load_param(..., process=True)``); R_cls = 2 for
class-agnostic regression (coordinates of class 1 are used for every class).
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

import mxnet as mx
import numpy as np
from tqdm import tqdm

from lib.bbox.bbox_transform import bbox_pred, clip_boxes
from lib.core.module import MutableModule
from lib.nms.nms import py_nms_wrapper

__all__ = [
    "Detections",
    "Predictor",
    "detections_path",
    "im_detect",
    "pred_eval",
    "select_detections",
]

logger = logging.getLogger(__name__)

#: ``dets (N, 5) -> kept indices`` (NMS) or ``dets -> rescored dets (M, 5)`` (soft-NMS).
NmsFn = Callable[[np.ndarray], Any]
#: ``all_boxes[cls][image]`` = (N, 5) float32 ``[x1, y1, x2, y2, score]``
Detections = list[list[np.ndarray]]


class Predictor:
    """A bound test symbol: ``predict(batch)`` returns one ``{output name: NDArray}`` per device.

    Args:
        symbol: the test symbol.
        data_names: its inputs (e.g. ``['data', 'im_info']``).
        label_names: label inputs, usually none.
        context: one context or a list (one image per device).
        max_data_shapes: ``[(name, shape)]`` of the largest batch, bound first.
        provide_data, provide_label: the first batch's descriptors.
        arg_params, aux_params: the parameters (all must be present).
        max_cached_modules: bound modules kept for other input shapes.
    """

    def __init__(
        self,
        symbol: mx.sym.Symbol,
        data_names: Sequence[str],
        label_names: Sequence[str] | None = None,
        context: Any = None,
        max_data_shapes: Sequence | None = None,
        provide_data: Sequence | None = None,
        provide_label: Sequence | None = None,
        arg_params: dict | None = None,
        aux_params: dict | None = None,
        max_cached_modules: int = 8,
    ) -> None:
        self._mod = MutableModule(
            symbol,
            data_names,
            label_names,
            context=context if context is not None else mx.cpu(),
            max_data_shapes=max_data_shapes,
            max_cached_modules=max_cached_modules,
        )
        self._mod.bind(provide_data, provide_label or None, for_training=False)
        self._mod.init_params(arg_params=arg_params, aux_params=aux_params)

    @property
    def output_names(self) -> list[str]:
        return self._mod.output_names

    def predict(self, data_batch: mx.io.DataBatch) -> list[dict[str, mx.nd.NDArray]]:
        """Forward one batch; the outputs of each device as a dict."""
        self._mod.forward(data_batch, is_train=False)
        per_output = self._mod.get_outputs(merge_multi_context=False)
        num_devices = len(per_output[0])
        return [
            {name: outs[d] for name, outs in zip(self.output_names, per_output)}
            for d in range(num_devices)
        ]


def _image_infos(data_batch: mx.io.DataBatch, data_names: Sequence[str]) -> np.ndarray:
    """(n, 3) ``[height, width, scale]`` of the batch's real images."""
    im_info = getattr(data_batch, "im_info", None)
    if im_info is None:
        im_info = data_batch.data[list(data_names).index("im_info")].asnumpy()
        im_info = im_info[: len(im_info) - (data_batch.pad or 0)]
    return np.asarray(im_info, dtype=np.float64)


def im_detect(
    predictor: Predictor,
    data_batch: mx.io.DataBatch,
    data_names: Sequence[str],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Scores and boxes of every real image of a batch (one image per device).

    Returns:
        Per image ``(scores (R, C), boxes (R, 4 * R_cls))``: boxes are the RoIs moved by the
        predicted deltas, clipped to the network input (``im_info[:2]``) and divided by the
        image's scale, i.e. in pixels of the original image.
    """
    outputs = predictor.predict(data_batch)
    im_infos = _image_infos(data_batch, data_names)
    has_rois_input = "rois" in data_names and "rois_output" not in outputs[0]
    results = []
    for i, im_info in enumerate(im_infos):
        out = outputs[i]
        if has_rois_input:
            rois = data_batch.data[list(data_names).index("rois")][i].asnumpy()
            num_rois = getattr(data_batch, "num_rois", None)
            rois = rois[: num_rois[i]] if num_rois is not None else rois
            rois = rois[:, 1:]
        else:
            rois = out["rois_output"].asnumpy()[:, 1:]
        scores = out["cls_prob_reshape_output"].asnumpy()[0][: rois.shape[0]]
        deltas = out["bbox_pred_reshape_output"].asnumpy()[0][: rois.shape[0]]
        boxes = bbox_pred(rois.astype(np.float64), deltas.astype(np.float64))
        boxes = clip_boxes(boxes, im_info[:2]) / im_info[2]
        results.append((scores, boxes))
    return results


def select_detections(
    scores: np.ndarray,
    boxes: np.ndarray,
    num_classes: int,
    class_agnostic: bool,
    thresh: float,
    nms: NmsFn,
    max_per_image: int,
) -> list[np.ndarray]:
    """Per-class thresholding and NMS, then the ``max_per_image`` best over all classes.

    Args:
        scores: (R, C) class probabilities (column 0: background).
        boxes: (R, 4 * R_cls) decoded boxes.
        nms: ``dets -> kept indices``, or ``dets -> rescored dets`` (soft-NMS).
        max_per_image: <= 0 keeps everything.

    Returns:
        ``num_classes`` arrays (N_j, 5) float32 ``[x1, y1, x2, y2, score]``; index 0 is empty.
    """
    dets_per_class = [np.zeros((0, 5), dtype=np.float32)]
    for j in range(1, num_classes):
        inds = np.where(scores[:, j] > thresh)[0]
        col = 4 if class_agnostic else 4 * j
        dets = np.hstack((boxes[inds, col : col + 4], scores[inds, j : j + 1])).astype(np.float32)
        if dets.shape[0]:
            kept = nms(dets)
            kept = np.asarray(kept)
            if kept.ndim == 2:  # soft-NMS returns the rescored detections themselves
                dets = kept.astype(np.float32).reshape(-1, 5)
            else:
                dets = dets[kept.astype(np.int64)]
        dets_per_class.append(dets)
    if max_per_image > 0:
        all_scores = np.concatenate([d[:, -1] for d in dets_per_class[1:]])
        if all_scores.size > max_per_image:
            thresh_score = np.sort(all_scores)[-max_per_image]
            dets_per_class = [d[d[:, -1] >= thresh_score] for d in dets_per_class]
    return dets_per_class


def detections_path(output_dir: str, imdb: Any) -> str:
    """Where :func:`pred_eval` caches detections: ``<output_dir>/<imdb.name>_detections.pkl``."""
    return os.path.join(output_dir, f"{imdb.name}_detections.pkl")


def pred_eval(
    predictor: Predictor,
    test_data: Any,
    imdb: Any,
    cfg: Any,
    output_dir: str,
    thresh: float = 1e-3,
    ignore_cache: bool = True,
    nms: NmsFn | None = None,
    max_per_image: int | None = None,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Detect every image of ``test_data``, cache the detections and evaluate them.

    Args:
        predictor: the bound test network.
        test_data: a :class:`~lib.core.loader.TestLoader` over ``imdb``'s roidb (batches carry
            ``roidb_index``, ``im_info``).
        imdb: the dataset (``num_classes``, ``num_images``, ``name``, ``evaluate_detections``).
        cfg: config (``CLASS_AGNOSTIC``, ``TEST.NMS``, ``TEST.max_per_image``).
        output_dir: where the detections pickle and the dataset's result files go.
        thresh: minimum class score of a detection (the original's 1e-3).
        ignore_cache: recompute even if the detections pickle exists.
        nms: per-class suppression; default ``py_nms_wrapper(cfg.TEST.NMS)``.
        max_per_image: default ``cfg.TEST.max_per_image``.
        evaluate: run ``imdb.evaluate_detections`` (else only cache the detections).

    Returns:
        The dataset's metrics (e.g. COCO ``{'AP': .., 'AP50': .., ...}``, VOC ``{'mAP@0.5': ..}``)
        plus ``'detections_file'``.
    """
    os.makedirs(output_dir, exist_ok=True)
    det_file = detections_path(output_dir, imdb)
    if not ignore_cache and os.path.isfile(det_file):
        with open(det_file, "rb") as f:
            all_boxes = pickle.load(f)
        logger.info("loaded cached detections from %s", det_file)
    else:
        all_boxes = _detect_all(
            predictor,
            test_data,
            imdb,
            cfg,
            thresh,
            nms if nms is not None else py_nms_wrapper(cfg.TEST.NMS),
            cfg.TEST.max_per_image if max_per_image is None else max_per_image,
        )
        tmp = det_file + ".tmp"
        with open(tmp, "wb") as f:
            pickle.dump(all_boxes, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, det_file)
        logger.info("wrote detections to %s", det_file)
    results: dict[str, Any] = {}
    if evaluate:
        results = dict(imdb.evaluate_detections(all_boxes, output_dir) or {})
        for key, value in results.items():
            if isinstance(value, (int, float, np.floating)):
                logger.info("%s %s: %.4f", imdb.name, key, value)
    results["detections_file"] = det_file
    return results


def _detect_all(
    predictor: Predictor,
    test_data: Any,
    imdb: Any,
    cfg: Any,
    thresh: float,
    nms: NmsFn,
    max_per_image: int,
) -> Detections:
    num_images, num_classes = imdb.num_images, imdb.num_classes
    if getattr(test_data, "size", num_images) != num_images:
        raise ValueError(
            f"the test loader has {test_data.size} images, the dataset {imdb.name} {num_images}"
        )
    all_boxes: Detections = [
        [np.zeros((0, 5), dtype=np.float32) for _ in range(num_images)] for _ in range(num_classes)
    ]
    data_names = [d[0] for d in test_data.provide_data]
    t_net = t_post = 0.0
    progress = tqdm(total=num_images, desc=f"detect {imdb.name}", unit="im", disable=None)
    for batch in test_data:
        tic = time.time()
        per_image = im_detect(predictor, batch, data_names)
        t_net += time.time() - tic
        tic = time.time()
        for index, (scores, boxes) in zip(batch.roidb_index, per_image):
            dets = select_detections(
                scores, boxes, num_classes, cfg.CLASS_AGNOSTIC, thresh, nms, max_per_image
            )
            for j in range(num_classes):
                all_boxes[j][int(index)] = dets[j]
        t_post += time.time() - tic
        progress.update(len(per_image))
    progress.close()
    logger.info(
        "detected %d images: net %.3fs/im, post-processing %.3fs/im",
        num_images,
        t_net / max(num_images, 1),
        t_post / max(num_images, 1),
    )
    return all_boxes
