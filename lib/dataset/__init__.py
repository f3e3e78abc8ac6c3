"""Datasets: loaders for COCO, PASCAL VOC and Cityscapes, and the synthetic data generator."""
