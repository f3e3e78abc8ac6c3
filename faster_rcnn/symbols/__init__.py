"""Faster R-CNN networks by name: ``SYMBOLS[cfg.symbol](cfg, is_train)`` builds the symbol."""

from faster_rcnn.symbols.faster_rcnn import SYMBOLS, FasterRCNN
from lib.core.network import lookup

__all__ = ["SYMBOLS", "FasterRCNN", "get_network"]


def get_network(name: str) -> FasterRCNN:
    """The registered network ``name`` (a config's ``symbol``).

    Raises:
        ValueError: ``name`` is not in :data:`SYMBOLS` (the message lists the registered ones).
    """
    return lookup(SYMBOLS, name, "Faster R-CNN")
