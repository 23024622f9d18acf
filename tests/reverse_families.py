"""The torchvision classification families of the reverse port (issue 14), one
place for the tests (tests/flows/reverse/test_reverse_families.py) and the benchmark
(scripts/bench_reverse.py). Needs torchvision (tests/tv.py)."""

from __future__ import annotations

__all__ = ["FAMILIES", "build"]

# name -> (torchvision builder name, kwargs, input shape without the batch)
FAMILIES = {
    "resnet18": ("resnet18", {}, (3, 64, 64)),
    "vgg11_bn": ("vgg11_bn", {}, (3, 64, 64)),
    "mobilenet_v2": ("mobilenet_v2", {}, (3, 64, 64)),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}, (3, 64, 64)),
    "efficientnet_b0": ("efficientnet_b0", {}, (3, 64, 64)),
    "densenet121": ("densenet121", {}, (3, 64, 64)),
    "squeezenet1_0": ("squeezenet1_0", {}, (3, 64, 64)),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", {}, (3, 64, 64)),
    "regnet_x_400mf": ("regnet_x_400mf", {}, (3, 64, 64)),
    "convnext_tiny": ("convnext_tiny", {}, (3, 64, 64)),
    "mnasnet0_5": ("mnasnet0_5", {}, (3, 64, 64)),
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": True}, (3, 64, 64)),
    # vit_b_16 needs 224x224 (86M parameters); the same architecture, small:
    "vit_small": ("VisionTransformer", {"image_size": 32, "patch_size": 8, "num_layers": 2, "num_heads": 2,
                                        "hidden_dim": 32, "mlp_dim": 64, "num_classes": 10}, (3, 32, 32)),
}


def build(torchvision, name: str, seed: int = 0):
    """(module in eval mode with seeded weights and non-trivial BN statistics, input shape)."""
    import torch

    fn_name, kwargs, shape = FAMILIES[name]
    torch.manual_seed(seed)
    module = getattr(torchvision.models, fn_name)(**kwargs).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
        for n, p in module.named_parameters():  # ViT's zero class token / ConvNeXt's 1e-6 layer scale: make them count
            if n.endswith(("class_token", "pos_embedding")):
                p.normal_(0, 0.2, generator=g)
            if n.endswith("layer_scale"):
                p.uniform_(0.5, 1.0, generator=g)
    return module, shape


def _factory(name):
    def make():
        from tests.tv import load_torchvision

        tv = load_torchvision()
        if tv is None:
            raise RuntimeError("torchvision is not installed (pip install --no-deps torchvision==0.28.0)")
        return build(tv, name)[0]

    make.__name__ = name
    make.__doc__ = f"torchvision {FAMILIES[name][0]}, seeded, BatchNorm statistics randomised; input {FAMILIES[name][2]}."
    return make


for _name in FAMILIES:  # vgg11_bn(), resnet18(), ...: `compare.py port tests/reverse_families.py:vgg11_bn --input-shape 3,64,64`
    globals()[_name] = _factory(_name)
