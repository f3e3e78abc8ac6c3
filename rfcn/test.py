"""Testing of an end-to-end trained R-FCN / Deformable R-FCN (proposals from its own RPN).

    python rfcn/test.py --cfg experiments/rfcn/cfgs/<name>.yaml [--ignore_cache] [--thresh 1e-3]

Loads ``<output_path>/<cfg name>/<train image_set>/<model_prefix>-<TEST.test_epoch>.params``
with ``process=True`` (the ``*_test`` bbox weights replace the training ones), runs the test
symbol over ``dataset.test_image_set`` at ``SCALES[0]`` and evaluates with the dataset's metric
(:func:`lib.core.tester.pred_eval`). Logs and results go to
``<output_path>/<cfg name>/<test_image_set>/``.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

import mxnet as mx

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from lib.config import add_config_args, config_from_args
from lib.core.checkpoint import load_param
from lib.core.initializer import check_parameter_shapes, infer_param_shapes
from lib.core.loader import TestLoader
from lib.core.tester import Predictor, pred_eval
from lib.dataset.load_data import get_imdb
from lib.utils.logger import create_logger, experiment_output_path
from rfcn.symbols import get_network
from rfcn.train_end2end import get_context

logger = logging.getLogger(__name__)


def test_net(
    cfg: Any,
    cfg_path: str,
    ctx: list[mx.Context] | None = None,
    epoch: int | None = None,
    thresh: float = 1e-3,
    ignore_cache: bool = True,
    shuffle: bool = False,
    num_workers: int = 2,
) -> dict[str, Any]:
    """Detects and evaluates ``cfg.dataset.test_image_set`` with a trained checkpoint.

    Args:
        cfg: the loaded config.
        cfg_path: the yaml it came from (names the output directories).
        ctx: devices; default from ``cfg.gpus`` (one image per device).
        epoch: checkpoint epoch; default ``cfg.TEST.test_epoch``.
        thresh: minimum detection score.
        ignore_cache: recompute detections even if a cached pickle exists.
        shuffle: visit the test images in a random order.
        num_workers: loader threads.

    Returns:
        The dataset's metrics (COCO: ``AP``, ``AP50``, ...; VOC: ``mAP@0.5``, ...) and
        ``detections_file``.
    """
    if not cfg.TEST.HAS_RPN:
        raise ValueError(
            "rfcn/test.py tests end-to-end models (TEST.HAS_RPN: true); precomputed proposals "
            "are not supported"
        )
    _, output_dir = create_logger(cfg.output_path, cfg_path, cfg.dataset.test_image_set, cfg)
    train_dir = experiment_output_path(cfg.output_path, cfg_path, cfg.dataset.image_set)
    prefix = os.path.join(train_dir, cfg.TRAIN.model_prefix)
    epoch = cfg.TEST.test_epoch if epoch is None else epoch
    ctx = get_context(cfg) if ctx is None else ctx

    net = get_network(cfg.symbol)
    sym = net(cfg, is_train=False)
    imdb = get_imdb(
        cfg.dataset.dataset,
        cfg.dataset.test_image_set,
        cfg.dataset.root_path,
        cfg.dataset.dataset_path,
        result_path=output_dir,
    )
    roidb = imdb.gt_roidb()
    test_data = TestLoader(
        roidb, cfg, batch_size=len(ctx), shuffle=shuffle, has_rpn=True, num_workers=num_workers
    )

    arg_params, aux_params = load_param(prefix, epoch, process=True)
    logger.info("testing %s-%04d.params on %s (%d images)", prefix, epoch, imdb.name, len(roidb))
    height, width = (int(s) for s in cfg.SCALES[0])
    max_data_shape = [("data", (len(ctx), 3, height, width)), ("im_info", (len(ctx), 3))]
    arg_shapes, aux_shapes = infer_param_shapes(sym, dict(max_data_shape))
    check_parameter_shapes(arg_shapes, aux_shapes, arg_params, aux_params)
    arg_params = {k: v for k, v in arg_params.items() if k in arg_shapes}
    aux_params = {k: v for k, v in aux_params.items() if k in aux_shapes}

    predictor = Predictor(
        sym,
        test_data.data_name,
        None,
        context=ctx,
        max_data_shapes=max_data_shape,
        provide_data=test_data.provide_data,
        arg_params=arg_params,
        aux_params=aux_params,
    )
    results = pred_eval(
        predictor, test_data, imdb, cfg, output_dir, thresh=thresh, ignore_cache=ignore_cache
    )
    test_data.close()
    logger.info("results of %s-%04d on %s: %s", prefix, epoch, imdb.name, results)
    return results


test_net.__test__ = False  # a library function, not a pytest test


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Test an end-to-end trained R-FCN")
    add_config_args(parser)
    parser.add_argument("--ignore_cache", action="store_true", help="recompute the detections")
    parser.add_argument("--thresh", type=float, default=1e-3, help="minimum detection score")
    parser.add_argument("--shuffle", action="store_true", help="shuffle the test images")
    parser.add_argument("--epoch", type=int, default=None, help="default TEST.test_epoch")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    cfg = config_from_args(args, arch="rfcn")
    return test_net(
        cfg,
        args.cfg,
        epoch=args.epoch,
        thresh=args.thresh,
        ignore_cache=args.ignore_cache,
        shuffle=args.shuffle,
    )


if __name__ == "__main__":
    main()
