"""Pictures of what the networks see: detections, segmentations and deformable sampling.

Everything here draws on BGR ``uint8`` images (OpenCV's order, as :func:`lib.utils.image.read_image`
returns them) and returns new arrays; nothing reads a network or a config. The demos
(:mod:`lib.core.demo`) compose these into the PNGs they write.

Sizes. A picture is drawn at a *display* size (:func:`display_scale`): the image as it is,
except that a tiny one is enlarged so text stays legible and a huge one is reduced so the PNG
stays a few MB. Coordinates passed in are in original-image pixels; the drawing functions scale
them. Lines are drawn without anti-aliasing, so every box keeps its exact class colour
(:func:`class_colour`), which tests look for.
"""

from __future__ import annotations

import colorsys
import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "FONT",
    "blend_label_map",
    "caption_bar",
    "class_colour",
    "display_scale",
    "draw_detections",
    "draw_label",
    "draw_points",
    "draw_psroi_bins",
    "grid",
    "legend_panel",
    "letterbox",
    "resize_for_display",
    "write_png",
]

FONT = cv2.FONT_HERSHEY_SIMPLEX
#: Shorter side a picture is enlarged to, at least (a 10x10 image becomes 480x480).
MIN_DISPLAY_SIDE = 480
#: Longer side a picture is reduced to, at most (a 4000x6000 image becomes 1365x2048).
MAX_DISPLAY_SIDE = 2048
#: Weight of the class colours over the image in segmentation pictures.
SEG_ALPHA = 0.5

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)


def class_colour(index: int) -> tuple[int, int, int]:
    """A distinct, saturated BGR colour for class ``index`` (golden-ratio hues), deterministic."""
    hue = (0.13 + index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(round(b * 255)), int(round(g * 255)), int(round(r * 255))


def display_scale(height: int, width: int, max_side: int = MAX_DISPLAY_SIDE) -> float:
    """Scale from an image to its picture: 1, unless the image is tiny or huge.

    The shorter side is enlarged to at least :data:`MIN_DISPLAY_SIDE` and the longer side
    reduced to at most ``max_side``; the bound on the longer side wins.
    """
    scale = 1.0
    if min(height, width) < MIN_DISPLAY_SIDE:
        scale = MIN_DISPLAY_SIDE / min(height, width)
    return min(scale, max_side / max(height, width))


def resize_for_display(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (nearest-neighbour when enlarging a lot, so pixels stay
    visible; area averaging when reducing)."""
    if scale == 1.0:
        return image.copy()
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interp = cv2.INTER_NEAREST if scale >= 4 else cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA
    return cv2.resize(image, size, interpolation=interp)


def _text_metrics(side: int) -> tuple[float, int]:
    """(font scale, line thickness) for a picture whose shorter side is ``side`` pixels."""
    font_scale = float(np.clip(side / 900.0, 0.45, 1.2))
    return font_scale, max(1, round(side / 400))


def draw_label(
    image: np.ndarray, text: str, x: int, y: int, colour: tuple, font_scale: float
) -> None:
    """``text`` in white on a ``colour`` box whose bottom-left corner is (x, y), kept inside
    ``image`` (drawn in place)."""
    weight = 2 if font_scale >= 0.9 else 1
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, weight)
    height, width = image.shape[:2]
    x = int(np.clip(x, 0, max(width - tw - 4, 0)))
    y = int(np.clip(y, th + base + 4, height))
    cv2.rectangle(image, (x, y - th - base - 4), (x + tw + 4, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - base - 2), FONT, font_scale, WHITE, weight, cv2.LINE_AA)


def draw_detections(
    image: np.ndarray,
    detections: Sequence[tuple[int, float, Sequence[float]]],
    class_names: Sequence[str],
    scale: float | None = None,
) -> np.ndarray:
    """Boxes with "name score" labels, each in its class colour.

    Args:
        image: (H, W, 3) BGR uint8, the original image.
        detections: ``(class index, score, (x1, y1, x2, y2))`` in original-image pixels.
        class_names: name of each class index.
        scale: display scale; default :func:`display_scale`.

    Returns:
        The picture, ``image`` resized by ``scale``.
    """
    scale = display_scale(*image.shape[:2]) if scale is None else scale
    out = resize_for_display(image, scale)
    font_scale, thickness = _text_metrics(min(out.shape[:2]))
    # the lowest scores first, so the best boxes and labels end up on top
    for cls, score, box in sorted(detections, key=lambda d: d[1]):
        colour = class_colour(cls)
        x1, y1, x2, y2 = (int(round(v * scale)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        draw_label(out, f"{class_names[cls]} {score:.2f}", x1, y1, colour, font_scale)
    return out


def blend_label_map(
    image: np.ndarray, label_map: np.ndarray, palette: np.ndarray, scale: float | None = None
) -> np.ndarray:
    """The image with each pixel's class colour blended over it (:data:`SEG_ALPHA`).

    Args:
        image: (H, W, 3) BGR uint8.
        label_map: (H, W) class indices of the same size.
        palette: (256, 3) uint8 **RGB** palette (the datasets' convention).
        scale: display scale; default :func:`display_scale`.
    """
    if label_map.shape != image.shape[:2]:
        raise ValueError(f"label map {label_map.shape} and image {image.shape[:2]} differ in size")
    scale = display_scale(*image.shape[:2]) if scale is None else scale
    base = resize_for_display(image, scale).astype(np.float32)
    colours = np.ascontiguousarray(palette[label_map][:, :, ::-1])  # RGB -> BGR
    if colours.shape[:2] != base.shape[:2]:  # class colours never mix: nearest neighbour
        size = (base.shape[1], base.shape[0])
        colours = cv2.resize(colours, size, interpolation=cv2.INTER_NEAREST)
    blend = (1 - SEG_ALPHA) * base + SEG_ALPHA * colours.astype(np.float32)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)


def legend_panel(
    entries: Sequence[tuple[tuple[int, int, int], str]], height: int, title: str = ""
) -> np.ndarray:
    """A white column listing ``(BGR colour, text)`` entries with colour swatches.

    Rows shrink to fit ``height``; entries that still do not fit are summarised in a last
    "+N more" row.
    """
    font_scale, _ = _text_metrics(max(height, 400))
    row = int(np.clip(height / (len(entries) + 2), 14, 34 * font_scale / 0.6))
    font_scale = min(font_scale, row / 34 * 0.9)
    texts = ([title] if title else []) + [t for _, t in entries] + ["+99 more"]
    text_w = max(cv2.getTextSize(t, FONT, font_scale, 1)[0][0] for t in texts)
    width = text_w + row + 24
    panel = np.full((height, width, 3), 255, np.uint8)
    y = 8
    if title:
        cv2.putText(panel, title, (8, y + row - 8), FONT, font_scale, BLACK, 1, cv2.LINE_AA)
        y += row
    fits = max((height - y) // row, 1)
    shown = entries if len(entries) <= fits else entries[: fits - 1]
    for colour, text in shown:
        cv2.rectangle(panel, (8, y + 3), (8 + row - 6, y + row - 3), colour, cv2.FILLED)
        cv2.rectangle(panel, (8, y + 3), (8 + row - 6, y + row - 3), BLACK, 1)
        cv2.putText(panel, text, (row + 10, y + row - 8), FONT, font_scale, BLACK, 1, cv2.LINE_AA)
        y += row
    if len(shown) < len(entries):
        more = f"+{len(entries) - len(shown)} more"
        cv2.putText(panel, more, (8, y + row - 8), FONT, font_scale, BLACK, 1, cv2.LINE_AA)
    return panel


def _wrap(text: str, width: int, font_scale: float) -> list[str]:
    """``text`` broken at spaces into lines at most ``width`` pixels wide (a word never split)."""
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, FONT, font_scale, 1)[0][0] <= width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def caption_bar(width: int, paragraphs: Sequence[str]) -> np.ndarray:
    """A white bar of ``width`` pixels holding ``paragraphs`` of black text, wrapped to fit."""
    font_scale = min(_text_metrics(max(width // 2, 400))[0], 0.7)
    lines = [line for text in paragraphs for line in _wrap(text, width - 16, font_scale)]
    (_, th), base = cv2.getTextSize("Ag", FONT, font_scale, 1)
    row = th + base + 8
    bar = np.full((row * len(lines) + 8, width, 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(bar, text, (8, 4 + row * (i + 1) - base - 4), FONT, font_scale, BLACK, 1,
                    cv2.LINE_AA)  # fmt: skip
    return bar


def letterbox(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` centred on a white ``height x width`` canvas (it must fit)."""
    out = np.full((height, width, 3), 255, np.uint8)
    h, w = image.shape[:2]
    y, x = (height - h) // 2, (width - w) // 2
    out[y : y + h, x : x + w] = image
    return out


def draw_points(
    image: np.ndarray,
    points: np.ndarray,
    centre: Sequence[float],
    scale: float,
    colour: tuple[int, int, int] = (0, 0, 255),
    centre_colour: tuple[int, int, int] = (0, 255, 0),
) -> np.ndarray:
    """Sampling locations as dots and the activation point as a square, on a copy.

    Args:
        image: the picture (already at display size).
        points: (N, 2) ``(x, y)`` in original-image pixels; points outside are skipped.
        centre: ``(x, y)`` of the activation point, original-image pixels.
        scale: display scale of ``image``.
    """
    out = image.copy()
    height, width = out.shape[:2]
    radius = max(2, round(min(height, width) / 200))
    for x, y in np.round(np.asarray(points, dtype=np.float64).reshape(-1, 2) * scale):
        if 0 <= x < width and 0 <= y < height:
            cv2.circle(out, (int(x), int(y)), radius, colour, cv2.FILLED)
    cx, cy = (int(round(v * scale)) for v in centre)
    half = 3 * radius + 1
    cv2.rectangle(out, (cx - half, cy - half), (cx + half, cy + half), centre_colour, cv2.FILLED)
    cv2.rectangle(out, (cx - half, cy - half), (cx + half, cy + half), BLACK, 1)
    return out


def draw_psroi_bins(
    image: np.ndarray,
    roi: Sequence[float],
    bins: np.ndarray,
    scale: float,
    roi_colour: tuple[int, int, int] = (0, 140, 255),
) -> np.ndarray:
    """A RoI and its (deformed) bins on a copy.

    Args:
        image: the picture (already at display size).
        roi: ``(x1, y1, x2, y2)``, original-image pixels.
        bins: (k, k, 4) ``(x1, y1, x2, y2)`` of every bin, original-image pixels; bin ``(i, j)``
            is row i, column j of the RoI grid; its colour runs from red (top-left) to magenta
            down the rows and to yellow along the columns, so the grid stays readable when the
            offsets move the bins.
        scale: display scale of ``image``.
    """
    out = image.copy()
    _, thickness = _text_metrics(min(out.shape[:2]))
    x1, y1, x2, y2 = (int(round(v * scale)) for v in roi)
    cv2.rectangle(out, (x1, y1), (x2, y2), roi_colour, thickness + 1)
    k = bins.shape[0]
    for i in range(k):
        for j in range(bins.shape[1]):
            colour = (int(255 * i / max(k - 1, 1)), int(255 * j / max(k - 1, 1)), 255)
            bx1, by1, bx2, by2 = (int(round(v * scale)) for v in bins[i, j])
            cv2.rectangle(out, (bx1, by1), (max(bx2, bx1 + 1), max(by2, by1 + 1)), colour, 1)
    return out


def grid(panels: Sequence[np.ndarray], columns: int = 2, gap: int = 6) -> np.ndarray:
    """Panels of one size laid out ``columns`` wide on white, row by row."""
    if not panels:
        raise ValueError("grid: no panels")
    height, width = panels[0].shape[:2]
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    out = np.full(
        (rows * height + (rows - 1) * gap, columns * width + (columns - 1) * gap, 3), 255, np.uint8
    )
    for n, panel in enumerate(panels):
        r, c = divmod(n, columns)
        y, x = r * (height + gap), c * (width + gap)
        out[y : y + height, x : x + width] = panel[:height, :width]
    return out


def write_png(path: str, image: np.ndarray) -> str:
    """Writes ``image`` (BGR) as a PNG, creating the folder; returns the path.

    Raises:
        OSError: the file cannot be encoded or written.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
    return path
