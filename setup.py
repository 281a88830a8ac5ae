#!/usr/bin/env python
"""lift_det: LiFT (Lightweight Feature Transform, ECCV 2024) for ViTDet in detectron2.

detectron2 itself is not on PyPI and is therefore not listed in ``install_requires``: install it
from source (upstream) or run ``dev/setup_env.sh``, which does the whole stack (see README).
"""

import glob
import os
import shutil
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def get_version():
    init = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lift_det", "__init__.py")
    with open(init) as f:
        for line in f:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip('"')
    raise RuntimeError("__version__ not found in lift_det/__init__.py")


def get_model_zoo_configs():
    """
    Ship configs/ as package data of lift_det.model_zoo (as detectron2's setup.py does): the git
    checkout has the link lift_det/model_zoo/configs -> ../../configs; where links don't survive
    (e.g. a checkout without symlink support) it is replaced by a copy.
    """
    source = os.path.join(HERE, "configs")
    destination = os.path.join(HERE, "lift_det", "model_zoo", "configs")
    if os.path.isdir(source) and not os.path.isdir(destination):
        if os.path.lexists(destination):
            os.unlink(destination)  # a link stored as a plain file
        try:
            os.symlink(source, destination)
        except OSError:
            shutil.copytree(source, destination)
    with_dir = os.path.join(HERE, "lift_det", "model_zoo")
    return [
        os.path.relpath(p, with_dir) for p in glob.glob(f"{destination}/**/*.py", recursive=True)
    ]


setup(
    name="lift_det",
    version=get_version(),
    description="LiFT feature upsampling for ViTDet, as a detectron2 extension",
    packages=find_packages(exclude=("configs", "tests*", "tools")),
    package_data={"lift_det.model_zoo": get_model_zoo_configs()},
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
        # detectron2's Visualizer and LSJ's FixedSizeCrop (polygon masks) use cv2
        "opencv-python-headless",
        "psutil",  # peak memory on CPU (tools/benchmark.py)
        "portalocker",  # the output-folder lock (lift_det/engine/checks.py); iopath needs it too
        "scipy",  # t intervals of the multi-seed study (lift_det/study/statistics.py)
    ],
    extras_require={
        # TorchScript/ONNX export of the detector and of LiFT
        "export": ["onnx>=1.15", "onnxruntime>=1.17"],
        "dev": [
            "pytest>=7",
            "pytest-timeout",
            "pytest-xdist>=3",
            "black",
            "isort",
            "onnx>=1.15",
            "onnxruntime>=1.17",
        ],
    },
)
