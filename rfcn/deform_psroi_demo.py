"""Where deformable PS-RoI pooling samples: the k x k bins of boxes after their offsets.

    python rfcn/deform_psroi_demo.py [IMAGE_OR_FOLDER ...] [--boxes 'x1,y1,x2,y2[,class];...']
        [--num_boxes 4] [--cfg YAML] [--params PREFIX --epoch N] [--out DIR] [--gpu N]

As the original: the released ``model/deform_psroi-0000.params`` with
``experiments/rfcn/cfgs/deform_psroi_demo.yaml`` (3x3 bins; it has no RPN, so ``--boxes`` is
needed); without it the Deformable R-FCN trained by
``experiments/rfcn/cfgs/synthetic_rfcn_dcn.yaml`` (7x7 bins, on its own best detections).
``--cfg`` takes the config of any detector with deformable RoI pooling (Deformable Faster R-CNN
too, whose offsets all classes share). One PNG per image in ``output/demo/deform_psroi`` (see
:class:`lib.core.demo.PsroiOffsetDemo`).

``--boxes`` are in image pixels, checked on each image: a box partly outside it is clipped to the
image (``results.json`` keeps the ``given`` box), a box wholly outside is dropped, each with a
warning naming the boxes and the image size; an image with no box left is skipped. A box's
class must be one of the model's object classes, ``1 .. NUM_CLASSES - 1`` (checked before the
model's parameters are read).
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
    None: ("deform_psroi", "deformable PS-RoI pooling demo", f"{CFGS}/deform_psroi_demo.yaml",
           "deform_psroi_demo", "model/deform_psroi", f"{CFGS}/synthetic_rfcn_dcn.yaml"),
})  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return demo_main("psroi_offsets", SPECS, get_builder,
                     "Bins of deformable PS-RoI pooling after their offsets", argv)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
