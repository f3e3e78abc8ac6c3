"""Detection data iterators: ``TestLoader``, ``AnchorLoader`` (end-to-end / RPN training) and
``PyramidAnchorLoader`` (FPN).

Batch layout. A batch is a standard ``mx.io.DataBatch`` whose ``data`` / ``label`` are flat
lists of NDArrays, one per name, holding all ``batch_size`` images (``TRAIN.BATCH_IMAGES *
len(ctx)`` in training), so MXNet's executor group splits them along axis 0 over the devices.
Images of one batch are zero-padded at the bottom / right to the largest one
(:func:`~lib.utils.image.tensor_vstack`); each image keeps its own ``im_info``, so anchors and
proposals outside the real image are still ignored. ``provide_data`` / ``provide_label`` describe
the current batch (shapes change from batch to batch; the next batch's before the first
``next()``), and every DataBatch carries its own copy. (The original passed one list per device
instead, for its modified executor group; with one image per device the arrays are the same.)

Arrays (all float32; B images, A anchors per cell, h x w the RPN feature map):

- ``data`` (B, 3, H, W): RGB minus means (:func:`lib.utils.image.transform`);
- ``im_info`` (B, 3): per image ``[height, width, scale]`` of the resized (stride-padded) image,
  before padding to the batch;
- ``gt_boxes`` (B, G, 5): ``(x1, y1, x2, y2, class)`` in input pixels, G = the largest gt count
  of the batch, at least 1. Padding rows are all -1; a class <= 0 marks padding, and
  ``proposal_target`` drops such rows (the original had one image per device, so no padding);
- ``label`` (B, A*h*w): RPN labels 1 / 0 / -1 (ignore); FPN (B, A * sum of h*w over levels);
- ``bbox_target``, ``bbox_weight`` (B, 4A, h, w); FPN (B, 4A, sum of h*w);
- ``rois`` (test with ``has_rpn=False`` only) (B, R, 5): ``(0, x1, y1, x2, y2)`` proposals
  scaled to the input, R = the largest count of the batch, padded with zero rows.

``im_info`` and ``gt_boxes`` are data (inputs of the end-to-end symbol) only when
``cfg.TRAIN.END2END`` is set, as in the original; otherwise the training data is ``data`` alone.

Workers. Images are decoded, resized and given targets on a thread pool (``num_workers``
threads; OpenCV and most of numpy release the GIL), up to ``prefetch`` batches ahead, and handed
back strictly in order (:class:`~lib.utils.prefetch.OrderedPrefetcher`). Every random choice of
a batch (scale, RPN fg/bg subsampling, crop) comes from a random state seeded by ``(seed,
epoch, batch number)``, and the epoch order from ``(seed, epoch)``: two loaders with the same
seed yield identical batches whatever the thread timing. ``seed=None`` draws the seed from
``np.random`` (so a global ``np.random.seed`` still makes runs repeatable). ``reset()`` starts
the next epoch.

Bad data. An image that is missing or cannot be decoded raises ``OSError`` naming the file in
the test loaders. The training loaders (``skip_bad_images=True``, the default) log a warning
naming it once, and put the next readable image of the roidb in its place, so training goes on
with full batches. Any other error while building a batch is re-raised in the consumer's
thread as :class:`DataLoaderError` naming the image, with the cause chained; the loader never
hangs on a failed worker. A training image without gt boxes gets all-background RPN labels
(subsampled to ``RPN_BATCH_SIZE``) and a single padding row in ``gt_boxes``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import cv2  # noqa: F401  (import cv2 before mxnet: the original's FAQ, a segfault otherwise)
import mxnet as mx
import numpy as np

from lib.core.shapes import MAX_GT, max_input_shapes
from lib.rpn.rpn import assign_anchor, assign_pyramid_anchor
from lib.utils.image import (
    Scale,
    pick_scale,
    prepare_roi_image,
    read_image,
    tensor_vstack,
)
from lib.utils.prefetch import OrderedPrefetcher

__all__ = [
    "AnchorLoader",
    "DataLoaderError",
    "PyramidAnchorIterator",
    "PyramidAnchorLoader",
    "TestLoader",
    "gt_boxes_of",
]

logger = logging.getLogger(__name__)

Shape = tuple[int, ...]
# A feature symbol (or a list of them, FPN), or a function data shape -> feature shape(s).
FeatShapeSource = Union[mx.sym.Symbol, Sequence[mx.sym.Symbol], Callable[[Shape], Any]]

GT_PAD = -1.0  # value of the gt_boxes padding rows


class DataLoaderError(RuntimeError):
    """Building a batch failed; the message names the image, the cause is chained."""


# --------------------------------------------------------------------------------- helpers


def gt_boxes_of(rec: Mapping[str, Any]) -> np.ndarray:
    """(G, 5) float32 ``(x1, y1, x2, y2, class)`` of the foreground boxes of a record.

    Rows of class 0 (background; proposal roidbs) are left out, as ``get_rpn_batch`` meant to
    (the original allocated one row per box and crashed when some were background).
    """
    classes = np.asarray(rec["gt_classes"]).reshape(-1)
    boxes = np.asarray(rec["boxes"], dtype=np.float32).reshape(-1, 4)
    keep = classes != 0
    out = np.empty((int(keep.sum()), 5), dtype=np.float32)
    out[:, :4] = boxes[keep]
    out[:, 4] = classes[keep]
    return out


def _stack_gt_boxes(gt_list: Sequence[np.ndarray]) -> np.ndarray:
    """(B, max(1, max G), 5), padded with rows of -1."""
    rows = max([1] + [len(g) for g in gt_list])
    out = np.full((len(gt_list), rows, 5), GT_PAD, dtype=np.float32)
    for i, g in enumerate(gt_list):
        out[i, : len(g)] = g
    return out


def _normalise_shapes(value: Any) -> list[Shape]:
    """One shape or a list of shapes (or the original's ``[shape]``) -> list of int tuples."""
    if value is None:
        raise ValueError("feature shape inference returned None (incomplete shapes?)")
    value = list(value)
    if value and isinstance(value[0], (int, np.integer)):
        return [tuple(int(v) for v in value)]
    return [tuple(int(v) for v in shape) for shape in value]


class _FeatShapes:
    """Feature-map shape(s) for an input size, from symbols or a function; cached, thread-safe.

    The batch dimension of the query is 1: only (H, W) matter for the feature map size.
    """

    def __init__(self, source: FeatShapeSource) -> None:
        if isinstance(source, mx.sym.Symbol):
            self._symbols: list[mx.sym.Symbol] | None = [source]
        elif isinstance(source, (list, tuple)):
            self._symbols = list(source)
        elif callable(source):
            self._symbols = None
        else:
            raise TypeError(
                "feat_sym must be an mx.sym.Symbol, a list of them, or a function "
                f"data_shape -> feature shape(s); got {type(source).__name__}"
            )
        self._fn = source
        self._cache: dict[tuple[int, int], list[Shape]] = {}
        self._lock = threading.Lock()

    def _infer(self, data_shape: Shape) -> list[Shape]:
        if self._symbols is None:
            return _normalise_shapes(self._fn(data_shape))
        shapes: list[Shape] = []
        for sym in self._symbols:
            _, out_shapes, _ = sym.infer_shape(data=data_shape)
            shapes.extend(_normalise_shapes(out_shapes))
        return shapes

    def __call__(self, height: int, width: int) -> list[Shape]:
        key = (int(height), int(width))
        with self._lock:  # MXNet shape inference from several threads: serialise it
            if key not in self._cache:
                self._cache[key] = self._infer((1, 3) + key)
            return self._cache[key]


def _seeded_rng(seed: int, *key: int) -> np.random.RandomState:
    state = np.random.SeedSequence(seed, spawn_key=tuple(int(k) for k in key)).generate_state(4)
    return np.random.RandomState(state)


@dataclass(frozen=True)
class BatchJob:
    epoch: int
    number: int  # batch number within the epoch
    indices: tuple[int, ...]  # record indices, padding included
    pad: int  # trailing entries of `indices` that only pad the last batch


@dataclass
class LoadedBatch:
    """A batch as numpy arrays (built on a worker; turned into NDArrays by the consumer)."""

    data: list[np.ndarray]
    label: list[np.ndarray]
    index: np.ndarray
    pad: int
    extra: dict[str, Any] = field(default_factory=dict)


_RNG_ORDER, _RNG_BATCH = 0, 1  # random streams: epoch order, per-batch choices


class BatchLoader(mx.io.DataIter):
    """Ordered, prefetching, seeded batch iterator over records; subclasses build the batches.

    Subclasses set ``data_name`` / ``label_name`` and implement :meth:`_load` (runs on worker
    threads: it may only read shared state, or use the locked caches).
    """

    data_name: list[str]
    label_name: list[str]

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        batch_size: int,
        shuffle: bool,
        seed: int | None,
        num_workers: int,
        prefetch: int | None,
        drop_last: bool,
        aspect_grouping: bool = False,
        begin_epoch: int = 0,
    ) -> None:
        super().__init__(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(records) == 0:
            raise ValueError(f"{type(self).__name__}: no images (empty roidb / segdb)")
        if drop_last and len(records) < batch_size:
            raise ValueError(
                f"{type(self).__name__}: {len(records)} images cannot fill one batch of "
                f"{batch_size}"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.records = records
        self.size = len(records)
        self.shuffle = shuffle
        self.seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else int(seed)
        self.num_workers = num_workers
        self.prefetch = max(1, 2 * num_workers if prefetch is None else prefetch)
        self.drop_last = drop_last
        self.aspect_grouping = aspect_grouping
        self._pool = (
            ThreadPoolExecutor(num_workers, thread_name_prefix=type(self).__name__)
            if num_workers > 0
            else None
        )
        if begin_epoch < 0:
            raise ValueError(f"begin_epoch must be >= 0, got {begin_epoch}")
        self._epoch = begin_epoch - 1  # reset() below starts epoch begin_epoch
        self._prefetcher: OrderedPrefetcher | None = None
        self._current: LoadedBatch | None = None
        self._bad: set[int] = set()
        self._bad_lock = threading.Lock()
        self.reset()

    # ---------------------------------------------------------------------------- ordering

    def _epoch_order(self, rng: np.random.RandomState) -> list[np.ndarray]:
        """The epoch's batches as arrays of record indices (the last may be short)."""
        n, bs = self.size, self.batch_size
        if not self.aspect_grouping:
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            return [order[i : i + bs] for i in range(0, n, bs)]
        # Horizontal (w >= h) and vertical images are batched separately, so padding to the
        # largest image wastes little; the remainders of both groups share at most one batch.
        widths = np.array([r["width"] for r in self.records])
        heights = np.array([r["height"] for r in self.records])
        batches, leftover = [], []
        for group in (np.where(widths >= heights)[0], np.where(widths < heights)[0]):
            if self.shuffle:
                group = rng.permutation(group)
            full = len(group) // bs * bs
            batches += [group[i : i + bs] for i in range(0, full, bs)]
            leftover += list(group[full:])
        leftover = np.array(leftover, dtype=np.int64)
        batches += [leftover[i : i + bs] for i in range(0, len(leftover), bs)]
        tail = [batches.pop()] if len(batches[-1]) < bs else []
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches + tail

    def _jobs(self, epoch: int) -> Iterator[BatchJob]:
        batches = self._epoch_order(_seeded_rng(self.seed, _RNG_ORDER, epoch))
        for number, batch in enumerate(batches):
            batch = [int(i) for i in batch]
            pad = self.batch_size - len(batch)
            if pad and self.drop_last:
                continue
            yield BatchJob(epoch, number, tuple(batch + [batch[-1]] * pad), pad)

    def batch_rng(self, job: BatchJob) -> np.random.RandomState:
        """The random state of one batch: a function of (seed, epoch, batch number) only."""
        return _seeded_rng(self.seed, _RNG_BATCH, job.epoch, job.number)

    @property
    def num_batches(self) -> int:
        """Batches per epoch (the same every epoch)."""
        if not self.drop_last:
            return -(-self.size // self.batch_size)
        batches = self._epoch_order(np.random.RandomState(0))  # the sizes do not depend on rng
        return sum(len(b) == self.batch_size for b in batches)

    # ---------------------------------------------------------------------------- iteration

    def reset(self) -> None:
        """Starts the next epoch (a new order when shuffling) and its prefetching."""
        if self._prefetcher is not None:
            self._prefetcher.close()
        self._epoch += 1
        self._current = None
        self._prefetcher = OrderedPrefetcher(
            self._load_checked, self._jobs(self._epoch), self._pool, self.prefetch
        )

    @property
    def epoch(self) -> int:
        """The current epoch: ``begin_epoch`` plus the ``reset()`` calls since construction."""
        return self._epoch

    def iter_next(self) -> bool:
        try:
            self._prefetcher.peek()
        except StopIteration:
            return False
        return True

    def next(self) -> mx.io.DataBatch:
        loaded = next(self._prefetcher)  # StopIteration ends the epoch
        self._current = loaded
        batch = mx.io.DataBatch(
            data=[mx.nd.array(a, dtype=a.dtype) for a in loaded.data],
            label=[mx.nd.array(a, dtype=a.dtype) for a in loaded.label] or None,
            pad=loaded.pad,
            index=loaded.index,
            provide_data=self._describe(self.data_name, loaded.data),
            provide_label=self._describe(self.label_name, loaded.label),
        )
        for key, value in loaded.extra.items():
            setattr(batch, key, value)
        return batch

    def getpad(self) -> int:
        return 0 if self._current is None else self._current.pad

    def getindex(self) -> np.ndarray | None:
        return None if self._current is None else self._current.index

    @staticmethod
    def _describe(names: Sequence[str], arrays: Sequence[np.ndarray]) -> list[mx.io.DataDesc]:
        return [mx.io.DataDesc(n, a.shape, a.dtype) for n, a in zip(names, arrays)]

    def _shown(self) -> LoadedBatch:
        """The current batch, or the next one before the first ``next()`` of an epoch."""
        if self._current is not None:
            return self._current
        try:
            return self._prefetcher.peek()
        except StopIteration:
            raise RuntimeError(f"{type(self).__name__}: the epoch is over; call reset()") from None

    @property
    def provide_data(self) -> list[mx.io.DataDesc]:
        """Names and shapes of the data of the current batch (all devices)."""
        return self._describe(self.data_name, self._shown().data)

    @property
    def provide_label(self) -> list[mx.io.DataDesc]:
        """Names and shapes of the labels of the current batch (all devices)."""
        return self._describe(self.label_name, self._shown().label)

    def close(self) -> None:
        """Stops prefetching and the worker threads (also done when the loader is collected)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------------- batch work

    def _load(self, job: BatchJob) -> LoadedBatch:
        raise NotImplementedError

    def _load_checked(self, job: BatchJob) -> LoadedBatch:
        try:
            return self._load(job)
        except (OSError, DataLoaderError):
            raise  # already name their file
        except Exception as err:
            paths = ", ".join(str(self.records[i].get("image")) for i in job.indices)
            raise DataLoaderError(
                f"{type(self).__name__}: building batch {job.number} of epoch {job.epoch} "
                f"(images {paths}) failed: {type(err).__name__}: {err}"
            ) from err

    def _read(self, index: int, skip_bad: bool) -> tuple[int, np.ndarray]:
        """(record index actually used, BGR image) for record ``index``.

        With ``skip_bad``, an unreadable image is replaced by the next readable record (in
        roidb order, so the choice is deterministic); its warning is logged once.
        """
        n = self.size
        last_err: OSError | None = None
        for k in range(n if skip_bad else 1):
            idx = (index + k) % n
            rec = self.records[idx]
            with self._bad_lock:
                known_bad = idx in self._bad
            if known_bad:
                continue
            try:
                return idx, read_image(rec["image"], rec.get("flipped", False))
            except OSError as err:
                if not skip_bad:
                    raise
                last_err = err
                with self._bad_lock:
                    first = idx not in self._bad
                    self._bad.add(idx)
                if first:
                    logger.warning("skipping unreadable training image: %s", err)
        raise DataLoaderError(f"{type(self).__name__}: no readable image left") from last_err

    @staticmethod
    def _wrap_image_error(rec: Mapping[str, Any], what: str, err: Exception) -> DataLoaderError:
        return DataLoaderError(f"{what} for image {rec.get('image')}: {type(err).__name__}: {err}")


# ----------------------------------------------------------------------------- test loader


class TestLoader(BatchLoader):
    """Test batches of ``batch_size`` images (all devices), every image exactly once.

    The last batch is filled up by repeating its last image; ``batch.pad`` says how many
    trailing entries to drop. Besides ``data`` (and ``index``: roidb indices, padding
    included), each DataBatch carries, for its real images only:

    * ``batch.roidb_index``: (n,) int64 roidb indices;
    * ``batch.im_info``: (n, 3) float32 ``[height, width, scale]`` (the height and width of the
      resized, stride-padded image, before padding to the batch);
    * ``batch.scales``: the n scales (the tester divides boxes by these);
    * ``batch.image_sizes``: (n, 2) ``[height, width]`` of the original images (the tester
      clips boxes to them: ``im_info`` is the stride-padded input);
    * ``batch.num_rois`` (``has_rpn=False``): the number of real rows of ``rois`` per image.

    ``loader.im_info`` is the current batch's ``batch.im_info`` (the original's attribute).

    Args:
        roidb: records (test roidb; ``boxes`` are proposals when ``has_rpn`` is False).
        cfg: config; uses ``network.PIXEL_MEANS``, ``network.IMAGE_STRIDE`` and ``SCALES``.
        batch_size: images per batch (``TEST.BATCH_IMAGES * len(ctx)``).
        shuffle: visit the images in a random (seeded) order.
        has_rpn: data is ``['data', 'im_info']``; else ``['data', 'rois']``.
        images_per_device: ``TEST.BATCH_IMAGES``: image i of a batch is image
            ``i % images_per_device`` of its device (the batch index of its ``rois`` rows).
        scale: the (short, max long) test scale; default ``cfg.SCALES[0]`` (the original drew
            one at random from ``SCALES``, which holds a single pair in every test config).
            FPN's multi-scale test calls :meth:`set_scale` for each ``TEST_SCALES`` entry.
        seed, num_workers, prefetch: see the module docstring.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        roidb: Sequence[Mapping[str, Any]],
        cfg: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        has_rpn: bool = True,
        scale: Scale | None = None,
        seed: int | None = None,
        num_workers: int = 2,
        prefetch: int | None = None,
        images_per_device: int = 1,
    ) -> None:
        self.cfg = cfg
        self.roidb = roidb
        self.has_rpn = has_rpn
        if images_per_device < 1 or batch_size % images_per_device:
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of images_per_device "
                f"{images_per_device}"
            )
        self.images_per_device = images_per_device
        self.scale = pick_scale(cfg.SCALES, 0) if scale is None else tuple(scale)
        self.data_name = ["data", "im_info"] if has_rpn else ["data", "rois"]
        self.label_name = []
        super().__init__(roidb, batch_size, shuffle, seed, num_workers, prefetch, drop_last=False)

    def set_scale(self, scale: Scale) -> None:
        """Uses another test scale from now on and restarts the pass over the images."""
        self.scale = (int(scale[0]), int(scale[1]))
        self.reset()

    @property
    def im_info(self) -> np.ndarray | None:
        return None if self._current is None else self._current.extra["im_info"]

    def _load(self, job: BatchJob) -> LoadedBatch:
        real = job.indices[: len(job.indices) - job.pad]
        tensors, records = [], []
        for idx in real:
            rec = self.roidb[idx]
            im = read_image(rec["image"], rec.get("flipped", False))
            tensor, new_rec = prepare_roi_image(rec, self.cfg, self.scale, im)
            tensors.append(tensor)
            records.append(new_rec)
        tensors += [tensors[-1]] * job.pad
        records += [records[-1]] * job.pad
        im_info = np.stack([r["im_info"] for r in records]).astype(np.float32)
        extra: dict[str, Any] = {
            "roidb_index": np.array(real, dtype=np.int64),
            "im_info": im_info[: len(real)],
            "scales": [float(r["im_info"][2]) for r in records[: len(real)]],
            "image_sizes": np.array(
                [[int(r["height"]), int(r["width"])] for r in records[: len(real)]]
            ),
        }
        if self.has_rpn:
            second = im_info
        else:
            # column 0: the image's batch index within its device's slice of the batch
            rois = [
                np.hstack([np.full((len(r["boxes"]), 1), i % self.images_per_device, np.float32),
                           r["boxes"]])
                for i, r in enumerate(records)
            ]  # fmt: skip
            extra["num_rois"] = [len(r) for r in rois[: len(real)]]
            second = tensor_vstack([r[np.newaxis] for r in rois]).astype(np.float32)
            if second.shape[1] == 0:  # no image has proposals: MXNet reads a 0-length axis
                second = np.zeros((len(rois), 1, 5), np.float32)  # as unknown; num_rois is 0
        return LoadedBatch(
            data=[tensor_vstack(tensors), second],
            label=[],
            index=np.array(job.indices, dtype=np.int64),
            pad=job.pad,
            extra=extra,
        )


# --------------------------------------------------------------------------- anchor loaders


class PerDeviceShapes:
    """``provide_data_single`` / ``provide_label_single`` of a training loader over ``self.ctx``."""

    @property
    def provide_data_single(self) -> list[tuple[str, Shape]]:
        """(name, shape) of one device's slice of the current batch."""
        return [(d.name, (d.shape[0] // len(self.ctx),) + d.shape[1:]) for d in self.provide_data]

    @property
    def provide_label_single(self) -> list[tuple[str, Shape]]:
        """(name, shape) of one device's slice of the current batch's labels."""
        return [(d.name, (d.shape[0] // len(self.ctx),) + d.shape[1:]) for d in self.provide_label]


class AnchorLoader(PerDeviceShapes, BatchLoader):
    """End-to-end (or RPN) training batches with RPN anchor targets.

    Args:
        feat_sym: the RPN score map: a symbol (``sym.get_internals()['rpn_cls_score_output']``)
            whose shape is inferred from ``data``, or a function ``(1, 3, H, W) -> (N, C, h, w)``.
        roidb: training records (flipped copies included; see ``filter_roidb``).
        cfg: config; uses ``SCALES``, ``network.*`` image settings, ``TRAIN.END2END`` and the
            ``TRAIN.RPN_*`` target settings.
        batch_size: images per batch, all devices (``TRAIN.BATCH_IMAGES * len(ctx)``).
        shuffle: a new (seeded) order every epoch.
        ctx: the devices (only their number matters: ``provide_data_single``).
        feat_stride, anchor_scales, anchor_ratios, allowed_border: as ``assign_anchor``.
        aspect_grouping: batch horizontal and vertical images separately (useful with several
            images per batch; applied with and without shuffling).
        num_workers: worker threads (0: load in the consumer's thread).
        seed: seed of the order, the scale choice and the anchor subsampling.
        prefetch: batches loaded ahead (default ``2 * num_workers``).
        skip_bad_images: replace unreadable images (warning) instead of raising.
        begin_epoch: the first epoch's index (a resumed run continues the seeded sequence of
            orders and random choices where the interrupted run left it).

    The last, incomplete batch of an epoch is dropped (as the original).
    """

    def __init__(
        self,
        feat_sym: FeatShapeSource,
        roidb: Sequence[Mapping[str, Any]],
        cfg: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        ctx: Sequence[mx.Context] | None = None,
        feat_stride: int = 16,
        anchor_scales: Sequence[float] = (8, 16, 32),
        anchor_ratios: Sequence[float] = (0.5, 1, 2),
        aspect_grouping: bool = False,
        allowed_border: float = 0,
        num_workers: int = 2,
        seed: int | None = None,
        prefetch: int | None = None,
        skip_bad_images: bool = True,
        begin_epoch: int = 0,
    ) -> None:
        self.cfg = cfg
        self.roidb = roidb
        self.ctx = list(ctx) if ctx is not None else [mx.cpu()]
        if batch_size % len(self.ctx):
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of {len(self.ctx)} devices"
            )
        self.feat_stride = feat_stride
        self.anchor_scales = tuple(anchor_scales)
        self.anchor_ratios = tuple(anchor_ratios)
        self.allowed_border = allowed_border
        self.skip_bad_images = skip_bad_images
        self._feat_shapes = _FeatShapes(feat_sym)
        self.data_name = ["data", "im_info", "gt_boxes"] if cfg.TRAIN.END2END else ["data"]
        self.label_name = ["label", "bbox_target", "bbox_weight"]
        super().__init__(
            roidb, batch_size, shuffle, seed, num_workers, prefetch, drop_last=True,
            aspect_grouping=aspect_grouping, begin_epoch=begin_epoch,
        )  # fmt: skip

    # Subclass hook: targets for one image given the feature shape(s) of the padded batch.
    def _assign(
        self,
        feat_shapes: list[Shape],
        gt_boxes: np.ndarray,
        im_info: np.ndarray,
        rng: np.random.RandomState | None,
    ) -> dict[str, np.ndarray]:
        if len(feat_shapes) != 1:
            raise ValueError(
                f"AnchorLoader needs one feature map, got {len(feat_shapes)} shapes "
                "(use PyramidAnchorLoader for FPN)"
            )
        return assign_anchor(
            feat_shapes[0], gt_boxes, im_info, self.cfg, self.feat_stride, self.anchor_scales,
            self.anchor_ratios, self.allowed_border, rng=rng,
        )  # fmt: skip

    def _load(self, job: BatchJob) -> LoadedBatch:
        rng = self.batch_rng(job)
        tensors, records, used = [], [], []
        for idx in job.indices:
            scale = pick_scale(self.cfg.SCALES, None, rng)
            idx, im = self._read(idx, self.skip_bad_images)
            rec = self.roidb[idx]
            try:
                tensor, new_rec = prepare_roi_image(rec, self.cfg, scale, im)
            except Exception as err:
                raise self._wrap_image_error(rec, "preprocessing", err) from err
            tensors.append(tensor)
            records.append(new_rec)
            used.append(idx)
        data = tensor_vstack(tensors)
        feat_shapes = self._feat_shapes(data.shape[2], data.shape[3])
        gt_list = [gt_boxes_of(r) for r in records]
        targets = []
        for rec, gt in zip(records, gt_list):
            try:
                targets.append(self._assign(feat_shapes, gt, rec["im_info"][np.newaxis], rng))
            except Exception as err:
                raise self._wrap_image_error(rec, "anchor targets", err) from err
        im_info = np.stack([r["im_info"] for r in records]).astype(np.float32)
        arrays = {"data": data, "im_info": im_info, "gt_boxes": _stack_gt_boxes(gt_list)}
        labels = [np.concatenate([t[k] for t in targets]) for k in self.label_name]
        return LoadedBatch(
            data=[arrays[k] for k in self.data_name],
            label=[lab.astype(np.float32) for lab in labels],
            index=np.array(used, dtype=np.int64),
            pad=0,
        )

    # ------------------------------------------------------------------------ shape queries

    def max_data_shape(self, max_gt: int = MAX_GT) -> list:
        """The largest data shapes of this loader's batches, for pre-binding the module.

        The whole batch (``batch_size`` images, all devices: the executor group splits it) at
        the largest of ``SCALES`` rounded up to ``IMAGE_STRIDE``
        (:func:`lib.core.shapes.max_input_shapes`), ``gt_boxes`` with ``max_gt`` rows.
        """
        return max_input_shapes(
            self.cfg,
            self.cfg.SCALES,
            images_per_device=self.batch_size // len(self.ctx),
            num_devices=len(self.ctx),
            names=self.data_name,
            max_gt=max_gt,
        )

    def infer_shape(
        self,
        max_data_shape: Sequence[tuple[str, Shape]] | None = None,
        max_label_shape: Sequence[tuple[str, Shape]] | None = None,
    ) -> tuple[list, list]:
        """(max data shapes, label shapes for them), as the original, for pre-binding.

        Args:
            max_data_shape: (name, shape) pairs with at least ``data``; default
                :meth:`max_data_shape`.
            max_label_shape: ignored (kept for the original's signature).
        """
        del max_label_shape
        max_data_shape = self.max_data_shape() if max_data_shape is None else list(max_data_shape)
        data_shape = dict(max_data_shape)["data"]
        feat_shapes = self._feat_shapes(data_shape[2], data_shape[3])
        im_info = np.array([[data_shape[2], data_shape[3], 1.0]], dtype=np.float32)
        label = self._assign(feat_shapes, np.zeros((0, 5), np.float32), im_info, None)
        label_shape = [(k, (data_shape[0],) + label[k].shape[1:]) for k in self.label_name]
        return max_data_shape, label_shape


class PyramidAnchorLoader(AnchorLoader):
    """FPN training batches: RPN targets over all pyramid levels (``assign_pyramid_anchor``).

    ``feat_sym`` is the list of per-level RPN score symbols (``rpn_cls_score_p{2..6}_output``),
    a grouped symbol, or a function returning one shape per level, in ``feat_strides`` order.
    ``allowed_border`` defaults to infinity, which FPN training passes. Otherwise as
    :class:`AnchorLoader`.
    """

    def __init__(
        self,
        feat_sym: FeatShapeSource,
        roidb: Sequence[Mapping[str, Any]],
        cfg: Any,
        batch_size: int = 1,
        shuffle: bool = False,
        ctx: Sequence[mx.Context] | None = None,
        feat_strides: Sequence[int] = (4, 8, 16, 32, 64),
        anchor_scales: Sequence[float] = (8,),
        anchor_ratios: Sequence[float] = (0.5, 1, 2),
        aspect_grouping: bool = False,
        allowed_border: float = np.inf,
        num_workers: int = 2,
        seed: int | None = None,
        prefetch: int | None = None,
        skip_bad_images: bool = True,
        begin_epoch: int = 0,
    ) -> None:
        self.feat_strides = tuple(int(s) for s in feat_strides)
        super().__init__(
            feat_sym, roidb, cfg, batch_size, shuffle, ctx, self.feat_strides[0], anchor_scales,
            anchor_ratios, aspect_grouping, allowed_border, num_workers, seed, prefetch,
            skip_bad_images, begin_epoch,
        )  # fmt: skip

    def _assign(
        self,
        feat_shapes: list[Shape],
        gt_boxes: np.ndarray,
        im_info: np.ndarray,
        rng: np.random.RandomState | None,
    ) -> dict[str, np.ndarray]:
        if len(feat_shapes) != len(self.feat_strides):
            raise ValueError(
                f"{len(feat_shapes)} feature shapes for {len(self.feat_strides)} strides "
                f"{self.feat_strides}"
            )
        return assign_pyramid_anchor(
            feat_shapes, gt_boxes, im_info, self.cfg, self.feat_strides, self.anchor_scales,
            self.anchor_ratios, self.allowed_border, rng=rng,
        )  # fmt: skip


PyramidAnchorIterator = PyramidAnchorLoader  # the original FPN name
