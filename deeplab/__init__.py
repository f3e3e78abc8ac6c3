"""DeepLab and Deformable DeepLab (semantic segmentation): networks (``deeplab.symbols``)."""
