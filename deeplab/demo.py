"""Deformable DeepLab (``--deeplab_only``: DeepLab) on images: the class map over the image.

    python deeplab/demo.py [IMAGE_OR_FOLDER ...] [--deeplab_only] [--out DIR]
        [--cfg YAML] [--params PREFIX --epoch N] [--set KEY=VALUE ...] [--gpu N]

As the original: the released Cityscapes model ``model/deeplab_dcn_cityscapes-0000.params``
(``deeplab_cityscapes`` with ``--deeplab_only``) with
``experiments/deeplab/cfgs/deeplab_cityscapes_demo.yaml`` (scale 1024 / 2048); without it the
model trained by ``experiments/deeplab/cfgs/synthetic_deeplab_dcn.yaml``
(``synthetic_deeplab.yaml``). The classes are colour-coded in the Cityscapes palette, blended
over the image, with a legend; one PNG per image in ``output/demo/deeplab_dcn`` (see
:mod:`lib.core.demo`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from deeplab.symbols import get_network
from lib.core.demo import DemoSpec, demo_main

TRAIN_SCRIPT = "experiments/deeplab/deeplab_train_test.py"
CFGS = "experiments/deeplab/cfgs"
DEMO_CFG = f"{CFGS}/deeplab_cityscapes_demo.yaml"

SPECS = DemoSpec.table(TRAIN_SCRIPT, {
    None: ("deeplab_dcn", "Deformable DeepLab", DEMO_CFG, "resnet_v1_101_deeplab_dcn",
           "model/deeplab_dcn_cityscapes", f"{CFGS}/synthetic_deeplab_dcn.yaml"),
    "deeplab_only": ("deeplab", "DeepLab", DEMO_CFG, "resnet_v1_101_deeplab",
                     "model/deeplab_cityscapes", f"{CFGS}/synthetic_deeplab.yaml"),
})  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main("segment", SPECS, get_network, "DeepLab / Deformable DeepLab demo", argv)


if __name__ == "__main__":
    sys.exit(main())
