"""Deformable FPN (``--fpn_only``: FPN) on images: boxes with class names and scores.

    python fpn/demo.py [IMAGE_OR_FOLDER ...] [--fpn_only] [--thresh 0.7] [--out DIR]
        [--cfg YAML] [--params PREFIX --epoch N] [--set KEY=VALUE ...] [--gpu N]

The original had no FPN demo; this one uses its released COCO models under their names,
``model/fpn_dcn_coco-0000.params`` (``fpn_coco``), with the COCO training config, and without
them the model trained by ``experiments/fpn/cfgs/synthetic_fpn_dcn.yaml``
(``synthetic_fpn.yaml``). Writes one PNG per image to ``output/demo/fpn_dcn`` (see
:mod:`lib.core.demo`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from fpn.symbols import get_network
from lib.core.demo import DemoSpec, demo_main

TRAIN_SCRIPT = "experiments/fpn/fpn_end2end_train_test.py"
CFGS = "experiments/fpn/cfgs"

SPECS = DemoSpec.table(TRAIN_SCRIPT, {
    None: ("fpn_dcn", "Deformable FPN",
           f"{CFGS}/resnet_v1_101_coco_trainval_fpn_dcn_end2end_ohem.yaml",
           "resnet_v1_101_fpn_dcn_rcnn", "model/fpn_dcn_coco", f"{CFGS}/synthetic_fpn_dcn.yaml"),
    "fpn_only": ("fpn", "FPN", f"{CFGS}/resnet_v1_101_coco_trainval_fpn_end2end_ohem.yaml",
                 "resnet_v1_101_fpn_rcnn", "model/fpn_coco", f"{CFGS}/synthetic_fpn.yaml"),
})  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main("detect", SPECS, get_network, "FPN / Deformable FPN demo", argv)


if __name__ == "__main__":
    sys.exit(main())
