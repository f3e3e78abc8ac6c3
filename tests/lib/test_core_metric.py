"""Tests for lib.core.metric on small hand-worked arrays."""

import math

import mxnet as mx
import numpy as np
import pytest

from lib.core import metric as M

nd = mx.nd.array

# RPN: rpn_cls_prob (b=1, c=2, p=4), label (1, 4). Anchors: 0 right, 1 right, 2 wrong, 3 ignored.
RPN_PROB = nd([[[0.9, 0.2, 0.6, 0.3], [0.1, 0.8, 0.4, 0.7]]])
RPN_LABEL = nd([[0, 1, 1, -1]])
RPN_BBOX_LOSS = nd([[[1.0, 2.0], [0.5, 0.5]]])  # sum 4.0

# R-CNN: rcnn_cls_prob (1, R=4, C=3), rcnn_label (1, 4). RoIs: bg right, fg right, fg wrong,
# ignored.
RCNN_PROB = nd([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.3, 0.5], [0.3, 0.3, 0.4]]])
RCNN_LABEL = nd([[0, 1, 1, -1]])
RCNN_BBOX_LOSS = nd([[[0.25, 0.5], [1.0, 0.25]]])  # sum 2.0


def e2e_inputs():
    preds = [RPN_PROB, RPN_BBOX_LOSS, RCNN_PROB, RCNN_BBOX_LOSS, RCNN_LABEL]
    labels = [RPN_LABEL, mx.nd.zeros((1, 8)), mx.nd.zeros((1, 8))]
    return labels, preds


def value(metric):
    _name, val = metric.get()
    assert metric.get_global()[1] == pytest.approx(val)
    return val


def test_names_match_the_original():
    pred, label = M.get_rcnn_names(end2end=True, ohem=True)
    assert pred == [
        "rpn_cls_prob",
        "rpn_bbox_loss",
        "rcnn_cls_prob",
        "rcnn_bbox_loss",
        "rcnn_label",
    ]
    assert label == ["rpn_label", "rpn_bbox_target", "rpn_bbox_weight"]
    assert M.get_rcnn_names(end2end=False, ohem=False) == (
        ["rcnn_cls_prob", "rcnn_bbox_loss"],
        ["rcnn_label", "rcnn_bbox_target", "rcnn_bbox_weight"],
    )
    assert M.get_rcnn_names(end2end=False, ohem=True)[0][-1] == "rcnn_label"


def test_rpn_metrics():
    labels, preds = e2e_inputs()
    acc, logloss, l1 = M.RPNAccMetric(), M.RPNLogLossMetric(), M.RPNL1LossMetric()
    for m in (acc, logloss, l1):
        m.update(labels, preds)
    assert value(acc) == pytest.approx(2 / 3)
    assert value(logloss) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)
    assert value(l1) == pytest.approx(4.0 / 3)
    assert acc.name == "RPNAcc" and logloss.name == "RPNLogLoss" and l1.name == "RPNL1Loss"


def test_rpn_metrics_4d_prob_layout():
    # (b, c, h, w) = (1, 2, 2, 2): position p = h * W + w, the label order.
    labels, preds = e2e_inputs()
    preds[0] = RPN_PROB.reshape((1, 2, 2, 2))
    acc, logloss = M.RPNAccMetric(), M.RPNLogLossMetric()
    acc.update(labels, preds)
    logloss.update(labels, preds)
    assert value(acc) == pytest.approx(2 / 3)
    assert value(logloss) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)


def test_rcnn_metrics_end2end_take_label_from_outputs():
    labels, preds = e2e_inputs()
    ms = {
        "acc": M.RCNNAccMetric(),
        "logloss": M.RCNNLogLossMetric(),
        "l1": M.RCNNL1LossMetric(),
        "fg_frac": M.RPNFGFraction(),
        "fg_acc": M.RCNNFGAccuracy(),
    }
    for m in ms.values():
        m.update(labels, preds)
    assert value(ms["acc"]) == pytest.approx(2 / 3)
    assert value(ms["logloss"]) == pytest.approx(
        -(math.log(0.7) + math.log(0.8) + math.log(0.3)) / 3
    )
    assert value(ms["l1"]) == pytest.approx(2.0 / 3)
    assert value(ms["fg_frac"]) == pytest.approx(2 / 3)  # 2 fg of 3 sampled (bg + fg)
    assert value(ms["fg_acc"]) == pytest.approx(1 / 2)
    assert ms["fg_frac"].name == "Proposal FG Fraction"
    assert ms["fg_acc"].name == "R-CNN FG Accuracy"


def test_rcnn_metrics_label_from_labels_when_not_an_output():
    pred_names, label_names = M.get_rcnn_names(end2end=False, ohem=False)
    preds = [RCNN_PROB, RCNN_BBOX_LOSS]
    labels = [RCNN_LABEL, mx.nd.zeros((4, 8)), mx.nd.zeros((4, 8))]
    acc = M.RCNNAccMetric(pred_names, label_names)
    l1 = M.RCNNL1LossMetric(pred_names, label_names)
    acc.update(labels, preds)
    l1.update(labels, preds)
    assert value(acc) == pytest.approx(2 / 3)
    assert value(l1) == pytest.approx(2.0 / 3)


def test_positions_follow_the_given_names():
    # Outputs in another order: the metric must follow the names, not fixed indices.
    labels, preds = e2e_inputs()
    names = ["rcnn_label", "rcnn_cls_prob", "rpn_cls_prob"]
    acc = M.RCNNAccMetric(pred_names=names, label_names=["rpn_label"])
    acc.update(labels, [preds[4], preds[2], preds[0]])
    assert value(acc) == pytest.approx(2 / 3)
    with pytest.raises(KeyError, match="rcnn_bbox_loss"):
        M.RCNNL1LossMetric(pred_names=names).update(labels, preds)


def test_metric_without_instances_is_nan_and_all_ignored_counts_nothing():
    m = M.RCNNFGAccuracy()
    labels, preds = e2e_inputs()
    preds[4] = nd([[0, -1, -1, 0]])  # no foreground
    m.update(labels, preds)
    assert m.num_inst == 0 and math.isnan(m.get()[1])


def test_composite_through_update_dict():
    # Module.update_metric calls update_dict with name-keyed dicts; ours must ignore the names.
    labels, preds = e2e_inputs()
    comp = mx.metric.CompositeEvalMetric()
    for cls in (M.RPNAccMetric, M.RCNNAccMetric):
        comp.add(cls())
    out_names = [
        "rpn_cls_prob_output",
        "rpn_bbox_loss_output",
        "cls_prob_reshape_output",
        "bbox_loss_reshape_output",
        "blockgrad0_output",
    ]
    comp.update_dict(
        dict(zip(["label", "bbox_target", "bbox_weight"], labels)), dict(zip(out_names, preds))
    )
    assert dict(comp.get_name_value()) == pytest.approx({"RPNAcc": 2 / 3, "RCNNAcc": 2 / 3})


def test_fcn_metrics_ignore_255():
    # softmax (1, C=3, 2, 2); pixels (row-major): label 0, 2, 255, 1
    prob = np.zeros((1, 3, 2, 2), np.float32)
    prob[0, :, 0, 0] = [0.5, 0.3, 0.2]  # label 0 -> right, p 0.5
    prob[0, :, 0, 1] = [0.6, 0.1, 0.3]  # label 2 -> wrong, p 0.3
    prob[0, :, 1, 0] = [0.0, 0.0, 1.0]  # ignored
    prob[0, :, 1, 1] = [0.2, 0.7, 0.1]  # label 1 -> right, p 0.7
    label = nd([[[[0, 2], [255, 1]]]])
    loss, acc = M.FCNLogLossMetric(), M.FCNPixelAccMetric()
    loss.update([label], [nd(prob)])
    acc.update([label], [nd(prob)])
    assert value(loss) == pytest.approx(-(math.log(0.5) + math.log(0.3) + math.log(0.7)) / 3)
    assert value(acc) == pytest.approx(2 / 3)
    # label as (b, h*w) works too
    loss2 = M.FCNLogLossMetric()
    loss2.update([label.reshape((1, 4))], [nd(prob)])
    assert value(loss2) == pytest.approx(value(loss))


def test_log_loss_of_zero_probability_is_finite():
    m = M.RPNLogLossMetric()
    labels, preds = e2e_inputs()
    preds[0] = nd([[[1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]])
    m.update(labels, preds)
    assert value(m) == pytest.approx(-math.log(1e-14) * 2 / 3, rel=1e-6)
