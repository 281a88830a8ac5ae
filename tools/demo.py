#!/usr/bin/env python3
"""
Detect on images, a video or a webcam with a LazyConfig model; draw with detectron2's Visualizer.
"""

import lift_det  # noqa: F401  # isort: skip  (first: quiets third-party import warnings)

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
from lift_det.data import read_image
from lift_det.engine import checks
from lift_det.engine.predictor import LazyPredictor
from lift_det.utils import media
from lift_det.utils.cli import UserError, run_main


def expand_inputs(patterns):
    """Files, globs and folders (their images) -> file list; refuses what matched nothing."""
    files = []
    for p in patterns:
        if os.path.isdir(p):
            images = [f for f in os.listdir(p) if f.lower().endswith(media.IMAGE_EXTS)]
            found = sorted(os.path.join(p, f) for f in images)
        else:
            found = sorted(glob.glob(os.path.expanduser(p)))
        if not found:
            raise UserError(f"--input {p}: no such file, or no images matched.")
        files += found
    return files


def output_path(args, path, n_inputs):
    if n_inputs == 1 and not os.path.isdir(args.output) and not args.output.endswith(os.sep):
        return args.output
    return os.path.join(args.output, os.path.basename(path))


def check_outputs(args, inputs):
    """No output may be an input: the drawings would replace the images they are drawn on. One
    image's output file needs an extension OpenCV writes images to."""
    single = inputs and output_path(args, inputs[0], len(inputs)) == args.output
    if single and not cv2.haveImageWriter(args.output):
        ext = os.path.splitext(args.output)[1] or "no extension"
        raise UserError(
            f"--output {args.output}: OpenCV writes no image with {ext}: give a .jpg "
            f"or .png file, or a folder (end it with {os.sep})."
        )
    sources = inputs + ([args.video_input] if args.video_input else [])
    for path in inputs:
        out = output_path(args, path, len(inputs))
        clash = next((s for s in sources if media.same_file(out, s)), None)
        if clash:
            raise UserError(
                f"--output {args.output} would write {out} over the input {clash}: "
                f"give another --output folder or file."
            )


def check_arguments(args):
    """Everything that can be checked before anything is loaded or written; returns the image
    files."""
    if not (args.input or args.video_input or args.webcam):
        raise UserError("give --input, --video-input or --webcam.")
    inputs = expand_inputs(args.input) if args.input else []
    if args.video_input and not os.path.isfile(args.video_input):
        raise UserError(f"--video-input {args.video_input}: no such file.")
    if args.video_input:
        media.check_video_readable(args.video_input)
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise UserError(f"--confidence-threshold {args.confidence_threshold}: must be in [0, 1].")
    checks.check_weights(args.weights, "--weights")  # a missing or empty local file, named
    if args.output:
        check_outputs(args, inputs)
    return inputs


def make_outputs(args, inputs):
    """The output folder, and for a video (fourcc, output file), once the model is built: a
    refused checkpoint leaves nothing behind."""
    video = None
    if args.output:  # the folder of what output_path names (a video's file counts as one input)
        folder = os.path.dirname(os.path.abspath(output_path(args, "x", max(len(inputs), 1))))
        try:
            os.makedirs(folder, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as e:
            raise UserError(
                f"--output {folder}: cannot create this folder, a file is in the way "
                f"({e.filename or folder}): give another path, or move the file."
            ) from None
        if args.video_input or args.webcam:
            name = os.path.splitext(os.path.basename(args.video_input or "webcam"))[0]
            video = media.video_codec(output_path(args, name, 1))
            if args.video_input and media.same_file(video[1], args.video_input):
                raise UserError(f"--output {video[1]} is the input video: give another --output.")
    return video


def main(args):
    logger = setup_logger(name="lift_det")
    # arguments first: nothing is loaded before they are known to be usable, and nothing is
    # written before the model is built from the weights
    inputs = check_arguments(args)
    # a missing file or a yacs YAML: a UsageError, refused in one line
    cfg = LazyConfig.apply_overrides(checks.load_lazy_config(args.config_file), args.opts)
    weights = args.weights or cfg.train.init_checkpoint
    if not weights:
        raise UserError(
            "no weights: give --weights OUTPUT_DIR/model_final.pth (or set train.init_checkpoint)."
        )
    try:  # lift_det's checked loading: a LiFT file or a partly random model is refused
        predictor = LazyPredictor(cfg, weights)
    except ValueError as e:
        raise UserError(str(e)) from None
    video_out = make_outputs(args, inputs)

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
        writer, frames = None, 0
        if video_out:
            fourcc, out = video_out
            fps, w, h = (video.get(p) for p in (cv2.CAP_PROP_FPS, 3, 4))
            writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*fourcc), fps, (int(w), int(h)))
            if not writer.isOpened():
                sys.exit(f"cannot write {out} with codec {fourcc} at {int(w)}x{int(h)}.")
        while video.isOpened():
            ok, frame = video.read()
            if not ok:
                break
            drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], detect(frame))
            drawn = drawn.get_image()[:, :, ::-1]
            if writer is not None:
                writer.write(drawn)
                frames += 1
            else:
                cv2.imshow("lift_det", drawn)
                if cv2.waitKey(1) == 27:
                    break
        video.release()
        if writer is not None:
            writer.release()
            if not frames:
                sys.exit(f"{args.video_input or 'the webcam'}: no frame could be read.")
            logger.info(f"Wrote {frames} frames to {video_out[1]} ({video_out[0]}).")
    if failed:
        sys.exit(f"{len(failed)} of {len(inputs)} inputs failed: {', '.join(failed)}")


def get_parser():
    parser = argparse.ArgumentParser(description="lift_det demo (LazyConfig models)")
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", nargs="+", help="images, globs ('dir/*.jpg') or folders")
    parser.add_argument("--video-input", help="a video file")
    parser.add_argument("--webcam", action="store_true", help="the first webcam")
    parser.add_argument(
        "--output",
        help="a file for one input, else a folder (created), never an input; a video's output "
        "file gets a codec this OpenCV can write (.mp4, else .avi); default: show in a window",
    )
    parser.add_argument("--weights", default="", help="default: train.init_checkpoint")
    parser.add_argument("--confidence-threshold", "--confidence", type=float, default=0.5)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="key=value config overrides")
    return parser


if __name__ == "__main__":
    run_main(main, get_parser())
