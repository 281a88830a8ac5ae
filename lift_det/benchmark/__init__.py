"""What LiFT costs: FLOP counting, timing and peak memory shared by tools/benchmark.py, the GPU
check (tools/gpu_check.py) and the study."""
