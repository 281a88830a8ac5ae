"""LazyPredictor (BGR in, like DefaultPredictor) and tools/demo.py on generated images."""

import importlib.util
import numpy as np
import os
import cv2
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate

from conftest import REPO, tool_python
from lift_det.engine.predictor import LazyPredictor
from lift_det.utils import UserError

CONFIG = os.path.join(REPO, "configs", "mini", "vitdet_mrcnn.py")
KEEP_ALL = ["model.roi_heads.box_predictor.test_score_thresh=0.0"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(CONFIG).model)
    out = tmp_path_factory.mktemp("w")
    DetectionCheckpointer(model, save_dir=str(out)).save("model")
    return str(out / "model.pth")


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("demo", os.path.join(REPO, "tools", "demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_predictor_takes_bgr_and_needs_no_dataset(weights, tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT_DET_MINI_ROOT", str(tmp_path / "mini"))
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), KEEP_ALL)
    predictor = LazyPredictor(cfg, weights, device="cpu")
    assert predictor.metadata.thing_classes and len(predictor.metadata.thing_classes) == 3
    assert not os.path.exists(tmp_path / "mini")  # metadata without generating the data
    rgb = np.random.RandomState(0).randint(0, 256, (256, 256, 3), dtype=np.uint8)
    rgb[:, :128, 0] = 255  # asymmetric in color: a swapped channel order changes the output
    got = predictor(rgb[:, :, ::-1].copy())["instances"]
    tensor = torch.as_tensor(rgb.astype("float32").transpose(2, 0, 1))  # RGB: the model's format
    with torch.no_grad():
        ref = predictor.model([{"image": tensor, "height": 256, "width": 256}])[0]["instances"]
    assert len(got) > 0
    torch.testing.assert_close(got.pred_boxes.tensor, ref.pred_boxes.tensor)
    torch.testing.assert_close(got.scores, ref.scores)
    swapped = predictor(rgb)["instances"]  # RGB given where BGR is expected: not the same
    assert swapped.scores.shape != ref.scores.shape or not torch.equal(swapped.scores, ref.scores)


def write_images(folder, n=2):
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(1)
    for i in range(n):
        cv2.imwrite(os.path.join(folder, f"img{i}.png"), rng.randint(0, 256, (200, 240, 3)))
    # 16-bit: must be scaled, not saturated to white
    cv2.imwrite(os.path.join(folder, "deep.png"), (rng.rand(64, 64) * 4000).astype(np.uint16))


def run_demo(demo, monkeypatch, argv):
    counts = []
    draw = demo.Visualizer.draw_instance_predictions

    def record(self, predictions):
        counts.append(len(predictions))
        return draw(self, predictions)

    monkeypatch.setattr(demo.Visualizer, "draw_instance_predictions", record)
    demo.main(demo.get_parser().parse_args(argv))
    return counts


def test_demo_folder_output_threshold_and_bad_file(demo, weights, tmp_path, monkeypatch):
    write_images(tmp_path / "in")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "new" / "out"  # does not exist yet
    base = ["--config-file", CONFIG, "--weights", weights, "--input", str(tmp_path / "in")]
    with pytest.raises(SystemExit) as e:
        counts = run_demo(demo, monkeypatch, base + ["--output", str(out), "--confidence", "0"])
    assert "broken.png" in str(e.value.code) and "1 of 4" in str(e.value.code)
    assert sorted(os.listdir(out)) == ["deep.png", "img0.png", "img1.png"]
    # the drawn 16-bit image is not all white
    assert cv2.imread(str(out / "deep.png")).mean() < 250
    (tmp_path / "in" / "broken.png").unlink()
    counts = run_demo(demo, monkeypatch, base + ["--output", str(out), "--confidence", "0"])
    assert len(counts) == 3 and min(counts) > 0
    counts = run_demo(demo, monkeypatch, base + ["--output", str(out), "--confidence", "1.0"])
    assert counts == [0, 0, 0]


def test_demo_folder_images_are_lift_dets_image_files_it_can_write(demo, tmp_path):
    """A folder's images: lift_det.data.IMAGE_EXTENSIONS that OpenCV writes back (not GIF)."""
    from lift_det.data import IMAGE_EXTENSIONS

    names = [f"img{i}{e.upper() if i % 2 else e}" for i, e in enumerate(IMAGE_EXTENSIONS)]
    for name in names + ["notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    found = [os.path.basename(p) for p in demo.expand_inputs([str(tmp_path)])]
    assert sorted(found) == sorted(n for n in names if not n.lower().endswith(".gif"))
    assert len(found) == len(IMAGE_EXTENSIONS) - 1


def test_demo_one_input_to_one_file_and_argument_checks(demo, weights, tmp_path, monkeypatch):
    write_images(tmp_path / "in", n=1)
    out = tmp_path / "sub" / "one.jpg"
    args = ["--config-file", CONFIG, "--weights", weights, "--input"]
    run_demo(demo, monkeypatch, args + [str(tmp_path / "in" / "img0.png"), "--output", str(out)])
    assert cv2.imread(str(out)).shape == (200, 240, 3)
    monkeypatch.setattr(demo, "LazyConfig", None)  # arguments are checked before any loading
    with pytest.raises(UserError, match="missing.png"):
        run_demo(demo, monkeypatch, args + [str(tmp_path / "missing.png"), "--output", str(out)])
    with pytest.raises(UserError, match="confidence-threshold"):
        run_demo(demo, monkeypatch, args + [str(out), "--confidence-threshold", "2"])


DEMO = os.path.join(REPO, "tools", "demo.py")


def test_demo_never_writes_over_its_inputs(weights, tmp_path):
    """--output = the input folder (or the input file) is refused with one line and exit code 2,
    before the model is built; the images are unchanged."""
    import subprocess

    from conftest import CPU_ENV

    write_images(tmp_path / "imgs")
    before = {f: (tmp_path / "imgs" / f).read_bytes() for f in os.listdir(tmp_path / "imgs")}
    env = dict(os.environ, **CPU_ENV)
    for inp, out in [("imgs/", "imgs/"), ("imgs/img0.png", "imgs/img0.png"), ("imgs", "imgs")]:
        cmd = [tool_python(), DEMO, "--config-file", CONFIG, "--weights", weights]
        cmd += ["--input", inp, "--output", out]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr[-3000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert "Traceback" not in proc.stderr and "over the input" in last, proc.stderr
    after = {f: (tmp_path / "imgs" / f).read_bytes() for f in os.listdir(tmp_path / "imgs")}
    assert after == before


def make_lift_file(path):
    from lift_det.checkpoint import save_lift_file
    from lift_det.modeling import LiFT

    mini_vit = {"type": "detectron2.ViT", "embed_dim": 192, "depth": 4, "num_heads": 3}
    save_lift_file(
        path,
        LiFT.from_preset("LiFT-S", 192),
        backbone={**mini_vit, "patch_size": 16},
        iteration=1,
        teacher={"weights": "", "initialized": True},
    )
    return str(path)


def test_demo_refuses_weights_that_leave_the_model_random(demo, weights, tmp_path, monkeypatch):
    """A LiFT file as --weights, and a +LiFT config with a checkpoint that holds no LiFT (frozen
    or finetuned LiFT), would draw the detections of a random model: refused, with no --output
    folder left behind."""
    write_images(tmp_path / "in", n=1)
    lift_file = make_lift_file(tmp_path / "lift_final.pth")
    drawn = os.path.join(tmp_path, "drawn", "")  # a folder: made once the model is built
    img = ["--input", str(tmp_path / "in" / "img0.png"), "--output", drawn]
    mini = os.path.join(REPO, "configs", "mini")
    cases = [
        (CONFIG, lift_file, "is a LiFT file"),
        (os.path.join(mini, "vitdet_mrcnn_lift.py"), lift_file, "is a LiFT file"),  # frozen ViT
        (os.path.join(mini, "vitdet_mrcnn_lift.py"), weights, "FROZEN parameters"),
        (os.path.join(mini, "vitdet_mrcnn_lift_ft.py"), weights, r"at their random init"),
    ]
    for config, w, message in cases:
        with pytest.raises(UserError, match=message):
            run_demo(demo, monkeypatch, ["--config-file", config, "--weights", w] + img)
    assert not os.path.exists(drawn)


def test_predictor_refuses_a_partly_random_model_and_float_images(weights, tmp_path):
    """LazyPredictor (exported by lift_det) loads with the checked checkpointer and refuses a
    float image in [0, 1], naming the conversion."""
    import lift_det

    cfg = LazyConfig.load(CONFIG)
    model = instantiate(cfg.model)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("roi_heads.")}
    torch.save({"model": state}, tmp_path / "no_heads.pth")
    with pytest.raises(ValueError, match=r"roi_heads .*allow_mismatch=True"):
        lift_det.LazyPredictor(cfg, str(tmp_path / "no_heads.pth"), device="cpu")
    predictor = lift_det.LazyPredictor(cfg, weights, device="cpu")
    rgb = np.random.RandomState(0).rand(64, 64, 3).astype(np.float32)
    with pytest.raises(ValueError, match=r"in \[0, 1\] pass \(image\[:, :, ::-1\] \* 255\)"):
        predictor(rgb)
    with pytest.raises(ValueError, match=r"\(H, W, 3\) BGR image"):
        predictor(np.zeros((3, 64, 64), np.uint8))
    assert len(predictor((rgb * 255).astype(np.uint8))["instances"]) >= 0


def test_demo_video_uses_a_codec_this_opencv_can_write(demo, weights, tmp_path, monkeypatch):
    """--video-input with an --output folder writes a video that OpenCV reads back, frame for
    frame, whatever encoders this OpenCV has (pip's OpenCV has no H.264 encoder)."""
    video_in = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(video_in, cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 64))
    assert writer.isOpened()
    rng = np.random.RandomState(0)
    for _ in range(3):
        writer.write(rng.randint(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    out = tmp_path / "out"
    args = ["--config-file", CONFIG, "--weights", weights, "--video-input", video_in]
    run_demo(demo, monkeypatch, args + ["--output", str(out) + os.sep])
    (written,) = os.listdir(out)
    assert written.startswith("clip.")
    capture = cv2.VideoCapture(str(out / written))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 3
    with pytest.raises(UserError, match="is the input video"):
        run_demo(demo, monkeypatch, args + ["--output", video_in])


def test_predictor_names_a_missing_image_file():
    """cv2.imread gives None for a path that is not there: the predictor says so, not a
    NoneType error."""
    import cv2

    from lift_det.engine.predictor import check_image

    with pytest.raises(ValueError, match="cv2.imread returns None when the file does not exist"):
        check_image(cv2.imread("/nonexistent/000000.jpg"))


def test_a_damaged_video_and_a_file_in_the_way_are_named(demo, weights, tmp_path, monkeypatch):
    """A video OpenCV cannot read is named as such before the model is built (not blamed on the
    output's codec), and a file where the output folder must go is named."""
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.RandomState(0).bytes(5000))
    args = ["--config-file", CONFIG, "--weights", weights]
    with pytest.raises(UserError, match="bad.mp4: OpenCV .* cannot read a frame of it"):
        run_demo(demo, monkeypatch, args + ["--video-input", str(bad), "--output", "o.mp4"])
    write_images(tmp_path / "in")
    in_the_way = tmp_path / "afile"
    in_the_way.write_text("")
    for output in (in_the_way, in_the_way / "x.png"):
        with pytest.raises(UserError, match="a file is in the way"):
            run_demo(
                demo, monkeypatch, args + ["--input", str(tmp_path / "in"), "--output", str(output)]
            )
