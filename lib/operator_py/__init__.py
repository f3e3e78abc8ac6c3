"""Python CustomOps of the detection networks.

Importing this package registers ``proposal``, ``proposal_target`` and ``BoxAnnotatorOHEM``
with ``mx.operator.register``, so ``mx.sym.Custom(..., op_type=...)`` finds them. Their
attributes and input shapes are checked when a symbol is built and bound, so that nothing is
left to fail in ``forward`` on an engine thread (:mod:`lib.operator_py.base`); build them with
the ``*_symbol`` functions below to get a plain ValueError for a bad attribute.
"""

from lib.operator_py import box_annotator_ohem, proposal, proposal_target  # noqa: F401 (registers)
from lib.operator_py.box_annotator_ohem import box_annotator_ohem_symbol
from lib.operator_py.fpn_roi_pooling import fpn_levels, fpn_roi_pooling_symbol
from lib.operator_py.proposal import proposal_symbol, pyramid_proposal_symbol
from lib.operator_py.proposal_target import proposal_target_symbol, sample_rois

__all__ = [
    "box_annotator_ohem_symbol",
    "fpn_levels",
    "fpn_roi_pooling_symbol",
    "proposal_symbol",
    "proposal_target_symbol",
    "pyramid_proposal_symbol",
    "sample_rois",
]
