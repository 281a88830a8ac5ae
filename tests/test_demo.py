"""LazyPredictor (BGR in, like DefaultPredictor) and tools/demo.py on generated images."""

import importlib.util
import numpy as np
import os
import cv2
import pytest
import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import LazyConfig, instantiate

from conftest import REPO
from lift_det.engine.predictor import LazyPredictor

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


def test_demo_one_input_to_one_file_and_argument_checks(demo, weights, tmp_path, monkeypatch):
    write_images(tmp_path / "in", n=1)
    out = tmp_path / "sub" / "one.jpg"
    args = ["--config-file", CONFIG, "--weights", weights, "--input"]
    run_demo(demo, monkeypatch, args + [str(tmp_path / "in" / "img0.png"), "--output", str(out)])
    assert cv2.imread(str(out)).shape == (200, 240, 3)
    monkeypatch.setattr(demo, "LazyConfig", None)  # arguments are checked before any loading
    with pytest.raises(FileNotFoundError, match="missing.png"):
        run_demo(demo, monkeypatch, args + [str(tmp_path / "missing.png"), "--output", str(out)])
    with pytest.raises(SystemExit, match="confidence-threshold"):
        run_demo(demo, monkeypatch, args + [str(out), "--confidence-threshold", "2"])
