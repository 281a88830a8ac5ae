"""What OpenCV can write here, probed rather than assumed (tools/demo.py): image extensions and a
video codec for an output file (OpenCV builds differ: pip's has no H.264 encoder)."""

import os
import cv2

from ..data import IMAGE_EXTENSIONS
from .cli import UserError

# a folder's images that the demo can draw on and write back (OpenCV writes no GIF)
IMAGE_EXTS = tuple(e for e in IMAGE_EXTENSIONS if cv2.haveImageWriter(f"image{e}"))


# the fourcc codes to try for a video container, best first (OpenCV builds differ: pip's has no
# H.264 encoder); a folder output gets the first of .mp4 / .avi that this OpenCV can write
VIDEO_CODECS = {
    ".mp4": ("avc1", "mp4v"),
    ".mkv": ("x264", "avc1", "mp4v", "MJPG"),
    ".avi": ("MJPG", "XVID"),
}


def video_codec(path):
    """(fourcc, path): the first codec this OpenCV can write for ``path``'s container, probed
    with ``cv2.VideoWriter.isOpened`` in the output folder; a path without a known extension
    gets .mp4 or .avi. Refuses when none opens."""
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_CODECS:
        candidates = [(c, path) for c in VIDEO_CODECS[ext]]
    else:
        candidates = [(c, path + e) for e in (".mp4", ".avi") for c in VIDEO_CODECS[e]]
    for fourcc, out in candidates:  # OpenCV logs the encoders it does not find
        probe = os.path.join(os.path.dirname(os.path.abspath(out)), f".probe-{os.getpid()}")
        probe += os.path.splitext(out)[1]
        writer = cv2.VideoWriter(probe, cv2.VideoWriter_fourcc(*fourcc), 30, (64, 64))
        ok = writer.isOpened()
        writer.release()
        if os.path.exists(probe):
            os.remove(probe)
        if ok:
            return fourcc, out
    tried = ", ".join(sorted({c for c, _ in candidates}))
    raise UserError(
        f"this OpenCV ({cv2.__version__}) cannot write {os.path.basename(path)} (no encoder for "
        f"{tried}): give --output a .avi file (MJPG) or a folder."
    )


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file (links followed; the second may not exist yet)."""
    a, b = os.path.realpath(a), os.path.realpath(b)
    return a == b or (os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))


def check_video_readable(path: str) -> None:
    """Refuses, before a model is built, a video OpenCV cannot read a first frame of."""
    video = cv2.VideoCapture(path)
    ok = video.isOpened() and video.read()[0]
    video.release()
    if not ok:
        raise UserError(
            f"--video-input {path}: OpenCV ({cv2.__version__}) cannot read a frame of it: not a "
            f"video, a damaged file, or a codec this OpenCV cannot decode (try converting it to "
            f".mp4 with ffmpeg)."
        )
