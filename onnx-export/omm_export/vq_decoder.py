"""The VQ-GAN decoder (codes -> pixels) with the original Chameleon/taming layout and parameter names,
so real `decoder.*`, `post_quant_conv.*` and `quantize.embedding.*` weights load by name.
transformers ships only the encoder side; the building blocks are the same as its encoder's."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.chameleon.modeling_chameleon import (
    ChameleonVQVAEEncoderAttnBlock as AttnBlock,
    ChameleonVQVAEEncoderResnetBlock as ResnetBlock,
)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x):                       # [B,C,H,W] -> [B,C,2H,2W]
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VqGanDecoder(nn.Module):
    def __init__(self, vq_config):
        super().__init__()
        ch, mult = vq_config.base_channels, list(vq_config.channel_multiplier)
        attn_res = vq_config.attn_resolutions or []
        n_res = vq_config.num_res_blocks
        block_in = ch * mult[-1]
        curr_res = vq_config.resolution // 2 ** (len(mult) - 1)
        self.conv_in = nn.Conv2d(vq_config.latent_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(vq_config, block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(vq_config, block_in, block_in)
        self.up = nn.ModuleList()
        for level in reversed(range(len(mult))):
            up = nn.Module()
            up.block, up.attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * mult[level]
            for _ in range(n_res + 1):
                up.block.append(ResnetBlock(vq_config, block_in, block_out))
                block_in = block_out
                if curr_res in attn_res:
                    up.attn.append(AttnBlock(block_in))
            if level != 0:
                up.upsample = Upsample(block_in)
                curr_res *= 2
            self.up.insert(0, up)
        self.norm_out = nn.GroupNorm(32, block_in, eps=1e-6, affine=True)
        self.conv_out = nn.Conv2d(block_in, vq_config.in_channels, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for level in reversed(range(len(self.up))):
            for i, block in enumerate(self.up[level].block):
                h = block(h)
                if len(self.up[level].attn) > 0:
                    h = self.up[level].attn[i](h)
            if level != 0:
                h = self.up[level].upsample(h)
        h = self.norm_out(h)
        return self.conv_out(h * torch.sigmoid(h))


class ImageDecoderGraph(nn.Module):
    """codes [B, N] int64 -> pixels [B, 3, H, W] in [-1, 1]."""

    def __init__(self, vq_config, codebook: nn.Embedding, post_quant_conv: nn.Conv2d):
        super().__init__()
        self.quantize = nn.Module()
        self.quantize.embedding = codebook
        self.post_quant_conv = post_quant_conv
        self.decoder = VqGanDecoder(vq_config)
        self.grid = vq_config.resolution // 2 ** (len(vq_config.channel_multiplier) - 1)

    def forward(self, codes):
        b = codes.shape[0]
        z = self.quantize.embedding(codes)                                        # [B, N, C]
        z = z.reshape(b, self.grid, self.grid, -1).permute(0, 3, 1, 2)          # [B, C, h, w]
        return self.decoder(self.post_quant_conv(z)).clamp(-1.0, 1.0)


def nearest_codes(h, e):
    """codes [B, N] of features h [B, C, h, w] against codebook e [K, C]: argmin of |z|^2 + |e|^2 - 2 z.e, as the
    quantizer computes it."""
    b, c = h.shape[0], h.shape[1]
    z = h.permute(0, 2, 3, 1).reshape(b, -1, c)                              # [B, N, C]
    d = (z ** 2).sum(-1, keepdim=True) + (e ** 2).sum(-1) - 2 * torch.matmul(z, e.t())
    return d.argmin(-1)


class ImageEncoderGraph(nn.Module):
    """pixels [B, 3, H, W] -> codes [B, N] int64: encoder, quant_conv, nearest codebook entry."""

    def __init__(self, vqmodel):
        super().__init__()
        self.vq = vqmodel

    def forward(self, pixel_values):
        return nearest_codes(self.vq.quant_conv(self.vq.encoder(pixel_values)), self.vq.quantize.embedding.weight)


class HalfImageEncoderGraph(nn.Module):
    """ImageEncoderGraph with the encoder and quant_conv in fp16 (copies of the weights; the pixels are cast on
    entry and stay an fp32 input), the quantizer's distances and argmin in fp32 (fp16 distances would flip codes
    whose two nearest entries are close). What PyTorch runs with the model in half precision, quantizer aside."""

    def __init__(self, vqmodel):
        super().__init__()
        import copy
        self.encoder = copy.deepcopy(vqmodel.encoder).half()
        self.quant_conv = copy.deepcopy(vqmodel.quant_conv).half()
        self.register_buffer("codebook", vqmodel.quantize.embedding.weight.detach().float().clone())

    def forward(self, pixel_values):
        return nearest_codes(self.quant_conv(self.encoder(pixel_values.half())).float(), self.codebook)
