from deeplab.symbols.deeplab import SYMBOLS, DeepLab
from lib.core.network import lookup

__all__ = ["SYMBOLS", "DeepLab", "get_network"]


def get_network(name: str) -> DeepLab:
    """The registered network ``name`` (a config's ``symbol``).

    Raises:
        ValueError: ``name`` is not in :data:`SYMBOLS` (the message lists the registered ones).
    """
    return lookup(SYMBOLS, name, "DeepLab")
