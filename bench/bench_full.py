"""Full-size networks on the CPU: one training iteration and one test pass, time and memory.

    .venv/bin/python bench/bench_full.py [--cfg <yaml> ...] [--iters N]

For each config (default: the COCO R-FCN, Faster R-CNN, FPN and their deformable yamls,
ResNet-v1-101 with 81 classes, and the Cityscapes DeepLab yamls), in its own process so that its
peak memory is its own:

* detection: the training symbol is bound at (1, 3, 600, 1000) (FPN: 800 x 1280, anchor
  targets over its pyramid) with parameters initialised by
  the network's from-scratch rules, and SGD iterations run on a random image with two gt boxes
  (RPN targets from ``lib.rpn.assign_anchor``); the losses must be finite. The test symbol is
  then bound with the trained parameters and detects on the same image: RoIs, class scores and
  decoded boxes (``lib.core.tester.im_detect``), per-class NMS and the best 100 detections;
* segmentation: training iterations on a 768x1024 crop with a random label map, then a test
  pass on a 1024x2048 image (the Cityscapes sizes), giving a label map of that size.

Prints one table row per config.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir)))

import mxnet as mx
import numpy as np

from lib.config import load_config
from lib.core.module import MutableModule
from lib.core.network import PyramidDetector
from lib.core.tester import bind_test_network, im_detect, select_detections
from lib.core.trainer import initial_params
from lib.nms.nms import py_nms_wrapper
from lib.rpn.rpn import assign_anchor, assign_pyramid_anchor
from lib.tools.inspect_model import get_builder

CONFIGS = [
    "experiments/rfcn/cfgs/resnet_v1_101_coco_trainval_rfcn_end2end_ohem.yaml",
    "experiments/rfcn/cfgs/resnet_v1_101_coco_trainval_rfcn_dcn_end2end_ohem.yaml",
    "experiments/faster_rcnn/cfgs/resnet_v1_101_coco_trainval_rcnn_end2end.yaml",
    "experiments/faster_rcnn/cfgs/resnet_v1_101_coco_trainval_rcnn_dcn_end2end.yaml",
    "experiments/fpn/cfgs/resnet_v1_101_coco_trainval_fpn_end2end_ohem.yaml",
    "experiments/fpn/cfgs/resnet_v1_101_coco_trainval_fpn_dcn_end2end_ohem.yaml",
    "experiments/deeplab/cfgs/deeplab_resnet_v1_101_cityscapes_segmentation_base.yaml",
    "experiments/deeplab/cfgs/deeplab_resnet_v1_101_cityscapes_segmentation_dcn.yaml",
]
DET_SIZE = (600, 1000)
FPN_SIZE = (800, 1280)  # the original FPN's scale
SEG_TRAIN, SEG_TEST = (768, 1024), (1024, 2048)
GT_BOXES = np.array([[120, 80, 420, 500, 1], [560, 150, 930, 420, 3]], dtype=np.float32)


def _train(cfg, net, sym, data: dict, labels: dict, iters: int) -> tuple:
    """Binds the training symbol, runs ``iters`` SGD steps; (module, bind s, best step s)."""
    shapes = {k: v.shape for k, v in {**data, **labels}.items()}
    tic = time.time()
    arg_params, aux_params = initial_params(cfg, net, sym, shapes)
    mod = MutableModule(sym, list(data), list(labels), context=mx.cpu(),
                        fixed_param_prefix=cfg.network.FIXED_PARAMS)  # fmt: skip
    mod.bind([(k, v.shape) for k, v in data.items()], [(k, v.shape) for k, v in labels.items()])
    mod.init_params(arg_params=arg_params, aux_params=aux_params)
    mod.init_optimizer(optimizer="sgd", optimizer_params={
        "learning_rate": cfg.TRAIN.lr, "momentum": 0.9, "wd": cfg.TRAIN.wd, "rescale_grad": 1.0,
    })  # fmt: skip
    t_bind = time.time() - tic
    batch = mx.io.DataBatch(data=[mx.nd.array(v) for v in data.values()],
                            label=[mx.nd.array(v) for v in labels.values()])  # fmt: skip
    times = []
    for _ in range(iters):
        tic = time.time()
        mod.forward_backward(batch)
        mod.update()
        outputs = [o.asnumpy() for o in mod.get_outputs()]
        times.append(time.time() - tic)
        if not all(np.all(np.isfinite(o)) for o in outputs):
            raise FloatingPointError(f"{cfg.symbol}: non-finite training outputs")
    return mod, t_bind, min(times)


def _predictor(net, cfg, mod, provide_data) -> tuple:
    """The test symbol bound with the trained params (:func:`bind_test_network`); its bind time."""
    arg_params, aux_params = mod.get_params()
    tic = time.time()
    predictor = bind_test_network(
        net(cfg, is_train=False), arg_params, aux_params, mx.cpu(), provide_data, provide_data
    )
    return predictor, time.time() - tic


def bench_detection(cfg, net, iters: int) -> dict:
    rng = np.random.RandomState(0)
    pyramid = isinstance(net, PyramidDetector)
    height, width = FPN_SIZE if pyramid else DET_SIZE
    image = rng.uniform(-100, 100, (1, 3, height, width)).astype(np.float32)
    im_info = np.array([[height, width, 1.0]], dtype=np.float32)
    sym = net(cfg, is_train=True)
    anchors = (cfg.network.ANCHOR_SCALES, cfg.network.ANCHOR_RATIOS)
    if pyramid:
        shapes = [f.infer_shape(data=image.shape)[1][0] for f in net.feat_symbol(sym)]
        targets = assign_pyramid_anchor(shapes, GT_BOXES, im_info, cfg, net.strides, *anchors,
                                        rng=rng)  # fmt: skip
    else:
        feat_shape = net.feat_symbol(sym).infer_shape(data=image.shape)[1][0]
        targets = assign_anchor(feat_shape, GT_BOXES, im_info, cfg, net.feat_stride, *anchors,
                                rng=rng)  # fmt: skip
    data = {"data": image, "im_info": im_info, "gt_boxes": GT_BOXES[np.newaxis]}
    labels = {k: targets[k] for k in ("label", "bbox_target", "bbox_weight")}
    mod, t_bind, t_train = _train(cfg, net, sym, data, labels, iters)

    provide = [("data", image.shape), ("im_info", im_info.shape)]
    predictor, t_test_bind = _predictor(net, cfg, mod, provide)
    batch = mx.io.DataBatch(data=[mx.nd.array(image), mx.nd.array(im_info)])
    tic = time.time()
    ((scores, boxes),) = im_detect(predictor, batch, ["data", "im_info"])
    dets = select_detections(scores, boxes, cfg.dataset.NUM_CLASSES, cfg.CLASS_AGNOSTIC, 0.0,
                             py_nms_wrapper(cfg.TEST.NMS), 100)  # fmt: skip
    t_test = time.time() - tic
    num_dets = sum(len(d) for d in dets)
    if num_dets == 0 or not np.all(np.isfinite(boxes)):
        raise AssertionError(f"{cfg.symbol}: the test symbol produced no finite boxes")
    size = f"{height}x{width}"
    return {"train": size, "bind_s": t_bind, "train_iter_s": t_train, "test": size,
            "test_bind_s": t_test_bind, "test_s": t_test,
            "result": f"{boxes.shape[0]} rois, {num_dets} boxes"}  # fmt: skip


def bench_segmentation(cfg, net, iters: int) -> dict:
    rng = np.random.RandomState(0)
    num_classes = cfg.dataset.NUM_CLASSES
    image = rng.uniform(-100, 100, (1, 3, *SEG_TRAIN)).astype(np.float32)
    label = rng.randint(0, num_classes, (1, 1, *SEG_TRAIN)).astype(np.float32)
    mod, t_bind, t_train = _train(cfg, net, net(cfg, is_train=True), {"data": image},
                                  {"label": label}, iters)  # fmt: skip
    test_image = rng.uniform(-100, 100, (1, 3, *SEG_TEST)).astype(np.float32)
    provide = [("data", test_image.shape)]
    predictor, t_test_bind = _predictor(net, cfg, mod, provide)
    tic = time.time()
    (out,) = predictor.predict(mx.io.DataBatch(data=[mx.nd.array(test_image)]))
    label_map = out["softmax_output"].argmax(axis=1).asnumpy()
    t_test = time.time() - tic
    if label_map.shape != (1, *SEG_TEST):
        raise AssertionError(f"{cfg.symbol}: label map {label_map.shape}, expected {SEG_TEST}")
    return {"train": "x".join(map(str, SEG_TRAIN)), "bind_s": t_bind, "train_iter_s": t_train,
            "test": "x".join(map(str, SEG_TEST)), "test_bind_s": t_test_bind, "test_s": t_test,
            "result": f"label map {SEG_TEST[0]}x{SEG_TEST[1]}"}  # fmt: skip


def bench(cfg_path: str, iters: int) -> dict:
    cfg = load_config(cfg_path, ["network.pretrained=", "gpus="])
    net = get_builder(cfg.symbol)
    run = bench_segmentation if net.task == "segmentation" else bench_detection
    row = run(cfg, net, iters)
    row["network"] = cfg.symbol
    row["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", action="append", default=None, help="config(s) to run")
    parser.add_argument("--iters", type=int, default=1, help="training iterations (min is shown)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(bench(args.cfg[0], args.iters)))
        return
    rows = []
    for path in args.cfg or CONFIGS:
        child = [sys.executable, __file__, "--one", "--cfg", path, "--iters", str(args.iters)]
        out = subprocess.run(child, check=True, capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"CPU, mxnet {mx.__version__}, {os.cpu_count()} cores, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    print(
        "| network | train input | bind s | train iteration s | test input | test bind s | "
        "test pass s | result | peak RSS GB |"
    )
    print("| --- | --- | ---: | ---: | --- | ---: | ---: | --- | ---: |")
    for r in rows:
        print(f"| {r['network']} | {r['train']} | {r['bind_s']:.1f} | {r['train_iter_s']:.1f} | "
              f"{r['test']} | {r['test_bind_s']:.1f} | {r['test_s']:.1f} | {r['result']} | "
              f"{r['peak_rss_gb']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
