"""R-FCN networks by name: ``SYMBOLS[cfg.symbol](cfg, is_train)`` builds the symbol."""

from rfcn.symbols.rfcn import RFCN, SYMBOLS

__all__ = ["RFCN", "SYMBOLS", "get_network"]


def get_network(name: str) -> RFCN:
    """The registered network ``name`` (a config's ``symbol``)."""
    try:
        return SYMBOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown R-FCN symbol {name!r}; registered: {', '.join(sorted(SYMBOLS))}"
        ) from None
