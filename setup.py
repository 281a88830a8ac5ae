#!/usr/bin/env python
"""lift_det: LiFT (Lightweight Feature Transform, ECCV 2024) for ViTDet in detectron2.

detectron2 itself is not on PyPI and is therefore not listed in ``install_requires``: install it
from source (upstream) or run ``dev/setup_env.sh``, which does the whole stack (see README).
"""

from setuptools import find_packages, setup

import os


def get_version():
    init = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lift_det", "__init__.py")
    with open(init) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("__version__ not found in lift_det/__init__.py")


setup(
    name="lift_det",
    version=get_version(),
    description="LiFT feature upsampling for ViTDet, as a detectron2 extension",
    packages=find_packages(exclude=("configs", "tests*", "tools")),
    python_requires=">=3.9",
    install_requires=[
        # ranges known to work together (torch 2.14.1 + torchvision 0.29.1 + detectron2 0.7.x)
        "torch>=2.1,<2.16",
        "torchvision>=0.16,<0.31",
        "numpy<2",
        "fvcore>=0.1.5,<0.1.6",
        "iopath>=0.1.7,<0.1.10",
        "omegaconf>=2.1,<2.4",
        "pycocotools>=2.0.6",
        "timm>=0.9,<2",
        "Pillow>=9",
        "matplotlib",
        "tabulate",
        "shapely",
        "opencv-python-headless",  # detectron2's Visualizer imports cv2  # detectron2 crops polygon masks with it (LSJ's FixedSizeCrop)
    ],
    extras_require={"dev": ["pytest>=7", "pytest-timeout", "black", "isort"]},
)
