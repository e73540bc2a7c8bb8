import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqrank.modeling.components import MLP, Attention, LayerNorm2D, MLPBlock, init_weights_


def test_attention_matches_explicit_formula():
    torch.manual_seed(0)
    attn = Attention(16, 4)
    q, k = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    v = torch.randn(2, 7, 16)

    def heads(x):
        return x.reshape(2, -1, 4, 4).transpose(1, 2)

    qh, kh, vh = heads(attn.q_proj(q)), heads(attn.k_proj(k)), heads(attn.v_proj(v))
    weights = torch.softmax((qh @ kh.transpose(-2, -1)) / math.sqrt(4), dim=-1)
    expected = attn.out_proj((weights @ vh).transpose(1, 2).reshape(2, 5, 16))

    out = attn(q, k, v)
    assert out.shape == (2, 5, 16)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    sdpa = F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(out, attn.out_proj(sdpa), rtol=1e-5, atol=1e-6)


def test_attention_state_dict_and_head_check():
    assert list(Attention(8, 2).state_dict()) == [
        f"{p}_proj.{t}" for p in ("q", "k", "v", "out") for t in ("weight", "bias")
    ]
    with pytest.raises(AssertionError):
        Attention(10, 4)


def test_mlp_block_is_lin_gelu_lin():
    torch.manual_seed(0)
    block = MLPBlock(6, 10)
    assert [k for k in block.state_dict()] == [
        "lin1.weight",
        "lin1.bias",
        "lin2.weight",
        "lin2.bias",
    ]
    x = torch.randn(3, 6)
    expected = block.lin2(F.gelu(block.lin1(x)))
    torch.testing.assert_close(block(x), expected, rtol=0, atol=0)


def test_mlp_relu_between_layers_only():
    torch.manual_seed(0)
    mlp = MLP(4, 8, 3, 3)
    assert [tuple(layer.weight.shape) for layer in mlp.layers] == [(8, 4), (8, 8), (3, 8)]
    x = torch.randn(5, 4)
    h = F.relu(mlp.layers[1](F.relu(mlp.layers[0](x))))
    torch.testing.assert_close(mlp(x), mlp.layers[2](h), rtol=0, atol=0)
    # No ReLU on the output: negative logits must survive.
    assert (mlp(torch.randn(100, 4)) < 0).any()


def test_layernorm2d_normalises_channels():
    torch.manual_seed(0)
    ln = LayerNorm2D(3)
    assert list(ln.state_dict()) == ["norm.weight", "norm.bias"]
    nn.init.normal_(ln.norm.weight)
    nn.init.normal_(ln.norm.bias)
    x = torch.randn(2, 3, 4, 5)
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (3,), ln.norm.weight, ln.norm.bias, 1e-5)
    torch.testing.assert_close(ln(x), expected.permute(0, 3, 1, 2), rtol=0, atol=0)


def test_init_weights_xavier_zero_bias_and_unit_layernorm():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(30, 40), nn.Conv2d(3, 5, 3), nn.LayerNorm(7), nn.GELU())
    nn.init.normal_(module[2].weight)
    nn.init.normal_(module[2].bias)
    assert init_weights_(module) is module

    lin, conv, ln = module[0], module[1], module[2]
    assert lin.weight.abs().max() <= math.sqrt(6 / (30 + 40))
    # xavier_uniform fills the whole range, unlike the default kaiming bound for this shape.
    assert lin.weight.abs().max() > 0.9 * math.sqrt(6 / (30 + 40))
    assert conv.weight.abs().max() <= math.sqrt(6 / (3 * 9 + 5 * 9))
    assert torch.count_nonzero(lin.bias) == 0 and torch.count_nonzero(conv.bias) == 0
    assert torch.equal(ln.weight, torch.ones(7)) and torch.equal(ln.bias, torch.zeros(7))
