"""Segmentation data iterators of DeepLab: ``TrainDataLoader`` and ``TestDataLoader``.

Batches follow the layout of :mod:`lib.core.loader` (flat lists over all devices, seeded and
prefetched on worker threads, same bad-image policy):

=========  =====================================================================  =======
name       shape                                                                  dtype
=========  =====================================================================  =======
``data``   (B, 3, H, W), RGB minus means                                          float32
``label``  (B, 1, H, W) class indices, 255 = ignore, at the input resolution      float32
           (the symbol upsamples and crops its scores to the input, then
           ``SoftmaxOutput(multi_output, ignore_label=255)``, as the original)
=========  =====================================================================  =======

Training: each image gets a random scale from ``SCALES``; the label is resized with nearest
neighbour interpolation. With ``TRAIN.ENABLE_CROP`` a random ``crop_height x crop_width``
window of image and label is taken (one random state per batch, seeded); an image smaller than
the crop is first padded (image 0, i.e. the mean colour; label 255), where the original failed
an assertion. Without cropping, images of one batch are padded to the largest (label 255).
Unlike the original, ``flipped`` records are flipped (image and label). The last, incomplete
batch of an epoch is dropped.

Testing: every image once at ``SCALES[0]``; the last batch is filled up by repeating its last
image (``batch.pad``); ``batch.im_info`` / ``batch.roidb_index`` describe the real images. The
label is included only with ``with_label=True`` (the original test loader had none; the
evaluation reads the label files itself).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import mxnet as mx
import numpy as np

from lib.core.loader import BatchJob, BatchLoader, LoadedBatch, PerDeviceShapes, Shape
from lib.core.shapes import max_input_shapes
from lib.utils.image import (
    IGNORE_LABEL,
    Scale,
    pick_scale,
    prepare_seg_image,
    read_image,
    tensor_vstack,
)

__all__ = ["TestDataLoader", "TrainDataLoader", "random_crop"]


def _pad_to(a: np.ndarray, height: int, width: int, value: float) -> np.ndarray:
    out = np.full(a.shape[:2] + (height, width), value, dtype=a.dtype)
    out[:, :, : a.shape[2], : a.shape[3]] = a
    return out


def random_crop(
    data: np.ndarray,
    label: np.ndarray,
    crop_height: int,
    crop_width: int,
    rng: np.random.RandomState,
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``crop_height x crop_width`` window of a (1, 3, H, W) image and its label.

    The top-left corner is uniform over all positions where the window fits. An image smaller
    than the window is padded at the bottom / right first (image 0, label 255).
    """
    height, width = data.shape[2], data.shape[3]
    if height < crop_height or width < crop_width:
        height, width = max(height, crop_height), max(width, crop_width)
        data = _pad_to(data, height, width, 0)
        label = _pad_to(label, height, width, IGNORE_LABEL)
    y = int(rng.randint(height - crop_height + 1))
    x = int(rng.randint(width - crop_width + 1))
    window = (slice(None), slice(None), slice(y, y + crop_height), slice(x, x + crop_width))
    return np.ascontiguousarray(data[window]), np.ascontiguousarray(label[window])


class TrainDataLoader(PerDeviceShapes, BatchLoader):
    """DeepLab training batches: ``data`` and ``label`` (see the module docstring).

    Args:
        segdb: records {'image', 'seg_cls_path', 'height', 'width', 'flipped'}.
        cfg: config; uses ``SCALES``, ``network.PIXEL_MEANS`` / ``IMAGE_STRIDE`` and
            ``TRAIN.ENABLE_CROP`` / ``CROP_HEIGHT`` / ``CROP_WIDTH``.
        batch_size: images per batch, all devices (``TRAIN.BATCH_IMAGES * len(ctx)``).
        crop_height, crop_width: crop size; default the config's.
        shuffle: a new (seeded) order every epoch.
        seed, num_workers, prefetch, skip_bad_images, begin_epoch: as
            :class:`lib.core.loader.AnchorLoader`.
        ctx: the devices (only their number matters: ``provide_data_single``).
    """

    def __init__(
        self,
        segdb: Sequence[Mapping[str, Any]],
        cfg: Any,
        batch_size: int = 1,
        crop_height: int | None = None,
        crop_width: int | None = None,
        shuffle: bool = False,
        seed: int | None = None,
        num_workers: int = 2,
        ctx: Sequence[mx.Context] | None = None,
        prefetch: int | None = None,
        skip_bad_images: bool = True,
        begin_epoch: int = 0,
    ) -> None:
        self.cfg = cfg
        self.segdb = segdb
        self.ctx = list(ctx) if ctx is not None else [mx.cpu()]
        if batch_size % len(self.ctx):
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of {len(self.ctx)} devices"
            )
        self.enable_crop = bool(cfg.TRAIN.ENABLE_CROP)
        self.crop_height = int(cfg.TRAIN.CROP_HEIGHT if crop_height is None else crop_height)
        self.crop_width = int(cfg.TRAIN.CROP_WIDTH if crop_width is None else crop_width)
        self.skip_bad_images = skip_bad_images
        self.data_name = ["data"]
        self.label_name = ["label"]
        super().__init__(
            segdb, batch_size, shuffle, seed, num_workers, prefetch, drop_last=True,
            begin_epoch=begin_epoch,
        )  # fmt: skip

    def _load(self, job: BatchJob) -> LoadedBatch:
        rng = self.batch_rng(job)
        images, labels, used = [], [], []
        for idx in job.indices:
            scale = pick_scale(self.cfg.SCALES, None, rng)
            idx, im = self._read(idx, self.skip_bad_images)
            rec = self.segdb[idx]
            try:
                tensor, label, _ = prepare_seg_image(rec, self.cfg, scale, im)
                if self.enable_crop:
                    tensor, label = random_crop(
                        tensor, label, self.crop_height, self.crop_width, rng
                    )
            except OSError:
                raise  # a missing / corrupt label file: the message names it
            except Exception as err:
                raise self._wrap_image_error(rec, "preprocessing", err) from err
            images.append(tensor)
            labels.append(label)
            used.append(idx)
        return LoadedBatch(
            data=[tensor_vstack(images)],
            label=[tensor_vstack(labels, pad=IGNORE_LABEL)],
            index=np.array(used, dtype=np.int64),
            pad=0,
        )

    def infer_shape(
        self,
        max_data_shape: Sequence[tuple[str, Shape]] | None = None,
        max_label_shape: Sequence[tuple[str, Shape]] | None = None,
    ) -> tuple[list, list]:
        """(max data shapes, label shapes): the label is ``(B, 1, H, W)`` of ``data``.

        ``max_data_shape`` defaults to the whole batch (all devices) at the crop size (with
        ``ENABLE_CROP``) or at the largest of ``SCALES``
        (:func:`lib.core.shapes.max_input_shapes`).
        """
        del max_label_shape
        if max_data_shape is None:
            crop = (self.crop_height, self.crop_width) if self.enable_crop else None
            max_data_shape = max_input_shapes(
                self.cfg,
                self.cfg.SCALES,
                images_per_device=self.batch_size // len(self.ctx),
                num_devices=len(self.ctx),
                names=self.data_name,
                image_size=crop,
            )
        n, _, h, w = dict(max_data_shape)["data"]
        return list(max_data_shape), [("label", (n, 1, h, w))]


class TestDataLoader(BatchLoader):
    """DeepLab test batches: ``data`` (and ``label`` with ``with_label``), every image once.

    Args:
        segdb: records.
        cfg: config; uses ``SCALES`` and ``network.PIXEL_MEANS`` / ``IMAGE_STRIDE``.
        batch_size: images per batch (``len(ctx)``).
        shuffle: visit the images in a random (seeded) order.
        scale: the (short, max long) scale; default ``cfg.SCALES[0]``.
        with_label: also yield the (B, 1, H, W) label (255 = ignore, also in the padding).
        seed, num_workers, prefetch: as :class:`lib.core.loader.TestLoader`.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        segdb: Sequence[Mapping[str, Any]],
        cfg: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        scale: Scale | None = None,
        with_label: bool = False,
        seed: int | None = None,
        num_workers: int = 2,
        prefetch: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.segdb = segdb
        self.scale = pick_scale(cfg.SCALES, 0) if scale is None else tuple(scale)
        self.with_label = with_label
        self.data_name = ["data"]
        self.label_name = ["label"] if with_label else []
        super().__init__(segdb, batch_size, shuffle, seed, num_workers, prefetch, drop_last=False)

    @property
    def im_info(self) -> np.ndarray | None:
        """(n, 3) ``[height, width, scale]`` of the current batch's real images."""
        return None if self._current is None else self._current.extra["im_info"]

    def _load(self, job: BatchJob) -> LoadedBatch:
        real = job.indices[: len(job.indices) - job.pad]
        images, labels, infos = [], [], []
        for idx in real:
            rec = self.segdb[idx]
            im = read_image(rec["image"], rec.get("flipped", False))
            tensor, label, new_rec = prepare_seg_image(rec, self.cfg, self.scale, im,
                                                       with_label=self.with_label)  # fmt: skip
            images.append(tensor)
            labels.append(label)
            infos.append(new_rec["im_info"])
        images += [images[-1]] * job.pad
        labels += [labels[-1]] * job.pad
        im_info = np.stack(infos).astype(np.float32)
        return LoadedBatch(
            data=[tensor_vstack(images)],
            label=[tensor_vstack(labels, pad=IGNORE_LABEL)] if self.with_label else [],
            index=np.array(job.indices, dtype=np.int64),
            pad=job.pad,
            extra={
                "roidb_index": np.array(real, dtype=np.int64),
                "im_info": im_info,
                "scales": [float(i[2]) for i in infos],
            },
        )
