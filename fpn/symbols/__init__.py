"""FPN networks by name: ``SYMBOLS[cfg.symbol](cfg, is_train)`` builds the symbol."""

from fpn.symbols.fpn import FPN, SYMBOLS
from lib.core.network import lookup

__all__ = ["FPN", "SYMBOLS", "get_network"]


def get_network(name: str) -> FPN:
    """The registered network ``name`` (a config's ``symbol``).

    Raises:
        ValueError: ``name`` is not in :data:`SYMBOLS` (the message lists the registered ones).
    """
    return lookup(SYMBOLS, name, "FPN")
