"""Non-maximum suppression: numpy, Cython, CUDA (optional) and soft-NMS."""
