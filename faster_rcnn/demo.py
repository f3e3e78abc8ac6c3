"""Deformable Faster R-CNN (``--rcnn_only``: Faster R-CNN) on images: boxes, names, scores.

    python faster_rcnn/demo.py [IMAGE_OR_FOLDER ...] [--rcnn_only] [--thresh 0.7] [--out DIR]
        [--cfg YAML] [--params PREFIX --epoch N] [--set KEY=VALUE ...] [--gpu N]

The original had no Faster R-CNN demo; this one uses its released COCO models under their
names, ``model/rcnn_dcn_coco-0000.params`` (``rcnn_coco``), with the COCO training config, and
without them the model trained by ``experiments/faster_rcnn/cfgs/synthetic_rcnn_dcn.yaml``
(``synthetic_rcnn.yaml``). Writes one PNG per image to ``output/demo/rcnn_dcn`` (see
:mod:`lib.core.demo`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

if __name__ == "__main__":
    import _init_paths  # noqa: F401  (puts the repo root on sys.path)

from faster_rcnn.symbols import get_network
from lib.core.demo import DemoSpec, demo_main

TRAIN_SCRIPT = "experiments/faster_rcnn/rcnn_end2end_train_test.py"
CFGS = "experiments/faster_rcnn/cfgs"

SPECS = DemoSpec.table(TRAIN_SCRIPT, {
    None: ("rcnn_dcn", "Deformable Faster R-CNN",
           f"{CFGS}/resnet_v1_101_coco_trainval_rcnn_dcn_end2end.yaml", "resnet_v1_101_rcnn_dcn",
           "model/rcnn_dcn_coco", f"{CFGS}/synthetic_rcnn_dcn.yaml"),
    "rcnn_only": ("rcnn", "Faster R-CNN", f"{CFGS}/resnet_v1_101_coco_trainval_rcnn_end2end.yaml",
                  "resnet_v1_101_rcnn", "model/rcnn_coco", f"{CFGS}/synthetic_rcnn.yaml"),
})  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main("detect", SPECS, get_network, "Faster R-CNN / Deformable Faster R-CNN demo",
                     argv)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
