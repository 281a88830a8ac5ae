"""lift_det's configs as package data, like :mod:`detectron2.model_zoo`:
``get_config("vitdet_mrcnn_lift.py")`` works from any directory once lift_det is installed."""

from .model_zoo import CONFIG_DIR, get_config, get_config_file

__all__ = ["CONFIG_DIR", "get_config", "get_config_file"]
