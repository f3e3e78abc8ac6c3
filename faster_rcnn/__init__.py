"""Faster R-CNN (2fc) and Deformable Faster R-CNN: networks (``faster_rcnn.symbols``) and entry
points."""
