#!/usr/bin/env python3
"""
Detect on images, a video or a webcam with a LazyConfig model; draw with detectron2's Visualizer.

    tools/demo.py --config-file configs/mini/vitdet_mrcnn_lift.py \
        --input img1.jpg "imgs/*.png" imgs/ --output out/ \
        --weights OUTPUT_DIR/model_final.pth [--confidence-threshold 0.5] [key=value ...]
"""

import argparse
import glob
import os
import sys
import cv2

from detectron2.config import LazyConfig
from detectron2.utils.logger import setup_logger
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

import tqdm

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def expand_inputs(patterns):
    """Files, globs and folders (their images) -> file list; raises naming what matched nothing."""
    files = []
    for p in patterns:
        if os.path.isdir(p):
            found = sorted(
                os.path.join(p, f) for f in os.listdir(p) if f.lower().endswith(IMAGE_EXTS)
            )
        else:
            found = sorted(glob.glob(os.path.expanduser(p)))
        if not found:
            raise FileNotFoundError(f"--input {p}: no such file, or no images matched.")
        files += found
    return files


def output_path(args, path, n_inputs):
    if n_inputs == 1 and not os.path.isdir(args.output):
        return args.output
    return os.path.join(args.output, os.path.basename(path))


def main(args):
    logger = setup_logger(name="lift_det")
    # arguments first: nothing is loaded before they are known to be usable
    if not (args.input or args.video_input or args.webcam):
        sys.exit("Give --input, --video-input or --webcam.")
    inputs = expand_inputs(args.input) if args.input else []
    if args.video_input and not os.path.isfile(args.video_input):
        sys.exit(f"--video-input {args.video_input}: no such file.")
    if not 0.0 <= args.confidence_threshold <= 1.0:
        sys.exit(f"--confidence-threshold {args.confidence_threshold}: must be in [0, 1].")
    if args.output and (len(inputs) > 1 or args.output.endswith(os.sep)):
        os.makedirs(args.output, exist_ok=True)
    elif args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)

    from lift_det.data import read_image
    from lift_det.engine.predictor import LazyPredictor  # registers lift_det's classes

    cfg = LazyConfig.apply_overrides(LazyConfig.load(args.config_file), args.opts)
    predictor = LazyPredictor(cfg, args.weights or cfg.train.init_checkpoint)

    def detect(bgr):
        instances = predictor(bgr)["instances"].to("cpu")
        return instances[instances.scores >= args.confidence_threshold]

    failed = []
    for path in tqdm.tqdm(inputs, disable=not args.output):
        try:
            bgr = read_image(path, format="BGR")  # 16-bit images too
        except Exception as e:  # a bad file is named and skipped; the others go on
            logger.error(f"{path}: cannot read it as an image ({e}); skipped.")
            failed.append(path)
            continue
        instances = detect(bgr)
        vis = Visualizer(bgr[:, :, ::-1], predictor.metadata, instance_mode=ColorMode.IMAGE)
        drawn = vis.draw_instance_predictions(instances).get_image()[:, :, ::-1]
        logger.info(f"{path}: {len(instances)} detections")
        if args.output:
            cv2.imwrite(output_path(args, path, len(inputs)), drawn)
        else:
            cv2.imshow("lift_det", drawn)
            if cv2.waitKey(0) == 27:
                break  # esc
    if args.video_input or args.webcam:
        video = cv2.VideoCapture(args.video_input or 0)
        visualizer = VideoVisualizer(predictor.metadata, ColorMode.IMAGE)
        writer = None
        if args.output:
            out = output_path(args, os.path.splitext(args.video_input or "webcam")[0] + ".mkv", 1)
            fps, w, h = (video.get(p) for p in (cv2.CAP_PROP_FPS, 3, 4))
            writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"x264"), fps, (int(w), int(h)))
        while video.isOpened():
            ok, frame = video.read()
            if not ok:
                break
            drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], detect(frame))
            drawn = drawn.get_image()[:, :, ::-1]
            if writer is not None:
                writer.write(drawn)
            else:
                cv2.imshow("lift_det", drawn)
                if cv2.waitKey(1) == 27:
                    break
        video.release()
        if writer is not None:
            writer.release()
    if failed:
        sys.exit(f"{len(failed)} of {len(inputs)} inputs failed: {', '.join(failed)}")


def get_parser():
    parser = argparse.ArgumentParser(description="lift_det demo (LazyConfig models)")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", help="images, globs ('dir/*.jpg') or folders")
    parser.add_argument("--video-input", help="a video file")
    parser.add_argument("--webcam", action="store_true", help="the first webcam")
    parser.add_argument(
        "--output", help="a file for one input, else a folder (created); default: show in a window"
    )
    parser.add_argument("--weights", default="", help="default: train.init_checkpoint")
    parser.add_argument("--confidence-threshold", "--confidence", type=float, default=0.5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value config overrides")
    return parser


if __name__ == "__main__":
    main(get_parser().parse_args())
