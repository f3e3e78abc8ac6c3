"""The testing pipeline shared by every architecture: :func:`test_net`, and detection inference.

:func:`test_net` loads a trained checkpoint of a network object (:mod:`lib.core.network`),
binds its test symbol in a :class:`Predictor` at the largest input shapes
(:func:`lib.core.shapes.max_input_shapes`) over ``len(ctx)`` devices with
``TEST.BATCH_IMAGES`` images each, and runs the dataset ``dataset.test_image_set``:
:func:`pred_eval` for detectors, :func:`lib.core.seg_tester.segment_dataset` for segmentation.

Detection (:func:`pred_eval`):

* :func:`im_detect` turns one batch of network outputs into per-image class scores and decoded
  boxes, in original-image pixels (RoIs moved by the predicted deltas, clipped to the network
  input, divided by the image's scale);
* every image is run at every test scale (``TEST_SCALES``; empty: ``SCALES[0]``); per class,
  the boxes of all scales scoring above ``thresh`` are merged and suppressed once, by NMS
  (``TEST.NMS``) or soft-NMS (``TEST.USE_SOFTNMS``: ``SOFTNMS_METHOD`` gaussian / linear,
  ``SOFTNMS_THRESH``) (:func:`build_nms`); then the best ``TEST.max_per_image`` detections over
  all classes are kept;
* the detections are pickled to ``<output_dir>/<imdb.name>_detections.pkl`` together with a
  key naming what produced them (the checkpoint's path and content digest, the images and
  their files, the test settings). A later run reuses them only when its key is equal, and
  logs which it did; ``ignore_cache`` always recomputes;
* they are scored by the dataset's own metric (``imdb.evaluate_detections``: COCO AP through
  pycocotools, VOC mAP), which is logged.

The test symbol's outputs are found by name: ``rois_output`` (B * R, 5) ``(batch index, x1, y1,
x2, y2)`` (or the ``rois`` input with ``TEST.HAS_RPN`` off: the roidb's proposals),
``cls_prob_reshape_output`` (B, R, C) and ``bbox_pred_reshape_output`` (B, R, 4 * R_cls) holding
de-normalised deltas (the checkpoint's ``*_test`` weights, loaded with ``load_param(...,
process=True)``); R_cls = 2 for class-agnostic regression (coordinates of class 1 are used for
every class).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import mxnet as mx
import numpy as np
from tqdm import tqdm

from lib.bbox.bbox_transform import bbox_pred, clip_boxes
from lib.config import dump_config, save_config
from lib.core.checkpoint import load_param, params_path
from lib.core.initializer import check_parameter_shapes, infer_param_shapes
from lib.core.loader import TestLoader
from lib.core.module import MutableModule
from lib.core.shapes import max_input_shapes, param_shapes
from lib.dataset.load_data import get_imdb
from lib.dataset.proposals import load_proposal_roidb
from lib.nms.nms import py_nms_wrapper, soft_nms
from lib.utils.logger import create_logger, experiment_output_path
from lib.utils.run_lock import RunLock

__all__ = [
    "Detections",
    "Predictor",
    "bind_test_network",
    "build_nms",
    "class_candidates",
    "detection_cache_key",
    "detections_path",
    "im_detect",
    "pred_eval",
    "select_detections",
    "suppress",
    "test_inputs",
    "test_net",
    "test_scales",
]

logger = logging.getLogger(__name__)

#: ``dets (N, 5) -> kept indices`` (NMS) or ``dets -> rescored dets (M, 5)`` (soft-NMS).
NmsFn = Callable[[np.ndarray], Any]
#: ``all_boxes[cls][image]`` = (N, 5) float32 ``[x1, y1, x2, y2, score]``
Detections = list[list[np.ndarray]]

#: Bump when the cached detections' layout or key changes.
CACHE_VERSION = 2


class Predictor:
    """A bound test symbol: ``predict(batch)`` returns one ``{output name: NDArray}`` per device.

    Args:
        symbol: the test symbol.
        data_names: its inputs (e.g. ``['data', 'im_info']``).
        label_names: label inputs, usually none (DeepLab's test symbol has ``softmax_label``,
            whose shape follows from ``data``).
        context: one context or a list (the batch is split over them along axis 0).
        max_data_shapes, max_label_shapes: ``[(name, shape)]`` of the largest batch, bound first.
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
        max_label_shapes: Sequence | None = None,
    ) -> None:
        self._mod = MutableModule(
            symbol,
            data_names,
            label_names,
            context=context if context is not None else mx.cpu(),
            max_data_shapes=max_data_shapes,
            max_label_shapes=max_label_shapes,
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


# ------------------------------------------------------------------------------ one batch


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
    """Scores and boxes of every real image of a batch.

    The batch holds B images per device (B = the first axis of ``cls_prob_reshape_output``):
    image i of the batch is image ``i % B`` of device ``i // B``.

    Returns:
        Per real image ``(scores (R, C), boxes (R, 4 * R_cls))``: boxes are the RoIs moved by
        the predicted deltas, clipped to the network input (``im_info[:2]``, as the original),
        divided by the image's scale, i.e. in pixels of the original image, and clipped to the
        original image when the batch carries ``image_sizes`` (a stride-padded input extends
        beyond the image).
    """
    outputs = predictor.predict(data_batch)
    im_infos = _image_infos(data_batch, data_names)
    has_rois_input = "rois" in data_names and "rois_output" not in outputs[0]
    per_device = outputs[0]["cls_prob_reshape_output"].shape[0]
    num_rois = getattr(data_batch, "num_rois", None)
    image_sizes = getattr(data_batch, "image_sizes", None)
    results = []
    for i, im_info in enumerate(im_infos):
        out, j = outputs[i // per_device], i % per_device
        scores = out["cls_prob_reshape_output"][j].asnumpy()
        deltas = out["bbox_pred_reshape_output"][j].asnumpy()
        if has_rois_input:
            rois = data_batch.data[list(data_names).index("rois")][i].asnumpy()
            rois = rois[: num_rois[i]] if num_rois is not None else rois
        else:
            rois = out["rois_output"].asnumpy().reshape(per_device, -1, 5)[j]
        rois = rois[:, 1:]
        scores, deltas = scores[: rois.shape[0]], deltas[: rois.shape[0]]
        boxes = bbox_pred(rois.astype(np.float64), deltas.astype(np.float64))
        boxes = clip_boxes(boxes, im_info[:2]) / im_info[2]
        if image_sizes is not None:  # the input may be padded (IMAGE_STRIDE) beyond the image
            boxes = clip_boxes(boxes, image_sizes[i])
        results.append((scores, boxes))
    return results


# --------------------------------------------------------------------------- suppression


def build_nms(test_cfg: Any, max_per_image: int | None = None) -> NmsFn:
    """The per-class suppression of ``TEST``: NMS at ``NMS``, or soft-NMS.

    Soft-NMS (``USE_SOFTNMS``) rescores instead of dropping: ``SOFTNMS_METHOD`` 'gaussian'
    (``s * exp(-iou^2 / SOFTNMS_THRESH)``, the original FPN's) or 'linear' (``s * (1 - iou)``
    above ``SOFTNMS_THRESH``), keeping at most ``max_per_image`` boxes per class.
    """
    if test_cfg.USE_SOFTNMS:
        thresh, method = float(test_cfg.SOFTNMS_THRESH), str(test_cfg.SOFTNMS_METHOD)
        max_dets = -1 if max_per_image is None or max_per_image <= 0 else int(max_per_image)

        def _soft(dets: np.ndarray) -> np.ndarray:
            return soft_nms(dets, thresh, max_dets, method=method)

        return _soft
    return py_nms_wrapper(float(test_cfg.NMS))


def class_candidates(
    scores: np.ndarray,
    boxes: np.ndarray,
    num_classes: int,
    class_agnostic: bool,
    thresh: float,
) -> list[np.ndarray]:
    """Per class, the boxes scoring above ``thresh``: ``num_classes`` arrays (N_j, 5) float32
    ``[x1, y1, x2, y2, score]`` (index 0, background, is empty)."""
    per_class = [np.zeros((0, 5), dtype=np.float32)]
    for j in range(1, num_classes):
        inds = np.where(scores[:, j] > thresh)[0]
        col = 4 if class_agnostic else 4 * j
        dets = np.hstack((boxes[inds, col : col + 4], scores[inds, j : j + 1]))
        per_class.append(dets.astype(np.float32))
    return per_class


def suppress(per_class: Sequence[np.ndarray], nms: NmsFn, max_per_image: int) -> list[np.ndarray]:
    """Per-class suppression, then the ``max_per_image`` best detections over all classes.

    Args:
        per_class: candidates per class (:func:`class_candidates`, possibly of several scales).
        nms: ``dets -> kept indices``, or ``dets -> rescored dets`` (soft-NMS).
        max_per_image: <= 0 keeps everything.
    """
    out = [np.zeros((0, 5), dtype=np.float32)]
    for dets in per_class[1:]:
        if dets.shape[0]:
            kept = np.asarray(nms(dets))
            if kept.ndim == 2:  # soft-NMS returns the rescored detections themselves
                dets = kept.astype(np.float32).reshape(-1, 5)
            else:
                dets = dets[kept.astype(np.int64)]
        out.append(dets.astype(np.float32))
    if max_per_image > 0:
        all_scores = np.concatenate([d[:, -1] for d in out[1:]])
        if all_scores.size > max_per_image:
            thresh_score = np.sort(all_scores)[-max_per_image]
            out = [d[d[:, -1] >= thresh_score] for d in out]
    return out


def select_detections(
    scores: np.ndarray,
    boxes: np.ndarray,
    num_classes: int,
    class_agnostic: bool,
    thresh: float,
    nms: NmsFn,
    max_per_image: int,
) -> list[np.ndarray]:
    """The detections of one image at one scale: :func:`class_candidates` then :func:`suppress`.

    Returns:
        ``num_classes`` arrays (N_j, 5) float32 ``[x1, y1, x2, y2, score]``; index 0 is empty.
    """
    candidates = class_candidates(scores, boxes, num_classes, class_agnostic, thresh)
    return suppress(candidates, nms, max_per_image)


# ------------------------------------------------------------------------- the whole set


def detections_path(output_dir: str, imdb: Any) -> str:
    """Where :func:`pred_eval` caches detections: ``<output_dir>/<imdb.name>_detections.pkl``."""
    return os.path.join(output_dir, f"{imdb.name}_detections.pkl")


def test_scales(cfg: Any) -> list[tuple[int, int]]:
    """The test scales: ``TEST_SCALES``, or ``[SCALES[0]]`` when it is empty."""
    scales = cfg.TEST_SCALES or cfg.SCALES[:1]
    return [(int(s[0]), int(s[1])) for s in scales]


test_scales.__test__ = False  # not a pytest test when imported into a test module


def _read_cache(det_file: str, cache_key: Mapping | None) -> Detections | None:
    if cache_key is None or not os.path.isfile(det_file):
        return None
    try:
        with open(det_file, "rb") as f:
            blob = pickle.load(f)
    except Exception as err:  # truncated or foreign pickle: recompute
        logger.warning("ignoring unreadable cached detections %s (%s)", det_file, err)
        return None
    saved = blob.get("key") if isinstance(blob, dict) else None
    if not isinstance(saved, dict):
        logger.info("cached detections %s carry no key (older format): recomputing", det_file)
        return None
    changed = [k for k in sorted(set(saved) | set(cache_key)) if saved.get(k) != cache_key.get(k)]
    if changed:
        logger.info(
            "cached detections %s were made with another %s: recomputing",
            det_file,
            " / ".join(changed),
        )
        return None
    logger.info(
        "using cached detections %s: same checkpoint (%s, sha1 %s), images and test settings "
        "(--ignore_cache recomputes)",
        det_file,
        cache_key["checkpoint"]["path"],
        cache_key["checkpoint"]["sha1"][:12],
    )
    return blob["all_boxes"]


def pred_eval(
    predictor: Predictor,
    test_data: Any,
    imdb: Any,
    cfg: Any,
    output_dir: str,
    thresh: float = 1e-3,
    ignore_cache: bool = False,
    cache_key: Mapping | None = None,
    nms: NmsFn | None = None,
    max_per_image: int | None = None,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Detect every image of ``test_data``, cache the detections and evaluate them.

    Args:
        predictor: the bound test network.
        test_data: a :class:`~lib.core.loader.TestLoader` over ``imdb``'s roidb, or one per test
            scale (all in the same image order): their detections are merged per class before
            the suppression.
        imdb: the dataset (``num_classes``, ``num_images``, ``name``, ``evaluate_detections``).
        cfg: config (``CLASS_AGNOSTIC``, ``TEST``).
        output_dir: where the detections pickle and the dataset's result files go.
        thresh: minimum class score of a detection (the original's 1e-3).
        ignore_cache: recompute even if the cached detections match ``cache_key``.
        cache_key: what produced the detections (:func:`detection_cache_key`); cached
            detections are reused only under an equal key (None: never reused).
        nms: per-class suppression; default :func:`build_nms`.
        max_per_image: default ``cfg.TEST.max_per_image``.
        evaluate: run ``imdb.evaluate_detections`` (else only cache the detections).

    Returns:
        The dataset's metrics (e.g. COCO ``{'AP': .., 'AP50': .., ...}``, VOC ``{'mAP@0.5': ..}``)
        plus ``'detections_file'`` and ``'cached'`` (whether the cache was used).
    """
    os.makedirs(output_dir, exist_ok=True)
    det_file = detections_path(output_dir, imdb)
    max_per_image = cfg.TEST.max_per_image if max_per_image is None else max_per_image
    all_boxes = None if ignore_cache else _read_cache(det_file, cache_key)
    cached = all_boxes is not None
    if all_boxes is None:
        loaders = list(test_data) if isinstance(test_data, (list, tuple)) else [test_data]
        nms = build_nms(cfg.TEST, max_per_image) if nms is None else nms
        all_boxes = _detect_all(predictor, loaders, imdb, cfg, thresh, nms, max_per_image)
        tmp = det_file + ".tmp"
        with open(tmp, "wb") as f:
            blob = {"key": dict(cache_key or {}), "all_boxes": all_boxes}
            pickle.dump(blob, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, det_file)
        logger.info("wrote detections to %s", det_file)
    results: dict[str, Any] = {}
    if evaluate:
        results = dict(imdb.evaluate_detections(all_boxes, output_dir) or {})
        for key, value in results.items():
            if isinstance(value, (int, float, np.floating)):
                logger.info("%s %s: %.4f", imdb.name, key, value)
    results["detections_file"] = det_file
    results["cached"] = cached
    return results


def _detect_all(
    predictor: Predictor,
    loaders: Sequence[Any],
    imdb: Any,
    cfg: Any,
    thresh: float,
    nms: NmsFn,
    max_per_image: int,
) -> Detections:
    num_images, num_classes = imdb.num_images, imdb.num_classes
    for loader in loaders:
        if getattr(loader, "size", num_images) != num_images:
            raise ValueError(
                f"the test loader has {loader.size} images, the dataset {imdb.name} {num_images}"
            )
    all_boxes: Detections = [
        [np.zeros((0, 5), dtype=np.float32) for _ in range(num_images)] for _ in range(num_classes)
    ]
    data_names = [d[0] for d in loaders[0].provide_data]
    t_net = t_post = 0.0
    desc = f"detect {imdb.name}" + (f" at {len(loaders)} scales" if len(loaders) > 1 else "")
    progress = tqdm(total=num_images, desc=desc, unit="im", disable=None)
    for batches in zip(*loaders):
        per_scale = []
        for batch in batches:
            tic = time.time()
            per_scale.append(im_detect(predictor, batch, data_names))
            t_net += time.time() - tic
        tic = time.time()
        indices = batches[0].roidb_index
        for b in batches[1:]:
            if not np.array_equal(b.roidb_index, indices):
                raise RuntimeError(
                    "the test loaders of the scales visit the images in other orders"
                )
        for i, index in enumerate(indices):
            candidates = [
                class_candidates(scores, boxes, num_classes, cfg.CLASS_AGNOSTIC, thresh)
                for scores, boxes in (dets[i] for dets in per_scale)
            ]
            merged = [np.concatenate([c[j] for c in candidates]) for j in range(num_classes)]
            dets = suppress(merged, nms, max_per_image)
            for j in range(num_classes):
                all_boxes[j][int(index)] = dets[j]
        t_post += time.time() - tic
        progress.update(len(indices))
    progress.close()
    logger.info(
        "detected %d images at %d scale(s): net %.3fs/im, post-processing %.3fs/im",
        num_images,
        len(loaders),
        t_net / max(num_images, 1),
        t_post / max(num_images, 1),
    )
    return all_boxes


# --------------------------------------------------------------------------- cache keys


def _sha1_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _records_digest(roidb: Sequence[Mapping[str, Any]]) -> str:
    """A digest of the test images: paths, file sizes and times, flips, sizes and boxes."""
    digest = hashlib.sha1()
    for rec in roidb:
        path = rec["image"]
        try:
            st = os.stat(path)
            stamp = (st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None  # the loader reports it
        head = (path, stamp, bool(rec.get("flipped", False)), rec.get("height"), rec.get("width"))
        digest.update(repr(head).encode())
        if "boxes" in rec:
            digest.update(np.ascontiguousarray(rec["boxes"], dtype=np.float64).tobytes())
    return digest.hexdigest()


def detection_cache_key(
    cfg: Any, checkpoint_file: str, roidb: Sequence[Mapping[str, Any]], thresh: float
) -> dict[str, Any]:
    """What produces a set of detections: the checkpoint (path and content digest), the images
    (their records and files) and the settings that change detections (network, test config,
    scales, classes, score threshold)."""
    settings = {
        "symbol": cfg.symbol,
        "CLASS_AGNOSTIC": cfg.CLASS_AGNOSTIC,
        "test_scales": test_scales(cfg),
        "network": cfg.network,
        "TEST": {k: v for k, v in cfg.TEST.items() if k != "test_epoch"},
        "NUM_CLASSES": cfg.dataset.NUM_CLASSES,
        "proposal": cfg.dataset.proposal,
        "thresh": float(thresh),
    }
    settings_text = dump_config(settings)
    return {
        "version": CACHE_VERSION,
        "checkpoint": {
            "path": os.path.abspath(checkpoint_file),
            "sha1": _sha1_file(checkpoint_file),
        },
        "images": {"count": len(roidb), "sha1": _records_digest(roidb)},
        "test settings": hashlib.sha1(settings_text.encode()).hexdigest(),
    }


# ------------------------------------------------------------------------------ test_net


def test_inputs(sym: mx.sym.Symbol) -> tuple[list[str], list[str]]:
    """``(data names, label names)`` of a test symbol: among ``data``, ``im_info``, ``rois``;
    labels are its ``*_label`` arguments (DeepLab's ``softmax_label``)."""
    args = sym.list_arguments()
    data_names = [n for n in ("data", "im_info", "rois") if n in args]
    return data_names, [n for n in args if n.endswith("_label")]


test_inputs.__test__ = False  # not a pytest test when imported into a test module


def rpn_only_params(cfg: Any, net: Any) -> frozenset[str]:
    """The params that only the network's own RPN uses (FPN: its P6 level too): a test on
    given proposals (``TEST.HAS_RPN`` off) leaves them out of an end-to-end checkpoint."""
    if cfg.TEST.HAS_RPN:
        return frozenset()
    with_rpn = copy.deepcopy(cfg)
    with_rpn.TEST.HAS_RPN = True
    full = param_shapes(with_rpn, net(with_rpn, is_train=False))
    given = param_shapes(cfg, net(cfg, is_train=False))
    return frozenset(set(full[0]) - set(given[0]))


def bind_test_network(
    sym: mx.sym.Symbol,
    arg_params: Mapping[str, mx.nd.NDArray],
    aux_params: Mapping[str, mx.nd.NDArray],
    ctx: Any,
    max_shapes: Sequence[tuple[str, tuple]],
    provide_data: Sequence,
    source: str = "the checkpoint",
    network: str = "the network",
    unused: Collection[str] = (),
) -> Predictor:
    """A :class:`Predictor` of ``sym`` bound at ``max_shapes`` with a checkpoint's params.

    The checkpoint must fit the symbol exactly (names and shapes, checked before any image is
    read): a missing, mis-shaped or unexpected param (a checkpoint of another network, e.g. a
    deformable one's offsets under a plain network) stops with an error naming them. Label
    inputs of a test symbol (DeepLab's ``softmax_label``) are bound at the shapes that follow
    from the data.

    Args:
        max_shapes: ``[(name, shape)]`` of the largest batch
            (:func:`lib.core.shapes.max_input_shapes`); inputs not listed take their
            ``provide_data`` shape.
        provide_data: the first batch's data descriptors.
        source, network: what the params and the network are, for the error message.
        unused: params of the checkpoint the symbol may leave out: those of the network's
            own RPN when proposals are given (:func:`rpn_only_params`).
    """
    data_names, label_names = test_inputs(sym)
    args = sym.list_arguments()
    first = {d[0]: tuple(d[1]) for d in provide_data}
    shapes = {**first, **dict(max_shapes)}
    first_inferred = dict(zip(args, sym.infer_shape_partial(**first)[0]))
    max_inferred = dict(zip(args, sym.infer_shape_partial(**shapes)[0]))
    provide_label = [(n, tuple(first_inferred[n])) for n in label_names]
    max_label_shapes = [(n, tuple(max_inferred[n])) for n in label_names]
    arg_shapes, aux_shapes = infer_param_shapes(sym, {**shapes, **dict(max_label_shapes)})
    skipped = sorted(k for k in arg_params if k in unused and k not in arg_shapes)
    if skipped:
        logger.info("proposals are given: not using the RPN params %s", ", ".join(skipped))
        arg_params = {k: v for k, v in arg_params.items() if k not in skipped}
    check_parameter_shapes(arg_shapes, aux_shapes, arg_params, aux_params, source, network)
    return Predictor(
        sym,
        data_names,
        label_names or None,
        context=ctx,
        max_data_shapes=list(max_shapes),
        provide_data=provide_data,
        provide_label=provide_label or None,
        max_label_shapes=max_label_shapes or None,
        arg_params=dict(arg_params),
        aux_params=dict(aux_params),
    )


def test_net(
    cfg: Any,
    net: Any,
    cfg_path: str,
    ctx: Sequence[mx.Context] | None = None,
    epoch: int | None = None,
    prefix: str | None = None,
    thresh: float = 1e-3,
    ignore_cache: bool = False,
    vis: bool = False,
    shuffle: bool = False,
    num_workers: int = 2,
) -> dict[str, Any]:
    """Tests a trained checkpoint of ``net`` on ``dataset.test_image_set`` and evaluates it.

    Args:
        cfg: the loaded config.
        net: the network object of ``cfg.symbol``.
        cfg_path: the yaml it came from (names the output directories).
        ctx: devices; default from ``cfg.gpus`` / ``cfg.cpu_contexts``.
        epoch: checkpoint epoch; default ``cfg.TEST.test_epoch``.
        prefix: checkpoint prefix; default the training output's
            ``<output_path>/<cfg name>/<train image_set>/<model_prefix>``.
        thresh: minimum detection score.
        ignore_cache: recompute detections even if the cached ones match.
        vis: segmentation: also write colour PNGs of the predictions.
        shuffle: visit the test images in a random order.
        num_workers: loader threads.

    Returns:
        The dataset's metrics (COCO: ``AP``, ``AP50``, ...; VOC: ``mAP@0.5``, ...;
        segmentation: ``meanIU``, ...) and the results file.
    """
    output_dir = experiment_output_path(cfg.output_path, cfg_path, cfg.dataset.test_image_set)
    with RunLock(output_dir, "testing") as lock:
        return _test_locked(cfg, net, cfg_path, ctx, epoch, prefix, thresh, ignore_cache, vis,
                            shuffle, num_workers, lock.notes)  # fmt: skip


test_net.__test__ = False  # a library function, not a pytest test


def _test_locked(cfg, net, cfg_path, ctx, epoch, prefix, thresh, ignore_cache, vis, shuffle,
                 num_workers, lock_notes) -> dict[str, Any]:  # fmt: skip
    from lib.core.trainer import checkpoint_prefix, get_context  # the trainer imports us

    # config.yaml is saved once the checkpoint is known to fit the network: a test that stops
    # at start-up leaves its log and nothing else.
    _, output_dir = create_logger(cfg.output_path, cfg_path, cfg.dataset.test_image_set, cfg,
                                  save=False)  # fmt: skip
    for note in lock_notes:
        logger.warning(note)
    prefix = checkpoint_prefix(cfg, cfg_path) if prefix is None else prefix
    epoch = cfg.TEST.test_epoch if epoch is None else epoch
    ckpt = params_path(prefix, epoch)
    if not os.path.isfile(ckpt):
        train_dir = experiment_output_path(cfg.output_path, cfg_path, cfg.dataset.image_set)
        raise FileNotFoundError(
            f"checkpoint {ckpt} does not exist (TEST.test_epoch={epoch}, training output "
            f"{train_dir}): train first, or pick an existing epoch with --epoch / "
            "--set TEST.test_epoch=N"
        )
    ctx = get_context(cfg) if ctx is None else list(ctx)
    task = net.task
    sym = net(cfg, is_train=False)
    imdb = get_imdb(
        cfg.dataset.dataset,
        cfg.dataset.test_image_set,
        cfg.dataset.root_path,
        cfg.dataset.dataset_path,
        result_path=output_dir,
        task=task,
        classes=cfg.dataset.CLASSES,
        num_classes=cfg.dataset.NUM_CLASSES,
    )
    batch_images = cfg.TEST.BATCH_IMAGES
    batch_size = batch_images * len(ctx)
    if task == "segmentation":
        from lib.core.seg_loader import TestDataLoader
        from lib.core.seg_tester import segment_dataset

        records = imdb.gt_segdb()
        scales = cfg.SCALES[:1]
        loaders = [TestDataLoader(records, cfg, batch_size=batch_size, shuffle=shuffle,
                                  num_workers=num_workers)]  # fmt: skip
    else:
        has_rpn = bool(cfg.TEST.HAS_RPN)
        if has_rpn:
            records = imdb.gt_roidb()
        else:
            records = load_proposal_roidb(imdb, cfg.dataset.proposal, cfg.dataset.root_path)
        scales = test_scales(cfg)
        seed = int(np.random.randint(0, 2**31 - 1))  # the same order at every scale
        loaders = [
            TestLoader(
                records,
                cfg,
                batch_size=batch_size,
                shuffle=shuffle,
                has_rpn=has_rpn,
                scale=scale,
                seed=seed,
                num_workers=num_workers,
                images_per_device=batch_images,
            )  # fmt: skip
            for scale in scales
        ]
    try:
        arg_params, aux_params = load_param(prefix, epoch, process=True)
        logger.info(
            "testing %s on %s (%d images, %d scale(s), %d device(s) x %d image(s))",
            ckpt, imdb.name, len(records), len(scales), len(ctx), batch_images,
        )  # fmt: skip
        data_names = test_inputs(sym)[0]
        max_shapes = max_input_shapes(cfg, scales, batch_images, len(ctx), names=data_names)
        predictor = bind_test_network(sym, arg_params, aux_params, ctx, max_shapes,
                                      loaders[0].provide_data, source=f"checkpoint {ckpt}",
                                      network=f"the network of symbol {cfg.symbol!r}",
                                      unused=rpn_only_params(cfg, net))  # fmt: skip
        save_config(cfg, output_dir)
        if task == "segmentation":
            results = segment_dataset(predictor, loaders[0], imdb, cfg, output_dir, vis=vis)
        else:
            key = detection_cache_key(cfg, ckpt, records, thresh)
            results = pred_eval(predictor, loaders, imdb, cfg, output_dir, thresh=thresh,
                                ignore_cache=ignore_cache, cache_key=key)  # fmt: skip
    finally:
        for loader in loaders:
            loader.close()
    logger.info("results of %s on %s: %s", ckpt, imdb.name, _summary(results))
    return results


def _summary(results: Mapping[str, Any]) -> str:
    shown = {k: round(float(v), 4) for k, v in results.items()
             if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool)}  # fmt: skip
    return json.dumps(shown)
