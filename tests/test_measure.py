import torch
import torch.nn as nn
import torch.nn.functional as F

from vbench.models.measure import count_flops, count_params


class SdpaOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, images):
        tokens = images.flatten(2).transpose(1, 2).reshape(1, 2, 24, 4) * self.scale  # 2 heads, L=24, E=4
        return F.scaled_dot_product_attention(tokens, tokens, tokens[..., :3])


class CdistModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(8, 8)

    def forward(self, images):
        points = self.linear(images.reshape(1, -1, 8))
        return torch.cdist(points, points)


def test_sdpa_gets_its_matmul_macs():
    flops = count_flops(SdpaOnly(), img_size=(8, 8))
    assert flops.complete
    assert flops.total == 2 * 24 * 24 * (4 + 3)


def test_an_op_without_a_rule_is_reported_not_silently_dropped():
    flops = count_flops(CdistModel(), img_size=(8, 8))
    assert not flops.complete
    assert any("cdist" in op for op in flops.uncounted_ops)
    assert "incomplete" in flops.describe()


def test_count_params_counts_trainable_only():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    assert count_params(model) == 6
    assert count_params(model, trainable_only=False) == 8
