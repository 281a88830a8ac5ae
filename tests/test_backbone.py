"""The ViT+LiFT backbone, the stride-8 pyramid, the four configs, freezing, real ViT-B sizes."""

import pytest
import torch

from detectron2.config import instantiate

from conftest import TINY_VIT, load_config
from lift_det.modeling import BilinearUpsampler, LiFT, ViTLiFT


def n_params(m, contains=""):
    return sum(p.numel() for k, p in m.named_parameters() if contains in k)


def test_pyramid_stage_names_follow_vitdet_scales():
    model = instantiate(load_config("vitdet_mrcnn_lift").model)
    bb = model.backbone
    names = sorted(n for n, _ in bb.named_children() if n.startswith("simfp_"))
    assert names == ["simfp_3", "simfp_4", "simfp_5", "simfp_6"]
    assert isinstance(bb.simfp_3[0], torch.nn.ConvTranspose2d)  # 2x: like ViTDet's simfp_3
    assert isinstance(bb.simfp_5[0], torch.nn.MaxPool2d) and bb.simfp_5[0].stride == 2
    assert bb.simfp_6[0].stride == 4


def test_real_vitdet_b_with_lift_b_sizes():
    """configs/vitdet_mrcnn_lift.py at full size: 116-120M parameters, LiFT-B 6.5-7.5M."""
    cfg = load_config("vitdet_mrcnn_lift", tiny=False)
    model = instantiate(cfg.model)
    total, lift = n_params(model), n_params(model, ".lift.")
    assert 116e6 <= total <= 120e6, total
    assert 6.5e6 <= lift <= 7.5e6, lift
    base = n_params(instantiate(load_config("vitdet_mrcnn", tiny=False).model))
    assert 109e6 < base < 112e6  # paper: 111M
    assert model.backbone.net.lift.preset == "LiFT-B"


def _tiny_vitlift(lift, **kw):
    args = dict(TINY_VIT)
    args.pop("img_size")
    return ViTLiFT(lift=lift, img_size=128, **args, **kw)


def test_frozen_lift_keeps_bn_statistics_in_train_mode():
    net = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), freeze_lift=True, freeze_vit=True)
    net.train()
    assert net.training and not net.lift.training and not net.blocks.training
    bn = net.lift.decoder[0].norm_layer
    before = bn.running_mean.clone()
    net(torch.rand(2, 3, 128, 128))
    torch.testing.assert_close(bn.running_mean, before)
    assert all(not p.requires_grad for p in net.parameters())


def test_trainable_lift_updates_and_vit_gets_no_grad_when_frozen():
    net = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), freeze_vit=True).train()
    out = net(torch.rand(2, 3, 128, 128))["last_feat"]
    out.mean().backward()
    assert net.lift.out_conv.weight.grad is not None
    assert net.patch_embed.proj.weight.grad is None


def test_wrapper_rejects_mismatched_lift():
    with pytest.raises(ValueError, match="built for 384 channels and patch size 16.*embed_dim=64"):
        _tiny_vitlift(LiFT.from_preset("LiFT-S", 384))
    with pytest.raises(ValueError, match="patch size 8"):
        _tiny_vitlift(BilinearUpsampler(64, patch_size=8))


def test_yacs_builder():
    from detectron2.config import get_cfg
    from detectron2.modeling import build_backbone

    from lift_det import add_lift_config

    cfg = add_lift_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_vit_lift_backbone"
    c = cfg.MODEL.VIT_LIFT
    c.IMG_SIZE, c.EMBED_DIM, c.DEPTH, c.NUM_HEADS, c.WINDOW_SIZE = 128, 64, 2, 2, 4
    c.WINDOW_BLOCK_INDEXES, c.UPSAMPLER, c.FREEZE_VIT = [0], "LiFT-S", True
    bb = build_backbone(cfg)
    assert [s.stride for s in bb.output_shape().values()] == [4, 8, 16, 32, 64]
    assert not bb.net.pos_embed.requires_grad
    feats = bb(torch.rand(1, 3, 128, 128))
    assert feats["p2"].shape == (1, 256, 32, 32)
    c.UPSAMPLER = "nearest"
    with pytest.raises(ValueError, match="UPSAMPLER"):
        build_backbone(cfg)


def test_freeze_pyramid_switch():
    cfg = load_config("vitdet_mrcnn_lift")
    cfg.model.backbone.freeze = True
    model = instantiate(cfg.model)
    stages = [n for n, _ in model.backbone.named_children() if n.startswith("simfp_")]
    assert stages
    for name in stages:
        assert all(not p.requires_grad for p in getattr(model.backbone, name).parameters())
    assert model.roi_heads.box_predictor.cls_score.weight.requires_grad
