"""FPN and Deformable FPN (2fc head, OHEM): networks (``fpn.symbols``) and entry points."""
