"""Find and load the configs shipped with lift_det (``lift_det/model_zoo/configs``)."""

import os

from detectron2.config import LazyConfig

# setup.py links (or, where links fail, copies) the repository's configs/ here, as detectron2's
# setup.py does for detectron2/model_zoo/configs; a wheel carries them as package data
CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def get_config_file(config_path: str) -> str:
    """The path of one of lift_det's configs, ``config_path`` relative to its ``configs/`` (e.g.
    "vitdet_mrcnn_lift.py" or "mini/vitdet_mrcnn.py")."""
    path = os.path.join(CONFIG_DIR, config_path)
    if not os.path.isfile(path):
        available = sorted(
            os.path.relpath(os.path.join(d, f), CONFIG_DIR)
            for d, _, files in os.walk(CONFIG_DIR)
            for f in files
            if f.endswith(".py") and os.path.basename(d) != "common"
        )
        raise RuntimeError(
            f"{config_path} is not one of lift_det's configs (looked in {CONFIG_DIR}). "
            f"Available: {', '.join(available) or 'none: reinstall with `pip install -e .`'}."
        )
    return path


def get_config(config_path: str):
    """The LazyConfig object of one of lift_det's configs (:func:`get_config_file`), as
    :func:`detectron2.model_zoo.get_config` returns detectron2's. Relative imports between config
    files keep working (they resolve next to the file)."""
    if not config_path.endswith(".py"):
        raise ValueError(f"{config_path}: lift_det's configs are LazyConfig .py files.")
    return LazyConfig.load(get_config_file(config_path))
