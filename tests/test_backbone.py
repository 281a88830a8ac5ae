"""The ViT+LiFT backbone and its pyramid (also recursive), freezing, the yacs builder, LiFT weights
through checkpoint loading, real ViT-B sizes."""

import logging
import os
import pickle
import pytest
import torch
import torch.nn.functional as F

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import instantiate
from detectron2.modeling import ViT
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

from conftest import PYRAMID_STRIDES, TINY_VIT, load_config
from lift_det.checkpoint import save_lift_file
from lift_det.config import upsampler_config
from lift_det.modeling import (
    UPSAMPLER_NAMES,
    AttentionUpsampler,
    BilinearUpsampler,
    JBUUpsampler,
    LiFT,
    ResizeConvUpsampler,
    ViTLiFT,
    vit_identity,
)


def fake_batch(n=2, size=128):
    batch = []
    for i in range(n):
        inst = Instances((size, size))
        inst.gt_boxes = Boxes(torch.tensor([[10.0, 12.0, 70.0, 90.0], [60.0, 20.0, 100.0, 50.0]]))
        inst.gt_classes = torch.tensor([1, 5])
        masks = torch.zeros(2, size, size, dtype=torch.bool)
        masks[0, 12:90, 10:70] = True
        masks[1, 20:50, 60:100] = True
        inst.gt_masks = BitMasks(masks)
        image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
        batch.append({"image": image, "instances": inst, "height": size, "width": size})
    return batch


def n_params(m, contains=""):
    return sum(p.numel() for k, p in m.named_parameters() if contains in k)


def test_pyramid_stage_names_follow_vitdet_scales():
    half = instantiate(load_config("vitdet_mrcnn_lift").model).backbone
    vitdet = instantiate(load_config("vitdet_mrcnn").model).backbone
    assert half.net.image_scale == 0.5
    # the half placement: upstream's stages, same names, same tensors
    assert {k: v.shape for k, v in half.state_dict().items() if ".lift." not in k} == {
        k: v.shape for k, v in vitdet.state_dict().items()
    }
    s8 = instantiate(load_config("vitdet_mrcnn_lift_s8").model).backbone
    names = sorted(n for n, _ in s8.named_children() if n.startswith("simfp_"))
    assert names == ["simfp_3", "simfp_4", "simfp_5"]
    assert isinstance(s8.simfp_3[0], torch.nn.ConvTranspose2d)  # 2x: like ViTDet's simfp_3
    assert isinstance(s8.simfp_5[0], torch.nn.MaxPool2d) and s8.simfp_5[0].stride == 2
    assert s8.stages == [s8.simfp_3, s8.simfp_4, s8.simfp_5]
    assert not list(s8.top_block.parameters())


def test_half_placement_is_upstreams_pyramid_on_upsampled_features_of_the_half_image():
    """Independent computation: detectron2's own ViT and pyramid stages (plain ViTDet, same
    weights) on bilinear 2x of the ViT's features of the antialiased half image."""
    cfg = load_config("vitdet_mrcnn_lift")
    cfg.model.backbone.net.lift = upsampler_config("bilinear")
    torch.manual_seed(0)
    half = instantiate(cfg.model.backbone).eval()
    vitdet = instantiate(load_config("vitdet_mrcnn").model.backbone).eval()
    vitdet.load_state_dict(half.state_dict())
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        small = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True)
        feat = F.interpolate(vitdet.net(small)["last_feat"], scale_factor=2.0, mode="bilinear")
        expected = [stage(feat) for stage in vitdet.stages]
        expected.append(F.max_pool2d(expected[-1], kernel_size=1, stride=2))
        got = half(x)
    assert list(got) == ["p2", "p3", "p4", "p5", "p6"]
    for k, e in zip(got, expected):
        torch.testing.assert_close(got[k], e, msg=k)
    assert got["p2"].shape[-1] == 32 and got["p6"].shape[-1] == 2


def test_stride8_placement_subsamples_p5_and_p6_from_p4():
    model = instantiate(lift_model_cfg().model).eval()
    with torch.no_grad():
        feats = model.backbone(torch.rand(1, 3, 128, 128))
    torch.testing.assert_close(feats["p5"], feats["p4"][..., ::2, ::2])
    torch.testing.assert_close(feats["p6"], feats["p5"][..., ::2, ::2])


@pytest.mark.parametrize("scale", [0.0, 1.5, 0.3, "half", True])
def test_bad_image_scale(scale):
    with pytest.raises(ValueError, match="image_scale=.*must be in \\(0, 1\\]"):
        _tiny_vitlift(BilinearUpsampler(64), image_scale=scale)


def lift_model_cfg(num_passes=1, allow_random_lift=True, lift_weights="", name="lift_s8"):
    cfg = load_config(f"vitdet_mrcnn_{name}")
    cfg.model.backbone.net.num_passes = num_passes
    cfg.model.backbone.scale_factors = None  # from the net's stride
    cfg.model.backbone.net.allow_random_lift = allow_random_lift
    cfg.model.backbone.net.lift_weights = lift_weights
    cfg.model.roi_heads.batch_size_per_image = 64
    return cfg


@pytest.mark.parametrize("num_passes", [1, 2])
def test_pyramid_strides_match_feature_sizes_in_mask_rcnn(num_passes):
    """Recursive LiFT (stride 16 / 2^k) in a real Mask R-CNN: p2-p6 at strides 4-64."""
    model = instantiate(lift_model_cfg(num_passes).model)
    bb = model.backbone
    assert bb.net.output_shape()["last_feat"].stride == 16 // 2**num_passes
    shapes = bb.output_shape()
    assert {k: v.stride for k, v in shapes.items()} == PYRAMID_STRIDES
    expected = {2: ["simfp_4", "simfp_5", "simfp_6"]}
    expected = expected.get(num_passes, ["simfp_3", "simfp_4", "simfp_5"])
    assert sorted(n for n, _ in bb.named_children() if n.startswith("simfp_")) == expected
    model.eval()
    with torch.no_grad():
        feats = bb(torch.rand(1, 3, 128, 128))
        (out,) = model([{"image": torch.rand(3, 128, 128) * 255, "height": 128, "width": 128}])
    for k, spec in shapes.items():
        assert feats[k].shape == (1, 256, 128 // spec.stride, 128 // spec.stride), k
    assert out["instances"].image_size == (128, 128)
    model.train()
    with EventStorage():
        losses = model(fake_batch())
    assert {"loss_rpn_cls", "loss_cls", "loss_mask"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())


def test_recursive_lift_with_fixed_scales_is_refused():
    cfg = lift_model_cfg(num_passes=2)
    cfg.model.backbone.scale_factors = (2.0, 1.0)
    with pytest.raises(ValueError, match=r"top_block reads 'p4'.*stride-4.*scale_factors=None"):
        instantiate(cfg.model)
    cfg.model.backbone.scale_factors = (1.0, 0.25)
    with pytest.raises(ValueError, match="double from one level to the next"):
        instantiate(cfg.model)
    cfg.model.backbone.scale_factors = (1.0, 0.5, 0.25, 0.125, 0.0625)
    with pytest.raises(NotImplementedError, match="scale_factor=0.0625"):
        instantiate(cfg.model)


@pytest.mark.parametrize(
    "num_passes,match",
    [
        (0, "integer >= 1"),
        (1.5, "integer >= 1"),
        (True, "integer >= 1"),
        (5, "not divisible by 32"),
    ],
)
def test_bad_num_passes(num_passes, match):
    with pytest.raises(ValueError, match=match):
        _tiny_vitlift(BilinearUpsampler(64), num_passes=num_passes)


def test_three_passes_are_refused_by_the_pyramid_with_the_reason():
    """16 / 2**3 = stride 2, finer than p2: the error says so and how to fix it (it said
    'scale_factor=0.0625 is not supported')."""
    with pytest.raises(
        ValueError, match=r"p2\) has stride 4.*stride 2 \(LiFT applied num_passes=3"
    ):
        instantiate(lift_model_cfg(num_passes=3).model)


def _tiny_vitlift(lift, **kw):
    args = dict(TINY_VIT)
    args.pop("img_size")
    return ViTLiFT(lift=lift, img_size=128, **args, **kw)


def test_vitlift_equals_lift_of_vit_features():
    """ViTLiFT(x) == lift(x, vit(x)), the ViT run as a separate detectron2 ViT."""
    net = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), num_passes=2).eval()
    for p in net.lift.parameters():
        p.data.normal_(0, 0.1)
    vit = ViT(**TINY_VIT).eval()
    vit.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("lift.")})
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        expected = net.lift(x, vit(x)["last_feat"], num_passes=2)
        out = net(x)["last_feat"]
    assert out.shape == (2, 64, 32, 32)
    torch.testing.assert_close(out, expected)
    assert (
        vit_identity(net)
        == vit_identity(vit)
        == {
            "type": "detectron2.ViT",
            "embed_dim": 64,
            "depth": 2,
            "num_heads": 2,
            "patch_size": 16,
        }
    )


def test_frozen_lift_keeps_bn_statistics_in_train_mode():
    net = _tiny_vitlift(
        LiFT.from_preset("LiFT-S", 64), freeze_lift=True, freeze_vit=True, allow_random_lift=True
    )
    net.train()
    assert net.training and not net.lift.training and not net.blocks.training
    bn = net.lift.decoder[0].norm_layer
    before = bn.running_mean.clone()
    net(torch.rand(2, 3, 128, 128))
    torch.testing.assert_close(bn.running_mean, before)
    assert all(not p.requires_grad for p in net.parameters())
    unfrozen = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64)).train()
    bn = unfrozen.lift.decoder[0].norm_layer
    before = bn.running_mean.clone()
    unfrozen(torch.rand(2, 3, 128, 128))
    assert not torch.allclose(bn.running_mean, before)


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


def yacs_cfg(**changes):
    from detectron2.config import get_cfg

    from lift_det import add_lift_config

    cfg = add_lift_config(get_cfg())
    cfg.MODEL.BACKBONE.NAME = "build_vit_lift_backbone"
    c = cfg.MODEL.VIT_LIFT
    c.IMG_SIZE, c.EMBED_DIM, c.DEPTH, c.NUM_HEADS, c.WINDOW_SIZE = 128, 64, 2, 2, 4
    c.WINDOW_BLOCK_INDEXES = [0]
    for k, v in changes.items():
        setattr(c, k, v)
    return cfg


@pytest.mark.parametrize("name", UPSAMPLER_NAMES)
def test_yacs_builder_upsamplers(name):
    from detectron2.modeling import build_backbone

    bb = build_backbone(yacs_cfg(UPSAMPLER=name, LIFT_NORM="SyncBN"))
    kinds = {"bilinear": BilinearUpsampler, "resize_conv": ResizeConvUpsampler}
    kind = {**kinds, "jbu": JBUUpsampler, "attention": AttentionUpsampler}.get(name, LiFT)
    assert type(bb.net.lift) is kind and bb.net.lift.preset in (name, kind.__name__)
    if kind is LiFT:
        assert isinstance(bb.net.lift.decoder[0].norm_layer, torch.nn.SyncBatchNorm)
    assert [s.stride for s in bb.output_shape().values()] == [4, 8, 16, 32, 64]
    assert all(p.requires_grad for p in bb.parameters())


def test_yacs_builder_switches_and_passes():
    from detectron2.modeling import build_backbone

    bb = build_backbone(
        yacs_cfg(
            UPSAMPLER="LiFT-S", FREEZE_VIT=True, FREEZE_LIFT=True, NUM_PASSES=2, PLACEMENT="stride8"
        )
    )
    assert all(not p.requires_grad for p in bb.net.parameters())
    assert all(p.requires_grad for s in bb.stages for p in s.parameters())
    assert [s.stride for s in bb.output_shape().values()] == [4, 8, 16, 32, 64]
    assert bb.net.output_shape()["last_feat"].stride == 4
    feats = bb.eval()(torch.rand(1, 3, 128, 128))
    assert feats["p2"].shape == (1, 256, 32, 32) and feats["p6"].shape == (1, 256, 2, 2)
    with pytest.raises(RuntimeError, match="ALLOW_RANDOM_LIFT|allow_random_lift"):
        bb.train()(torch.rand(1, 3, 128, 128))
    bb = build_backbone(yacs_cfg(FREEZE_PYRAMID=True, FREEZE_LIFT=True, ALLOW_RANDOM_LIFT=True))
    assert all(not p.requires_grad for s in bb.stages for p in s.parameters())
    assert all(not p.requires_grad for p in bb.net.lift.parameters())
    assert all(p.requires_grad for k, p in bb.net.named_parameters() if not k.startswith("lift."))
    bb.train()(torch.rand(1, 3, 128, 128))
    with pytest.raises(ValueError, match="UPSAMPLER: Unknown upsampler 'nearest'"):
        build_backbone(yacs_cfg(UPSAMPLER="nearest"))


def test_freeze_pyramid_switch():
    cfg = load_config("vitdet_mrcnn_lift")
    cfg.model.backbone.freeze = True
    model = instantiate(cfg.model)
    stages = [n for n, _ in model.backbone.named_children() if n.startswith("simfp_")]
    assert stages
    for name in stages:
        assert all(not p.requires_grad for p in getattr(model.backbone, name).parameters())
    assert model.roi_heads.box_predictor.cls_score.weight.requires_grad


# LiFT weights through checkpoint loading (ViTLiFT's load_state_dict pre-hook)


def random_lift_file(path, channels=64, scale=1.0):
    """A LiFT-B file for the tiny ViT with random (non-initial) weights; returns its state."""
    lift = LiFT.from_preset("LiFT-B", channels)
    for k, v in lift.state_dict().items():
        if v.is_floating_point():
            v.copy_(
                torch.randn_like(v).abs() * scale if "running_var" in k else torch.randn_like(v)
            )
    backbone = dict(type="detectron2.ViT", embed_dim=channels, depth=2, num_heads=2, patch_size=16)
    save_lift_file(str(path), lift, backbone=backbone, iteration=10)
    return {k: v.clone() for k, v in lift.state_dict().items()}


@pytest.fixture(scope="module")
def vitdet_files(tmp_path_factory):
    """A ViTDet-B-structured checkpoint (random tiny model) as .pth and as a model zoo .pkl."""
    torch.manual_seed(1)
    state = instantiate(load_config("vitdet_mrcnn").model).state_dict()
    folder = tmp_path_factory.mktemp("vitdet")
    torch.save({"model": state, "iteration": 184374}, folder / "vitdet.pth")
    with open(folder / "model_final.pkl", "wb") as f:
        data = {"model": {k: v.numpy() for k, v in state.items()}}
        pickle.dump({**data, "__author__": "Detectron2 Model Zoo"}, f)
    return folder, state


def stage_two_model(lift_weights=""):
    """configs/vitdet_mrcnn_lift.py (tiny ViT): frozen ViT and LiFT, LiFT from lift_weights."""
    cfg = load_config("vitdet_mrcnn_lift")
    cfg.model.backbone.net.lift_weights = lift_weights
    cfg.model.roi_heads.batch_size_per_image = 64
    return instantiate(cfg.model)


def lift_state(model):
    return {
        k[len("backbone.net.lift.") :]: v for k, v in model.state_dict().items() if ".lift." in k
    }


@pytest.mark.parametrize("fmt", ["vitdet.pth", "model_final.pkl"])
def test_vitdet_checkpoint_brings_the_lift_file(tmp_path, vitdet_files, fmt, caplog):
    folder, vitdet = vitdet_files
    expected = random_lift_file(tmp_path / "lift_final.pth")
    model = stage_two_model(str(tmp_path / "lift_final.pth"))
    checkpointer = DetectionCheckpointer(model)
    report = {}
    checkpointer._log_incompatible_keys = lambda inc: report.update(missing=inc.missing_keys)
    checkpointer.resume_or_load(str(folder / fmt), resume=False)
    got = lift_state(model)
    assert set(got) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(got[k], v, msg=k)
    torch.testing.assert_close(
        model.backbone.net.blocks[0].attn.qkv.weight,
        vitdet["backbone.net.blocks.0.attn.qkv.weight"],
    )
    assert report["missing"] == []  # the half placement: nothing new
    model.train()
    with EventStorage():
        model(fake_batch(1))  # a loaded frozen LiFT trains


def test_ddp_prefix_brings_the_lift_file(tmp_path, vitdet_files):
    folder, vitdet = vitdet_files
    expected = random_lift_file(tmp_path / "lift_final.pth")
    wrapped = torch.nn.DataParallel(stage_two_model(str(tmp_path / "lift_final.pth")))
    incompatible = wrapped.load_state_dict(
        {"module." + k: v for k, v in vitdet.items()}, strict=False
    )
    assert not [k for k in incompatible.missing_keys if ".lift." in k]
    torch.testing.assert_close(
        lift_state(wrapped.module)["out_conv.weight"], expected["out_conv.weight"]
    )


def test_checkpoint_with_lift_wins_and_the_file_is_never_read(tmp_path, caplog):
    path = tmp_path / "lift_final.pth"
    trained = stage_two_model()
    for p in trained.backbone.net.lift.parameters():
        p.data.normal_()
    torch.save({"model": trained.state_dict(), "iteration": 5}, tmp_path / "model_final.pth")
    random_lift_file(path)
    model = stage_two_model(str(path))
    os.remove(path)  # evaluation and resume need only the checkpoint
    with caplog.at_level(logging.INFO, logger="lift_det"):
        DetectionCheckpointer(model).resume_or_load(str(tmp_path / "model_final.pth"), resume=False)
    for k, v in lift_state(trained).items():
        torch.testing.assert_close(lift_state(model)[k], v, msg=k)
    lines = [r for r in caplog.records if r.name.startswith("lift_det")]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert "backbone.net.lift: from the checkpoint (lift_weights=" in lines[0].getMessage()
    model.train()
    with EventStorage():
        model(fake_batch(1))


def test_frozen_random_lift_refuses_to_train():
    model = stage_two_model()
    model.eval()
    with torch.no_grad():  # evaluating a random LiFT is allowed (e.g. a quick smoke test)
        model([{"image": torch.rand(3, 128, 128) * 255, "height": 128, "width": 128}])
    model.train()
    with pytest.raises(
        RuntimeError, match=r"lift_weights=.*lift_final.pth.*allow_random_lift=True"
    ):
        with EventStorage():
            model(fake_batch(1))
    model.backbone.net.allow_random_lift = True
    with EventStorage():
        model(fake_batch(1))
    # lift_weights set but nothing loaded (no checkpoint): the message says so
    net = _tiny_vitlift(LiFT.from_preset("LiFT-S", 64), freeze_lift=True, lift_weights="x.pth")
    with pytest.raises(RuntimeError, match="x.pth is set but no checkpoint was loaded"):
        net.train()(torch.rand(1, 3, 128, 128))


def test_lift_file_loaded_directly_and_bad_files_through_the_checkpoint(tmp_path, vitdet_files):
    """A LiFT file loaded with load_lift_file (the previous way) still counts; a file for another
    model is refused when the checkpoint is loaded, naming the file."""
    from lift_det.checkpoint import load_lift_file

    expected = random_lift_file(tmp_path / "lift.pth")
    net = _tiny_vitlift(LiFT.from_preset("LiFT-B", 64), freeze_lift=True)
    load_lift_file(net.lift, str(tmp_path / "lift.pth"), backbone=vit_identity(net))
    torch.testing.assert_close(net.lift.out_conv.bias, expected["out_conv.bias"])
    net.train()(torch.rand(1, 3, 128, 128))
    random_lift_file(tmp_path / "wide.pth", channels=96)
    model = stage_two_model(str(tmp_path / "wide.pth"))
    with pytest.raises(ValueError, match="wide.pth.*in_channels is 96 in the file but 64"):
        DetectionCheckpointer(model).load(str(vitdet_files[0] / "vitdet.pth"))


def test_a_typo_in_a_vit_argument_of_the_lift_backbone_is_refused_by_the_override_check():
    """ViTLiFT takes the ViT's arguments through **kwargs; its signature spells them out, so the
    override check refuses a typo (naming the key) instead of ViT.__init__ failing later."""
    import inspect

    from detectron2.config import LazyConfig

    from conftest import REPO
    from lift_det.engine.checks import UsageError, check_overrides

    params = inspect.signature(ViTLiFT).parameters
    vit_params = [p for p in inspect.signature(ViT.__init__).parameters if p != "self"]
    assert set(vit_params) <= set(params)  # every ViT argument, by name
    assert {"lift", "lift_weights", "num_passes", "attn_impl"} <= set(params)
    assert not any(p.kind == p.VAR_KEYWORD for p in params.values())
    cfg = LazyConfig.load(f"{REPO}/configs/mini/vitdet_mrcnn_lift.py")
    check_overrides(cfg, ["model.backbone.net.use_act_checkpoint=True"])  # a default: accepted
    with pytest.raises(UsageError, match="unknown config key 'model.backbone.net.window_sise'"):
        check_overrides(cfg, ["model.backbone.net.window_sise=4"])
    # the plain ViTDet (AttnViT) and stage one's teacher alike
    cfg = LazyConfig.load(f"{REPO}/configs/mini/vitdet_mrcnn.py")
    with pytest.raises(UsageError, match="unknown config key 'model.backbone.net.window_sise'"):
        check_overrides(cfg, ["model.backbone.net.window_sise=4"])
    cfg = LazyConfig.load(f"{REPO}/configs/mini/lift_stage1.py")
    check_overrides(cfg, ["model.source.net.attn_impl=sdpa", "model.source.net.qkv_bias=False"])
    with pytest.raises(UsageError, match="unknown config key 'model.source.net.qkv_biass'"):
        check_overrides(cfg, ["model.source.net.qkv_biass=False"])
