"""Faster R-CNN networks by name: ``SYMBOLS[cfg.symbol](cfg, is_train)`` builds the symbol."""

from faster_rcnn.symbols.faster_rcnn import SYMBOLS, FasterRCNN

__all__ = ["SYMBOLS", "FasterRCNN", "get_network"]


def get_network(name: str) -> FasterRCNN:
    """The registered network ``name`` (a config's ``symbol``)."""
    try:
        return SYMBOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown Faster R-CNN symbol {name!r}; registered: {', '.join(sorted(SYMBOLS))}"
        ) from None
