"""Evaluation: PASCAL VOC AP, COCO box AP (pycocotools) and segmentation IoU."""

from lib.evaluation.coco_eval import COCO_STAT_NAMES, coco_box_ap, write_coco_results
from lib.evaluation.seg_eval import accumulate, confusion_matrix, mean_iou, pixel_accuracy
from lib.evaluation.voc_eval import parse_voc_rec, voc_ap, voc_eval

__all__ = [
    "COCO_STAT_NAMES",
    "accumulate",
    "coco_box_ap",
    "confusion_matrix",
    "mean_iou",
    "parse_voc_rec",
    "pixel_accuracy",
    "voc_ap",
    "voc_eval",
    "write_coco_results",
]
