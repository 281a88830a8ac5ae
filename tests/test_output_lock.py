"""The output-folder lock (lift_det.engine.run_dir.lock_output_dir): held while a run writes,
refused to a second run (this process or another) without waiting, and free again once the run
has ended, however it ended."""

import os
import subprocess
import sys
import pytest

from lift_det.engine import lock_output_dir
from lift_det.engine.checks import UsageError
from lift_det.engine.run_dir import LOCK_FILE

# another process tries the lock once, without waiting (timeout 0)
TRY_LOCK = """
import sys, portalocker
lock = portalocker.Lock(sys.argv[1], mode="a+", timeout=0, fail_when_locked=True)
try:
    lock.acquire()
except portalocker.exceptions.AlreadyLocked:
    print("locked")
else:
    print("acquired")
"""


def other_process_gets(folder) -> str:
    path = os.path.join(folder, LOCK_FILE)
    out = subprocess.run(
        [sys.executable, "-c", TRY_LOCK, path], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def this_process_gets(folder) -> str:
    try:
        with lock_output_dir(folder):
            return "acquired"
    except UsageError as e:
        assert f"(pid {os.getpid()}" in str(e)
        return "locked"


def test_held_lock_is_refused_at_once(tmp_path):
    out = str(tmp_path / "run")
    os.makedirs(out)
    with lock_output_dir(out):
        assert this_process_gets(out) == "locked"
        assert other_process_gets(out) == "locked"
    assert this_process_gets(out) == "acquired"
    assert other_process_gets(out) == "acquired"


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_lock_is_released_when_the_run_raises(tmp_path, error):
    out = str(tmp_path / "run")
    os.makedirs(out)
    # kept referenced, as the traceback of a failed run keeps its frame (and the lock) alive
    held = lock_output_dir(out)
    with pytest.raises(error):
        with held:
            assert other_process_gets(out) == "locked"
            raise error("the run failed")
    assert this_process_gets(out) == "acquired"
    assert other_process_gets(out) == "acquired"
    del held  # alive until here
