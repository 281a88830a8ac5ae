"""The mini pipeline (README's `make main`) and the multi-seed study (`make study`, `make
study-check`): steps that run tools/train_net.py, their schedule, statistics, report and figures.
Nothing here is imported by ``import lift_det``."""
