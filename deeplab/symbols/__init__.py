from deeplab.symbols.deeplab import SYMBOLS, DeepLab

__all__ = ["SYMBOLS", "DeepLab", "get_network"]


def get_network(name: str) -> DeepLab:
    """The registered network ``name`` (a config's ``symbol``).

    Raises:
        ValueError: ``name`` is not in :data:`SYMBOLS` (the message lists the registered ones).
    """
    try:
        return SYMBOLS[name]
    except KeyError:
        raise ValueError(
            f"unknown DeepLab symbol {name!r}; registered: {', '.join(sorted(SYMBOLS))}"
        ) from None
