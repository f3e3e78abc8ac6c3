"""R-FCN and Deformable R-FCN: networks (``rfcn.symbols``) and entry points."""
