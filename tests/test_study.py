"""The multi-seed study (lift_det/study/, tools/run_mini.py --seeds): statistics against
independent computations, the schedule's ETA, the steps' pairing, and one tiny end-to-end study
whose steps are rerun to show that the same seed gives the same numbers."""

import contextlib
import functools
import io
import json
import math
import numpy as np
import os
import re
import sys
import pytest

from conftest import CPU_ENV, load_tool, one_torch_thread, tool_python
from lift_det.study import figures, pipeline, placements, report
from lift_det.study import run as study
from lift_det.study import schedule, statistics
from lift_det.utils import UserError

# two-sided 95% t quantiles from a printed table (df = 1, 2, 4)
T975 = {1: 12.706, 2: 4.303, 4: 2.776}


@pytest.mark.parametrize("diffs", [[1.0, 2.0, 3.0], [0.5, -1.5], [2.0, 2.5, 1.0, 4.0, 3.5]])
def test_paired_interval_is_the_t_interval(diffs):
    d = np.array(diffs)
    sd = math.sqrt(sum((x - d.mean()) ** 2 for x in d) / (len(d) - 1))
    half = T975[len(d) - 1] * sd / math.sqrt(len(d))
    got = statistics.paired_interval(diffs)
    assert got["mean"] == pytest.approx(d.mean())
    assert got["low"] == pytest.approx(d.mean() - half, abs=2e-3)
    assert got["high"] == pytest.approx(d.mean() + half, abs=2e-3)
    assert math.isnan(statistics.paired_interval([1.0])["low"])


def _metrics(ap):
    return {key: ap + i for i, (key, _) in enumerate(statistics.METRICS)}


def test_summarize_pairs_arms_by_seed():
    # seeds differ by a lot, the arm is always control + 1.5: paired, that is exact and
    # significant; the control's own seed spread must not enter the interval
    control = {0: 10.0, 1: 30.0, 2: 20.0}
    per_seed = {
        s: {"ft": _metrics(ap), "lift": _metrics(ap + 1.5), "bilinear": _metrics(ap)}
        for s, ap in control.items()
    }
    per_seed[2]["bilinear"] = _metrics(22.0)  # +0, +0, +2: not significant
    out = statistics.summarize(per_seed, ["ft", "lift", "bilinear"])
    box = out["arms"]["lift"]["bbox/AP"]
    assert box["mean"] == pytest.approx(21.5)
    assert box["std"] == pytest.approx(np.std([11.5, 31.5, 21.5], ddof=1))
    diff = box["vs_control"]
    assert diff["mean"] == pytest.approx(1.5)
    assert diff["low"] == pytest.approx(1.5) and diff["high"] == pytest.approx(1.5)
    assert diff["significant"]
    b = out["arms"]["bilinear"]["bbox/AP"]["vs_control"]
    half = T975[2] * np.std([0, 0, 2], ddof=1) / math.sqrt(3)
    assert b["mean"] == pytest.approx(2 / 3)
    assert b["high"] == pytest.approx(2 / 3 + half, abs=2e-3)
    assert not b["significant"]
    assert "vs_control" not in out["arms"]["ft"]["bbox/AP"]


def test_plateau_criterion():
    curve = [
        {"iteration": i, "bbox/AP": ap} for i, ap in [(100, 5), (200, 10), (300, 20), (400, 20.5)]
    ]
    got = statistics.plateau(curve, drop=250)
    assert got["gain"] == pytest.approx(0.5) and got["plateaued"]  # 300 -> 400, both after 250
    assert "iterations 300 and 400" in got["criterion"]
    curve[-1]["bbox/AP"] = 20.51
    assert not statistics.plateau(curve, drop=250)["plateaued"]
    curve[-1]["bbox/AP"] = 20.0  # flat, but the evaluation at 300 is not in the last phase
    late = statistics.plateau(curve, drop=300)
    assert not late["plateaued"] and "fewer than two" in late["why"]


def test_cosine_vs_ap_against_scipy_and_numpy_by_hand():
    cos = {"bilinear": 0.86, "resize-conv": 0.92, "JBU": 0.90, "LiFT": 0.94}
    delta = {"bilinear": -19.0, "resize_conv": -16.0, "jbu": -5.0, "lift": -1.0}
    arms = {
        a: {
            "bbox/AP": {"vs_control": {"mean": d, "low": d - 1, "high": d + 1, "significant": True}}
        }
        for a, d in delta.items()
    }
    summary = {
        "arms": arms,
        "stage1_cosines": {k: {"mean": v, "std": 0.001} for k, v in cos.items()},
    }
    got = statistics.cosine_vs_ap(summary)
    assert [p["arm"] for p in got["points"]] == ["bilinear", "resize_conv", "jbu", "lift"]
    x, y = [0.86, 0.92, 0.90, 0.94], [-19.0, -16.0, -5.0, -1.0]
    # ranks of x: 1 3 2 4, of y: 1 2 3 4 -> rho = 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15)
    assert got["spearman"] == pytest.approx(1 - 12 / 60)
    # exact p: of the 24 orderings of 4 ranks, those with |rho| = |1 - sum d^2 / 10| >= 0.8
    import itertools

    d2 = [sum((i - j) ** 2 for i, j in zip(range(4), o)) for o in itertools.permutations(range(4))]
    assert got["spearman_p"] == pytest.approx(sum(v <= 2 or v >= 18 for v in d2) / 24)
    assert 0 < got["spearman_p"] < 1
    xm, ym = np.mean(x), np.mean(y)
    slope = sum((a - xm) * (b - ym) for a, b in zip(x, y)) / sum((a - xm) ** 2 for a in x)
    assert got["ap_per_0.01_cosine"] == pytest.approx(slope / 100)
    r = slope * np.std(x) / np.std(y)
    assert got["pearson"] == pytest.approx(r)
    del summary["stage1_cosines"]["JBU"], summary["stage1_cosines"]["LiFT"]
    few = statistics.cosine_vs_ap(summary)
    assert len(few["points"]) == 2 and few["spearman"] is None


@pytest.mark.parametrize(
    "jobs, running, hand",
    [
        (2, None, 17),  # a 0-10; then b 10-16 and c 10-13; d 13-17
        (1, None, 23),  # one after the other
        (2, {"a": 7.0}, 10),  # a has 3 s left: b 3-9, c 3-6, d 6-10
        (2, {"a": 12.0}, 7),  # a ran past its estimate: done now; b 0-6, c 0-3, d 3-7
    ],
)
def test_estimate_makespan_by_hand(jobs, running, hand):
    seconds = {"a": 10, "b": 6, "c": 3, "d": 4}
    needs = {"a": (), "b": ("a",), "c": ("a",), "d": ("c",)}
    steps = [pipeline.Step(n, "f", "c", 1, needs=needs[n]) for n in seconds]
    assert pipeline.estimate_makespan(steps, seconds, jobs, running) == pytest.approx(hand)


def test_study_steps_are_paired_within_a_seed(tmp_path):
    out = str(tmp_path)
    all_arms = [a[0] for a in schedule.ARMS]
    steps = schedule.study_steps(out, [0, 1], 30, 20, 10, arms=all_arms)
    by_name = {s.name: s for s in steps}
    assert steps[0].name == "baseline" and steps[0].threads == 2
    # the baseline: lr 10x lower from 80% (24 of 30 iterations), evaluated every 3
    base_over = steps[0].overrides
    assert base_over["lr_multiplier.scheduler.milestones"] == "[24]"
    assert base_over["lr_multiplier.scheduler.num_updates"] == "30"
    assert base_over["train.eval_period"] == "3"
    base = os.path.join(out, "baseline", "model_final.pth")
    arms = [a[0] for a in schedule.ARMS]
    for seed in (0, 1):
        for arm, _, _, stage_one, _, _ in schedule.ARMS:
            s = by_name[f"seed{seed}/{arm}"]
            assert s.overrides["train.init_checkpoint"] == base  # every arm: one baseline
            assert s.overrides["train.seed"] == str(seed) and s.threads == 1 and s.iters == 10
            if stage_one:  # its own seed's stage one, and after it
                lift = os.path.join(out, f"seed{seed}", stage_one, "lift_final.pth")
                assert s.overrides["model.backbone.net.lift_weights"] == lift
                assert f"seed{seed}/{stage_one}" in s.needs
        for name, *_, factor in schedule.STAGE_ONES:
            s1 = by_name[f"seed{seed}/{name}"]
            assert s1.overrides["train.seed"] == str(seed) and s1.iters == 20 * factor
            assert s1.overrides["train.eval_period"] == str(20 * factor)  # evaluated at its end
    # zero-shot: per seed where the model holds that seed's stage one, once for the others, none
    # for the control (its zero-shot model is the baseline)
    with_stage_one = [a.name for a in schedule.ARMS if a.stage_one]
    seedless = [a.name for a in schedule.ARMS if not a.stage_one and a.name != "ft"]
    zero_shot = [s for s in steps if "--eval-only" in s.flags]
    assert sorted(s.name for s in zero_shot) == sorted(
        [f"seed{k}/zs_{a}" for k in (0, 1) for a in with_stage_one]
        + [f"zeroshot/{a}" for a in seedless]
    )
    for s in zero_shot:
        assert s.overrides["train.init_checkpoint"] == base and s.final.endswith("metrics.json")
        assert "train.seed" not in s.overrides and "baseline" in s.needs
        if s.name.startswith("seed"):
            seed, arm = s.name[4], s.name.split("/zs_")[1]
            stage_one = by_name[f"seed{seed}/{arm}"].overrides["model.backbone.net.lift_weights"]
            assert s.overrides["model.backbone.net.lift_weights"] == stage_one
    assert len(steps) == 1 + 2 * (len(schedule.STAGE_ONES) + len(arms)) + len(zero_shot)
    sub = schedule.study_steps(out, [0], 30, 20, 10, arms=["ft", "lift_half"])
    assert [s.name for s in sub] == [
        "baseline",
        "seed0/stage1_lift",
        "seed0/stage1_half",
        "seed0/lift_half",
        "seed0/ft",
        "seed0/zs_lift_half",
    ]
    default = schedule.study_steps(out, [0], 30, 20, 10)
    stage_ones = {"seed0/stage1_lift", "seed0/stage1_rc", "seed0/stage1_jbu", "seed0/stage1_attn"}
    assert {s.name for s in default if "--eval-only" not in s.flags} == {"baseline"} | {
        f"seed0/{a}" for a in schedule.DEFAULT_ARMS
    } | stage_ones
    with pytest.raises(ValueError, match="unknown arms"):
        schedule.study_steps(out, [0], 30, 20, 10, arms=["liftt"])


def _numbers(step_dir):
    """metrics.json without its timings (the only part allowed to differ between reruns)."""
    with open(os.path.join(step_dir, "metrics.json")) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if "time" not in k} for r in rows]


# key=value for every step of the tiny study: its smallest batches, no data-loader workers (the
# workers' determinism: test_train_net.py's exact resume)
TINY = [
    "dataloader.train.total_batch_size=2",
    "dataloader.train.num_workers=0",
    "dataloader.test.num_workers=0",
]


@pytest.fixture(scope="module")
def tiny_study(small_mini, tmp_path_factory):
    """The study at its smallest: 2 seeds, the control and LiFT arms, the baseline at 2
    iterations (a curve of 2 evaluations), every other step at 1, at batch 2, on its own data of 8
    train and 2 val images."""
    out = str(tmp_path_factory.mktemp("study"))
    stdout = io.StringIO()
    probes = []  # the probe's own steps are tested in test_study_check.py
    # the costs' FLOP count in this process on one thread, as test_benchmark's (one_torch_thread)
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout), one_torch_thread():
        for k, v in CPU_ENV.items():
            mp.setenv(k, v)
        mp.setattr(sys, "executable", tool_python())  # the steps' interpreter
        mp.setattr(study, "write_trace", lambda *a, **k: probes.append((a, k)))
        # each arm's CPU latency timed for 0.05 s instead of 2 s (a measured median all the same)
        mp.setattr(
            study, "cpu_latency_ms", functools.partial(study.cpu_latency_ms, min_run_time=0.05)
        )
        data = dict(train_images=8, val_images=2)  # the study's own mini data
        result = study.run_study(
            out, [0, 1], 2, 1, 1, jobs=2, arms=["ft", "lift"], extra=TINY, **data
        )
    assert len(probes) == 1 and probes[0][0][1:] == (
        os.path.join(out, "mini_study_trace.json"),
        2,
        1,
        1,
    )
    assert probes[0][1]["iters"] == 1  # the study's budgets, the probe no longer than a step
    return out, result, stdout.getvalue()


def test_study_writes_its_report(tiny_study):
    out, result, stdout = tiny_study
    with open(os.path.join(out, "mini_study.json")) as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(result))
    with open(os.path.join(out, "mini_study.md")) as f:
        assert f.read() == report.format_report(written) + "\n"
    assert os.path.getsize(os.path.join(out, "mini_study.png")) > 1000
    for seed in (0, 1):  # the per-seed numbers are the steps' own final evaluations
        for step in ("ft", "lift", "stage1_lift"):
            last = [
                r
                for r in _numbers(os.path.join(out, f"seed{seed}", step))
                if any(k.startswith(("bbox/", "lift_quality/")) for k in r)
            ][-1]
            got = written["per_seed"][str(seed)][step]  # NaN where no val object is that size
            np.testing.assert_equal({k: got[k] for k in last}, last, err_msg=f"{seed}/{step}")
    lift = written["summary"]["arms"]["lift"]["bbox/AP"]
    values = [written["per_seed"][s]["lift"]["bbox/AP"] for s in ("0", "1")]
    assert lift["values"] == values and lift["mean"] == pytest.approx(np.mean(values))
    # LiFT adds parameters and compute to the same detector
    assert written["costs"]["lift"]["params_M"] > written["costs"]["ft"]["params_M"]
    assert written["costs"]["lift"]["gflops"] > written["costs"]["ft"]["gflops"]
    assert [c["iteration"] for c in written["baseline"]["curve"]] == [1, 2]
    assert written["setup"]["val_images"] == 2  # the study's own data, not the default's 40
    # the steps' overrides are recorded, and the budget's epochs are at the batches they ran with
    assert written["setup"]["overrides"] == TINY
    justification = written["setup"]["justification"]  # its own data: 8 train images
    assert "(256 px, 8 train / 2 val images)" in justification
    assert "2 iterations (0.5 epochs at batch 2)" in justification
    assert "1 stage-one iterations per upsampler (0.25 epochs at batch 2)" in justification
    assert "ETA" in stdout and "[study] 9/9 steps done" in stdout
    # zero-shot: the control's is the baseline's final evaluation, LiFT's its own seed's
    zs = written["zero_shot"]["per_seed"]
    base = [r for r in _numbers(os.path.join(out, "baseline")) if "bbox/AP" in r][-1]
    for seed in ("0", "1"):
        assert zs[seed]["ft"]["bbox/AP"] == base["bbox/AP"]
        folder = os.path.join(out, f"seed{seed}", "zs_lift", "inference_model_final")
        assert zs[seed]["lift"]["bbox/AP"] == _numbers(folder)[-1]["bbox/AP"]
    assert written["costs"]["lift"]["image_size"] == 512  # the up placement: the 2x image
    assert all(written["costs"][a]["cpu_ms"] > 0 for a in ("ft", "lift"))


def test_same_seed_gives_identical_metrics(tiny_study, tmp_path, monkeypatch):
    out = tiny_study[0]
    for k, v in CPU_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("LIFT_DET_MINI_ROOT", os.path.join(out, "data"))  # the study's own data
    monkeypatch.setattr(sys, "executable", tool_python())  # the steps' interpreter, as the study's
    steps = {s.name: s for s in schedule.study_steps(out, [0, 1], 2, 1, 1, arms=["ft", "lift"])}
    again = str(tmp_path)
    for name in ("seed1/stage1_lift", "seed1/lift"):  # rerun from the same inputs, same seed
        with contextlib.redirect_stdout(io.StringIO()):
            pipeline._run_step(steps[name], again, TINY)
        assert _numbers(os.path.join(again, name)) == _numbers(os.path.join(out, name))
    # and the seed is what changes them
    assert _numbers(os.path.join(out, "seed0/lift")) != _numbers(os.path.join(out, "seed1/lift"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "-1"], "--seeds must be >= 1"),
        (["--jobs", "3"], "belong to the study"),
        (["--arms", "lift"], "belong to the study"),
        (["--report-dir", "docs"], "belong to the study"),
        (["--val-images", "300"], "belong to the study"),
        (["--seeds", "1", "--val-images", "0"], "--val-images must be >= 1"),
        (["--seeds", "1", "--arms", "liftt"], "unknown --arms"),
        (["--stage2-iters", "0"], "--stage2-iters must be >= 1"),
        (["--seeds", "1", "--jobs", "0"], "--jobs must be >= 1"),
    ],
)
def test_run_mini_refuses_bad_arguments_before_running(argv, message, tmp_path):
    run_mini = load_tool("run_mini")
    args = run_mini.get_parser().parse_args(argv + ["--output-dir", str(tmp_path / "out")])
    with pytest.raises(UserError, match=message):
        run_mini.main(args)
    assert not (tmp_path / "out").exists()  # nothing started


def test_frontier_figure_draws_every_arm_finetuned_and_zero_shot(tiny_study, tmp_path):
    _, result, _ = tiny_study
    drawn = figures.plot_frontier(result, str(tmp_path / "frontier.png"))
    assert [d["arm"] for d in drawn] == result["arms"]
    for d in drawn:
        assert d["x"] == result["costs"][d["arm"]]["gflops"]
        assert d["y"] == result["summary"]["arms"][d["arm"]]["bbox/AP"]["mean"]
        assert d["zero_shot"] == result["zero_shot"]["summary"]["arms"][d["arm"]]["bbox/AP"]["mean"]
    assert os.path.getsize(tmp_path / "frontier.png") > 1000


def test_every_arm_has_its_own_colour():
    colours = [figures.arm_colour(a.name) for a in schedule.ARMS]
    assert len(set(colours)) == len(colours)


def _placement_study(lift, bilinear):
    """A 3-seed study of the up placement with given per-seed box APs of LiFT and bilinear."""
    aps = {
        "ft": [50.0, 52.0, 54.0],
        "image2x": [60.0, 61.0, 64.0],
        "lift": lift,
        "bilinear": bilinear,
    }
    per_seed = {
        s: {a: {k: v[s] for k, _ in statistics.METRICS} for a, v in aps.items()} for s in range(3)
    }
    arms = list(aps)
    summary = statistics.summarize(per_seed, arms)
    return per_seed, {
        "arms": arms,
        "summary": summary,
        "costs": {a: {"gflops": g} for a, g in zip(arms, (1.75, 5.5, 3.5, 3.2))},
        "zero_shot": {"summary": summary, "recovered": placements.recovered_shares(per_seed, arms)},
        "recovered": placements.recovered_shares(per_seed, arms),
        "lift_vs_control": {"up": statistics.paired_arms(per_seed, "lift", "bilinear")},
    }


def test_recovered_share_by_hand():
    per_seed, study = _placement_study([55.0, 57.0, 58.0], [51.0, 52.0, 55.0])
    got = study["recovered"]["lift"]
    # (55 - 50) / (60 - 50), (57 - 52) / (61 - 52), (58 - 54) / (64 - 54)
    assert got["values"] == pytest.approx([0.5, 5 / 9, 0.4])
    assert got["mean"] == pytest.approx((0.5 + 5 / 9 + 0.4) / 3)
    assert got["gap"] == pytest.approx(29 / 3)  # the 2x image's mean gain


def test_no_gain_to_recover_gives_no_share():
    """Where the reference gains nothing (the 2x image zero-shot can be below the control), a
    share would be a ratio to noise (-0.66 box AP gave 449%): none is given, and said so."""
    per_seed, study = _placement_study([55.0, 57.0, 58.0], [51.0, 52.0, 55.0])
    for s, gain in zip(per_seed, (-1.0, 0.5, 2.0)):  # one seed with a negative gain
        per_seed[s]["image2x"]["bbox/AP"] = per_seed[s]["ft"]["bbox/AP"] + gain
    study["zero_shot"]["recovered"] = placements.recovered_shares(per_seed, study["arms"])
    got = study["zero_shot"]["recovered"]["lift"]
    assert math.isnan(got["values"][0]) and math.isnan(got["mean"])
    assert got["values"][1] == pytest.approx((57.0 - 52.0) / 0.5)
    up, _ = placements.placement_words(study)
    assert "zero-shot there is no gain to recover (+0.50)" in up and "% zero-shot" not in up


def test_placement_words_say_whether_lift_pays():
    _, study = _placement_study([55.0, 57.0, 58.0], [51.0, 52.0, 55.0])
    up, best = placements.placement_words(study)
    assert up.startswith("**up**: + LiFT +4.67") and "LiFT pays here" in up
    assert "Against + bilinear in the same placement: +4.00" in up
    assert best.endswith("stage one pays in: up.")
    # as good as bilinear in the same placement: the placement pays, LiFT does not
    _, study = _placement_study([55.0, 57.0, 58.0], [55.5, 56.5, 58.0])
    up, best = placements.placement_words(study)
    assert "LiFT does not pay here" in up and "not significantly above + bilinear" in up
    assert best.endswith("stage one pays in: no placement.")


def test_recipe_words_pair_the_other_stage_one_with_the_studys():
    """The stage-one recipe sentence: each recipe arm minus "lift", paired by seed (by hand:
    (56 - 55 + 56 - 57 + 61 - 58) / 3 = +1.00), with both stage-one cosines."""
    per_seed, study = _placement_study([55.0, 57.0, 58.0], [51.0, 52.0, 55.0])
    for s, ap in zip(per_seed, (56.0, 56.0, 61.0)):
        per_seed[s]["lift_long"] = {k: ap for k, _ in statistics.METRICS}
    study["recipes"] = {"lift_long": statistics.paired_arms(per_seed, "lift_long", "lift")}
    study["summary"]["stage1_cosines"] = {
        "LiFT": {"mean": 0.9},
        "LiFT, stage one 4x longer": {"mean": 0.95},
    }
    study["summary"] = statistics.summarize(per_seed, [*study["arms"], "lift_long"])
    study["summary"]["stage1_cosines"] = {
        "LiFT": {"mean": 0.9},
        "LiFT, stage one 4x longer": {"mean": 0.95},
    }
    study["costs"]["lift_long"] = {"gflops": 3.5}
    recipe = placements.placement_words(study)[-1]
    assert recipe.startswith("Stage-one recipe: up: + LiFT, stage one 4x longer minus")
    assert ": +1.00 [" in recipe and "cosine 0.9500 against 0.9000" in recipe
    # against the control (50, 52, 54): +6, +4, +7, significant, at fewer GFLOPs than 5.5
    assert "control it gives +5.67 [" in recipe and recipe.endswith("pays in the up placement.")
    study["costs"]["lift_long"] = {"gflops": 6.0}  # dearer than the 2x image: it does not pay
    assert placements.placement_words(study)[-1].endswith("does not pay in the up placement.")


def test_cosine_section_and_figure_from_the_committed_study(tmp_path):
    """The cosine-vs-AP report and figure, on the committed study's own numbers: the points are
    its stage-one cosines and paired box-AP differences, the words carry scipy's rank
    correlation of them."""
    from scipy import stats

    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "mini_study.json")) as f:
        committed = json.load(f)
    s = committed["summary"]
    committed["cosine_vs_ap"] = statistics.cosine_vs_ap(s)
    committed["cosine_figure"] = "docs/mini_study_cosine.png"
    pairs = [
        (s["stage1_cosines"][label]["mean"], s["arms"][arm]["bbox/AP"]["vs_control"]["mean"])
        for arm, label in statistics.UPSAMPLERS
        if arm in s["arms"] and label in s["stage1_cosines"]
    ]
    assert len(pairs) >= 3
    rho = stats.spearmanr(*zip(*pairs))[0]
    text = report.format_report(committed)
    assert "Does stage one's cosine predict box AP?" in text
    assert f"Spearman ρ = {rho:+.2f}" in text
    for cos, delta in pairs:  # one table row per upsampler
        row = rf"\| {re.escape(f'{cos:.4f}')} ± [0-9.]+ \| {re.escape(f'{delta:+.2f}')} \["
        assert re.search(row, text), (cos, delta)
    image = s["arms"]["image2x"]["bbox/AP"]["vs_control"]["mean"]
    assert f"gives {image:+.2f} box AP" in text
    drawn = figures.plot_cosine_vs_ap(committed, str(tmp_path / "cos.png"))
    assert sorted((d["x"], d["y"]) for d in drawn) == sorted(pairs + [(1.0, image)])
    assert os.path.getsize(tmp_path / "cos.png") > 1000


def test_a_resumed_study_says_its_time_leaves_out_the_steps_run_before():
    """A study report made by --resume times only what that run did: it says how many steps had
    run before (their time is not in the stated minutes); an uninterrupted one says nothing."""
    from lift_det.utils import REPO

    with open(os.path.join(REPO, "docs", "mini_study.json")) as f:
        study = json.load(f)
    n = len(study["step_seconds"])
    study["steps_skipped"], study["wall_time_s"] = 3, 120.0
    head = report.format_report(study).splitlines()[0]
    assert head.endswith(
        f"in 2 min (resumed: 3 of its {n} steps had run before and are not in " "that time)."
    )
    study["steps_skipped"] = 0
    assert report.format_report(study).splitlines()[0].endswith(", in 2 min.")
