#!/usr/bin/env python
"""
Detect on images with a LazyConfig model and draw boxes and masks with detectron2's Visualizer.

    tools/demo.py --config-file configs/mini/vitdet_mrcnn_lift.py --input img.jpg \
        --output out.png [--weights OUTPUT_DIR/model_final.pth] [--confidence 0.5] [key=value ...]
"""

from detectron2.config import LazyConfig
from detectron2.data.detection_utils import read_image
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import ColorMode, Visualizer

import argparse
import lift_det  # noqa: F401  (registers backbones and datasets)
import logging
import os
from lift_det.engine.predictor import LazyPredictor


def main(args):
    setup_logger(name="lift_det")
    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    weights = args.weights or cfg.train.init_checkpoint
    predictor = LazyPredictor(cfg, weights)
    fmt = cfg.model.input_format
    inputs = args.input
    for i, path in enumerate(inputs):
        image = read_image(path, format=fmt)
        instances = predictor(image)["instances"].to("cpu")
        instances = instances[instances.scores >= args.confidence]
        rgb = image if fmt == "RGB" else image[:, :, ::-1]
        vis = Visualizer(rgb, predictor.metadata, instance_mode=ColorMode.IMAGE)
        drawn = vis.draw_instance_predictions(instances)
        out = args.output
        if len(inputs) > 1:
            os.makedirs(out, exist_ok=True)
            out = os.path.join(out, os.path.splitext(os.path.basename(path))[0] + ".png")
        drawn.save(out)
        logging.getLogger("lift_det").info(f"{path}: {len(instances)} detections -> {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="LazyConfig detection demo")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--input", nargs="+", required=True, help="image file(s)")
    parser.add_argument("--output", required=True, help="PNG file (a folder for several inputs)")
    parser.add_argument("--weights", default="", help="default: train.init_checkpoint")
    parser.add_argument("--confidence", type=float, default=0.5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value config overrides")
    main(parser.parse_args())
