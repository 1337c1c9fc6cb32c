"""AASIST and AASIST-L (Jung et al., ICASSP 2022, arXiv 2110.01200): a voice anti-spoofing network
that reads the raw waveform.

The paper's path: a sinc band-pass filter bank over the 16 kHz waveform (RawNet2's front end: its
filters are computed, not learned, so no checkpoint stores them) → |.|, 3x3 max-pool, batch norm,
SELU → six 2-D residual blocks → two graphs over the encoder's output, one whose nodes are
frequency bands (max over time, plus a learned positional code), one whose nodes are time steps
(max over frequency), each through graph attention and a top-k graph pool → two branches of
heterogeneous stacking graph attention over both graphs with a master node, two layers each → the
element-wise max of the branches → max and mean readouts of each graph and the master → two logits.

Layer names and sizes follow the authors' checkpoints (229 tensors; ``load_aasist`` loads them
strictly). Two details of the published network are reproduced as the checkpoints were trained:
a residual block that is not the first normalises its input and then convolves the block's raw
input (the normalised tensor is unused), and a graph pool scales the node features by their scores
before it picks the top k. Of the published four pool ratios and temperatures, the third serves
every stacking layer and its pools and the fourth none (the reference logits pin this: AASIST-L's
third and fourth ratios differ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ModelLoadError
from pipeline.models.checkpoints import load_strict, read_state_dict

SAMPLE_RATE = 16_000
WINDOW = 64_600  # samples per input (4.04 s): shorter audio is tiled up to it
BONA_FIDE = 1  # the output index of a real voice; 0 is spoof


@dataclass(frozen=True)
class AasistShape:
    """The authors' published ``model_config`` of each variant."""

    sinc_filters: int
    sinc_taps: int  # the authors' `first_conv`; an even number gets one more tap (a symmetric filter)
    blocks: tuple[tuple[int, int], ...]  # (in, out) channels of the residual blocks after the first
    first_block: tuple[int, int]
    gat_dims: tuple[int, int]
    pool_ratios: tuple[float, float, float, float]
    temperatures: tuple[float, float, float, float]


SHAPES = {
    "aasist": AasistShape(
        sinc_filters=70,
        sinc_taps=128,
        first_block=(1, 32),
        blocks=((32, 32), (32, 64), (64, 64), (64, 64), (64, 64)),
        gat_dims=(64, 32),
        pool_ratios=(0.5, 0.7, 0.5, 0.5),
        temperatures=(2.0, 2.0, 100.0, 100.0),
    ),
    "aasist_l": AasistShape(
        sinc_filters=70,
        sinc_taps=128,
        first_block=(1, 32),
        blocks=((32, 32), (32, 24), (24, 24), (24, 24), (24, 24)),
        gat_dims=(24, 32),
        pool_ratios=(0.4, 0.5, 0.7, 0.5),
        temperatures=(2.0, 2.0, 100.0, 100.0),
    ),
}


# ---- the front end ------------------------------------------------------------------------------
def sinc_filters(count: int, taps: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``count`` band-pass filters of ``taps`` taps whose edges are evenly spaced on the mel scale
    from 0 Hz to Nyquist (the mel range of a 512-point FFT's bins), each the difference of two
    ideal low-pass sinc kernels under a Hamming window. (count, 1, taps), float32."""
    taps += 1 - taps % 2  # odd: a filter symmetric about its centre tap
    bins = np.linspace(0, 1, 512 // 2 + 1) * (sample_rate // 2)
    mel = 2595 * np.log10(1 + bins / 700)
    edges = 700 * (10 ** (np.linspace(mel.min(), mel.max(), count + 1) / 2595) - 1)
    # the arithmetic in float32 where the authors' was (a float32 tensor times a scalar): the
    # filters then match theirs to the last bits, and the logits to 1e-5
    t = torch.arange(-(taps - 1) / 2, (taps - 1) / 2 + 1)
    window = torch.from_numpy(np.hamming(taps)).float()
    bank = torch.empty(count, taps)
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        upper = 2 * high / sample_rate * np.sinc((2 * high * t / sample_rate).numpy())
        lower = 2 * low / sample_rate * np.sinc((2 * low * t / sample_rate).numpy())
        bank[i] = window * torch.from_numpy(upper - lower).float()
    return bank.unsqueeze(1)


class SincFront(nn.Module):
    """The fixed filter bank (a buffer, not a parameter: not in the checkpoint, not trained)."""

    def __init__(self, count: int, taps: int):
        super().__init__()
        self.register_buffer("filters", sinc_filters(count, taps), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:  # (B, T) → (B, count, T - taps + 1)
        return F.conv1d(waveform.unsqueeze(1), self.filters)


# ---- the encoder --------------------------------------------------------------------------------
class ResidualBlock(nn.Module):
    def __init__(self, channels: tuple[int, int], first: bool):
        super().__init__()
        c_in, c_out = channels
        self.first = first
        if not first:
            self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size=(2, 3), padding=(1, 1))
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, kernel_size=(2, 3), padding=(0, 1))
        self.conv_downsample = nn.Conv2d(c_in, c_out, kernel_size=(1, 3), padding=(0, 1)) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # as trained: bn1 is computed for a later block, but conv1 reads the block's raw input
        out = self.conv2(F.selu(self.bn2(self.conv1(x))))
        shortcut = x if self.conv_downsample is None else self.conv_downsample(x)
        return F.max_pool2d(out + shortcut, (1, 3))


# ---- the graphs ---------------------------------------------------------------------------------
def _batch_norm_nodes(bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
    """Batch norm over the feature axis of (B, nodes, features)."""
    return bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def _pairs(x: torch.Tensor) -> torch.Tensor:
    """(B, N, D) → (B, N, N, D): the product of every pair of nodes' features."""
    return x.unsqueeze(2) * x.unsqueeze(1)


class GraphAttention(nn.Module):
    """Attention over a fully connected graph; weights from the pairwise products of nodes."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float):
        super().__init__()
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_weight = nn.Parameter(torch.empty(out_dim, 1))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.tanh(self.att_proj(_pairs(x))) @ self.att_weight  # (B, N, N, 1)
        weights = torch.softmax(scores / self.temperature, dim=-2).squeeze(-1)
        out = self.proj_with_att(weights @ x) + self.proj_without_att(x)
        return F.selu(_batch_norm_nodes(self.bn, out))


class StackingGraphAttention(nn.Module):
    """Heterogeneous graph attention over two graphs joined (temporal nodes, then spectral), with a
    separate weight for links within each graph and across them, and a master node attending to all."""

    def __init__(self, in_dim: int, out_dim: int, temperature: float):
        super().__init__()
        self.proj_type1 = nn.Linear(in_dim, in_dim)
        self.proj_type2 = nn.Linear(in_dim, in_dim)
        self.att_proj = nn.Linear(in_dim, out_dim)
        self.att_projM = nn.Linear(in_dim, out_dim)
        self.att_weight11 = nn.Parameter(torch.empty(out_dim, 1))
        self.att_weight22 = nn.Parameter(torch.empty(out_dim, 1))
        self.att_weight12 = nn.Parameter(torch.empty(out_dim, 1))
        self.att_weightM = nn.Parameter(torch.empty(out_dim, 1))
        self.proj_with_att = nn.Linear(in_dim, out_dim)
        self.proj_without_att = nn.Linear(in_dim, out_dim)
        self.proj_with_attM = nn.Linear(in_dim, out_dim)
        self.proj_without_attM = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.temperature = temperature

    def forward(
        self, first: torch.Tensor, second: torch.Tensor, master: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n1 = first.shape[1]
        x = torch.cat([self.proj_type1(first), self.proj_type2(second)], dim=1)  # (B, N1 + N2, D)
        hidden = torch.tanh(self.att_proj(_pairs(x)))  # (B, N, N, out)
        within1 = (hidden @ self.att_weight11).squeeze(-1)
        within2 = (hidden @ self.att_weight22).squeeze(-1)
        across = (hidden @ self.att_weight12).squeeze(-1)
        block = torch.zeros_like(within1, dtype=torch.bool)
        block[:, :n1, :n1] = True
        other = torch.zeros_like(block)
        other[:, n1:, n1:] = True
        scores = torch.where(block, within1, torch.where(other, within2, across))
        weights = torch.softmax(scores.unsqueeze(-1) / self.temperature, dim=-2).squeeze(-1)
        # the master node: attention over every node, weighted by its product with the master
        master_scores = torch.tanh(self.att_projM(x * master)) @ self.att_weightM  # (B, N, 1)
        master_weights = torch.softmax(master_scores / self.temperature, dim=-2)  # (B, N, 1)
        master = self.proj_with_attM(master_weights.transpose(1, 2) @ x) + self.proj_without_attM(master)
        out = self.proj_with_att(weights @ x) + self.proj_without_att(x)
        out = F.selu(_batch_norm_nodes(self.bn, out))
        return out[:, :n1], out[:, n1:], master


class GraphPool(nn.Module):
    """Keeps the ``ratio`` of nodes that score highest (at least one), scaled by their score."""

    def __init__(self, ratio: float, dim: int):
        super().__init__()
        self.ratio = ratio
        self.proj = nn.Linear(dim, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        scores = torch.sigmoid(self.proj(h))  # (B, N, 1)
        keep = max(int(h.shape[1] * self.ratio), 1)
        _, index = torch.topk(scores, keep, dim=1)
        return torch.gather(h * scores, 1, index.expand(-1, -1, h.shape[-1]))


# ---- the network --------------------------------------------------------------------------------
class Aasist(nn.Module):
    def __init__(self, shape: AasistShape):
        super().__init__()
        channels = shape.blocks[-1][-1]
        g0, g1 = shape.gat_dims
        p, t = shape.pool_ratios, shape.temperatures
        self.pos_S = nn.Parameter(torch.empty(1, 23, channels))  # one per frequency node
        self.master1 = nn.Parameter(torch.empty(1, 1, g0))
        self.master2 = nn.Parameter(torch.empty(1, 1, g0))
        self.conv_time = SincFront(shape.sinc_filters, shape.sinc_taps)
        self.first_bn = nn.BatchNorm2d(1)
        blocks = [ResidualBlock(shape.first_block, first=True), *(ResidualBlock(c, first=False) for c in shape.blocks)]
        self.encoder = nn.Sequential(*(nn.Sequential(block) for block in blocks))
        self.GAT_layer_S = GraphAttention(channels, g0, t[0])
        self.GAT_layer_T = GraphAttention(channels, g0, t[1])
        self.HtrgGAT_layer_ST11 = StackingGraphAttention(g0, g1, t[2])
        self.HtrgGAT_layer_ST12 = StackingGraphAttention(g1, g1, t[2])
        self.HtrgGAT_layer_ST21 = StackingGraphAttention(g0, g1, t[2])
        self.HtrgGAT_layer_ST22 = StackingGraphAttention(g1, g1, t[2])
        self.pool_S = GraphPool(p[0], g0)
        self.pool_T = GraphPool(p[1], g0)
        self.pool_hS1 = GraphPool(p[2], g1)
        self.pool_hT1 = GraphPool(p[2], g1)
        self.pool_hS2 = GraphPool(p[2], g1)
        self.pool_hT2 = GraphPool(p[2], g1)
        self.out_layer = nn.Linear(5 * g1, 2)

    def _branch(
        self,
        first: StackingGraphAttention,
        second: StackingGraphAttention,
        pools: tuple[GraphPool, GraphPool],
        temporal: torch.Tensor,
        spectral: torch.Tensor,
        master: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t1, s1, m1 = first(temporal, spectral, master)
        s1, t1 = pools[0](s1), pools[1](t1)
        t2, s2, m2 = second(t1, s1, m1)
        return t1 + t2, s1 + s2, m1 + m2

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, 64600) float waveforms at 16 kHz → (B, 2) logits [spoof, bona fide]."""
        x = self.conv_time(waveform).unsqueeze(1)  # (B, 1, filters, T)
        x = F.selu(self.first_bn(F.max_pool2d(x.abs(), (3, 3))))
        e = self.encoder(x)  # (B, C, F, T)
        spectral = e.abs().amax(dim=3).transpose(1, 2) + self.pos_S  # (B, F, C)
        temporal = e.abs().amax(dim=2).transpose(1, 2)  # (B, T, C)
        spectral = self.pool_S(self.GAT_layer_S(spectral))
        temporal = self.pool_T(self.GAT_layer_T(temporal))
        batch = waveform.shape[0]
        t1, s1, m1 = self._branch(
            self.HtrgGAT_layer_ST11,
            self.HtrgGAT_layer_ST12,
            (self.pool_hS1, self.pool_hT1),
            temporal,
            spectral,
            self.master1.expand(batch, -1, -1),
        )
        t2, s2, m2 = self._branch(
            self.HtrgGAT_layer_ST21,
            self.HtrgGAT_layer_ST22,
            (self.pool_hS2, self.pool_hT2),
            temporal,
            spectral,
            self.master2.expand(batch, -1, -1),
        )
        t, s, m = torch.maximum(t1, t2), torch.maximum(s1, s2), torch.maximum(m1, m2)
        hidden = torch.cat([t.abs().amax(dim=1), t.mean(dim=1), s.abs().amax(dim=1), s.mean(dim=1), m.squeeze(1)], 1)
        return self.out_layer(hidden)


def tile(waveform: np.ndarray, length: int = WINDOW) -> np.ndarray:
    """The authors' input: a shorter waveform repeated end to end up to ``length``, a longer one cut."""
    if len(waveform) == 0:
        raise ValueError("an empty waveform")
    repeats = math.ceil(length / len(waveform))
    return np.tile(waveform, repeats)[:length] if repeats > 1 else waveform[:length]


def load_aasist(path: str | Path, variant: str) -> Aasist:
    """The network of ``variant`` (aasist, aasist_l) with the checkpoint at ``path``, loaded strictly,
    in eval mode."""
    if variant not in SHAPES:
        raise ModelLoadError(f"unknown AASIST variant {variant!r} (known: {', '.join(SHAPES)})")
    model = Aasist(SHAPES[variant])
    load_strict(model, read_state_dict(path), path)
    return model.eval()
