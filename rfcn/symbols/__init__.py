"""R-FCN networks by name: ``SYMBOLS[cfg.symbol](cfg, is_train)`` builds the symbol."""

from lib.core.network import lookup
from rfcn.symbols.rfcn import RFCN, SYMBOLS

__all__ = ["RFCN", "SYMBOLS", "get_network"]


def get_network(name: str) -> RFCN:
    """The registered network ``name`` (a config's ``symbol``).

    Raises:
        ValueError: ``name`` is not in :data:`SYMBOLS` (the message lists the registered ones).
    """
    return lookup(SYMBOLS, name, "R-FCN")
