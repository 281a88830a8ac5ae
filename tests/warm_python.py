"""A warm interpreter for the tests' tool subprocesses: ``python tools/<tool>.py ...`` without
paying for torch's, torchvision's and detectron2's imports again in every process (about 4 of a tool
process's CPU seconds; the suite starts about a hundred).

:func:`start` forks off a server that imports those libraries once and writes a client script.
The client is a drop-in for the interpreter (``[client, "tools/train_net.py", ...]``): it sends
its argv, working directory, environment and stdin/stdout/stderr to the server, which forks a
worker from its warm state; the worker runs the script (or ``-c``'s code) as ``__main__`` in
that directory, with that environment and those file descriptors, and its exit status (an exit
code, or the signal that killed it) becomes the client's. Anything else (``-m``, no server) and
any request whose import-time environment differs from the server's (``PYTHON*``,
``DETECTRON2_*``, ``TORCH*``, ``PYTORCH*``) runs in the real interpreter, cold. Nothing of
lift_det is imported by the server: each worker imports it (and reads its environment) itself.
"""

import array
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

PRELOAD = "import torch, torchvision.ops, detectron2.modeling, detectron2.config, detectron2.engine"
# imported on first use by most tool runs: timm's layers by detectron2's ViT blocks (their
# deprecation warning is lift_det's to filter, as in a fresh process), tensorboard by the event
# writers, hydra's override parser by LazyConfig.apply_overrides (about 0.5 s a run in all)
PRELOAD_QUIET = (
    "timm.models.layers",
    "torch.utils.tensorboard",
    "hydra.core.override_parser.overrides_parser",
)
_IMPORT_TIME_ENV = ("PYTHON", "DETECTRON2_", "TORCH", "PYTORCH")

CLIENT = """#!{python} -S
import array, json, os, socket, sys
REAL, SOCKET = {python!r}, {socket!r}
script = sys.argv[1] if len(sys.argv) > 1 else ""
warm = script.endswith(".py") or script == "-c" and len(sys.argv) > 2
if not warm or not os.path.exists(SOCKET):
    os.execv(REAL, [REAL] + sys.argv[1:])
conn = socket.socket(socket.AF_UNIX)
conn.connect(SOCKET)
request = json.dumps(dict(argv=sys.argv[1:], cwd=os.getcwd(), env=dict(os.environ))).encode()
fds = array.array("i", [0, 1, 2])
rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
conn.sendmsg([len(request).to_bytes(8, "big") + request], rights)
reply = b""
while not reply.endswith(b"\\n"):
    chunk = conn.recv(64)
    if not chunk:
        sys.exit("warm python: the server died; rerun the tests")
    reply += chunk
kind, value = reply.split()
if kind == b"cold":
    os.execv(REAL, [REAL] + sys.argv[1:])
if kind == b"signal":
    os.kill(os.getpid(), int(value))
sys.exit(int(value))
"""


def _import_time_env(env):
    return {k: v for k, v in env.items() if k.startswith(_IMPORT_TIME_ENV)}


def _receive(conn):
    header, fds, _, _ = conn.recvmsg(8, socket.CMSG_SPACE(3 * array.array("i").itemsize))
    size, data = int.from_bytes(header, "big"), b""
    while len(data) < size:
        data += conn.recv(size - len(data))
    received = array.array("i")
    for level, kind, payload in fds:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
    return json.loads(data), list(received)


def _work(request, fds):
    """In the forked worker: become ``python <argv>`` in the request's directory and environment."""
    import runpy
    import types
    import torch

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({**_SET_BY_IMPORTS, **request["env"]})
    threads = request["env"].get("OMP_NUM_THREADS", "")
    torch.set_num_threads(int(threads) if threads.isdigit() and int(threads) > 0 else _THREADS)
    script, *args = request["argv"]
    if script == "-c":  # as the interpreter runs it: argv[0] "-c", the directory first on the path
        main, sys.argv, sys.path[0] = types.ModuleType("__main__"), ["-c", *args[1:]], ""
        sys.modules["__main__"] = main
        source = compile(args[0], "<string>", "exec")
    else:
        sys.argv, sys.path[0] = [script, *args], os.path.dirname(os.path.abspath(script))
    sys.executable = _CLIENT_PATH  # the tool's own subprocesses (the study's steps) start warm too
    _track_open()
    code = 0
    try:
        if script == "-c":
            exec(source, main.__dict__)
        else:
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    _exit(code)


def _exit(code):
    """Exit as the interpreter would, without tearing down the preloaded modules (seconds): the
    atexit functions (logging's flush among them), then every open file object is flushed."""
    import atexit

    atexit._run_exitfuncs()
    for f in list(_OPENED) + [sys.stdout, sys.stderr]:
        try:
            f.flush()
        except Exception:
            pass
    os._exit(code)


def _track_open():
    """Every file the script opens (open, io.open, _io.open) is flushed at its exit, as the
    interpreter's teardown would flush it."""
    import _io
    import builtins
    import io
    import weakref

    global _OPENED
    _OPENED, real = weakref.WeakSet(), _io.open

    def tracked_open(*args, **kwargs):
        f = real(*args, **kwargs)
        _OPENED.add(f)
        return f

    builtins.open = io.open = _io.open = tracked_open


def _handle(conn):
    """In a forked handler: run the worker, report its status; kill it if the client goes away."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request, fds = _receive(conn)
    theirs = _import_time_env(request["env"])  # less what the same imports set in their process
    theirs = {k: v for k, v in theirs.items() if _SET_BY_IMPORTS.get(k) != v}
    ours = _import_time_env(_ENV_BEFORE_IMPORTS)
    if theirs != ours:  # logged beside the client: which variables sent which run cold
        differ = sorted(k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k))
        with open(os.path.join(os.path.dirname(_CLIENT_PATH), "cold.log"), "a") as log:
            log.write(json.dumps(dict(argv=request["argv"], differ=differ)) + "\n")
        conn.sendall(b"cold 0\n")
        return
    alive_r, alive_w = os.pipe()  # closes when the worker is gone, however it ends
    pid = os.fork()
    if pid == 0:
        conn.close()
        os.close(alive_r)
        _work(request, fds)
    for fd in fds + [alive_w]:
        os.close(fd)
    while not select.select([conn, alive_r], [], [])[0].count(alive_r):
        if not conn.recv(1):  # the client is gone: so is its worker
            os.kill(pid, signal.SIGKILL)
            break
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        conn.sendall(f"signal {os.WTERMSIG(status)}\n".encode())
    else:
        conn.sendall(f"exit {os.WEXITSTATUS(status)}\n".encode())


def serve(path, client, parent):
    global _CLIENT_PATH, _THREADS, _ENV_BEFORE_IMPORTS, _SET_BY_IMPORTS
    _ENV_BEFORE_IMPORTS = dict(os.environ)
    exec(PRELOAD)
    import warnings
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module in PRELOAD_QUIET:
            importlib.import_module(module)

    _CLIENT_PATH, _THREADS = client, torch.get_num_threads()
    # what the imports set (TORCHINDUCTOR_CACHE_DIR, OpenCV's paths): a fresh process sets it too
    _SET_BY_IMPORTS = {k: v for k, v in os.environ.items() if _ENV_BEFORE_IMPORTS.get(k) != v}
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    # the preloaded objects leave the garbage collector's view (gc.freeze, made for servers that
    # fork): a worker's collections no longer walk them all and copy every page they touch
    # (about 0.5 s of each warm tool run)
    import gc

    gc.freeze()
    server = socket.socket(socket.AF_UNIX)
    server.bind(path + ".tmp")
    server.listen(16)
    os.replace(path + ".tmp", path)  # clients find the socket only once it is warm
    sys.stdout.flush()
    sys.stderr.flush()
    while os.getppid() == parent:
        if not select.select([server], [], [], 1.0)[0]:
            continue
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            try:
                _handle(conn)
            finally:
                os._exit(0)
        conn.close()
    os.remove(path)


def start(folder):
    """Start a server for this process (it exits with it); returns the client's path."""
    os.makedirs(folder, exist_ok=True)
    path, client = os.path.join(folder, "python.sock"), os.path.join(folder, "python")
    with open(client, "w") as f:
        f.write(CLIENT.format(python=sys.executable, socket=path))
    os.chmod(client, 0o755)
    subprocess.Popen(
        [sys.executable, __file__, path, client, str(os.getpid())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return client


def wait_until_warm(client, timeout=120.0):
    path = os.path.join(os.path.dirname(client), "python.sock")
    deadline = time.time() + timeout
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.1)


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
