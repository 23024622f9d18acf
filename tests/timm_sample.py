"""The timm sample of the reverse port (issue 21): 30 architectures, shrunk
where timm's constructors allow (depths, widths, image size) but keeping each
family's distinctive blocks. Used by tests/flows/reverse/test_reverse_timm.py and
scripts/bench_timm.py.

Each entry: (timm name, create_model kwargs, input shape C,H,W).
"""

from __future__ import annotations

__all__ = ["SAMPLE", "create"]

_VIT = dict(img_size=32, patch_size=8, depth=2)

SAMPLE = [
    ("resnet18d", {}, (3, 32, 32)),
    ("seresnext26d_32x4d", dict(layers=(1, 1, 1, 1)), (3, 32, 32)),
    ("efficientnet_b0", {}, (3, 32, 32)),
    ("tf_efficientnet_b0", {}, (3, 32, 32)),
    ("mobilenetv3_small_100", {}, (3, 32, 32)),
    ("mobilenetv4_conv_small", {}, (3, 32, 32)),
    ("ghostnet_100", {}, (3, 32, 32)),
    ("rexnet_100", {}, (3, 32, 32)),
    ("regnetx_002", {}, (3, 32, 32)),
    ("convnext_atto", dict(depths=(1, 1, 1, 1)), (3, 32, 32)),
    ("convnextv2_atto", dict(depths=(1, 1, 1, 1)), (3, 32, 32)),
    ("vit_tiny_patch16_224", _VIT, (3, 32, 32)),
    ("deit_tiny_patch16_224", _VIT, (3, 32, 32)),
    ("swin_tiny_patch4_window7_224", dict(img_size=32, window_size=4, depths=(1, 1, 1, 1), embed_dim=32,
                                          num_heads=(1, 2, 4, 8)), (3, 32, 32)),
    ("levit_128s", dict(img_size=64), (3, 64, 64)),
    ("mobilevit_xxs", {}, (3, 64, 64)),
    ("poolformer_s12", {}, (3, 32, 32)),  # depths fixed by timm's poolformer_s12
    ("mixer_s16_224", dict(img_size=64), (3, 64, 64)),
    ("resmlp_12_224", dict(img_size=64), (3, 64, 64)),
    ("coatnet_nano_rw_224", dict(img_size=64), (3, 64, 64)),
    ("maxvit_nano_rw_256", dict(img_size=64), (3, 64, 64)),
    ("dla34", {}, (3, 32, 32)),
    ("densenet121", dict(block_config=(2, 2, 2, 2)), (3, 32, 32)),
    ("inception_v3", {}, (3, 75, 75)),
    ("legacy_xception", {}, (3, 32, 32)),
    ("cspdarknet53", {}, (3, 32, 32)),
    ("repvgg_a0", {}, (3, 32, 32)),
    ("fastvit_t8", {}, (3, 64, 64)),
    ("edgenext_xx_small", {}, (3, 64, 64)),
    ("efficientformer_l1", dict(depths=(1, 1, 1, 2), embed_dims=(16, 32, 48, 64)), (3, 224, 224)),
    ("nf_resnet26", {}, (3, 32, 32)),
    ("hgnet_tiny", {}, (3, 32, 32)),
    ("lcnet_050", {}, (3, 32, 32)),
]


def create(name: str, kwargs: dict, seed: int = 0):
    """The timm model in eval mode, seeded, 10 classes, no download."""
    import tests.tv

    tests.tv.load_torchvision()
    import timm
    import torch

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
