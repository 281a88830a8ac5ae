"""The reproducibility probe (`make study-check`): the loss trace hook against the losses the model
returned, the schedule of a run stopped early, bit-exact comparison, train_net's new switches and
tools/study_check.py end to end (write, check, a changed digit, no trace)."""

import itertools
import json
import math
import os
import re
import subprocess
import pytest
import torch
from fvcore.common.param_scheduler import MultiStepParamScheduler
from torch import nn

from detectron2.config import LazyConfig
from detectron2.engine import SimpleTrainer, hooks
from detectron2.solver import WarmupParamScheduler

from conftest import CPU_ENV, REPO, doc_text, load_tool, tool_python
from lift_det.engine.replay import FixedLengthLRScheduler, LossTrace
from lift_det.study.probe import compare_losses

STUDY_CHECK = os.path.join(REPO, "tools", "study_check.py")
train_net = load_tool("train_net")


class Toy(nn.Module):
    """Two loss terms; keeps the exact value of each term it returned."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.7, -0.3]))
        self.returned = []

    def forward(self, x):
        losses = {"loss_fit": ((self.w * x).sum() - 1) ** 2, "loss_l1": self.w.abs().sum() / 3}
        self.returned.append({k: v.item() for k, v in losses.items()})
        return losses


def train_toy(start, stop, *hooks_, model=None):
    model = model or Toy()
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = SimpleTrainer(model, itertools.repeat(torch.tensor([1.0, 2.0])), optim)
    trainer.register_hooks(list(hooks_))
    trainer.train(start, stop)
    return trainer, model


def read(path):
    with open(path) as f:
        return json.load(f)


def test_loss_trace_is_the_losses_the_model_returned(tmp_path):
    _, model = train_toy(0, 5, LossTrace(3, str(tmp_path)))
    trace = read(tmp_path / "loss_trace.json")
    # by hand: each term's .item(), and their sum in float64 as detectron2 logs total_loss
    expected = [
        {**{k: v.hex() for k, v in r.items()}, "total_loss": (r["loss_fit"] + r["loss_l1"]).hex()}
        for r in model.returned[:3]
    ]
    assert trace == {"first_iter": 0, "losses": expected}
    assert len({r["loss_fit"] for r in model.returned[:3]}) == 3  # the model did train


def test_loss_trace_of_a_short_or_resumed_run(tmp_path):
    train_toy(0, 2, LossTrace(5, str(tmp_path)))  # fewer than 5 iterations: written at the end
    path = tmp_path / "loss_trace.json"
    assert len(read(path)["losses"]) == 2
    train_toy(0, 4, LossTrace(2, str(tmp_path)))
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    train_toy(3, 5, LossTrace(2, str(tmp_path)))  # resumed past N: nothing new
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


def test_a_start_that_failed_keeps_its_own_error(tmp_path):
    """An earlier hook's before_train fails: the trainer still runs every after_train, and the
    trace's must neither write nor replace that error with its own."""

    class FailsToStart(hooks.HookBase):
        def before_train(self):
            raise RuntimeError("the earlier hook's own error")

    with pytest.raises(RuntimeError, match="the earlier hook's own error"):
        train_toy(0, 2, FailsToStart(), LossTrace(2, str(tmp_path)))
    assert not (tmp_path / "loss_trace.json").exists()


def test_compare_losses_is_bit_exact():
    values = [{"total_loss": 1.25, "loss_a": 0.1}, {"total_loss": 1.0, "loss_a": 1e-3}]
    trace = [{k: v.hex() for k, v in row.items()} for row in values]
    assert compare_losses(trace, [dict(r) for r in trace])["identical"]
    for row in trace:
        assert all(float.fromhex(h).hex() == h for h in row.values())
    last_bit = [dict(r) for r in trace]
    last_bit[1]["loss_a"] = math.nextafter(1e-3, 1.0).hex()
    got = compare_losses(trace, last_bit)
    assert (got["identical"], got["first_iter"], got["at"]) == (False, 1, (1, "loss_a"))
    assert got["max_abs"] == math.ulp(1e-3) and got["max_rel"] == math.ulp(1e-3) / math.nextafter(
        1e-3, 1.0
    )
    assert got["first_rel"] == got["max_rel"]
    assert compare_losses(trace, trace[:1])["first_iter"] == 1  # a shorter trace differs too
    # a different start: iteration 0 off by 20% (total_loss) and 50% (loss_a); later ones further
    start = [{"total_loss": 1.0, "loss_a": 0.05}, {"total_loss": 3.0, "loss_a": 1e-3}]
    got = compare_losses(trace, [{k: v.hex() for k, v in row.items()} for row in start])
    assert got["first_iter"] == 0 and got["first_rel"] == pytest.approx(0.05 / 0.1)
    assert got["max_rel"] == pytest.approx(2.0 / 3.0)


def test_a_run_stopped_early_keeps_the_full_schedule():
    def lrs(hook, stop):
        seen = []

        class Record(hooks.HookBase):
            def after_step(self):
                seen.append(self.trainer.storage.latest()["lr"][0])

        train_toy(0, stop, hook, Record())
        return seen

    def schedule():  # 4 warmup iterations of 10, a drop at 8
        return WarmupParamScheduler(
            MultiStepParamScheduler([1.0, 0.1], milestones=[8], num_updates=10), 0.01, 0.4
        )

    full = lrs(hooks.LRScheduler(scheduler=schedule()), 10)
    assert lrs(FixedLengthLRScheduler(scheduler=schedule(), max_iter=10), 3) == full[:3]
    assert lrs(hooks.LRScheduler(scheduler=schedule()), 3) != full[:3]  # stretched over 3


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--loss-trace", "-1"], "--loss-trace must be an integer >= 0 .0: off., got -1"),
        (["--stop-at-iter", "-2"], "--stop-at-iter must be an integer >= 0"),
        (["--stop-at-iter", "401"], r"--stop-at-iter 401 is past the end of the schedule .train"),
    ],
)
def test_train_net_refuses_bad_switches(extra, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_net, "launch", None)  # a check that lets it through: TypeError
    config = os.path.join(REPO, "configs", "mini", "vitdet_mrcnn.py")  # train.max_iter = 400
    with pytest.raises(SystemExit) as e:
        train_net.invoke_main(["--config-file", config, *extra, f"train.output_dir={tmp_path}"])
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err.replace("\n", " "))
    # in the documentation's table of refusals
    assert re.search(r"\n\| [^\n]*`--loss-trace` < 0; `--stop-at-iter` < 0", doc_text())


def study_check(*args, cwd):
    """tools/study_check.py as users run it, in a subprocess: (exit code, stdout, stderr)."""
    env = dict(os.environ, **CPU_ENV)
    proc = subprocess.run(
        [tool_python(), STUDY_CHECK, *args], capture_output=True, text=True, env=env, cwd=cwd
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def check_here(capsys, monkeypatch):
    """tools/study_check.py in this process, as its ``__main__`` runs it (``run_main``: a refusal
    is one line and exit code 2; the subprocesses of :func:`study_check` run the script itself):
    the same (exit code, stdout, stderr), without a new interpreter's imports for each check of a
    probe whose steps are already run."""
    tool = load_tool("study_check")
    for k, v in CPU_ENV.items():
        monkeypatch.setenv(k, v)

    def run(*args, cwd):
        capsys.readouterr()
        with monkeypatch.context() as mp:
            mp.chdir(cwd)
            try:
                rc = tool.run_main(tool.main, tool.get_parser(), list(args))
            except SystemExit as e:
                rc = e.code
        out, err = capsys.readouterr()
        return rc, out, err

    return run


def test_study_check_end_to_end(tmp_path, check_here):
    trace_file, probe = str(tmp_path / "trace.json"), str(tmp_path / "probe")
    rc, out, err = study_check(
        "--write",
        trace_file,
        "--study-iters",
        "20",
        "10",
        "10",
        "--iters",
        "2",
        "--output-dir",
        probe,
        cwd=tmp_path,
    )
    assert rc == 0, out[-3000:] + err[-3000:]
    trace = read(trace_file)
    assert [s["name"] for s in trace["steps"]] == ["baseline", "seed0/stage1_lift", "seed0/lift"]
    assert [len(s["losses"]) for s in trace["steps"]] == [2, 2, 2]
    assert trace["machine"] and trace["torch"] == torch.__version__

    # the baseline, stopped after 2 iterations, ran on the schedule of its 20 (lr by hand)
    cfg = LazyConfig.load(os.path.join(REPO, "configs", "mini", "vitdet_mrcnn.py"))
    warmup = float(trace["steps"][0]["overrides"]["lr_multiplier.warmup_length"])
    with open(os.path.join(probe, "baseline", "metrics.json")) as f:
        lr = {row["iteration"]: row["lr"] for row in map(json.loads, f) if "lr" in row}
    alpha, factor = (1 / 20) / warmup, cfg.lr_multiplier.warmup_factor
    assert lr[1] == pytest.approx(cfg.optimizer.lr * (factor * (1 - alpha) + alpha), rel=1e-12)

    # the check rebuilds the steps from the trace's budgets (here: takes the finished runs; the
    # checks run main() in this process, the write above ran the script)
    rc, out, err = check_here(
        "--trace", trace_file, "--output-dir", probe, "--resume", cwd=tmp_path
    )
    assert rc == 0, out[-3000:] + err[-3000:]
    assert out.count("identical bit for bit (2 iterations)") == 3
    assert trace["machine"] in out

    # one hex digit changed at iteration 1 of stage one (compared with the probe run above): the
    # trace's own machine class, so the difference is a failure
    changed = read(trace_file)
    loss = changed["steps"][1]["losses"][1]
    old = loss["total_loss"]  # 0x1.<13 hex digits>p<exponent>
    loss["total_loss"] = old[:5] + ("1" if old[5] != "1" else "2") + old[6:]
    with open(tmp_path / "changed.json", "w") as f:
        json.dump(changed, f)
    rc, out, err = check_here(
        "--trace", "changed.json", "--output-dir", probe, "--resume", cwd=tmp_path
    )
    assert rc == 1, out[-3000:] + err[-3000:]
    assert "baseline: identical bit for bit" in out and "seed0/lift: identical bit for bit" in out
    assert "seed0/stage1_lift: DIFFERS from iteration 1 (total_loss" in out
    assert f"the probe's runs and logs: {probe}" in out

    # made with another torch: another machine class, not recorded before: a finding, recorded,
    # exit 0; the check says the torch differs
    changed["torch"] = "0.1"
    with open(tmp_path / "changed.json", "w") as f:
        json.dump(changed, f)
    recheck = ["--trace", "changed.json", "--output-dir", probe, "--resume", "--record", "checks"]
    rc, out, err = check_here(*recheck, cwd=tmp_path)
    assert rc == 0, out[-3000:] + err[-3000:]
    assert "this machine class has no record: its difference is a finding, recorded" in out
    assert f"this run's torch {torch.__version__} is not the trace's 0.1" in out
    # --record: this machine's result, which the README lists (tools/update_readme.py)
    (path,) = list((tmp_path / "checks").iterdir())
    recorded = read(str(path))
    c = recorded["cpu_class"]
    assert path.name.startswith(f"{c['vendor'].lower()}-family-{c['family']}-model-{c['model']}-")
    assert c["capability"] == torch.backends.cpu.get_cpu_capability() and c["cpus"] > 0
    assert recorded["machine"] == trace["machine"] and recorded["identical"] is False
    assert recorded["trace"]["torch"] == "0.1" and recorded["wall_s"] > 0
    steps = {s["name"]: s for s in recorded["steps"]}
    assert steps["seed0/stage1_lift"]["first_iter"] == 1 and steps["baseline"]["identical"]
    diff = abs(float.fromhex(old) - float.fromhex(loss["total_loss"]))
    assert steps["seed0/stage1_lift"]["max_abs"] == diff
    update_readme = load_tool("update_readme")
    table = update_readme.render_study_checks(str(tmp_path / "checks"))
    assert trace["machine"] in table and "differs: seed0/stage1_lift from iteration 1" in table
    assert f"family {c['family']} model {c['model']}, {c['capability']}" in table

    # again: the same class now has a record, and the run is as that record
    rc, out, err = check_here(*recheck, cwd=tmp_path)
    assert rc == 0 and "as this class's earlier record" in out, out[-3000:] + err[-3000:]
    # a record of this class that says otherwise: a failure within the class
    recorded["steps"][1]["max_abs"] *= 2
    path.write_text(json.dumps(recorded))
    rc, out, err = check_here(*recheck, cwd=tmp_path)
    assert rc == 1 and "NOT as this class's earlier record" in out, out[-3000:] + err[-3000:]
    assert len(list((tmp_path / "checks").iterdir())) == 1  # its own record replaced, no other

    rc, out, err = check_here("--trace", "nowhere.json", cwd=tmp_path)
    assert (rc, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and "`make study` writes it" in err


def test_a_record_per_machine_class(tmp_path):
    """Records are per machine class: the same machine checked with two torch versions, or two
    machines of one marketing name with other CPU models or kernels, keep their own records; a
    rerun of the same class replaces its own."""
    study_check = load_tool("study_check")
    trace = {"iters": 10, "date": "d0", "commit": "c0", "machine": "M", "torch": "2.14.1"}
    cpu = {
        "vendor": "AuthenticAMD",
        "family": "25",
        "model": "1",
        "capability": "AVX512",
        "cpus": 2,
    }

    def run(torch_version, commit, **cls):
        got = {
            "date": "d",
            "commit": commit,
            "machine": "AMD EPYC, 2 CPUs, no GPU",
            "torch": torch_version,
            "numpy": "1.26.4",
            "pillow": "13.0.0",
            "python": "3.11.7",
            "command": "study_check.py",
            "cpu_class": {**cpu, **cls},
        }
        steps = [dict(name="baseline", identical=False, first_iter=0, max_abs=0.1, max_rel=0.2)]
        return study_check.record(str(tmp_path), trace, got, steps, wall_s=1.0)

    first, other = run("2.14.1+cu130", "a"), run("2.11.0+cu130", "b")
    assert os.path.basename(first) == (
        "authenticamd-family-25-model-1-avx512-2-cpus-torch-2-14-1-cu130-numpy-1-26-4-pillow-13-0-"
        "0-python-3-11-7.json"
    )
    avx2 = run("2.14.1+cu130", "c", capability="AVX2")
    model17 = run("2.14.1+cu130", "d", model="17")
    assert len({first, other, avx2, model17}) == 4 and len(os.listdir(tmp_path)) == 4
    assert run("2.11.0+cu130", "e") == other and read(other)["commit"] == "e"
    assert len(os.listdir(tmp_path)) == 4
