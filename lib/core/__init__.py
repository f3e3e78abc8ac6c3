"""Training and testing machinery shared by every architecture.

``module`` (MutableModule and its fit loop), ``metric``, ``callback`` (Speedometer),
``checkpoint`` (atomic save/load, ``*_test`` bbox params), ``lr_scheduler``, ``initializer``
(new-layer init rules), plus the data loaders. Import the submodules directly, e.g.
``from lib.core.module import MutableModule``.
"""
