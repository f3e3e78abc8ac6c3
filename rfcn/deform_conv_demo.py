"""Where the deformable convolutions of res5 sample: 9^3 points per activation, on the image.

    python rfcn/deform_conv_demo.py [IMAGE_OR_FOLDER ...] [--points 'x,y;x,y'] [--offset_group G]
        [--cfg YAML] [--params PREFIX --epoch N] [--out DIR] [--gpu N]

As the original: the released ``model/deform_conv-0000.params`` with
``experiments/rfcn/cfgs/deform_conv_demo.yaml`` (1 offset group); without it the Deformable
R-FCN trained by ``experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml`` (4 offset groups, group 0
drawn). Activation points default to the centres of the best detections. ``--points`` are in
image pixels: on each image, those outside it are dropped with a warning naming them and the
image size (and listed in ``results.json``), never moved; an image with none left is skipped.
``--cfg`` takes the config of any network with deformable convolutions (Faster R-CNN, DeepLab
too). One PNG per image in ``output/demo/deform_conv`` (see
:class:`lib.core.demo.ConvOffsetDemo`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from lib.core.demo import DemoSpec, demo_main
from lib.tools.inspect_model import get_builder  # any architecture's network, by its symbol
from rfcn.demo import CFGS, TRAIN_SCRIPT

SPECS = DemoSpec.table(TRAIN_SCRIPT, {
    None: ("deform_conv", "deformable-convolution demo", f"{CFGS}/deform_conv_demo.yaml",
           "deform_conv_demo", "model/deform_conv", f"{CFGS}/synthetic_rfcn_dcn.yaml"),
})  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main("conv_offsets", SPECS, get_builder,
                     "Sampling locations of the deformable convolutions of res5", argv)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
