"""Export: the +LiFT Mask R-CNN traces to TorchScript through detectron2's TracingAdapter with
eager's outputs; LiFT alone exports to ONNX and onnxruntime matches torch."""

import pytest
import torch

from detectron2.config import instantiate
from detectron2.export import TracingAdapter

from conftest import load_config
from lift_det.modeling import LiFT


def _inference(model, inputs):
    """Raw detections (no rescaling), as detectron2's export tests trace them."""
    instances = model.inference(inputs, do_postprocess=False)[0]
    return [{"instances": instances}]


@pytest.fixture(scope="module")
def lift_mask_rcnn():
    torch.manual_seed(0)
    cfg = load_config("vitdet_mrcnn_lift")
    cfg.model.backbone.net.allow_random_lift = True
    cfg.model.roi_heads.box_predictor.test_score_thresh = 0.0  # detections from random heads
    cfg.model.roi_heads.box_predictor.test_topk_per_image = 20
    # the heads' structure (4 convs + fc box head on 1000 proposals, 4-conv mask head), narrow as
    # the ViT: at ViTDet's 256 channels the box head alone is ~100 GFLOPs per forward
    cfg.model.roi_heads.box_head.conv_dims = [32] * 4
    cfg.model.roi_heads.mask_head.conv_dims = [32] * 5
    return instantiate(cfg.model).eval()


def _assert_same_instances(got, expected, size):
    assert len(expected) == 20  # post-processing ran on real detections
    torch.testing.assert_close(got.pred_boxes.tensor, expected.pred_boxes.tensor)
    torch.testing.assert_close(got.scores, expected.scores)
    assert torch.equal(got.pred_classes, expected.pred_classes)
    torch.testing.assert_close(got.pred_masks, expected.pred_masks)
    boxes = got.pred_boxes.tensor
    assert (boxes >= 0).all() and (boxes[:, 2] <= size).all() and (boxes[:, 3] <= size).all()
    assert ((got.pred_classes >= 0) & (got.pred_classes < 80)).all()


def test_mask_rcnn_with_lift_traces_to_torchscript(lift_mask_rcnn, tmp_path):
    model = lift_mask_rcnn
    traced_on = [{"image": torch.rand(3, 128, 128) * 255}]
    adapter = TracingAdapter(model, traced_on, _inference)
    with torch.no_grad():
        # no check_trace (a rerun of trace and eager on the traced image, 60% of this test's
        # time): the outputs are compared below on another image, after a save and a load; the
        # README's export block, run by test_the_readme_export_blocks_run_as_written, keeps it
        traced = torch.jit.trace(adapter, adapter.flattened_inputs, check_trace=False)
        torch.jit.save(traced, str(tmp_path / "model.ts"))
        loaded = torch.jit.load(str(tmp_path / "model.ts"))
        # another image of the same size: the trace holds no image-dependent constants
        other = [{"image": torch.rand(3, 128, 128) * 255}]
        (flat,) = adapter.flattened_inputs
        outputs = adapter.outputs_schema(loaded(other[0]["image"]))
        expected = _inference(model, other)
    _assert_same_instances(outputs[0]["instances"], expected[0]["instances"], 128)
    assert not torch.equal(flat, other[0]["image"])


def test_lift_exports_to_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    lift = LiFT.from_preset("LiFT-S", 64).eval()
    for p in lift.parameters():
        p.data.normal_(0, 0.1)
    image, features = torch.rand(1, 3, 128, 96), torch.rand(1, 64, 8, 6)
    path = str(tmp_path / "lift.onnx")
    torch.onnx.export(
        lift,
        (image, features),
        path,
        input_names=["image", "features"],
        output_names=["upsampled"],
        dynamo=False,
    )
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    # new inputs of the exported shape: nothing input-dependent was baked into the graph
    image, features = torch.rand(1, 3, 128, 96), torch.rand(1, 64, 8, 6)
    (out,) = session.run(None, {"image": image.numpy(), "features": features.numpy()})
    with torch.no_grad():
        expected = lift(image, features)
    assert out.shape == (1, 64, 16, 12)
    torch.testing.assert_close(torch.from_numpy(out), expected, rtol=1e-4, atol=1e-4)


def test_the_readme_export_blocks_run_as_written(tmp_path):
    """The README's Export section, block by block, in a fresh folder with the configs: each
    writes its file (a TorchScript model, a LiFT ONNX graph) and defines every name it uses."""
    import os
    import re
    import subprocess

    from conftest import CPU_ENV, REPO, doc_text, tool_python

    section = doc_text().split("### Export", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```$", section, flags=re.M | re.S)
    assert len(blocks) == 2
    os.symlink(os.path.join(REPO, "configs"), tmp_path / "configs")
    for code, made in zip(blocks, ["model.ts", "lift.onnx"]):
        proc = subprocess.run(
            [tool_python(), "-c", code],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            env=dict(os.environ, **CPU_ENV),
        )
        assert proc.returncode == 0, code + proc.stderr[-3000:]
        assert (tmp_path / made).stat().st_size > 1000
