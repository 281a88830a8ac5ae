"""Checkpoints: atomic writes, LiFT files with metadata, a DetectionCheckpointer that checks."""

from .checkpointer import MIN_FIT, AtomicDetectionCheckpointer
from .fingerprint import model_fingerprint, teacher_fingerprint
from .file_io import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_text,
    is_temp_file,
    remove_stale_temp_files,
)
from .load_report import Part, collect_parts, report_part
from .lift_file import (
    LIFT_FILE_FORMAT,
    MAX_ABS_WEIGHT,
    check_lift_file,
    check_lift_state,
    lift_metadata,
    load_lift_file,
    read_lift_file,
    save_lift_file,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
