"""Datasets: loaders for COCO, PASCAL VOC and Cityscapes, and the synthetic data generator."""

from lib.dataset.cityscapes import CityScape, label_ids_to_train_ids
from lib.dataset.coco import coco
from lib.dataset.imdb import IMDB
from lib.dataset.load_data import (
    DETECTION_DATASETS,
    SEGMENTATION_DATASETS,
    filter_roidb,
    get_imdb,
    load_gt_roidb,
    load_gt_segdb,
    merge_roidb,
    merge_segdb,
)
from lib.dataset.pascal_voc import PascalVOC
from lib.dataset.voc_seg import VOCSegmentation

__all__ = [
    "DETECTION_DATASETS",
    "IMDB",
    "SEGMENTATION_DATASETS",
    "CityScape",
    "PascalVOC",
    "VOCSegmentation",
    "coco",
    "filter_roidb",
    "get_imdb",
    "label_ids_to_train_ids",
    "load_gt_roidb",
    "load_gt_segdb",
    "merge_roidb",
    "merge_segdb",
]
