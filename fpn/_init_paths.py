"""Puts the repository root on ``sys.path``, for the scripts run as ``python fpn/<script>.py``.

Only entry points import this; library code never changes ``sys.path``.
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
