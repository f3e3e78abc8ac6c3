"""Box geometry: IoU (Cython), box encodings and R-CNN regression targets."""
