"""Deformable R-FCN (``--rfcn_only``: R-FCN) on images: boxes with class names and scores.

    python rfcn/demo.py [IMAGE_OR_FOLDER ...] [--rfcn_only] [--thresh 0.7] [--out DIR]
        [--cfg YAML] [--params PREFIX --epoch N] [--set KEY=VALUE ...] [--gpu N]

As the original: the released COCO model ``model/rfcn_dcn_coco-0000.params`` (``rfcn_coco``
with ``--rfcn_only``) with ``experiments/rfcn/cfgs/rfcn_coco_demo.yaml``; without it the model
trained by ``experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml`` (``synthetic_rfcn.yaml``). Runs on
the images in ``demo/`` by default and writes one PNG per image to ``output/demo/rfcn_dcn``
(see :mod:`lib.core.demo`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from lib.core.demo import DemoSpec, demo_main
from rfcn.symbols import get_network

TRAIN_SCRIPT = "experiments/rfcn/rfcn_end2end_train_test.py"
CFGS = "experiments/rfcn/cfgs"
DEMO_CFG = f"{CFGS}/rfcn_coco_demo.yaml"

#: ``--flag`` (None: the default) -> the demo's models: (output name, title, released yaml,
#: network, released checkpoint, synthetic yaml)
SPECS = DemoSpec.table(TRAIN_SCRIPT, {
    None: ("rfcn_dcn", "Deformable R-FCN", DEMO_CFG, "resnet_v1_101_rfcn_dcn",
           "model/rfcn_dcn_coco", f"{CFGS}/synthetic_rfcn_dcn.yaml"),
    "rfcn_only": ("rfcn", "R-FCN", DEMO_CFG, "resnet_v1_101_rfcn", "model/rfcn_coco",
                  f"{CFGS}/synthetic_rfcn.yaml"),
})  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main("detect", SPECS, get_network, "R-FCN / Deformable R-FCN demo", argv)


if __name__ == "__main__":
    sys.exit(main())
