"""Full-size R-FCN on the CPU: one training iteration and one test pass at 600x1000.

    .venv/bin/python bench/bench_rfcn_full.py [--cfg <yaml> ...] [--iters N]

For each config (default: the COCO R-FCN and Deformable R-FCN yamls, 81 classes, ResNet-v1-101,
OHEM) the training symbol is bound at (1, 3, 600, 1000) with parameters initialised by the
network's from-scratch rules, and one SGD iteration runs on a random image with two gt boxes
(RPN targets from ``lib.rpn.assign_anchor``); the losses must be finite. Then the test symbol
is bound with the trained parameters and detects on the same image: RoIs, class scores and
decoded boxes (``lib.core.tester.im_detect``), per-class NMS and the best 100 detections
(``select_detections`` with threshold 0). Prints one table row per config.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir)))

import mxnet as mx
import numpy as np

from lib.config import load_config
from lib.core.module import MutableModule
from lib.core.tester import Predictor, im_detect, select_detections
from lib.nms.nms import py_nms_wrapper
from lib.rpn.rpn import assign_anchor
from rfcn.symbols import get_network
from rfcn.train_end2end import initial_params

CONFIGS = [
    "experiments/rfcn/cfgs/resnet_v1_101_coco_trainval_rfcn_end2end_ohem.yaml",
    "experiments/rfcn/cfgs/resnet_v1_101_coco_trainval_rfcn_dcn_end2end_ohem.yaml",
]
HEIGHT, WIDTH = 600, 1000
GT_BOXES = np.array([[120, 80, 420, 500, 1], [560, 150, 930, 420, 3]], dtype=np.float32)


def _sync(arrays) -> list[np.ndarray]:
    return [a.asnumpy() for a in arrays]


def bench(cfg_path: str, iters: int) -> dict:
    cfg = load_config(cfg_path, ["network.pretrained=", "gpus="])
    net = get_network(cfg.symbol)
    rng = np.random.RandomState(0)
    image = rng.uniform(-100, 100, (1, 3, HEIGHT, WIDTH)).astype(np.float32)
    im_info = np.array([[HEIGHT, WIDTH, 1.0]], dtype=np.float32)

    # -- training iteration
    sym = net(cfg, is_train=True)
    feat_shape = sym.get_internals()["rpn_cls_score_output"].infer_shape(data=image.shape)[1][0]
    targets = assign_anchor(
        feat_shape,
        GT_BOXES,
        im_info,
        cfg,
        net.feat_stride,
        cfg.network.ANCHOR_SCALES,
        cfg.network.ANCHOR_RATIOS,
        rng=rng,
    )
    data = {"data": image, "im_info": im_info, "gt_boxes": GT_BOXES[np.newaxis]}
    labels = {k: targets[k] for k in ("label", "bbox_target", "bbox_weight")}
    shapes = {k: v.shape for k, v in {**data, **labels}.items()}
    tic = time.time()
    arg_params, aux_params = initial_params(cfg, net, sym, shapes)
    mod = MutableModule(
        sym,
        list(data),
        list(labels),
        context=mx.cpu(),
        fixed_param_prefix=cfg.network.FIXED_PARAMS,
    )
    mod.bind([(k, v.shape) for k, v in data.items()], [(k, v.shape) for k, v in labels.items()])
    mod.init_params(arg_params=arg_params, aux_params=aux_params)
    mod.init_optimizer(
        optimizer="sgd",
        optimizer_params={
            "learning_rate": cfg.TRAIN.lr,
            "momentum": 0.9,
            "wd": cfg.TRAIN.wd,
            "rescale_grad": 1.0,
        },
    )
    t_bind = time.time() - tic
    batch = mx.io.DataBatch(
        data=[mx.nd.array(v) for v in data.values()],
        label=[mx.nd.array(v) for v in labels.values()],
    )
    t_train = []
    for _ in range(iters):
        tic = time.time()
        mod.forward_backward(batch)
        mod.update()
        outputs = _sync(mod.get_outputs())
        mx.nd.waitall()
        t_train.append(time.time() - tic)
        if not all(np.all(np.isfinite(o)) for o in outputs):
            raise FloatingPointError(f"{cfg.symbol}: non-finite training outputs")
    out_shapes = {n: o.shape for n, o in zip(mod.output_names, outputs)}

    # -- test pass with the trained parameters
    arg_params, aux_params = mod.get_params()
    test_sym = net(cfg, is_train=False)
    test_args = set(test_sym.list_arguments())
    tic = time.time()
    predictor = Predictor(
        test_sym,
        ["data", "im_info"],
        context=mx.cpu(),
        provide_data=[("data", image.shape), ("im_info", im_info.shape)],
        arg_params={k: v for k, v in arg_params.items() if k in test_args},
        aux_params=aux_params,
    )
    t_test_bind = time.time() - tic
    test_batch = mx.io.DataBatch(data=[mx.nd.array(image), mx.nd.array(im_info)])
    tic = time.time()
    ((scores, boxes),) = im_detect(predictor, test_batch, ["data", "im_info"])
    t_test = time.time() - tic
    dets = select_detections(
        scores,
        boxes,
        cfg.dataset.NUM_CLASSES,
        cfg.CLASS_AGNOSTIC,
        0.0,
        py_nms_wrapper(cfg.TEST.NMS),
        100,
    )
    num_dets = sum(len(d) for d in dets)
    if num_dets == 0 or not np.all(np.isfinite(boxes)):
        raise AssertionError(f"{cfg.symbol}: the test symbol produced no finite boxes")
    return {
        "network": cfg.symbol,
        "bind_s": t_bind,
        "train_iter_s": min(t_train),
        "test_bind_s": t_test_bind,
        "test_s": t_test,
        "rois": boxes.shape[0],
        "detections": num_dets,
        "cls_prob": out_shapes["cls_prob_reshape_output"],
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", action="append", default=None, help="config(s) to run")
    parser.add_argument("--iters", type=int, default=1, help="training iterations (min is shown)")
    args = parser.parse_args()
    rows = [bench(path, args.iters) for path in args.cfg or CONFIGS]
    print(f"R-FCN at {HEIGHT}x{WIDTH}, CPU, mxnet {mx.__version__}, {os.cpu_count()} cores")
    header = (
        f"{'network':<24}{'bind s':>8}{'train it s':>12}{'test bind s':>13}{'test s':>8}"
        f"{'rois':>6}{'dets':>6}  {'cls_prob (train)':<18}{'peak RSS GB':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['network']:<24}{r['bind_s']:>8.2f}{r['train_iter_s']:>12.2f}"
            f"{r['test_bind_s']:>13.2f}{r['test_s']:>8.2f}{r['rois']:>6}{r['detections']:>6}  "
            f"{r['cls_prob']!s:<18}{r['peak_rss_gb']:>12.2f}"
        )


if __name__ == "__main__":
    main()
