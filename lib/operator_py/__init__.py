"""Python CustomOps of the detection networks.

Importing this package registers ``proposal``, ``proposal_target`` and ``BoxAnnotatorOHEM``
with ``mx.operator.register``, so ``mx.sym.Custom(..., op_type=...)`` finds them.
"""

from lib.operator_py import box_annotator_ohem, proposal, proposal_target  # noqa: F401 (registers)
from lib.operator_py.proposal import proposal_symbol
from lib.operator_py.proposal_target import proposal_target_symbol, sample_rois

__all__ = ["proposal_symbol", "proposal_target_symbol", "sample_rois"]
