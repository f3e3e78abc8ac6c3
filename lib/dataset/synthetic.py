"""Synthetic detection and segmentation data, written in the real COCO, PASCAL VOC and Cityscapes
on-disk layouts.

Real datasets cannot be downloaded everywhere, so the quick start and every loader test run on
scenes drawn here. A scene holds 1-4 objects of four shape classes (``CLASSES``) under geometric
deformation: random scale (about 24-120 px at 256 px), aspect ratio, rotation and a smooth
non-rigid warp (a low-frequency displacement field applied with ``cv2.remap``). Objects occlude
each other and are occluded by clutter, on a street-like background (sky, buildings, vegetation,
road) with gradients, noise, lines (sometimes brightly coloured) and greyish blobs that are not
objects. Each class has a colour family, but 15% of objects get a random hue, so shape is what
tells the classes apart.

Ground truth comes from each object's *visible* mask: the tight box of the visible pixels, the
instance mask and per-pixel Cityscapes label ids. Objects with less than ``MIN_VISIBILITY`` of
their area visible are removed from the scene before it is painted, so every painted object is
annotated and every box is honest.

Layout under ``root`` (the original's ``./data``)::

    coco/annotations/instances_{train,val}.json
    coco/images/{train,val}/COCO_<set>_%012d.jpg
    VOCdevkit/VOC2007/JPEGImages/<id>.jpg, Annotations/<id>.xml,
        SegmentationClass/<id>.png, SegmentationObject/<id>.png,
        ImageSets/{Main,Segmentation}/{train,val,trainval,test}.txt, ImageSets/Main/<cls>_<set>.txt
    cityscapes/leftImg8bit/{train,val}/<city>/<city>_000000_%06d_leftImg8bit.png
    cityscapes/gtFine/{train,val}/<city>/<city>_000000_%06d_gtFine_{labelIds,labelTrainIds,
        instanceIds}.png
    synthetic/meta.json        parameters, classes, per-format mappings, and the fingerprint of
                               each tree written (what makes it the generator's to rewrite)

The COCO evaluation set is named ``val``, not ``test``: the original COCO loader skips COCOeval
for any image set whose name contains 'test'.

Scene ``i`` of a stream is a function of ``(seed, stream, i, size, fixed_size)`` alone, so the
three formats hold the same scenes and a format written alone is byte-identical to the same
format written together with the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from lib.dataset.cityscapes import LABEL_TO_TRAIN_ID
from lib.dataset.voc_seg import voc_palette

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

# Bump when the drawing or the writers change, so cached data with equal parameters regenerates.
GENERATOR_VERSION = 1

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")
# Not contiguous on purpose, like COCO's own ids: loaders must map category ids to class indices.
COCO_CATEGORY_IDS: tuple[int, ...] = (1, 3, 5, 7)
# Real Cityscapes label ids for the four classes: car, person, traffic sign, bicycle.
CITYSCAPES_CLASS_IDS: tuple[int, ...] = (26, 24, 20, 33)
FORMATS: tuple[str, ...] = ("coco", "voc", "cityscapes")

# Cityscapes classes with hasInstances=True (person .. bicycle); their instanceIds are id*1000+k.
_CITYSCAPES_INSTANCE_IDS = frozenset(range(24, 34))

# Background label ids (Cityscapes): clutter lines are 'unlabeled', clutter blobs 'static'.
_UNLABELED, _STATIC, _ROAD, _BUILDING, _VEGETATION, _SKY = 0, 4, 7, 11, 21, 23

COCO_SETS = ("train", "val")
VOC_SETS = ("trainval", "test")
CITYSCAPES_SPLITS = ("train", "val")
_CITIES = {"train": ("alphaburg", "betaburg"), "val": ("gammaburg",)}

MIN_VISIBILITY = 0.3  # objects with less of their area visible are dropped before painting
_HUES = (0, 60, 115, 25)  # OpenCV hue (0-180) per class: red, green, blue, orange


def _unit_shapes() -> tuple[np.ndarray, ...]:
    """Outline of each class, centred at 0 with radius ~1, as (N, 2) float arrays of (x, y)."""
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)
    square = 0.9 * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64)
    a = np.deg2rad([-90, 30, 150])
    triangle = 1.2 * np.stack([np.cos(a), np.sin(a)], 1)
    a = np.deg2rad(np.arange(10) * 36 - 90)
    radius = np.where(np.arange(10) % 2 == 0, 1.2, 0.5)
    star = np.stack([radius * np.cos(a), radius * np.sin(a)], 1)
    return circle, square, triangle, star


_UNIT_SHAPES = _unit_shapes()


@dataclass
class SynthObject:
    """One annotated object of a scene.

    Attributes:
        label: index into ``CLASSES``.
        mask: (H, W) bool, the visible pixels.
        box: (x1, y1, x2, y2), inclusive 0-based pixel bounds of ``mask``.
        visibility: visible pixels / all pixels of the (warped) shape, in (0, 1].
        truncated: whether part of the shape lies outside the image.
    """

    label: int
    mask: np.ndarray
    box: tuple[int, int, int, int]
    visibility: float
    truncated: bool

    @property
    def area(self) -> int:
        """Number of visible pixels."""
        return int(self.mask.sum())


@dataclass
class Scene:
    """A rendered image with its ground truth.

    Attributes:
        image: (H, W, 3) uint8, BGR (OpenCV order, as the loaders read it).
        label_ids: (H, W) uint8 Cityscapes label ids (objects, background and void clutter).
        objects: the annotated objects, in painting order (later ones occlude earlier ones).
    """

    image: np.ndarray
    label_ids: np.ndarray
    objects: list[SynthObject]


@dataclass
class _Layer:
    """A painted thing: a mask and its colours on a canvas whose top-left sits at (y0, x0)."""

    y0: int
    x0: int
    mask: np.ndarray  # (h, w) bool
    colour: np.ndarray  # (h, w, 3) float32, or (3,) for a flat colour


def _clip(layer: _Layer, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Image slices covered by ``layer`` and its mask cropped to them; None if fully outside."""
    h, w = layer.mask.shape
    y1, x1 = max(layer.y0, 0), max(layer.x0, 0)
    y2, x2 = min(layer.y0 + h, height), min(layer.x0 + w, width)
    if y2 <= y1 or x2 <= x1:
        return None
    crop = (slice(y1 - layer.y0, y2 - layer.y0), slice(x1 - layer.x0, x2 - layer.x0))
    return (slice(y1, y2), slice(x1, x2)), crop


def _paint(image: np.ndarray, layer: _Layer, where: np.ndarray | None = None) -> None:
    """Copy ``layer``'s colours into ``image`` on its mask (further limited to ``where``)."""
    placed = _clip(layer, *image.shape[:2])
    if placed is None:
        return
    region, crop = placed
    mask = layer.mask[crop] if where is None else where[region]
    colour = layer.colour if layer.colour.ndim == 1 else layer.colour[crop][mask]
    image[region][mask] = colour


def _clutter_colour(rng: np.random.Generator, saturated: float) -> np.ndarray:
    """A clutter colour: greyish, or with probability ``saturated`` any colour."""
    if rng.random() < saturated:
        return rng.uniform(0, 255, 3).astype(np.float32)
    return (rng.uniform(40, 220) + rng.uniform(-20, 20, 3)).astype(np.float32)


def _line_layer(rng: np.random.Generator, height: int, width: int) -> _Layer:
    mask = np.zeros((height, width), np.uint8)
    p1 = (int(rng.uniform(-0.1, 1.1) * width), int(rng.uniform(-0.1, 1.1) * height))
    p2 = (int(rng.uniform(-0.1, 1.1) * width), int(rng.uniform(-0.1, 1.1) * height))
    thickness = int(rng.integers(1, 4) * max(1, round(min(height, width) / 256)))
    cv2.line(mask, p1, p2, 1, thickness)
    return _Layer(0, 0, mask.astype(bool), _clutter_colour(rng, saturated=0.3))


def _blob_layer(rng: np.random.Generator, height: int, width: int) -> _Layer:
    """A smooth, lumpy, greyish blob: clutter that is none of the four classes."""
    radius = rng.uniform(5, 25) * min(height, width) / 256
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    p1, p2 = rng.uniform(0, 2 * np.pi, 2)
    lumps = 1 + rng.uniform(0.1, 0.4) * np.sin(2 * angles + p1) + 0.15 * np.sin(3 * angles + p2)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    pts = np.stack([cx + radius * lumps * np.cos(angles), cy + radius * lumps * np.sin(angles)], 1)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return _Layer(0, 0, mask.astype(bool), _clutter_colour(rng, saturated=0.0))


def _object_colour(rng: np.random.Generator, label: int) -> np.ndarray:
    hue = _HUES[label] + rng.integers(-8, 9) if rng.random() > 0.15 else rng.integers(0, 180)
    hsv = np.array([[[hue % 180, rng.integers(150, 256), rng.integers(130, 256)]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _object_layer(rng: np.random.Generator, label: int, height: int, width: int) -> _Layer:
    """Draw one deformed object: scale, aspect ratio, rotation, then a smooth random warp."""
    size = math.exp(rng.uniform(math.log(24), math.log(120))) * min(height, width) / 256
    aspect = math.exp(rng.uniform(-0.6, 0.6))
    angle = rng.uniform(0, 2 * np.pi)
    half = np.array([math.sqrt(aspect), 1 / math.sqrt(aspect)]) * size / 2
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = (_UNIT_SHAPES[label] * half) @ rot.T
    amp = rng.uniform(0.03, 0.09) * size  # warp amplitude (std of the displacement, pixels)
    r = math.ceil(np.abs(pts).max() + 3 * amp) + 2
    side = 2 * r + 1

    mask = np.zeros((side, side), np.uint8)
    cv2.fillPoly(mask, [np.round((pts + r) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float32) / r
    t = rng.uniform(0, 2 * np.pi)
    shade = 1 + rng.uniform(0.1, 0.35) * (math.cos(t) * xx + math.sin(t) * yy)
    if rng.random() < 0.3:  # stripes, so texture varies within a class too
        t, freq = rng.uniform(0, 2 * np.pi), rng.uniform(6, 14)
        shade *= 1 - 0.25 * (np.sin(freq * (math.cos(t) * xx + math.sin(t) * yy)) > 0)
    colour = shade[..., None] * _object_colour(rng, label)

    # Non-rigid warp: a 4x4 grid of random displacements, upsampled smoothly to the canvas.
    grid = np.clip(rng.normal(0, amp, (2, 4, 4)), -2.5 * amp, 2.5 * amp).astype(np.float32)
    dx = cv2.resize(grid[0], (side, side), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(grid[1], (side, side), interpolation=cv2.INTER_CUBIC)
    base = np.arange(side, dtype=np.float32)
    map_x, map_y = base[None, :] + dx, base[:, None] + dy
    mask = cv2.remap(mask, map_x, map_y, cv2.INTER_LINEAR, borderValue=0) >= 128
    colour = cv2.remap(colour, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height
    return _Layer(round(cy) - r, round(cx) - r, mask, colour)


def _background(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Street-like background: sky, buildings, vegetation, road, under an illumination gradient.

    Returns:
        (image, label_ids): (H, W, 3) float32 BGR and (H, W) uint8 Cityscapes label ids.
    """
    image = np.empty((height, width, 3), np.float32)
    labels = np.full((height, width), _SKY, np.uint8)
    top = np.array([235, 205, 170], np.float32) + rng.uniform(-25, 20, 3)
    bottom = np.array([245, 235, 225], np.float32) + rng.uniform(-25, 10, 3)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image[:] = top * (1 - t) + bottom * t

    for _ in range(int(rng.integers(2, 6))):
        x1 = int(rng.uniform(-0.1, 0.9) * width)
        x2 = x1 + int(rng.uniform(0.1, 0.4) * width)
        y1 = int(rng.uniform(0.1, 0.5) * height)
        cols = slice(max(x1, 0), min(x2, width))
        tone = rng.uniform(70, 170)
        image[y1:, cols] = tone + rng.uniform(-15, 15, 3)
        labels[y1:, cols] = _BUILDING

    road_l, road_r = rng.uniform(0.55, 0.8, 2) * height
    road_top = road_l + (road_r - road_l) * np.arange(width) / max(width - 1, 1)
    for _ in range(int(rng.integers(0, 3))):
        mask = np.zeros((height, width), np.uint8)
        cx = int(rng.uniform(0, width))
        centre = (cx, int(road_top[min(cx, width - 1)]))
        axes = (int(rng.uniform(0.05, 0.2) * width), int(rng.uniform(0.04, 0.12) * height))
        cv2.ellipse(mask, centre, axes, rng.uniform(-20, 20), 0, 360, 1, -1)
        mask = mask.astype(bool)
        image[mask] = np.array([50, 110, 60], np.float32) + rng.uniform(-20, 20, 3)
        labels[mask] = _VEGETATION
    road = np.arange(height)[:, None] >= road_top[None, :]
    image[road] = rng.uniform(70, 110) + rng.uniform(-8, 8, 3)
    labels[road] = _ROAD

    gx, gy = rng.uniform(-0.3, 0.3, 2)
    illumination = (
        1
        + gx * (np.arange(width, dtype=np.float32)[None, :] / width - 0.5)
        + gy * (np.arange(height, dtype=np.float32)[:, None] / height - 0.5)
    )
    image *= illumination[..., None]
    return image, labels


def _instance_map(
    layers: Sequence[_Layer], occluders: Sequence[_Layer], shape: tuple[int, int]
) -> np.ndarray:
    """(H, W) int map: k + 1 where layer k is on top, 0 for background and occluders."""
    inst = np.zeros(shape, np.int32)
    for k, layer in enumerate(layers):
        placed = _clip(layer, *shape)
        if placed is not None:
            region, crop = placed
            inst[region][layer.mask[crop]] = k + 1
    for occ in occluders:
        inst[occ.mask] = 0
    return inst


def render_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw one scene of 1-4 deformed, partly occluded objects on a cluttered background.

    Args:
        rng: the only source of randomness (the scene is a function of its state).
        height, width: image size in pixels.
    """
    image, labels = _background(rng, height, width)
    clutter = [(_line_layer(rng, height, width), _UNLABELED) for _ in range(rng.integers(1, 5))]
    clutter += [(_blob_layer(rng, height, width), _STATIC) for _ in range(rng.integers(1, 5))]
    for layer, label_id in clutter:
        _paint(image, layer)
        labels[layer.mask] = label_id

    min_pixels = max(16.0, (0.04 * min(height, width)) ** 2)
    for _ in range(20):  # re-draw the layout in the (rare) case no object stays visible
        classes = rng.integers(0, len(CLASSES), int(rng.integers(1, 5)))
        layers = [_object_layer(rng, int(c), height, width) for c in classes]
        occluders = [
            (_line_layer(rng, height, width), _UNLABELED) for _ in range(rng.integers(0, 3))
        ]
        occluders += [(_blob_layer(rng, height, width), _STATIC) for _ in range(rng.integers(0, 2))]
        inst = _instance_map(layers, [occ for occ, _ in occluders], (height, width))
        # Dropping an object only uncovers the ones below it, so one pass keeps the rest valid.
        keep = [
            k
            for k, layer in enumerate(layers)
            if (visible := np.count_nonzero(inst == k + 1)) >= min_pixels
            and visible >= MIN_VISIBILITY * np.count_nonzero(layer.mask)
        ]
        if keep:
            break
    classes = [int(classes[k]) for k in keep]
    layers = [layers[k] for k in keep]
    inst = _instance_map(layers, [occ for occ, _ in occluders], (height, width))

    objects = []
    for k, (label, layer) in enumerate(zip(classes, layers)):
        visible = inst == k + 1
        _paint(image, layer, where=visible)
        labels[visible] = CITYSCAPES_CLASS_IDS[label]
        ys, xs = np.nonzero(visible)
        total = np.count_nonzero(layer.mask)
        _, crop = _clip(layer, height, width)
        objects.append(
            SynthObject(
                label=label,
                mask=visible,
                box=(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
                visibility=float(len(xs) / total),
                truncated=bool(np.count_nonzero(layer.mask[crop]) < total),
            )
        )
    for occ, label_id in occluders:
        _paint(image, occ)
        labels[occ.mask] = label_id

    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (3, 3), 0)
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2, 8)
    return Scene(np.clip(np.round(image), 0, 255).astype(np.uint8), labels, objects)


def scene_size(rng: np.random.Generator, size: int, fixed_size: bool) -> tuple[int, int]:
    """(height, width): ``size`` square, or each side drawn in [0.8, 1.25] * size."""
    if fixed_size:
        return size, size
    h, w = (round(size * math.exp(v)) for v in rng.uniform(math.log(0.8), math.log(1.25), 2))
    return h, w


def make_scene(
    seed: int, stream: str, index: int, size: int = 256, fixed_size: bool = False
) -> Scene:
    """Scene ``index`` of ``stream`` ('train' or 'test'); a pure function of its arguments."""
    rng = np.random.default_rng([seed, zlib.crc32(stream.encode()), index])
    return render_scene(rng, *scene_size(rng, size, fixed_size))


def iter_scenes(
    seed: int, stream: str, num: int, size: int = 256, fixed_size: bool = False, desc: str = ""
) -> Iterator[Scene]:
    """Scenes 0..num-1 of ``stream``, with a tqdm progress bar (hidden when not on a terminal)."""
    for index in tqdm(range(num), desc=desc or stream, disable=None, leave=False):
        yield make_scene(seed, stream, index, size, fixed_size)


#: The images of ``demo/``: (file name, height, width) at the sizes of real photos (COCO-like,
#: Cityscapes, portrait).
DEMO_IMAGES: tuple[tuple[str, int, int], ...] = (
    ("synthetic_600x1000.jpg", 600, 1000),
    ("synthetic_1024x2048.jpg", 1024, 2048),
    ("synthetic_800x600.jpg", 800, 600),
)


def write_demo_images(
    directory: PathLike,
    images: Sequence[tuple[str, int, int]] = DEMO_IMAGES,
    seed: int = 0,
    min_objects: int = 3,
    quality: int = 80,
) -> list[Path]:
    """Writes scenes at the given sizes for the demos, as JPEGs of ``quality``.

    Each is the first scene of a ``(seed, 'demo', height, width)`` stream holding at least
    ``min_objects`` objects (objects and clutter scale with the image), so the files are a
    function of the arguments. An existing file of the same name that holds other bytes (a
    user's image, or one written with other arguments) is left as it is, with a warning.

    Returns:
        The paths that hold the demo images (written now, or already there).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, height, width in images:
        for index in range(1000):
            rng = np.random.default_rng([seed, zlib.crc32(b"demo"), height, width, index])
            scene = render_scene(rng, height, width)
            if len(scene.objects) >= min_objects:
                break
        ok, buf = cv2.imencode(".jpg", scene.image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise OSError(f"could not encode {directory / name}")
        path = directory / name
        if not path.exists() and not path.is_symlink():
            path.write_bytes(buf.tobytes())
        elif path.is_symlink() or not path.is_file() or path.read_bytes() != buf.tobytes():
            logger.warning("%s exists and differs from the demo image; left as it is", path)
            continue
        written.append(path)
    return written


# ------------------------------------------------------------------------------------ writers


def _write_image(path: Path, image: np.ndarray) -> None:
    """Encode by extension (.jpg quality 95, .png); cv2 encoding is deterministic."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, image, params)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, separators=(",", ":")))


def _polygons(mask: np.ndarray, box: tuple[int, int, int, int]) -> list[list[float]]:
    """COCO polygons [x0, y0, x1, y1, ...] around the outer contours of ``mask``.

    COCO coordinates are continuous, pixel ``i`` spanning ``[i, i + 1)``. Contours are traced on
    the mask upsampled 2x, so they run a quarter pixel inside the pixel edges: the polygons then
    rasterise (pycocotools) back to the mask's own pixels and box, not one pixel short.
    """
    up = np.repeat(np.repeat(mask.astype(np.uint8), 2, 0), 2, 1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [((c.reshape(-1) + 0.5) / 2).tolist() for c in contours if len(c) >= 3]
    if not polygons:  # only slivers: fall back to the box outline
        x1, y1, x2, y2 = (float(v) for v in box)
        polygons = [[x1, y1, x2 + 1, y1, x2 + 1, y2 + 1, x1, y2 + 1]]
    return polygons


def _uncompressed_rle(mask: np.ndarray) -> dict[str, list[int]]:
    """COCO crowd segmentation: column-major run lengths, starting with a run of zeros."""
    flat = mask.T.reshape(-1).astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"counts": counts, "size": list(mask.shape)}


def write_coco(root: PathLike, sets: Mapping[str, Iterable[Scene]], crowd_every: int = 32) -> dict:
    """Write ``root/coco`` in the COCO 2014 layout.

    Image ids and annotation ids are 1-based and unique across sets. Boxes are ``[x, y, w, h]``
    with ``w = x2 - x1 + 1`` (the original loader recovers ``x2 = x + w - 1``); ``area`` is the
    visible pixel count. In sets whose name starts with 'train', one annotation in
    ``crowd_every`` (0: none) is ``iscrowd=1`` with an uncompressed RLE mask, so crowd handling
    is exercised; the others carry polygons.

    Args:
        root: data root; files go to ``root/coco``.
        sets: set name -> scenes, e.g. ``{"train": ..., "val": ...}``.
        crowd_every: period of crowd annotations in train sets.

    Returns:
        set name -> {"images": n, "annotations": n}.
    """
    coco_dir = Path(root) / "coco"
    (coco_dir / "annotations").mkdir(parents=True, exist_ok=True)
    categories = [
        {"id": cid, "name": name, "supercategory": "shape"}
        for cid, name in zip(COCO_CATEGORY_IDS, CLASSES)
    ]
    summary = {}
    image_id = ann_id = 0
    for set_name, scenes in sets.items():
        image_dir = coco_dir / "images" / set_name
        image_dir.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for scene in scenes:
            image_id += 1
            file_name = f"COCO_{set_name}_{image_id:012d}.jpg"
            _write_image(image_dir / file_name, scene.image)
            height, width = scene.image.shape[:2]
            images.append(
                {"id": image_id, "file_name": file_name, "width": width, "height": height,
                 "license": 1, "date_captured": "2017-01-01 00:00:00"}
            )  # fmt: skip
            for obj in scene.objects:
                ann_id += 1
                crowd = (
                    set_name.startswith("train")
                    and crowd_every > 0
                    and len(annotations) % crowd_every == crowd_every // 4
                )
                x1, y1, x2, y2 = obj.box
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": COCO_CATEGORY_IDS[obj.label],
                        "bbox": [float(x1), float(y1), float(x2 - x1 + 1), float(y2 - y1 + 1)],
                        "area": float(obj.area),
                        "iscrowd": int(crowd),
                        "segmentation": (
                            _uncompressed_rle(obj.mask) if crowd else _polygons(obj.mask, obj.box)
                        ),
                    }
                )
        dataset = {
            "info": {"description": "Deformable ConvNets synthetic shapes", "version": "1.0",
                     "year": 2017, "date_created": "2017-01-01"},
            "licenses": [{"id": 1, "name": "CC0", "url": ""}],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }  # fmt: skip
        _write_json(coco_dir / "annotations" / f"instances_{set_name}.json", dataset)
        summary[set_name] = {"images": len(images), "annotations": len(annotations)}
    return summary


def _write_palette_png(path: Path, values: np.ndarray, palette: np.ndarray) -> None:
    im = Image.fromarray(values)
    im.putpalette(palette.tobytes())
    im.save(path)


def _is_difficult(obj: SynthObject, height: int, width: int) -> bool:
    """Small or heavily occluded objects are VOC 'difficult' (excluded from evaluation)."""
    x1, y1, x2, y2 = obj.box
    return min(x2 - x1, y2 - y1) + 1 < 0.1 * min(height, width) or obj.visibility < 0.5


def _voc_xml(image_id: str, folder: str, scene: Scene) -> str:
    height, width = scene.image.shape[:2]
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = folder
    ET.SubElement(ann, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(ann, "source")
    ET.SubElement(source, "database").text = "Deformable ConvNets synthetic shapes"
    ET.SubElement(source, "annotation").text = "lib.dataset.synthetic"
    ET.SubElement(source, "image").text = "synthetic"
    size = ET.SubElement(ann, "size")
    for key, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    ET.SubElement(ann, "segmented").text = "1"
    for obj in scene.objects:
        node = ET.SubElement(ann, "object")
        ET.SubElement(node, "name").text = CLASSES[obj.label]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = str(int(obj.truncated))
        ET.SubElement(node, "difficult").text = str(int(_is_difficult(obj, height, width)))
        bndbox = ET.SubElement(node, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), obj.box):
            ET.SubElement(bndbox, key).text = str(value + 1)  # VOC boxes are 1-based
    ET.indent(ann, space="\t")
    return ET.tostring(ann, encoding="unicode") + "\n"


def _voc_segmentation(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """(class, object) index maps with 255 on a 2-px band along every object boundary, as VOC."""
    classes = np.zeros(scene.label_ids.shape, np.uint8)
    instances = np.zeros(scene.label_ids.shape, np.uint8)
    for k, obj in enumerate(scene.objects):
        classes[obj.mask] = obj.label + 1
        instances[obj.mask] = k + 1
    kernel = np.ones((3, 3), np.uint8)
    border = cv2.dilate(instances, kernel) != cv2.erode(instances, kernel)
    classes[border] = 255
    instances[border] = 255
    return classes, instances


def write_voc(
    root: PathLike, sets: Mapping[str, Iterable[Scene]], year: str = "2007", val_every: int = 5
) -> dict:
    """Write ``root/VOCdevkit/VOC<year>`` in the PASCAL VOC layout.

    Image ids are ``%06d`` from 000001, continuing across sets. Every image gets an xml
    annotation (1-based inclusive boxes; small or heavily occluded objects ``difficult=1``;
    objects cut by the image border ``truncated=1``), a ``SegmentationClass`` palette PNG
    (0 background, 1.. = ``CLASSES`` index + 1, 255 on object borders) and a
    ``SegmentationObject`` PNG. ``ImageSets/Main`` and ``ImageSets/Segmentation`` list each set;
    a 'trainval' set is also split into 'train' and 'val' (every ``val_every``-th image to val).
    ``ImageSets/Main/<cls>_<set>.txt`` hold the per-class 1 / -1 / 0 (difficult only) flags.

    Args:
        root: data root; files go to ``root/VOCdevkit/VOC<year>``.
        sets: set name -> scenes, e.g. ``{"trainval": ..., "test": ...}``.
        year: the devkit year.
        val_every: period of val images inside trainval.

    Returns:
        set name -> {"images": n, "objects": n}, for the written lists.
    """
    devkit = Path(root) / "VOCdevkit" / f"VOC{year}"
    dirs = {
        name: devkit / name
        for name in ("JPEGImages", "Annotations", "SegmentationClass", "SegmentationObject",
                     "ImageSets/Main", "ImageSets/Segmentation")
    }  # fmt: skip
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    palette = voc_palette()
    lists: dict[str, list[str]] = {}
    flags: dict[str, list[int]] = {}  # image id -> per-class 1 / 0 (difficult only) / -1
    objects: dict[str, int] = {}
    index = 0
    for set_name, scenes in sets.items():
        ids = lists.setdefault(set_name, [])
        for scene in scenes:
            index += 1
            image_id = f"{index:06d}"
            ids.append(image_id)
            _write_image(dirs["JPEGImages"] / f"{image_id}.jpg", scene.image)
            (dirs["Annotations"] / f"{image_id}.xml").write_text(
                _voc_xml(image_id, f"VOC{year}", scene)
            )
            classes, instances = _voc_segmentation(scene)
            _write_palette_png(dirs["SegmentationClass"] / f"{image_id}.png", classes, palette)
            _write_palette_png(dirs["SegmentationObject"] / f"{image_id}.png", instances, palette)
            height, width = scene.image.shape[:2]
            flag = [-1] * len(CLASSES)
            for obj in scene.objects:
                if not _is_difficult(obj, height, width):
                    flag[obj.label] = 1
                elif flag[obj.label] == -1:
                    flag[obj.label] = 0
            flags[image_id] = flag
            objects[image_id] = len(scene.objects)
    if "trainval" in lists:
        trainval = lists["trainval"]
        lists.setdefault(
            "val", [i for n, i in enumerate(trainval) if n % val_every == val_every - 1]
        )
        val = set(lists["val"])
        lists.setdefault("train", [i for i in trainval if i not in val])

    for set_name, ids in lists.items():
        text = "".join(f"{i}\n" for i in ids)
        (dirs["ImageSets/Main"] / f"{set_name}.txt").write_text(text)
        (dirs["ImageSets/Segmentation"] / f"{set_name}.txt").write_text(text)
        for c, name in enumerate(CLASSES):
            lines = "".join(f"{i} {flags[i][c]:2d}\n" for i in ids)
            (dirs["ImageSets/Main"] / f"{name}_{set_name}.txt").write_text(lines)
    return {
        name: {"images": len(ids), "objects": sum(objects[i] for i in ids)}
        for name, ids in lists.items()
    }


def write_cityscapes(root: PathLike, sets: Mapping[str, Iterable[Scene]]) -> dict:
    """Write ``root/cityscapes`` in the Cityscapes ``leftImg8bit`` / ``gtFine`` layout.

    Images are 8-bit PNGs named ``<city>_000000_<frame:06d>_leftImg8bit.png``; the scenes of a
    split rotate over that split's cities. ``_gtFine_labelIds.png`` holds real Cityscapes label
    ids (objects as ``CITYSCAPES_CLASS_IDS``; road, building, vegetation, sky; void clutter as
    0 'unlabeled' and 4 'static'); ``_gtFine_labelTrainIds.png`` the same through the official
    table (255 = ignore), which is what the original loader reads; ``_gtFine_instanceIds.png``
    (16-bit) ``id * 1000 + k`` on instances of classes that have instances, else the label id.

    Args:
        root: data root; files go to ``root/cityscapes``.
        sets: split name -> scenes, e.g. ``{"train": ..., "val": ...}``.

    Returns:
        split name -> {"images": n, "objects": n}.
    """
    base = Path(root) / "cityscapes"
    lut = np.full(256, 255, np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    summary = {}
    for split, scenes in sets.items():
        cities = _CITIES.get(split, (f"{split}city",))
        n_images = n_objects = 0
        for frame, scene in enumerate(scenes):
            city = cities[frame % len(cities)]
            stem = f"{city}_000000_{frame:06d}"
            image_dir = base / "leftImg8bit" / split / city
            gt_dir = base / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            _write_image(image_dir / f"{stem}_leftImg8bit.png", scene.image)
            _write_image(gt_dir / f"{stem}_gtFine_labelIds.png", scene.label_ids)
            _write_image(gt_dir / f"{stem}_gtFine_labelTrainIds.png", lut[scene.label_ids])
            instance_ids = scene.label_ids.astype(np.uint16)
            per_class: dict[int, int] = {}
            for obj in scene.objects:
                label_id = CITYSCAPES_CLASS_IDS[obj.label]
                if label_id in _CITYSCAPES_INSTANCE_IDS:
                    k = per_class[label_id] = per_class.get(label_id, -1) + 1
                    instance_ids[obj.mask] = label_id * 1000 + k
            _write_image(gt_dir / f"{stem}_gtFine_instanceIds.png", instance_ids)
            n_images += 1
            n_objects += len(scene.objects)
        summary[split] = {"images": n_images, "objects": n_objects}
    return summary


# ------------------------------------------------------------------------------------ generate

_TARGETS: dict[str, Callable[[Path], Path]] = {
    "coco": lambda root: root / "coco",
    "voc": lambda root: root / "VOCdevkit" / "VOC2007",
    "cityscapes": lambda root: root / "cityscapes",
}
_WRITERS: dict[str, tuple[Callable[..., dict], tuple[str, str]]] = {
    "coco": (write_coco, COCO_SETS),
    "voc": (write_voc, VOC_SETS),
    "cityscapes": (write_cityscapes, CITYSCAPES_SPLITS),
}
_GENERATOR = "lib.dataset.synthetic.generate"
# Parameters of a recorded tree that generate() takes (the rest, e.g. 'version', describe it).
_GENERATE_ARGS = ("num_train", "num_test", "seed", "size", "fixed_size")


def meta_path(root: PathLike) -> Path:
    """Where ``generate`` records what it wrote: ``root/synthetic/meta.json``."""
    return Path(root) / "synthetic" / "meta.json"


def format_dir(root: PathLike, fmt: str) -> Path:
    """The directory ``generate`` writes format ``fmt`` to (``root/VOCdevkit/VOC2007`` for voc)."""
    return _TARGETS[fmt](Path(root))


def tree_fingerprint(directory: PathLike) -> dict[str, Any]:
    """``{'files': n, 'sha1': ...}``: a digest of every file's relative path, size and
    modification time (ns) under ``directory``; no file is read, so a few thousand cost
    milliseconds. Any edit, added or removed file changes it (an edit that keeps both the size and
    the nanosecond mtime aside)."""
    directory = Path(directory)
    digest = hashlib.sha1()
    count = 0
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = Path(path).relative_to(directory).as_posix()
            digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            count += 1
    return {"files": count, "sha1": digest.hexdigest()}


def _read_meta(root: Path) -> dict:
    path = meta_path(root)
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        logger.warning("ignoring unreadable %s (%s): its trees count as foreign", path, err)
        return {}
    return meta if isinstance(meta, dict) else {}


def _write_meta(root: Path, meta: dict) -> None:
    path = meta_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class TreeState:
    """What a format directory under a root is to the generator (:func:`tree_state`).

    Attributes:
        fmt: 'coco', 'voc' or 'cityscapes'.
        path: the format directory (:func:`format_dir`).
        status: 'missing' (no such directory); 'generated' (written by :func:`generate` and
            unchanged since); 'interrupted' (being written by :func:`generate` when it stopped);
            'edited' (written by :func:`generate`, changed since); 'foreign' (no record of it in
            the root's meta file: real data, a copy, or written by an older generator).
        params: the parameters a 'generated' or 'interrupted' tree was written with.
        note: one sentence saying which, naming the path.
    """

    fmt: str
    path: Path
    status: str
    params: dict | None = None
    note: str = ""

    @property
    def owned(self) -> bool:
        """Whether :func:`generate` may delete and rewrite it: it wrote it and nobody else since."""
        return self.status in ("generated", "interrupted")


def tree_state(root: PathLike, fmt: str, meta: Mapping[str, Any] | None = None) -> TreeState:
    """Whether ``format_dir(root, fmt)`` is missing, generated and unchanged, or someone else's.

    A tree is the generator's only while ``root/synthetic/meta.json`` records it with the
    fingerprint (:func:`tree_fingerprint`) it had when written: a copy elsewhere (no record in
    its root), an edited tree (another fingerprint) or one written by a version that kept no
    fingerprint is someone else's, never deleted.

    Args:
        meta: the root's meta dict, if already read.
    """
    root = Path(root)
    target = format_dir(root, fmt)
    if not target.exists() and not target.is_symlink():
        return TreeState(fmt, target, "missing", note=f"{target} does not exist")
    meta = _read_meta(root) if meta is None else meta
    trees = meta.get("trees")
    record = trees.get(fmt) if isinstance(trees, dict) else None
    if target.is_symlink() or not target.is_dir() or not isinstance(record, dict):
        return TreeState(
            fmt, target, "foreign",
            note=f"{target} was not written by {_GENERATOR} ({meta_path(root)} holds no record "
            "of it)",
        )  # fmt: skip
    if record.get("status") == "writing":
        if record.get("path") == str(target.resolve()):
            return TreeState(
                fmt, target, "interrupted", params=record.get("params"),
                note=f"{target} was being written by {_GENERATOR} when it stopped",
            )  # fmt: skip
        return TreeState(
            fmt, target, "foreign",
            note=f"{target} is a copy of a tree {_GENERATOR} was writing to {record.get('path')}",
        )  # fmt: skip
    written, now = record.get("fingerprint") or {}, tree_fingerprint(target)
    if now == written:
        return TreeState(
            fmt, target, "generated", params=record.get("params"),
            note=f"{target} was written by {_GENERATOR} and is unchanged since",
        )  # fmt: skip
    return TreeState(
        fmt, target, "edited",
        note=f"{target} was changed since {_GENERATOR} wrote it ({now['files']} files now, "
        f"{written.get('files')} written; files added, removed, or of other sizes or times)",
    )  # fmt: skip


def _trees_under(path: Path) -> tuple[Path, list[TreeState]]:
    """The generator root of ``path`` and the (existing) format directories at or under it."""
    for root in (path.parent, path.parent.parent, path):
        states = [
            tree_state(root, fmt)
            for fmt in FORMATS
            if format_dir(root, fmt) == path or path in format_dir(root, fmt).parents
        ]
        states = [s for s in states if s.status != "missing"]
        if states:
            return root, states
    return path.parent, []


def describe_existing(path: PathLike) -> tuple[bool, str]:
    """Whether the existing ``path`` holds only synthetic trees that :func:`generate` wrote in
    full and nobody changed since, and one sentence saying so or why not.

    ``path`` is a format directory (``<root>/coco``, ``<root>/VOCdevkit``, ``<root>/cityscapes``,
    ``<root>/VOCdevkit/VOC2007``) or a generator root, as a config's ``dataset_path``.
    """
    path = Path(path)
    _, states = _trees_under(path)
    if not states:
        return False, f"{path} holds no tree written by {_GENERATOR}"
    other = [s for s in states if s.status != "generated"]
    return not other, (other or states)[0].note


def use_existing(path: PathLike) -> None:
    """Make the existing ``path`` (a config's ``dataset_path``) ready to be read, as it is.

    A tree :func:`generate` was writing when it stopped is written again, with the parameters of
    that run. Anything else is left as it is, with one info line when it is not the generator's
    unchanged tree (real data, a copy, an edited tree).
    """
    path = Path(path)
    root, states = _trees_under(path)
    for state in states:
        if state.status == "interrupted":
            logger.info("%s: writing it again", state.note)
            kwargs = {k: v for k, v in (state.params or {}).items() if k in _GENERATE_ARGS}
            generate(root, formats=[state.fmt], **kwargs)
    owned, note = describe_existing(path)
    if not owned:
        logger.info("using %s as it is: %s", path, note)


def generate(
    root: PathLike,
    formats: Sequence[str] = FORMATS,
    num_train: int = 200,
    num_test: int = 50,
    seed: int = 0,
    size: int = 256,
    fixed_size: bool = False,
    force: bool = False,
) -> dict:
    """Write the synthetic data set in the requested formats under ``root``.

    The 'train' stream of scenes becomes COCO ``train``, VOC ``trainval`` and Cityscapes
    ``train``; the 'test' stream COCO ``val``, VOC ``test`` and Cityscapes ``val``.

    Each format directory (:func:`format_dir`) is handled by its :func:`tree_state`:

    * missing: written;
    * generated and unchanged since: kept when written with the same parameters (unless
      ``force``), else deleted and rewritten;
    * interrupted (a run stopped while writing it): deleted and rewritten;
    * edited since it was written, or not written by the generator at all (real data, a copy,
      the tree of an older generator version): never deleted or written into; one warning
      names it, and the other formats are still written.

    ``root/synthetic/meta.json`` records each tree before it is touched and its fingerprint
    once written, so a tree is the generator's only while it is exactly as written.

    Args:
        root: data root (the original's ``./data``).
        formats: any of 'coco', 'voc', 'cityscapes'.
        num_train, num_test: number of scenes in the train and test streams.
        seed: same seed, same bytes.
        size: nominal image side; each image side is drawn in [0.8, 1.25] * size.
        fixed_size: make every image exactly ``size`` x ``size``.
        force: rewrite the generator's own unchanged trees even if their parameters match.

    Returns:
        The meta dict (also in ``root/synthetic/meta.json``): ``params`` of the last call that
        wrote, per-format descriptions, ``counts`` and ``trees`` (per format: ``params``,
        ``counts``, ``fingerprint``).
    """
    root = Path(root)
    if isinstance(formats, str):
        formats = formats.split(",")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown synthetic formats {sorted(unknown)}; expected some of {FORMATS}")
    formats = [f for f in FORMATS if f in formats]
    params = {
        "version": GENERATOR_VERSION,
        "formats": formats,
        "num_train": int(num_train),
        "num_test": int(num_test),
        "seed": int(seed),
        "size": int(size),
        "fixed_size": bool(fixed_size),
    }
    tree_params = {k: v for k, v in params.items() if k != "formats"}
    meta = _read_meta(root)
    trees = meta.get("trees") if isinstance(meta.get("trees"), dict) else {}
    written = []
    for fmt in formats:
        state = tree_state(root, fmt, meta)
        if state.status == "generated" and state.params == tree_params and not force:
            logger.info("%s is up to date (%s); not regenerating", state.path, tree_params)
            continue
        if not state.owned and state.status != "missing":
            logger.warning(
                "%s: left as it is (move it away, or choose another root, to generate the "
                "synthetic %s data there)", state.note, fmt,
            )  # fmt: skip
            continue
        if not written:
            logger.info("writing synthetic data to %s (%s)", root, params)
            meta = {**meta, **_describe(params), "trees": trees}
        target = state.path
        # Recorded before the tree is touched, so that an interrupted run is redone next time.
        trees[fmt] = {"status": "writing", "path": str(target.resolve()), "params": tree_params}
        _write_meta(root, meta)
        if state.status != "missing":
            shutil.rmtree(target)
        target.mkdir(parents=True)
        writer, (train_set, test_set) = _WRITERS[fmt]
        streams = {
            train_set: iter_scenes(
                seed, "train", num_train, size, fixed_size, f"{fmt} {train_set}"
            ),
            test_set: iter_scenes(seed, "test", num_test, size, fixed_size, f"{fmt} {test_set}"),
        }
        counts = writer(root, streams)
        logger.info("%s: %s", fmt, counts)
        fingerprint = tree_fingerprint(target)
        trees[fmt] = {"params": tree_params, "counts": counts, "fingerprint": fingerprint}
        meta["counts"] = {f: r["counts"] for f, r in trees.items() if "counts" in r}
        _write_meta(root, meta)
        written.append(fmt)
    return meta


def _describe(params: dict) -> dict:
    """The fixed part of the meta dict: what the data is and how each format maps the classes."""
    return {
        "description": "Synthetic shapes under scale, aspect, rotation and non-rigid warp, "
        "with occlusion and clutter; written by lib.dataset.synthetic.generate",
        "params": params,
        "classes": list(CLASSES),
        "coco": {"sets": list(COCO_SETS), "category_ids": list(COCO_CATEGORY_IDS)},
        "voc": {
            "year": "2007",
            "sets": ["train", "val", *VOC_SETS],
            "segmentation_values": {"background": 0, "classes": "1 + CLASSES index", "void": 255},
        },
        "cityscapes": {
            "splits": list(CITYSCAPES_SPLITS),
            "class_label_ids": list(CITYSCAPES_CLASS_IDS),
            "cities": {k: list(v) for k, v in _CITIES.items()},
        },
    }
