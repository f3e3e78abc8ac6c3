"""Convert a Gluon model-zoo ResNet-v1 (50/101/152) to the original backbone names.

Usage::

    python -m lib.tools.convert_gluon_resnet --depth 101 --gluon-params resnet101_v1.params \\
        --out model/pretrained_model/resnet_v1_101-0000.params

The output is an MXNet checkpoint (``nd.save`` of ``arg:<name>`` / ``aux:<name>``) holding
``conv1_weight``, ``bn_conv1_{gamma,beta}``, ``res{u}_branch{1,2a,2b,2c}_weight``,
``bn{u}_branch*_{gamma,beta}`` and the aux ``*_moving_{mean,var}``, exactly the backbone
parameters of :func:`lib.symbols.resnet_v1.resnet_v1` (no classifier).

Gluon's ``BottleneckV1`` is the same MSRA v1 architecture: the stride sits on the first 1x1
convolution (``body[0]``) and on the ``downsample`` projection; BN eps is 1e-5 on both sides.
Three differences are handled or documented here:

- Gluon's two 1x1 convolutions of a bottleneck (``body[0]``, ``body[6]``) have a bias; ours have
  none. Each bias ``b`` is folded into the following frozen BN as ``moving_mean -= b``, which is
  exact for inference (and for training with ``use_global_stats=True``).
- Gluon's ``pool1`` uses pad 1 with floor (``'valid'``); the original uses pad 0 with ceil
  (``'full'``). Both give the same size for an even conv1 map (e.g. 600x1000 inputs), but the
  pooling windows are shifted by one conv1 pixel, so the converted weights see a slightly
  different res2 input unless the symbol is built with ``pool1_pad=1,
  pool1_convention='valid'``. The original networks keep their pool; fine-tuning absorbs it.
- Gluon models take RGB in [0, 1] normalised by the ImageNet mean / std; the original networks
  take RGB pixels (0..255) minus ``PIXEL_MEANS``, without std. :func:`fold_input_normalization`
  (on by default in the CLI) rescales ``conv1_weight`` by ``1 / (255 std)`` and moves the
  constant offset into ``bn_conv1_moving_mean``. That is exact except within 3 pixels of the
  image border, where Gluon zero-pads the normalised image and we zero-pad the mean-subtracted
  one.

Unit names follow :func:`lib.symbols.resnet_v1.unit_names` for every depth, so a ResNet-50
gives ``res4a, res4b1..res4b5`` (not Caffe's ``res4a..res4f``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import mxnet as mx
import numpy as np
from mxnet.gluon.model_zoo import vision

from lib.symbols.resnet_v1 import BN_EPS, DEPTHS, stage_units
from lib.utils.cli import add_debug_arg, run_cli

logger = logging.getLogger(__name__)

Params = dict[str, mx.nd.NDArray]

# Gluon model-zoo input normalisation (RGB, applied to pixels / 255).
GLUON_MEAN_RGB = (0.485, 0.456, 0.406)
GLUON_STD_RGB = (0.229, 0.224, 0.225)
# The original networks' PIXEL_MEANS (listed B, G, R in the yamls) in the tensor's RGB order.
PIXEL_MEANS_RGB = (123.15, 115.90, 103.06)


def _data(param: mx.gluon.Parameter) -> np.ndarray:
    return param.data(mx.cpu()).asnumpy().astype(np.float32)


def _bn(bn: mx.gluon.nn.BatchNorm, name: str, arg: dict, aux: dict, conv_bias=None) -> None:
    eps = bn._kwargs.get("eps", BN_EPS)
    if abs(eps - BN_EPS) > 1e-12:
        logger.warning("%s: Gluon BN eps %g differs from the symbol's %g", name, eps, BN_EPS)
    mean = _data(bn.running_mean)
    if conv_bias is not None:
        mean = mean - conv_bias  # BN(conv(x) + b) == BN'(conv(x)) with moving_mean - b
    arg[f"{name}_gamma"] = _data(bn.gamma)
    arg[f"{name}_beta"] = _data(bn.beta)
    aux[f"{name}_moving_mean"] = mean
    aux[f"{name}_moving_var"] = _data(bn.running_var)


def _conv(conv: mx.gluon.nn.Conv2D, name: str, arg: dict) -> np.ndarray | None:
    arg[f"{name}_weight"] = _data(conv.weight)
    return None if conv.bias is None else _data(conv.bias)


def convert_gluon_net(net: vision.ResNetV1, depth: int) -> tuple[Params, Params]:
    """Map the parameters of an initialised Gluon ``ResNetV1`` (bottleneck) to ours.

    Args:
        net: e.g. ``vision.resnet101_v1()`` with its parameters loaded.
        depth: 50, 101 or 152; checked against the network's blocks.

    Returns:
        ``(arg_params, aux_params)`` as float32 NDArrays on the CPU.
    """
    units = stage_units(depth)
    features = list(net.features)
    stages = [b for b in features if isinstance(b, mx.gluon.nn.HybridSequential)]
    got = tuple(len(s) for s in stages)
    if got != DEPTHS[depth]:
        raise ValueError(
            f"Gluon network has {got} blocks per stage, ResNet-{depth} has {DEPTHS[depth]}"
        )
    if not all(isinstance(b, vision.BottleneckV1) for s in stages for b in s):
        raise ValueError("only ResNet-v1 bottleneck networks (resnet50_v1 and deeper) convert")

    arg: dict[str, np.ndarray] = {}
    aux: dict[str, np.ndarray] = {}
    conv1, bn1 = features[0], features[1]
    _bn(bn1, "bn_conv1", arg, aux, _conv(conv1, "conv1", arg))
    for stage, names in zip(stages, units):
        for block, unit in zip(stage, names):
            body = list(block.body)
            # body: conv1x1(stride), BN, relu, conv3x3, BN, relu, conv1x1, BN
            for branch, conv, bn in (
                ("2a", body[0], body[1]),
                ("2b", body[3], body[4]),
                ("2c", body[6], body[7]),
            ):
                bias = _conv(conv, f"res{unit}_branch{branch}", arg)
                _bn(bn, f"bn{unit}_branch{branch}", arg, aux, bias)
            if block.downsample is not None:
                conv, bn = block.downsample[0], block.downsample[1]
                bias = _conv(conv, f"res{unit}_branch1", arg)
                _bn(bn, f"bn{unit}_branch1", arg, aux, bias)
    logger.info("converted ResNet-%d: %d arguments, %d aux states", depth, len(arg), len(aux))
    return (
        {k: mx.nd.array(v) for k, v in arg.items()},
        {k: mx.nd.array(v) for k, v in aux.items()},
    )


def fold_input_normalization(
    arg: Params,
    aux: Params,
    pixel_means_rgb: Sequence[float] = PIXEL_MEANS_RGB,
    mean_rgb: Sequence[float] = GLUON_MEAN_RGB,
    std_rgb: Sequence[float] = GLUON_STD_RGB,
) -> tuple[Params, Params]:
    """Make a Gluon-trained stem accept ``pixels - pixel_means`` instead of normalised input.

    Gluon sees ``g_c = (x_c / 255 - mean_c) / std_c``; we feed ``o_c = x_c - pixel_means_c``, so
    ``g_c = o_c / (255 std_c) + (pixel_means_c - 255 mean_c) / (255 std_c)``. The scale goes
    into ``conv1_weight``; the constant gives ``k_o = sum_{c,i,j} W[o, c, i, j] * shift_c``,
    subtracted from ``bn_conv1_moving_mean``. Exact away from the zero-padded border.

    Returns:
        New ``(arg, aux)`` dicts (the inputs are not modified).
    """
    weight = arg["conv1_weight"].asnumpy().astype(np.float64)
    scale = 1.0 / (255.0 * np.asarray(std_rgb, dtype=np.float64))
    shift = (np.asarray(pixel_means_rgb, dtype=np.float64) - 255.0 * np.asarray(mean_rgb)) * scale
    offset = (weight * shift[None, :, None, None]).sum(axis=(1, 2, 3))
    arg = {**arg, "conv1_weight": mx.nd.array(weight * scale[None, :, None, None])}
    mean = aux["bn_conv1_moving_mean"].asnumpy().astype(np.float64) - offset
    aux = {**aux, "bn_conv1_moving_mean": mx.nd.array(mean)}
    return arg, aux


def load_gluon_resnet(path: str, depth: int) -> vision.ResNetV1:
    """A Gluon ``resnet{depth}_v1`` with the parameters of ``path`` (either .params format)."""
    net = vision.get_resnet(1, depth)
    net.load_parameters(path, ctx=mx.cpu())
    return net


def save_checkpoint(path: str, arg: Params, aux: Params) -> None:
    """``nd.save`` with ``arg:`` / ``aux:`` keys (the original checkpoint format)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save = {f"arg:{k}": v for k, v in arg.items()}
    save.update({f"aux:{k}": v for k, v in aux.items()})
    mx.nd.save(path, save)
    logger.info("saved %s", path)


def convert_file(
    gluon_params: str,
    depth: int,
    out: str,
    fold_input: bool = True,
    pixel_means_rgb: Sequence[float] = PIXEL_MEANS_RGB,
) -> tuple[Params, Params]:
    """Load, convert, optionally fold the input normalisation, save; returns ``(arg, aux)``."""
    arg, aux = convert_gluon_net(load_gluon_resnet(gluon_params, depth), depth)
    if fold_input:
        arg, aux = fold_input_normalization(arg, aux, pixel_means_rgb)
    save_checkpoint(out, arg, aux)
    return arg, aux


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lib.tools.convert_gluon_resnet",
        description="Convert a Gluon model-zoo resnet{50,101,152}_v1 .params file to the "
        "original Deformable ConvNets backbone names (arg:/aux: checkpoint).",
    )
    parser.add_argument("--depth", type=int, choices=sorted(DEPTHS), default=101)
    parser.add_argument("--gluon-params", required=True, help="Gluon .params file")
    parser.add_argument(
        "--out",
        default=None,
        help="output file (default: model/pretrained_model/resnet_v1_<depth>-0000.params)",
    )
    parser.add_argument(
        "--no-fold-input",
        action="store_true",
        help="keep Gluon's input normalisation (RGB/255, ImageNet mean/std) instead of folding "
        "it into conv1 / bn_conv1 for pixels minus --pixel-means",
    )
    parser.add_argument(
        "--pixel-means",
        type=float,
        nargs=3,
        default=PIXEL_MEANS_RGB,
        metavar=("R", "G", "B"),
        help="means subtracted from the R, G, B channels by the data loader "
        "(default: %(default)s, the original PIXEL_MEANS)",
    )
    add_debug_arg(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = args.out or f"model/pretrained_model/resnet_v1_{args.depth}-0000.params"
    convert_file(args.gluon_params, args.depth, out, not args.no_fold_input, args.pixel_means)


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="convert_gluon_resnet"))
