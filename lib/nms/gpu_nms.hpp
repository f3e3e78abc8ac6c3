// Greedy NMS on the GPU: the py-faster-rcnn bitmask design (one 64-bit mask word per box and
// block of 64 candidates, reduced on the host).
#pragma once

// boxes_host: (boxes_num, 4) float32 x1, y1, x2, y2, already sorted by descending score.
// keep_out: room for boxes_num ints; receives kept row indices (into the sorted boxes).
// Suppresses a box when its IoU (+1 pixel areas) with a kept box is > nms_overlap_thresh.
// Throws std::runtime_error on a CUDA failure.
void _nms(int* keep_out, int* num_out, const float* boxes_host, int boxes_num,
          float nms_overlap_thresh, int device_id);
