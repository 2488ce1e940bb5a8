"""The public TransMatcher written plainly from its formula.

The reference that tests and benchmarks hold :class:`TransMatcherHead` and
:class:`TransMatcherNeck` against (Liao & Shao, "Transformer-Based Deep Image
Matching for Generalizable Person Re-identification", NeurIPS 2021; the
public code's ``transmatcher.py`` and ``restranmap.py``): all pairs at once
with one einsum per layer (no blocks, threads or folding), the sub-modules
named as in the public code so that the ``state_dict`` is the public
checkpoint's.

The public features are channels-last: ``[n, h, w, num_layers * d_model]``
(our neck and head use channels-first ``[n, num_layers * d_model, h, w]``).
"""
import copy
from typing import Optional

import torch
import torch.nn as nn
from torch.nn.init import xavier_uniform_


class PublicTransMatcherLayer(nn.Module):
    """One matching layer of the public ``TransformerDecoderLayer``.

    Args:
        seq_len (int): Locations per map, ``h * w``.
        d_model (int): Channels of the layer's chunk of the features.
        dim_feedforward (int): Hidden size of the per-pair MLP.
    """

    def __init__(self, seq_len: int, d_model: int = 512,
                 dim_feedforward: int = 2048) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.d_model = d_model
        score_embed = torch.randn(seq_len, seq_len)
        score_embed = score_embed + score_embed.t()
        self.score_embed = nn.Parameter(
            score_embed.view(1, 1, seq_len, seq_len))
        self.fc1 = nn.Linear(d_model, d_model)
        self.bn1 = nn.BatchNorm1d(1)
        self.fc2 = nn.Linear(seq_len, dim_feedforward)
        self.bn2 = nn.BatchNorm1d(dim_feedforward)
        self.relu = nn.ReLU()
        self.fc3 = nn.Linear(dim_feedforward, 1)
        self.bn3 = nn.BatchNorm1d(1)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """Scores of all pairs.

        Args:
            tgt (Tensor): [q, h, w, d] query maps.
            memory (Tensor): [k, h, w, d] gallery maps.

        Returns:
            Tensor: [q, k] scores.
        """
        q, h, w, d = tgt.size()
        k = memory.size(0)
        query = self.fc1(tgt.reshape(q, -1, d))
        key = self.fc1(memory.reshape(k, -1, d))
        score = torch.einsum('q t d, k s d -> q k s t', query,
                             key) * self.score_embed.sigmoid()
        score = score.reshape(q * k, self.seq_len, self.seq_len)
        score = torch.cat((score.max(dim=1)[0], score.max(dim=2)[0]), dim=-1)
        score = score.view(-1, 1, self.seq_len)
        score = self.bn1(score).view(-1, self.seq_len)
        score = self.relu(self.bn2(self.fc2(score)))
        score = self.fc3(score)
        score = score.view(-1, 2).sum(dim=-1, keepdim=True)
        return self.bn3(score).view(q, k)


class PublicTransMatcherDecoder(nn.Module):
    """The public ``TransformerDecoder``: the layers' scores summed, then
    ``norm``.

    Args:
        layer (PublicTransMatcherLayer): Copied ``num_layers`` times.
        num_layers (int): Number of matching layers.
        norm (nn.Module): The final ``BatchNorm1d(1)``.
    """

    def __init__(self, layer: nn.Module, num_layers: int,
                 norm: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [copy.deepcopy(layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        tgt = tgt.chunk(self.num_layers, dim=-1)
        memory = memory.chunk(self.num_layers, dim=-1)
        score = sum(
            mod(t, m) for mod, t, m in zip(self.layers, tgt, memory))
        q, k = score.size()
        return self.norm(score.view(-1, 1)).view(q, k)


class PublicTransMatcher(nn.Module):
    """The public ``TransMatcher``: ``make_kernel(query)``, then
    ``forward(gallery) -> [q, g]`` scores (q is the query: not symmetric).

    As the public module it also holds the template layer
    ``decoder_layer`` (deep-copied into ``decoder.layers``, unused by
    :meth:`forward`), so its ``state_dict`` has ``decoder_layer.*`` keys
    besides ``decoder.layers.{i}.*`` and ``decoder.norm.*``.

    Args:
        seq_len (int): Locations per map, ``h * w``.
        d_model (int): Channels per layer.
        num_decoder_layers (int): Number of matching layers.
        dim_feedforward (int): Hidden size of the per-pair MLP.
    """

    def __init__(self,
                 seq_len: int,
                 d_model: int = 512,
                 num_decoder_layers: int = 3,
                 dim_feedforward: int = 2048) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.d_model = d_model
        self.decoder_layer = PublicTransMatcherLayer(seq_len, d_model,
                                                     dim_feedforward)
        self.decoder = PublicTransMatcherDecoder(self.decoder_layer,
                                                 num_decoder_layers,
                                                 nn.BatchNorm1d(1))
        self.memory = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            if p.dim() > 1:
                xavier_uniform_(p)

    def make_kernel(self, features: torch.Tensor) -> None:
        """Store the query maps [q, h, w, L*d]."""
        self.memory = features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Scores of the stored queries against ``features`` [g, h, w, L*d].

        Returns:
            Tensor: [q, g] scores.
        """
        return self.decoder(self.memory, features)

    @torch.no_grad()
    def randomise_(self,
                   generator: torch.Generator,
                   features: Optional[torch.Tensor] = None
                   ) -> 'PublicTransMatcher':
        """Trained-looking parameters drawn from ``generator``: a
        non-trivial ``score_embed`` and ``fc1``, BatchNorm layers with
        non-default affine parameters. The running statistics are those of
        the pairs of ``features`` (one training-mode pass with momentum 1,
        so that eval-mode scores are O(1)), or fixed values without them.
        In place; the module's mode is kept.

        Args:
            generator (torch.Generator): A CPU generator.
            features (Tensor, optional): [n, h, w, L*d] maps whose n x n
                pairs set the running statistics.

        Returns:
            PublicTransMatcher: self.
        """

        def rand(n, lo, hi):
            return lo + (hi - lo) * torch.rand(n, generator=generator)

        bns = [self.decoder.norm]
        for layer in self.decoder.layers:
            hw = layer.seq_len
            layer.score_embed.copy_(
                2 * torch.randn(1, 1, hw, hw, generator=generator))
            layer.fc1.weight.copy_(
                torch.randn(layer.fc1.weight.shape, generator=generator) /
                layer.d_model**0.5)
            bns += [layer.bn1, layer.bn2, layer.bn3]
        for bn in bns:
            n = bn.num_features
            bn.weight.copy_(rand(n, 0.5, 1.5))
            bn.bias.copy_(0.2 * torch.randn(n, generator=generator))
            bn.running_mean.copy_(0.3 * torch.randn(n, generator=generator))
            bn.running_var.copy_(rand(n, 0.5, 2.))
        if features is not None:
            training = self.training
            momenta = [bn.momentum for bn in bns]
            for bn in bns:
                bn.momentum = 1.
            self.train()
            self.make_kernel(features)
            self(features)
            self.memory = None
            for bn, momentum in zip(bns, momenta):
                bn.momentum = momentum
            self.train(training)
        return self


class PublicTransMatcherEncoder(nn.Module):
    """The TransMatcher feature map of the public ``restranmap.ResNet``,
    after the backbone: ``neck_conv`` (3x3, padding 1, with a bias, no
    BatchNorm) and ``encoder.layers`` (``num_encoder_layers`` sequence-first
    ``nn.TransformerEncoderLayer``, dropout 0); the neck output and every
    encoder layer's output concatenated over the channels, channels-last.

    Args:
        in_channels (int): Channels of the backbone map.
        d_model (int): Neck channels.
        num_encoder_layers (int): Encoder layers (the public
            ``num_trans_layers - 1``).
        dim_feedforward (int): Hidden size of the encoder layers.
        nhead (int): Attention heads. Defaults to 1.
    """

    def __init__(self,
                 in_channels: int,
                 d_model: int = 512,
                 num_encoder_layers: int = 2,
                 dim_feedforward: int = 2048,
                 nhead: int = 1) -> None:
        super().__init__()
        self.neck_conv = nn.Conv2d(in_channels, d_model, 3, padding=1)
        self.encoder = nn.Module()
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward,
                                           0.)
        self.encoder.layers = nn.ModuleList(
            [copy.deepcopy(layer) for _ in range(num_encoder_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone map [b, c, h, w] -> [b, h, w, (1 + n_enc) * d]."""
        x = self.neck_conv(x)
        out = x.permute(0, 2, 3, 1)
        b, c, h, w = x.size()
        y = x.view(b, c, -1).permute(2, 0, 1)  # [hw, b, c]
        outputs = []
        for mod in self.encoder.layers:
            y = mod(y)
            outputs.append(y)
        if outputs:
            y = torch.cat(outputs, dim=-1)
            y = y.permute(1, 0, 2).reshape(b, h, w, -1)
            out = torch.cat((out, y), dim=-1)
        return out
