"""The tests' warm interpreter (tests/warm_python.py) behaves as ``python script.py`` does: the
same output, exit status, directory, environment and thread count, and files flushed at exit."""

import json
import os
import subprocess
import sys
import pytest

from conftest import WARM_ENV, restored_environ, tool_python

SCRIPT = """
import json, os, sys
import torch
kept = open("unclosed.txt", "w")  # never closed: the exit flushes it
kept.write("written")
print(json.dumps(dict(argv=sys.argv[1:], cwd=os.getcwd(), mine=os.environ.get("MINE"),
                      threads=torch.get_num_threads(), main=__name__, path0=sys.path[0])))
print("to stderr", file=sys.stderr)
if sys.argv[1] == "kill":
    sys.stdout.flush()
    os.kill(os.getpid(), 9)
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
"""


def run(python, tmp_path, *args, threads="1", **env):
    folder = tmp_path / "work"
    folder.mkdir(exist_ok=True)
    env = dict(os.environ, MINE="yes", OMP_NUM_THREADS=threads, **env)
    proc = subprocess.run(
        [python, str(tmp_path / "s.py"), *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = json.loads(proc.stdout.splitlines()[0])
    assert out.pop("cwd") == str(folder) and out.pop("path0") == str(tmp_path)
    return proc.returncode, out, proc.stderr, (folder / "unclosed.txt").read_text()


@pytest.mark.parametrize("args", [["0"], ["3", "x"], ["a message"], ["kill"]])
def test_same_as_the_interpreter(tmp_path, args):
    (tmp_path / "s.py").write_text(SCRIPT)
    real, warm = sys.executable, tool_python()
    code, out, err, written = run(warm, tmp_path, *args)
    expected = run(real, tmp_path, *args)
    assert (code, out, err, written) == expected
    assert code == {"0": 0, "3": 3, "a message": 1, "kill": -9}[args[0]]
    assert written == ("" if args == ["kill"] else "written")  # SIGKILL: its buffer is lost
    assert out["argv"] == args and out["main"] == "__main__"


def test_thread_count_follows_the_environment(tmp_path):
    (tmp_path / "s.py").write_text(SCRIPT)
    for threads in ["1", "2"]:
        assert run(tool_python(), tmp_path, "0", threads=threads)[1]["threads"] == int(threads)


def test_an_import_time_variable_of_its_own_runs_cold(tmp_path):
    """PYTHON*, TORCH*, DETECTRON2_* act when the libraries are imported: another value than the
    warm server's gets the real interpreter (a script sees no torch imported before its own)."""
    (tmp_path / "t.py").write_text("import sys; print('torch' in sys.modules)")
    cmd = [tool_python(), str(tmp_path / "t.py")]
    import torchvision.ops  # noqa: F401  (sets TORCHINDUCTOR_CACHE_DIR here, as in the server)

    # the server's environment, with what the imports set here since
    same = dict(WARM_ENV, TORCHINDUCTOR_CACHE_DIR=os.environ["TORCHINDUCTOR_CACHE_DIR"])
    warm = subprocess.run(cmd, capture_output=True, text=True, env=same, check=True)
    env = dict(same, DETECTRON2_DATASETS=str(tmp_path / "elsewhere"))
    cold = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert (warm.stdout, cold.stdout) == ("True\n", "False\n")


CODE = """
import json, os, sys
print(json.dumps(dict(argv=sys.argv, cwd=os.getcwd(), main=__name__, path0=sys.path[0],
                      file="__file__" in globals())))
print("torch" in sys.modules)  # True only where it ran warm
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    raise ValueError("from -c")
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("arg", ["0", "3", "raise"])
def test_code_of_minus_c_runs_as_the_interpreter_runs_it(tmp_path, arg):
    """``python -c CODE args``: the same argv (``-c`` first), ``__main__``, directory first on the
    path, no ``__file__``, output and exit status; an exception ends in its traceback, exit 1."""

    def run(python):
        cmd = [python, "-c", CODE, arg, "x"]
        return subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    warm, real = run(tool_python()), run(sys.executable)
    assert warm.stdout.endswith("True\n") and real.stdout.endswith("False\n")
    assert warm.returncode == real.returncode and warm.stdout[:-5] == real.stdout[:-6]
    assert json.loads(warm.stdout.splitlines()[0]) == dict(
        argv=["-c", arg, "x"], cwd=str(tmp_path), main="__main__", path0="", file=False
    )
    assert warm.returncode == {"0": 0, "3": 3, "raise": 1}[arg]
    assert warm.stderr.splitlines()[-1] == real.stderr.splitlines()[-1]
    assert warm.stderr.startswith("to stderr\n")


def test_a_tool_run_in_a_test_leaves_no_variable_behind(tmp_path):
    """detectron2's seed_all_rng (default_setup runs it) sets PYTHONHASHSEED, an import-time
    variable: left behind by a test that runs a tool in-process, it would send every later tool
    run of that test process to the cold interpreter. Each test runs in restored_environ."""
    from detectron2.utils.env import seed_all_rng

    before = dict(os.environ)
    with restored_environ():
        seed_all_rng(0)
        os.environ["PATH"] = "changed"
        os.environ.pop("HOME", None)
        assert os.environ["PYTHONHASHSEED"] == "0"
    assert dict(os.environ) == before
    script = tmp_path / "t.py"
    script.write_text("import sys\nprint('torch' in sys.modules)\n")
    out = subprocess.run([tool_python(), str(script)], capture_output=True, text=True, check=True)
    assert out.stdout == "True\n"  # warm: nothing was left to differ from the server's
