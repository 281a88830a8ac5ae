"""The installed stack: torchvision's compiled ops on CPU, detectron2's ViTDet, lift_det."""

import torch
from torchvision.ops import nms, roi_align

from detectron2 import model_zoo
from detectron2.config import instantiate


def test_torchvision_ops_run_on_cpu():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float)
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(64, dtype=torch.float).reshape(1, 1, 8, 8)
    out = roi_align(feats, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], output_size=2, aligned=True)
    assert out.shape == (1, 1, 2, 2)
    assert torch.isfinite(out).all()


def test_detectron2_vitdet_imports():
    from detectron2.modeling import SimpleFeaturePyramid, ViT  # noqa: F401
    from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

    assert get_vit_lr_decay_rate("backbone.net.blocks.3.attn", 0.7, 12) < 1.0


def test_model_zoo_vitdet_forward_small_image():
    cfg = model_zoo.get_config("common/models/mask_rcnn_vitdet.py")
    net = cfg.model.backbone.net
    net.img_size, net.embed_dim, net.depth, net.num_heads, net.window_size = 128, 64, 2, 2, 4
    net.window_block_indexes = [0]
    cfg.model.backbone.square_pad = 128
    model = instantiate(cfg.model).eval()
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8).float()
    with torch.no_grad():
        (out,) = model([{"image": image, "height": 96, "width": 128}])
    assert out["instances"].image_size == (96, 128)


def test_import_lift_det():
    import lift_det

    assert lift_det.__version__
    assert hasattr(lift_det, "LiFT") and hasattr(lift_det, "ViTLiFT")
