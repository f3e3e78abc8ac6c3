"""Image preprocessing of the original ``utils/image.py``: read, flip, resize, normalise, stack.

The network input convention (the released models were trained with it):

* images are read by OpenCV in **BGR** order (``IMREAD_COLOR | IMREAD_IGNORE_ORIENTATION``),
  flipped horizontally when the roidb / segdb record says ``flipped``;
* :func:`resize` scales the short side to ``target_size`` unless the long side would then exceed
  ``max_size`` (decided on ``np.round(scale * long side)``), and zero-pads the bottom / right to
  a multiple of ``stride`` when ``stride > 0`` (``network.IMAGE_STRIDE``; 32 for FPN);
* :func:`transform` makes a ``(1, 3, H, W)`` float32 tensor in **RGB** order, subtracting the
  means, which the config lists in BGR order: channel ``i`` is ``im[:, :, 2 - i] -
  PIXEL_MEANS[2 - i]``; there is no division by a standard deviation;
* ``im_info = [height, width, scale]`` of the resized (and stride-padded) image;
* ground-truth boxes are ``round(boxes * scale)``, clipped to the padded image.

Differences from the original, all fixes:

* a missing, empty, undecodable or truncated (JPEG, PNG) image raises an ``OSError`` naming the
  file (the original asserted with a broken format string, or crashed later on ``None``);
* an image whose decoded size differs from its record's ``height`` / ``width`` (the annotation's
  size) raises ``ValueError`` naming the file and both sizes (the original clipped the boxes to
  the wrong size); a segmentation label whose size differs from its image likewise;
* label ids outside the class table (``dataset.NUM_CLASSES``) become 255 (ignored), with a
  warning naming the label file (:func:`lib.dataset.imdb.read_label_png`);
* :func:`get_segmentation_image` honours ``flipped`` (the original ignored it, so the flipped
  half of a segdb held unflipped copies) and pads labels with 255 (ignore), not 0;
* :func:`resize` also pads single-channel (label) images to the stride;
* :func:`transform_inverse` rounds and clips instead of truncating, so it inverts
  :func:`transform` exactly on integer images;
* the random scale choice takes an explicit ``rng``, so loaders can be deterministic.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from lib.bbox.bbox_transform import clip_boxes
from lib.dataset.imdb import IGNORE_LABEL, read_label_png

__all__ = [
    "IGNORE_LABEL",
    "ImageReadError",
    "Scale",
    "check_image_size",
    "get_image",
    "get_segmentation_image",
    "pick_scale",
    "prepare_roi_image",
    "prepare_seg_image",
    "read_image",
    "read_seg_label",
    "resize",
    "tensor_vstack",
    "transform",
    "transform_inverse",
    "transform_seg_gt",
]

logger = logging.getLogger(__name__)

Scale = tuple[int, int]  # (target short side, max long side)


class ImageReadError(OSError):
    """An image file exists but cannot be decoded (empty, corrupt or truncated)."""


# ------------------------------------------------------------------------------- reading


def _jpeg_truncated(buf: bytes) -> bool:
    """Whether a JPEG lacks its end-of-image marker (libjpeg decodes such files half grey).

    Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so FF D9 near
    the end can only be the EOI marker; some writers append padding after it, hence the window.
    """
    return buf[:2] == b"\xff\xd8" and b"\xff\xd9" not in buf[-4096:]


def _png_truncated(buf: bytes) -> bool:
    """Whether a PNG lacks its closing IEND chunk (libpng would fail, printing to stderr)."""
    return buf[:8] == b"\x89PNG\r\n\x1a\n" and b"IEND" not in buf[-4096:]


def read_image(path: str, flipped: bool = False) -> np.ndarray:
    """Reads an image as (H, W, 3) uint8 BGR, flipped horizontally when ``flipped``.

    EXIF orientation is ignored (``IMREAD_IGNORE_ORIENTATION``), as in the original, so boxes
    annotated on the stored pixels stay valid.

    Raises:
        FileNotFoundError: the file does not exist (an ``OSError``).
        ImageReadError: the file is empty, not a decodable image, or a truncated JPEG.
    """
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    if not buf:
        raise ImageReadError(f"image file {path} is empty")
    if _jpeg_truncated(buf):
        raise ImageReadError(f"image file {path} is a truncated JPEG (no end-of-image marker)")
    if _png_truncated(buf):
        raise ImageReadError(f"image file {path} is a truncated PNG (no IEND chunk)")
    im = cv2.imdecode(
        np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    )
    if im is None:
        raise ImageReadError(f"cannot decode image file {path} (corrupt or not an image)")
    if flipped:
        im = np.ascontiguousarray(im[:, ::-1, :])
    return im


def read_seg_label(path: str, flipped: bool = False, num_classes: int | None = None) -> np.ndarray:
    """Reads a label PNG of class indices as (H, W) uint8, flipped when ``flipped``.

    With ``num_classes``, ids ``num_classes..254`` become 255 (ignored), with one warning per
    file (:func:`lib.dataset.imdb.read_label_png`).

    Raises:
        FileNotFoundError: the file does not exist.
        ImageReadError: it cannot be decoded.
        ValueError: it is a colour (RGB) image rather than class indices.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label file {path} does not exist")
    try:
        label = read_label_png(path, num_classes)
    except ValueError:  # a colour image; its message says what to do
        raise
    except Exception as err:  # PIL raises OSError, SyntaxError, ... for corrupt files
        raise ImageReadError(f"cannot decode label file {path}: {err}") from err
    if flipped:
        label = np.ascontiguousarray(label[:, ::-1])
    return label


# ------------------------------------------------------------------------- resize / tensor


def resize(
    im: np.ndarray,
    target_size: int,
    max_size: int,
    stride: int = 0,
    interpolation: int = cv2.INTER_LINEAR,
    pad_value: float = 0,
) -> tuple[np.ndarray, float]:
    """Resizes so the short side is ``target_size`` and the long side at most ``max_size``.

    ``scale = target_size / short``; if ``np.round(scale * long) > max_size`` then ``scale =
    max_size / long`` (the original's test, so e.g. 600 / 1000 on a 3:5 image keeps 600). The
    image is resized by ``cv2.resize(fx=scale, fy=scale)``; with ``stride > 0`` it is then padded
    at the bottom and right with ``pad_value`` up to multiples of ``stride``.

    Args:
        im: (H, W, C) or (H, W) image (labels are 2-D).
        target_size: wanted short side.
        max_size: bound on the long side.
        stride: pad H and W up to multiples of this (0: no padding).
        interpolation: cv2 flag (``cv2.INTER_NEAREST`` for labels).
        pad_value: value of the padding (0 as the original; 255 for labels).

    Returns:
        (resized image of ``im``'s dtype, scale).
    """
    im_size_min = min(im.shape[0], im.shape[1])
    im_size_max = max(im.shape[0], im.shape[1])
    im_scale = float(target_size) / float(im_size_min)
    if np.round(im_scale * im_size_max) > max_size:
        im_scale = float(max_size) / float(im_size_max)
    out = cv2.resize(im, None, None, fx=im_scale, fy=im_scale, interpolation=interpolation)
    if out.ndim < im.ndim:  # cv2 drops a trailing channel axis of size 1
        out = out[..., np.newaxis]
    if stride == 0:
        return out, im_scale
    height = int(np.ceil(out.shape[0] / float(stride)) * stride)
    width = int(np.ceil(out.shape[1] / float(stride)) * stride)
    padded = np.full((height, width) + out.shape[2:], pad_value, dtype=out.dtype)
    padded[: out.shape[0], : out.shape[1]] = out
    return padded, im_scale


def transform(im: np.ndarray, pixel_means: Sequence[float]) -> np.ndarray:
    """(H, W, 3) BGR image -> (1, 3, H, W) float32 RGB tensor minus the (BGR-listed) means.

    Channel ``i`` of the output is ``im[:, :, 2 - i] - pixel_means[2 - i]``.
    """
    means = np.asarray(pixel_means, dtype=np.float32).reshape(3)
    rgb = im[:, :, ::-1].astype(np.float32) - means[::-1]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[np.newaxis])


def transform_inverse(im_tensor: np.ndarray, pixel_means: Sequence[float]) -> np.ndarray:
    """(1, 3, H, W) tensor from :func:`transform` -> (H, W, 3) uint8 image in **RGB** order.

    As the original, the result is RGB (ready for matplotlib), not the BGR that was read.
    """
    assert im_tensor.ndim == 4 and im_tensor.shape[:2] == (1, 3), (
        f"expected a (1, 3, H, W) tensor, got {im_tensor.shape}"
    )
    means = np.asarray(pixel_means, dtype=np.float64).reshape(3)
    im = im_tensor[0].transpose(1, 2, 0).astype(np.float64) + means[::-1]
    return np.clip(np.round(im), 0, 255).astype(np.uint8)


def transform_seg_gt(gt: np.ndarray) -> np.ndarray:
    """(H, W) label -> (1, 1, H, W) float32 tensor (the label layout of SoftmaxOutput)."""
    return np.ascontiguousarray(gt, dtype=np.float32)[np.newaxis, np.newaxis]


def tensor_vstack(tensor_list: Sequence[np.ndarray], pad: float = 0) -> np.ndarray:
    """Concatenates arrays along axis 0, padding every other axis to the largest size.

    Each tensor keeps its place at the low-index corner; the rest is ``pad``. All tensors must
    have the same number of dimensions; the dtype is the first tensor's.

    Raises:
        ValueError: an empty list or tensors of different ranks.
    """
    if len(tensor_list) == 0:
        raise ValueError("tensor_vstack needs at least one tensor")
    ndim = tensor_list[0].ndim
    if any(t.ndim != ndim for t in tensor_list):
        raise ValueError(f"tensor_vstack: ranks differ: {[t.shape for t in tensor_list]}")
    dims = [sum(t.shape[0] for t in tensor_list)]
    dims += [max(t.shape[d] for t in tensor_list) for d in range(1, ndim)]
    out = np.full(dims, pad, dtype=tensor_list[0].dtype)
    start = 0
    for t in tensor_list:
        out[(slice(start, start + t.shape[0]),) + tuple(slice(0, s) for s in t.shape[1:])] = t
        start += t.shape[0]
    return out


# ------------------------------------------------------------------------ records -> tensors


def check_image_size(rec: Mapping[str, Any], im: np.ndarray) -> None:
    """Raises ValueError unless the decoded ``im`` has the record's ``height`` x ``width``.

    The record's size comes from the annotation (COCO json, VOC xml); boxes are clipped to it,
    so a disagreement would train on wrongly clipped boxes. Records without a size pass.
    """
    if "height" not in rec or "width" not in rec:
        return
    height, width = int(rec["height"]), int(rec["width"])
    if im.shape[:2] != (height, width):
        raise ValueError(
            f"image {rec.get('image')} is {im.shape[1]}x{im.shape[0]} (width x height) but its "
            f"annotation says {width}x{height}; fix the annotation's width/height or the image"
        )


def pick_scale(
    scales: Sequence[Scale],
    scale_index: int | None = None,
    rng: np.random.RandomState | None = None,
) -> Scale:
    """``scales[scale_index]``, or a random entry (training's multi-scale choice) when None."""
    if len(scales) == 0:
        raise ValueError("no scales given (config SCALES is empty)")
    if scale_index is None:
        scale_index = int((np.random if rng is None else rng).randint(len(scales)))
    target, max_size = scales[scale_index]
    return int(target), int(max_size)


def prepare_roi_image(
    rec: Mapping[str, Any], cfg: Any, scale: Scale, im: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """One detection record -> (1, 3, H, W) tensor and a copy of the record with 'im_info'.

    The copy's ``boxes`` are ``round(boxes * scale)`` clipped to the padded image (float32) and
    ``im_info`` is ``[H, W, scale]`` (float32). ``im``: the already read (and flipped) BGR image,
    read from ``rec['image']`` when None.

    Raises:
        ValueError: the image's size differs from the record's (:func:`check_image_size`).
    """
    if im is None:
        im = read_image(rec["image"], rec.get("flipped", False))
    check_image_size(rec, im)
    im, im_scale = resize(im, scale[0], scale[1], stride=cfg.network.IMAGE_STRIDE)
    tensor = transform(im, cfg.network.PIXEL_MEANS)
    im_info = np.array([tensor.shape[2], tensor.shape[3], im_scale], dtype=np.float32)
    new_rec = dict(rec)
    boxes = np.asarray(rec.get("boxes", np.zeros((0, 4))), dtype=np.float32).reshape(-1, 4)
    new_rec["boxes"] = clip_boxes(np.round(boxes * im_scale), im_info[:2])
    new_rec["im_info"] = im_info
    return tensor, new_rec


def get_image(
    roidb: Sequence[Mapping[str, Any]],
    cfg: Any,
    scale_index: int | None = None,
    rng: np.random.RandomState | None = None,
    scales: Sequence[Scale] | None = None,
) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Reads and preprocesses the images of ``roidb`` (the original ``get_image``).

    Args:
        roidb: detection records ('image', 'flipped', 'boxes', ...).
        cfg: config; uses ``SCALES``, ``network.IMAGE_STRIDE``, ``network.PIXEL_MEANS``.
        scale_index: use ``scales[scale_index]`` for every image; None draws one per image
            (training).
        rng: random state for the scale draw (None: ``np.random``).
        scales: (short, max long) pairs; defaults to ``cfg.SCALES`` (FPN's multi-scale test
            passes ``TEST_SCALES`` entries here instead of editing the config).

    Returns:
        ``(tensors, records)``: per image a (1, 3, H, W) float32 tensor and a record copy with
        scaled ``boxes`` and ``im_info``.
    """
    scales = cfg.SCALES if scales is None else scales
    tensors, records = [], []
    for rec in roidb:
        tensor, new_rec = prepare_roi_image(rec, cfg, pick_scale(scales, scale_index, rng))
        tensors.append(tensor)
        records.append(new_rec)
    return tensors, records


def prepare_seg_image(
    rec: Mapping[str, Any],
    cfg: Any,
    scale: Scale,
    im: np.ndarray | None = None,
    with_label: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """One segmentation record -> image tensor, (1, 1, H, W) label tensor (or None), record.

    The label is flipped with the image, resized with nearest-neighbour interpolation to the
    same size and stride-padded with 255 (ignore); its ids outside ``cfg.dataset.NUM_CLASSES``
    become 255 (with a warning naming the file).

    Raises:
        ValueError: the image's size differs from the record's, or the label's from the image's.
    """
    flipped = rec.get("flipped", False)
    if im is None:
        im = read_image(rec["image"], flipped)
    check_image_size(rec, im)
    im_shape = im.shape[:2]
    stride = cfg.network.IMAGE_STRIDE
    im, im_scale = resize(im, scale[0], scale[1], stride=stride)
    tensor = transform(im, cfg.network.PIXEL_MEANS)
    new_rec = dict(rec)
    new_rec["im_info"] = np.array([tensor.shape[2], tensor.shape[3], im_scale], dtype=np.float32)
    if not with_label:
        return tensor, None, new_rec
    label = read_seg_label(rec["seg_cls_path"], flipped, int(cfg.dataset.NUM_CLASSES))
    if label.shape[:2] != im_shape:
        raise ValueError(
            f"label {rec['seg_cls_path']} is {label.shape[1]}x{label.shape[0]} (width x height) "
            f"but its image {rec['image']} is {im_shape[1]}x{im_shape[0]}"
        )
    label, _ = resize(
        label, scale[0], scale[1], stride=stride, interpolation=cv2.INTER_NEAREST,
        pad_value=IGNORE_LABEL,
    )  # fmt: skip
    return tensor, transform_seg_gt(label), new_rec


def get_segmentation_image(
    segdb: Sequence[Mapping[str, Any]],
    cfg: Any,
    scale_index: int | None = None,
    rng: np.random.RandomState | None = None,
    scales: Sequence[Scale] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray], list[dict[str, Any]]]:
    """Reads and preprocesses segmentation records (the original ``get_segmentation_image``).

    Returns:
        ``(tensors, labels, records)``: per image a (1, 3, H, W) float32 tensor, a (1, 1, H, W)
        float32 label tensor of class indices (255 = ignore) and a record copy with 'im_info'.
        Arguments as :func:`get_image`.
    """
    scales = cfg.SCALES if scales is None else scales
    tensors, labels, records = [], [], []
    for rec in segdb:
        tensor, label, new_rec = prepare_seg_image(rec, cfg, pick_scale(scales, scale_index, rng))
        tensors.append(tensor)
        labels.append(label)
        records.append(new_rec)
    return tensors, labels, records
