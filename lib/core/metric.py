"""Training metrics of the original release (detection and segmentation).

Detection metrics find their arrays **by position**: ``preds[pred_names.index('rpn_cls_prob')]``
and ``labels[label_names.index('rpn_label')]``, where ``pred_names`` / ``label_names`` list the
symbol's outputs / the module's labels in order, under the original's positional names (the
symbol's real output names are not used: the last training output is MXNet's auto-named
``blockgrad0_output``). Pass the lists to the constructor; :func:`get_rpn_names` and
:func:`get_rcnn_names` give the original ones. The R-CNN label comes from the outputs when
``'rcnn_label'`` is among ``pred_names`` (end-to-end or OHEM training, where the sampled labels
are an output of the network), from the module labels otherwise.

Labels ``-1`` (detection) and ``255`` (segmentation) are ignored. Every metric keeps MXNet's
local and global running sums, so ``get()`` and ``get_global()`` both work.
"""

from __future__ import annotations

from collections.abc import Sequence

import mxnet as mx
import numpy as np

__all__ = [
    "FCNLogLossMetric",
    "FCNPixelAccMetric",
    "RCNNAccMetric",
    "RCNNFGAccuracy",
    "RCNNL1LossMetric",
    "RCNNLogLossMetric",
    "RPNAccMetric",
    "RPNFGFraction",
    "RPNL1LossMetric",
    "RPNLogLossMetric",
    "get_rcnn_names",
    "get_rpn_names",
]

RPN_PRED_NAMES = ["rpn_cls_prob", "rpn_bbox_loss"]
RPN_LABEL_NAMES = ["rpn_label", "rpn_bbox_target", "rpn_bbox_weight"]


def get_rpn_names() -> tuple[list[str], list[str]]:
    """``(pred_names, label_names)`` of RPN training."""
    return list(RPN_PRED_NAMES), list(RPN_LABEL_NAMES)


def get_rcnn_names(end2end: bool = True, ohem: bool = False) -> tuple[list[str], list[str]]:
    """``(pred_names, label_names)`` of R-CNN training, as the original's ``get_rcnn_names``.

    End-to-end: ``['rpn_cls_prob', 'rpn_bbox_loss', 'rcnn_cls_prob', 'rcnn_bbox_loss',
    'rcnn_label']`` and the RPN labels. ``rcnn_label`` is an output under end2end or OHEM.
    """
    pred = ["rcnn_cls_prob", "rcnn_bbox_loss"]
    label = ["rcnn_label", "rcnn_bbox_target", "rcnn_bbox_weight"]
    if ohem or end2end:
        pred.append("rcnn_label")
    if end2end:
        pred = list(RPN_PRED_NAMES) + pred
        label = list(RPN_LABEL_NAMES)
    return pred, label


class _Metric(mx.metric.EvalMetric):
    """Positional lookup + local/global accumulation shared by all metrics here."""

    def __init__(
        self,
        name: str,
        pred_names: Sequence[str] | None = None,
        label_names: Sequence[str] | None = None,
    ) -> None:
        # MXNet's own output_names/label_names select arrays *by symbol name* in update_dict;
        # ours are positional, so they are kept apart and MXNet's stay None.
        super().__init__(name)
        default_pred, default_label = get_rcnn_names(end2end=True)
        self.pred_names = list(default_pred if pred_names is None else pred_names)
        self.label_names_pos = list(default_label if label_names is None else label_names)

    def _pred(self, preds: Sequence[mx.nd.NDArray], name: str) -> mx.nd.NDArray:
        if name not in self.pred_names:
            raise KeyError(f"{self.name}: output {name!r} not in pred_names {self.pred_names}")
        return preds[self.pred_names.index(name)]

    def _label(self, labels: Sequence[mx.nd.NDArray], name: str) -> mx.nd.NDArray:
        if name not in self.label_names_pos:
            raise KeyError(f"{self.name}: label {name!r} not in label_names {self.label_names_pos}")
        return labels[self.label_names_pos.index(name)]

    def _rcnn_label(self, labels, preds) -> np.ndarray:
        if "rcnn_label" in self.pred_names:
            arr = self._pred(preds, "rcnn_label")
        else:
            arr = self._label(labels, "rcnn_label")
        return arr.asnumpy().reshape(-1).astype(np.int32)

    def _add(self, value: float, count: int) -> None:
        self.sum_metric += value
        self.global_sum_metric += value
        self.num_inst += count
        self.global_num_inst += count


def _softmax_rows(pred: mx.nd.NDArray) -> np.ndarray:
    """(b, c, p) or (b, c, h, w) -> (b*p, c): one row of class probabilities per position."""
    p = pred.asnumpy()
    return p.reshape(p.shape[0], p.shape[1], -1).transpose(0, 2, 1).reshape(-1, p.shape[1])


def _log_loss(prob_rows: np.ndarray, label: np.ndarray, ignore: int) -> tuple[float, int]:
    keep = np.where(label != ignore)[0]
    cls = prob_rows[keep, label[keep]].astype(np.float64) + 1e-14
    return float(np.sum(-np.log(cls))), int(keep.size)


class RPNAccMetric(_Metric):
    """Anchor classification accuracy over anchors whose label is not -1."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("RPNAcc", pred_names, label_names)

    def update(self, labels, preds) -> None:
        pred = self._pred(preds, "rpn_cls_prob").asnumpy()
        # pred (b, c, p) or (b, c, h, w): argmax over c, flattened like the label (b, p)
        pred_label = pred.argmax(axis=1).reshape(-1)
        label = self._label(labels, "rpn_label").asnumpy().astype(np.int32).reshape(-1)
        keep = label != -1
        self._add(float(np.sum(pred_label[keep] == label[keep])), int(np.sum(keep)))


class RPNLogLossMetric(_Metric):
    """Mean ``-log p(label)`` over anchors whose label is not -1."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("RPNLogLoss", pred_names, label_names)

    def update(self, labels, preds) -> None:
        rows = _softmax_rows(self._pred(preds, "rpn_cls_prob"))
        label = self._label(labels, "rpn_label").asnumpy().astype(np.int32).reshape(-1)
        self._add(*_log_loss(rows, label, ignore=-1))


class RPNL1LossMetric(_Metric):
    """Sum of the RPN smooth-L1 loss output divided by the number of non-ignored anchors."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("RPNL1Loss", pred_names, label_names)

    def update(self, labels, preds) -> None:
        bbox_loss = self._pred(preds, "rpn_bbox_loss").asnumpy()
        label = self._label(labels, "rpn_label").asnumpy()
        self._add(float(np.sum(bbox_loss)), int(np.sum(label != -1)))


class RCNNAccMetric(_Metric):
    """RoI classification accuracy over RoIs whose label is not -1."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("RCNNAcc", pred_names, label_names)

    def update(self, labels, preds) -> None:
        pred = self._pred(preds, "rcnn_cls_prob").asnumpy()
        pred_label = pred.reshape(-1, pred.shape[-1]).argmax(axis=1).astype(np.int32)
        label = self._rcnn_label(labels, preds)
        keep = label != -1
        self._add(float(np.sum(pred_label[keep] == label[keep])), int(np.sum(keep)))


class RCNNLogLossMetric(_Metric):
    """Mean ``-log p(label)`` over RoIs whose label is not -1."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("RCNNLogLoss", pred_names, label_names)

    def update(self, labels, preds) -> None:
        pred = self._pred(preds, "rcnn_cls_prob").asnumpy()
        rows = pred.reshape(-1, pred.shape[-1])
        self._add(*_log_loss(rows, self._rcnn_label(labels, preds), ignore=-1))


class RCNNL1LossMetric(_Metric):
    """Sum of the R-CNN smooth-L1 loss output divided by the number of non-ignored RoIs."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("RCNNL1Loss", pred_names, label_names)

    def update(self, labels, preds) -> None:
        bbox_loss = self._pred(preds, "rcnn_bbox_loss").asnumpy()
        label = self._rcnn_label(labels, preds)
        self._add(float(np.sum(bbox_loss)), int(np.sum(label != -1)))


class RPNFGFraction(_Metric):
    """FPN: fraction of foreground (label > 0) among the sampled RoIs (label >= 0)."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("Proposal FG Fraction", pred_names, label_names)

    def update(self, labels, preds) -> None:
        label = self._rcnn_label(labels, preds)
        num_fg = int(np.sum(label > 0))
        self._add(float(num_fg), num_fg + int(np.sum(label == 0)))


class RCNNFGAccuracy(_Metric):
    """FPN: classification accuracy over foreground RoIs (label > 0) only."""

    def __init__(self, pred_names=None, label_names=None) -> None:
        super().__init__("R-CNN FG Accuracy", pred_names, label_names)

    def update(self, labels, preds) -> None:
        pred = self._pred(preds, "rcnn_cls_prob").asnumpy()
        pred_label = pred.reshape(-1, pred.shape[-1]).argmax(axis=1).astype(np.int32)
        label = self._rcnn_label(labels, preds)
        keep = label > 0
        self._add(float(np.sum(pred_label[keep] == label[keep])), int(np.sum(keep)))


class FCNLogLossMetric(_Metric):
    """DeepLab: mean ``-log p(label)`` over pixels whose label is not 255.

    ``preds[0]`` is the softmax output (b, c, h, w), ``labels[0]`` the label (b, 1, h, w) or
    (b, h*w). ``show_interval`` of the original (unused there) is not kept.
    """

    def __init__(self, ignore_label: int = 255) -> None:
        super().__init__("FCNLogLoss", pred_names=["softmax"], label_names=["label"])
        self.ignore_label = ignore_label

    def update(self, labels, preds) -> None:
        rows = _softmax_rows(preds[0])
        label = labels[0].asnumpy().astype(np.int32).reshape(-1)
        self._add(*_log_loss(rows, label, ignore=self.ignore_label))


class FCNPixelAccMetric(_Metric):
    """DeepLab: pixel accuracy of ``argmax_c softmax`` over pixels whose label is not 255."""

    def __init__(self, ignore_label: int = 255) -> None:
        super().__init__("FCNPixelAcc", pred_names=["softmax"], label_names=["label"])
        self.ignore_label = ignore_label

    def update(self, labels, preds) -> None:
        pred_label = _softmax_rows(preds[0]).argmax(axis=1)
        label = labels[0].asnumpy().astype(np.int32).reshape(-1)
        keep = label != self.ignore_label
        self._add(float(np.sum(pred_label[keep] == label[keep])), int(np.sum(keep)))
