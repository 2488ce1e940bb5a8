"""TransMatcher matching head: Transformer-based image matching scores of
image pairs (Liao & Shao, NeurIPS 2021)."""
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch.nn.init import xavier_uniform_

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.errors import ReIDUserError
from .pair_head import PairLossMixin, pair_compute_dtype
from .qaconv_kernels import CPU_BLOCK_BYTES_PER_THREAD
from .transmatcher_kernels import (CPU_MLP_BYTES, CPU_ROWS_BYTES, FoldedLayer,
                                   WeightedPairMaxima, block_sizes,
                                   folded_pair_list_scores,
                                   folded_pair_scores, max_norm,
                                   similarity_dtype,
                                   weighted_pair_maxima_blocks)


def _bn_affine(bn: nn.BatchNorm1d) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm1d as ``a * x + b`` (float64, [num_features])."""
    a = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
    b = -bn.running_mean.detach().double() * a
    if bn.affine:
        a = a * bn.weight.detach().double()
        b = b * bn.weight.detach().double() + bn.bias.detach().double()
    return a, b


class TransMatcherLayer(nn.Module):
    """The parameters of one matching layer, named as the public
    ``TransformerDecoderLayer`` (``score_embed``, ``fc1``, ``bn1``, ``fc2``,
    ``bn2``, ``fc3``, ``bn3``), and its per-pair MLP.

    Args:
        seq_len (int): Locations per map, ``h * w``.
        d_model (int): Channels of the layer's chunk of the features.
        dim_feedforward (int): Hidden size of the MLP.
    """

    def __init__(self, seq_len: int, d_model: int,
                 dim_feedforward: int) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.d_model = d_model
        score_embed = torch.randn(seq_len, seq_len)
        score_embed = score_embed + score_embed.t()
        #: [1, 1, hw, hw], indexed [gallery location s, query location t]
        self.score_embed = nn.Parameter(
            score_embed.view(1, 1, seq_len, seq_len))
        self.fc1 = nn.Linear(d_model, d_model)
        self.bn1 = nn.BatchNorm1d(1)
        self.fc2 = nn.Linear(seq_len, dim_feedforward)
        self.bn2 = nn.BatchNorm1d(dim_feedforward)
        self.fc3 = nn.Linear(dim_feedforward, 1)
        self.bn3 = nn.BatchNorm1d(1)

    def batch_norms(self) -> Tuple[nn.BatchNorm1d, ...]:
        """``bn1``, ``bn2``, ``bn3``."""
        return self.bn1, self.bn2, self.bn3

    def embed(self, dtype: torch.dtype) -> torch.Tensor:
        """``sigmoid(score_embed)`` as [hw (s), hw (t)] in ``dtype``
        (differentiable)."""
        hw = self.seq_len
        return self.score_embed.view(hw, hw).sigmoid().to(dtype)

    def fc1_of(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``fc1`` of [n, hw, d] features computed in ``dtype``."""
        return F.linear(x.to(dtype), self.fc1.weight.to(dtype),
                        self.fc1.bias.to(dtype)).contiguous()

    def pair_scores(self, m_q: torch.Tensor,
                    m_g: torch.Tensor) -> torch.Tensor:
        """The public layer stack after the maxima, on all pairs at once
        (BatchNorm over all of them in training mode).

        Args:
            m_q (Tensor): [nq, ng, hw] max over gallery locations.
            m_g (Tensor): [nq, ng, hw] max over query locations.

        Returns:
            Tensor: [nq, ng] scores of this layer, in the parameters' dtype.
        """
        nq, ng, hw = m_q.shape
        x = torch.cat((m_q, m_g), dim=-1).to(self.fc2.weight.dtype)
        x = self.bn1(x.view(-1, 1, hw)).view(-1, hw)
        x = F.relu(self.bn2(self.fc2(x)))
        x = self.fc3(x).view(-1, 2).sum(dim=-1, keepdim=True)
        return self.bn3(x).view(nq, ng)

    def folded(self, scale: torch.Tensor, dtype: torch.dtype,
               mlp_dtype: torch.dtype) -> Tuple[FoldedLayer, torch.Tensor]:
        """Eval-mode layer with ``bn1``/``bn2`` folded into ``fc2`` and
        ``bn3`` (times ``scale``, the final norm's) into ``fc3``.

        Args:
            scale (Tensor): [] float64 scale applied to the layer's score.
            dtype (torch.dtype): GEMM dtype (``fc1``, ``embed``).
            mlp_dtype (torch.dtype): MLP dtype.

        Returns:
            tuple: ``(FoldedLayer, offset)``, the float64 scalar that the
            layer adds (times ``scale``) to every pair's score.
        """
        hw = self.seq_len
        a1, b1 = _bn_affine(self.bn1)
        a2, b2 = _bn_affine(self.bn2)
        a3, b3 = _bn_affine(self.bn3)
        w2 = self.fc2.weight.detach().double()
        bias2 = self.fc2.bias.detach().double()
        w2f = w2 * (a1 * a2)[:, None]
        c2 = a2 * (b1 * w2.sum(dim=1) + bias2) + b2
        w3 = self.fc3.weight.detach().double().reshape(-1) * a3 * scale
        offset = scale * (a3 * 2. * self.fc3.bias.detach().double() + b3)
        embed = self.score_embed.detach().double().view(hw, hw).sigmoid()
        layer = FoldedLayer(
            fc1_weight=self.fc1.weight.detach().to(dtype),
            fc1_bias=self.fc1.bias.detach().to(dtype),
            embed=embed.t().contiguous().view(hw, 1, hw).to(dtype),
            w2t=w2f.t().contiguous().to(mlp_dtype),
            c2=c2.to(mlp_dtype),
            w3=w3.to(mlp_dtype))
        return layer, offset.reshape(())


class TransMatcherDecoder(nn.Module):
    """The public ``TransformerDecoder``'s parameters: ``layers`` (one
    :class:`TransMatcherLayer` per ``d_model`` chunk) and ``norm`` (the
    BatchNorm1d(1) on the layers' summed scores).

    Args:
        seq_len (int): Locations per map.
        d_model (int): Channels per layer.
        num_layers (int): Number of layers.
        dim_feedforward (int): Hidden size of the MLPs.
    """

    def __init__(self, seq_len: int, d_model: int, num_layers: int,
                 dim_feedforward: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            TransMatcherLayer(seq_len, d_model, dim_feedforward)
            for _ in range(num_layers)
        ])
        self.norm = nn.BatchNorm1d(1)


class TransMatcherExportMatcher(nn.Module):
    """Eval-mode TransMatcher scores with plain ops (ONNX-exportable): what
    :meth:`TransMatcherHead.export_matcher` returns for
    :func:`mmreid_gs.apis.export_matcher`.

    The same folded layers as the blockwise fast path
    (:meth:`TransMatcherLayer.folded`), all pairs of a call at once (memory
    q x g x hw x hw floats per layer: call it on gallery blocks).

    Args:
        head (TransMatcherHead): The head, in eval mode.

    Raises:
        ReIDUserError: When the head's BatchNorm layers use batch statistics
            (training mode or no running statistics): such scores depend on
            the other pairs of the call and cannot be exported per pair.
    """

    def __init__(self, head: 'TransMatcherHead'):
        super().__init__()
        if head._uses_batch_stats():
            raise ReIDUserError(
                'TransMatcherExportMatcher: the head is in training mode or '
                'has no running BatchNorm statistics; call model.eval() '
                'first')
        self.num_features, self.d_model = head.num_features, head.d_model
        self.height, self.width = head.height, head.width
        layers, offset = head._folded_layers(torch.float32, torch.float32)
        self.num_layers = len(layers)
        for k, layer in enumerate(layers):
            for name, value in layer._asdict().items():
                self.register_buffer(f'{name}_{k}', value.clone(),
                                     persistent=False)
        self.register_buffer(
            'offset', torch.tensor(offset, dtype=torch.float32),
            persistent=False)

    def forward(self, query: torch.Tensor,
                gallery: torch.Tensor) -> torch.Tensor:
        """Scores of every query/gallery pair.

        Args:
            query (Tensor): [q, L*d, h, w] feature maps.
            gallery (Tensor): [g, L*d, h, w] feature maps.

        Returns:
            Tensor: [q, g] float32 logits.
        """
        d, hw = self.d_model, self.height * self.width
        nq, ng = query.shape[0], gallery.shape[0]
        q = query.float().reshape(nq, self.num_features, hw).transpose(1, 2)
        g = gallery.float().reshape(ng, self.num_features,
                                    hw).transpose(1, 2)
        total = None
        for k in range(self.num_layers):
            weight = getattr(self, f'fc1_weight_{k}')
            bias = getattr(self, f'fc1_bias_{k}')
            qf = torch.matmul(q[..., k * d:(k + 1) * d], weight.t()) + bias
            gf = torch.matmul(g[..., k * d:(k + 1) * d], weight.t()) + bias
            sim = torch.matmul(qf.reshape(-1, d), gf.reshape(-1, d).t())
            sim = sim.reshape(nq, hw, ng, hw) * getattr(self, f'embed_{k}')
            maxima = torch.stack(
                (sim.amax(dim=3).transpose(1, 2), sim.amax(dim=1)), dim=2)
            hidden = torch.relu(
                torch.matmul(maxima, getattr(self, f'w2t_{k}')) +
                getattr(self, f'c2_{k}'))
            score = torch.matmul(hidden, getattr(self, f'w3_{k}')).sum(-1)
            total = score if total is None else total + score
        return total + self.offset


@MODELS.register_module()
class TransMatcherHead(PairLossMixin, BaseModule):
    """TransMatcher matching head (Liao & Shao, "Transformer-Based Deep
    Image Matching for Generalizable Person Re-identification", NeurIPS
    2021).

    Scores a query map Q and a gallery map G, each ``[L*d, h, w]`` (the
    output of :class:`TransMatcherNeck`: the neck map and the outputs of
    the ``L - 1`` encoder layers), as the public ``TransMatcher`` module
    (``make_kernel(Q)``, then ``forward(G)``). For every layer ``l``, on the
    ``l``-th ``d``-channel chunk: ``fc1`` on both maps, the ``hw x hw``
    similarities ``fc1(Q)[t] . fc1(G)[s]`` times ``sigmoid(score_embed)[s,
    t]``, the max over gallery locations ``s`` for every query location
    ``t`` and the max over ``t`` for every ``s`` (``2 x hw`` values),
    ``bn1`` (BatchNorm1d(1) over all values), on each half ``fc2`` ->
    ``bn2`` -> ReLU -> ``fc3``, the halves summed, ``bn3``; the layers'
    scores summed and ``decoder.norm``: one logit per pair, higher = more
    similar. ``score_embed`` (and the asymmetric roles of Q and G) make
    ``match(q, g)`` differ from ``match(g, q).T``. The parameters are named
    as the public module's (``decoder.layers.{i}.fc1``, ..., ``decoder.norm``),
    so ``head.load_state_dict(public.state_dict(), strict=False)``
    reproduces its scores (the public template layer ``decoder_layer.*``
    is unused by its forward and has no counterpart here).

    :meth:`match` never builds a q x g x hw x hw tensor: in eval mode
    (BatchNorm with running statistics) without gradients, the BatchNorm
    layers are folded into ``fc2`` / ``fc3`` and the pairs scored in blocks
    of ``q_blk`` queries x ``g_blk`` gallery items, each one matrix multiply
    ``(q_blk*hw, d) @ (d, g_blk*hw)`` per layer of at most
    ``memory_budget_mb`` MiB (cache sized on the CPU, spread over worker
    threads) followed by the per-pair MLP on the block's maxima; ``fc1`` is
    computed once per chunk of queries / gallery items (at most
    ``memory_budget_mb / 2`` MiB of outputs each). In training mode (or for
    features requiring grad) the BatchNorm layers normalise over all pairs
    of the call, as the public code, so the maxima of all pairs are gathered
    first (memory O(q * g * hw) per layer, and O(q * g * dim_feedforward)
    for the MLP) with a memory-bounded backward pass through the maxima;
    :meth:`loss` always works that way on the B x B pairs of a batch.

    Under CUDA autocast ``fc1`` and the similarity GEMMs run in the autocast
    dtype; under CPU autocast :meth:`match` runs them in the CPU autocast
    dtype (bfloat16 by default) while :meth:`loss` ignores CPU autocast;
    the BatchNorm / MLP layers always run in the parameters' dtype
    (float32). The maps are not L2-normalised, so float16 similarities
    could overflow (above 65,504): a float16 block or layer whose
    Cauchy-Schwarz bound (the largest ``fc1`` output norms) exceeds
    :data:`~mmreid_gs.models.heads.transmatcher_kernels.FLOAT16_SAFE_BOUND`
    is computed in float32 instead
    (:func:`~mmreid_gs.models.heads.transmatcher_kernels.similarity_dtype`,
    logged once); bfloat16 has float32's range and is always kept.

    Args:
        height (int): Height h of the feature maps.
        width (int): Width w of the feature maps.
        d_model (int): Channels d per layer. Defaults to 512.
        num_layers (int): Matching layers L (the maps have ``L * d``
            channels). Defaults to 3.
        dim_feedforward (int): Hidden size of the per-pair MLP. Defaults
            to 2048.
        loss (dict | nn.Module): The pair loss on the B x B logits, called as
            ``loss(scores, labels) -> (loss, acc)`` (a loss with
            ``needs_matcher = True`` as ``loss(feats, labels, self.match)
            -> (loss, acc)``). Defaults to
            ``dict(type='PairwiseMatchingLoss')``.
        memory_budget_mb (float): Upper bound of one similarity block in MiB.
            Defaults to 256.
        prob_batch_size (int, optional): Queries per block (overrides the
            value derived from the budget).
        gal_batch_size (int, optional): Gallery items per block (overrides
            the value derived from the budget).
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None: Xavier-uniform on every parameter of more than
            one dimension (``score_embed`` included), as the public
            ``reset_parameters``.
    """

    def __init__(self,
                 height: int,
                 width: int,
                 d_model: int = 512,
                 num_layers: int = 3,
                 dim_feedforward: int = 2048,
                 loss=dict(type='PairwiseMatchingLoss'),
                 memory_budget_mb: float = 256,
                 prob_batch_size: Optional[int] = None,
                 gal_batch_size: Optional[int] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('height', height), ('width', width),
                            ('d_model', d_model), ('num_layers', num_layers),
                            ('dim_feedforward', dim_feedforward)):
            if int(value) != value or int(value) <= 0:
                raise ReIDUserError(f'TransMatcherHead: {name} must be a '
                                    f'positive integer, got {value}')
        if memory_budget_mb <= 0:
            raise ReIDUserError(
                'TransMatcherHead: memory_budget_mb must be positive, '
                f'got {memory_budget_mb}')
        self.height = int(height)
        self.width = int(width)
        self.d_model = int(d_model)
        self.num_layers = int(num_layers)
        self.dim_feedforward = int(dim_feedforward)
        #: Channels of the maps :meth:`match` takes: ``num_layers * d_model``.
        self.num_features = self.num_layers * self.d_model
        self.memory_budget_mb = memory_budget_mb
        self.prob_batch_size = prob_batch_size
        self.gal_batch_size = gal_batch_size
        self.decoder = TransMatcherDecoder(self.height * self.width,
                                           self.d_model, self.num_layers,
                                           self.dim_feedforward)
        if not isinstance(loss, nn.Module):
            loss = MODELS.build(loss)
        self.loss_module = loss
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform on every matcher parameter of more than one
        dimension (the public ``reset_parameters``)."""
        for p in self.decoder.parameters():
            if p.dim() > 1:
                xavier_uniform_(p)

    def reset_running_stats(self) -> None:
        """Reset the running statistics of every BatchNorm layer."""
        for bn in self._batch_norms():
            bn.reset_running_stats()

    # ------------------------------------------------------------------
    # helpers
    def _batch_norms(self) -> List[nn.BatchNorm1d]:
        bns = [bn for layer in self.decoder.layers
               for bn in layer.batch_norms()]
        return bns + [self.decoder.norm]

    def _uses_batch_stats(self) -> bool:
        return any(m.training or not m.track_running_stats
                   or m.running_mean is None for m in self._batch_norms())

    def _check_shape(self, feats: torch.Tensor, name: str) -> None:
        """Raise a ReIDUserError unless ``feats`` is [N, L*d, h, w]."""
        expected = (self.num_features, self.height, self.width)
        if feats.dim() != 4 or tuple(feats.shape[1:]) != expected:
            raise ReIDUserError(
                f'TransMatcherHead: {name} feature maps must have shape '
                f'[N, {expected[0]}, {expected[1]}, {expected[2]}] '
                f'([N, L*d, h, w] with num_layers * d_model = '
                f'{self.num_layers} * {self.d_model} channels and the '
                f'head\'s height x width, channels first), got '
                f'{tuple(feats.shape)}')

    #: dtype of ``fc1`` and the similarity GEMM
    #: (:func:`~mmreid_gs.models.heads.pair_head.pair_compute_dtype`)
    _compute_dtype = staticmethod(pair_compute_dtype)

    @property
    def _param_dtype(self) -> torch.dtype:
        return self.decoder.norm.running_var.dtype

    def block_sizes(self,
                    num_query: int,
                    num_gallery: int,
                    dtype: torch.dtype = torch.float32,
                    device: torch.device = torch.device('cpu'),
                    prob_batch_size: Optional[int] = None,
                    gal_batch_size: Optional[int] = None) -> Tuple[int, int]:
        """Queries and gallery items per similarity block (see
        :func:`~mmreid_gs.models.heads.qaconv_kernels.block_sizes`).

        Returns:
            tuple[int, int]: ``(q_blk, g_blk)``.
        """
        return block_sizes(self.height * self.width, num_query, num_gallery,
                           dtype, device, self.memory_budget_mb,
                           prob_batch_size or self.prob_batch_size,
                           gal_batch_size or self.gal_batch_size)

    # ------------------------------------------------------------------
    # public API
    def match(self,
              query: torch.Tensor,
              gallery: torch.Tensor,
              prob_batch_size: Optional[int] = None,
              gal_batch_size: Optional[int] = None) -> torch.Tensor:
        """TransMatcher logits of every query/gallery pair: the public
        ``make_kernel(query)`` then ``forward(gallery)``.

        In eval mode (BatchNorm with running statistics) and when the
        features do not require grad, the fast folded blockwise path is used
        and the result carries no gradient. Otherwise (training mode, or
        features requiring grad) the exact public layer stack runs on the
        maxima of all pairs (BatchNorm over all pairs in training mode).

        Args:
            query (Tensor): [q, L*d, h, w] query feature maps.
            gallery (Tensor): [g, L*d, h, w] gallery feature maps.
            prob_batch_size (int, optional): Queries per block.
            gal_batch_size (int, optional): Gallery items per block.

        Returns:
            Tensor: [q, g] logits in the head's dtype (float32), higher =
            more similar.
        """
        self._check_shape(query, 'query')
        self._check_shape(gallery, 'gallery')
        if query.device != gallery.device:
            raise ReIDUserError(f'TransMatcherHead: query on {query.device} '
                                f'but gallery on {gallery.device}')
        nq, ng = query.size(0), gallery.size(0)
        if nq == 0 or ng == 0:
            return query.new_zeros(nq, ng, dtype=self._param_dtype)
        dtype = self._compute_dtype(query, cpu_autocast=True)
        needs_grad = torch.is_grad_enabled() and (query.requires_grad
                                                  or gallery.requires_grad)
        if self._uses_batch_stats() or needs_grad:
            return self._exact_scores(query, gallery, dtype,
                                      prob_batch_size, gal_batch_size)
        # a gallery block fits in a chunk of fc1 outputs
        q_blk, g_blk = self.block_sizes(nq, min(ng, self._chunk_items(dtype)),
                                        dtype, query.device, prob_batch_size,
                                        gal_batch_size)
        with torch.no_grad():
            return self._fast_scores(query, gallery, dtype, q_blk, g_blk)

    def _chunk_bytes(self) -> int:
        """Bound of the fc1 outputs of a chunk of queries or gallery items
        in the eval-mode path: half the memory budget."""
        return max(1, int(self.memory_budget_mb * 2**19))

    def _chunk_items(self, dtype: torch.dtype) -> int:
        """Maps per chunk whose fc1 outputs fit in :meth:`_chunk_bytes`."""
        elem = torch.empty((), dtype=dtype).element_size()
        item = self.num_features * self.height * self.width * elem
        return max(1, self._chunk_bytes() // item)

    def _exact_scores(self,
                      query: torch.Tensor,
                      gallery: torch.Tensor,
                      dtype: torch.dtype,
                      prob_batch_size: Optional[int] = None,
                      gal_batch_size: Optional[int] = None) -> torch.Tensor:
        """Exact public formula; BatchNorm over all pairs in training.

        A float16 layer whose similarities could overflow (the
        Cauchy-Schwarz bound of its ``fc1`` outputs,
        :func:`~mmreid_gs.models.heads.transmatcher_kernels.
        similarity_dtype`) runs in float32.

        Args:
            query (Tensor): [nq, L*d, h, w] query maps.
            gallery (Tensor): [ng, L*d, h, w] gallery maps.
            dtype (torch.dtype): dtype of ``fc1`` and the similarities.
            prob_batch_size (int, optional): Queries per block.
            gal_batch_size (int, optional): Gallery items per block.

        Returns:
            Tensor: [nq, ng] logits.
        """
        nq, ng = query.size(0), gallery.size(0)
        d = self.d_model
        with torch.autocast(query.device.type, enabled=False):
            q = query.flatten(2).transpose(1, 2)  # [nq, hw, L*d]
            g = gallery.flatten(2).transpose(1, 2)
            total = None
            for k, layer in enumerate(self.decoder.layers):
                channels = slice(k * d, (k + 1) * d)
                qf = layer.fc1_of(q[..., channels], dtype)
                gf = layer.fc1_of(g[..., channels], dtype)
                sim_dtype = dtype
                if dtype == torch.float16:
                    sim_dtype = similarity_dtype(
                        dtype, max_norm(qf) * max_norm(gf))
                    if sim_dtype != dtype:
                        qf = layer.fc1_of(q[..., channels], sim_dtype)
                        gf = layer.fc1_of(g[..., channels], sim_dtype)
                q_blk, g_blk = self.block_sizes(nq, ng, sim_dtype,
                                                query.device,
                                                prob_batch_size,
                                                gal_batch_size)
                embed = layer.embed(sim_dtype)
                if torch.is_grad_enabled() and (qf.requires_grad
                                                or gf.requires_grad
                                                or embed.requires_grad):
                    m_q, m_g = WeightedPairMaxima.apply(
                        qf, gf, embed, q_blk, g_blk)
                else:
                    m_q, m_g, _ = weighted_pair_maxima_blocks(
                        qf, gf, embed, q_blk, g_blk)
                score = layer.pair_scores(m_q, m_g)
                total = score if total is None else total + score
            return self.decoder.norm(total.reshape(-1, 1)).view(nq, ng)

    def _folded_layers(self, dtype: torch.dtype, mlp_dtype: torch.dtype
                       ) -> Tuple[List[FoldedLayer], float]:
        """The eval-mode layers folded (:meth:`TransMatcherLayer.folded`,
        ``decoder.norm``'s scale in every layer's ``fc3``) and the constant
        of the score.

        Returns:
            tuple: ``(layers, offset)``.
        """
        scale, shift = _bn_affine(self.decoder.norm)
        layers, offset = [], shift.reshape(())
        for layer in self.decoder.layers:
            folded, layer_offset = layer.folded(scale.reshape(()), dtype,
                                                mlp_dtype)
            layers.append(folded)
            offset = offset + layer_offset
        return layers, float(offset)

    def export_matcher(self) -> nn.Module:
        """An ONNX-exportable module of the eval-mode scores of
        :meth:`match` (:class:`TransMatcherExportMatcher`), found by
        :func:`mmreid_gs.apis.export_matcher`."""
        return TransMatcherExportMatcher(self)

    def _fast_scores(self, query: torch.Tensor, gallery: torch.Tensor,
                     dtype: torch.dtype, q_blk: int,
                     g_blk: int) -> torch.Tensor:
        """Blockwise eval-mode scores with the BatchNorm layers folded
        (:func:`~mmreid_gs.models.heads.transmatcher_kernels.
        folded_pair_scores`).

        Args:
            query (Tensor): [nq, L*d, h, w] query maps.
            gallery (Tensor): [ng, L*d, h, w] gallery maps.
        """
        mlp_dtype = self._param_dtype
        layers, offset = self._folded_layers(dtype, mlp_dtype)
        safe_layers = None
        if dtype == torch.float16:
            safe_layers = self._folded_layers(torch.float32, mlp_dtype)[0]
        mlp_bytes, rows_bytes = self._mlp_rows_bytes(query.device)
        with torch.autocast(query.device.type, enabled=False):
            return folded_pair_scores(
                query.flatten(2), gallery.flatten(2), layers, offset,
                dtype, mlp_dtype, q_blk, g_blk,
                chunk_bytes=self._chunk_bytes(), mlp_bytes=mlp_bytes,
                rows_bytes=rows_bytes, safe_layers=safe_layers)

    def _mlp_rows_bytes(self, device: torch.device) -> Tuple[int, int]:
        """Bounds of a worker's hidden MLP activations and of its maxima
        buffer: fixed on the CPU, a quarter of the budget on a GPU."""
        if device.type == 'cpu':
            return CPU_MLP_BYTES, CPU_ROWS_BYTES
        budget = int(self.memory_budget_mb * 2**20)
        return max(2**20, budget // 4), max(2**20, budget // 4)

    def match_pairs(self, query: torch.Tensor, gallery: torch.Tensor,
                    index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """TransMatcher logits of each query against its own list of
        gallery maps: ``out[i, j]`` is :meth:`match`'s score of the pair
        ``(query[i], gallery[index[i, j]])`` (the index form, what the
        two-stage class graph and the shortlisted test pass:
        :func:`~mmreid_gs.utils.contract.takes_index`), or of ``(query[i],
        gallery[i, j])`` for gallery lists.

        In eval mode (BatchNorm with running statistics) without
        gradients, the BatchNorm layers are folded and the query-side
        ``fc1`` too (:func:`~mmreid_gs.models.heads.transmatcher_kernels.
        folded_pair_list_scores`: one batched product per layer and block of
        queries x list items, the lists gathered block by block, no copy of
        the gallery, cache-sized blocks spread over worker threads on the
        CPU, ``memory_budget_mb`` on a GPU). Otherwise (training mode, or
        inputs requiring grad) :meth:`match` is called per query.

        Args:
            query (Tensor): [n, L*d, h, w] query maps.
            gallery (Tensor): [G, L*d, h, w] gallery maps with ``index``;
                without it [n, m, L*d, h, w] lists, row i that of query i.
            index (Tensor, optional): [n, m] int64 indices into
                ``gallery`` (duplicates allowed).

        Returns:
            Tensor: [n, m] logits in the head's dtype (float32), higher =
            more similar.

        Raises:
            ReIDUserError: On maps of the wrong shape, an index of the
                wrong shape, dtype or range, or inputs on two devices.
        """
        self._check_shape(query, 'query')
        n = query.size(0)
        if index is None:
            expected = (self.num_features, self.height, self.width)
            if (gallery.dim() != 5 or gallery.size(0) != n
                    or tuple(gallery.shape[2:]) != expected):
                raise ReIDUserError(
                    'TransMatcherHead: match_pairs needs gallery lists of '
                    f'shape [n, m, {expected[0]}, {expected[1]}, '
                    f'{expected[2]}] with n = {n} queries (or [G, ...] maps '
                    f'and index=[n, m]), got {tuple(gallery.shape)}')
            m = gallery.size(1)
            index = torch.arange(n * m, device=gallery.device).view(n, m)
            gallery = gallery.reshape(n * m, *expected)
        else:
            self._check_shape(gallery, 'gallery')
            if (not isinstance(index, torch.Tensor) or index.dim() != 2
                    or index.size(0) != n or index.dtype != torch.long):
                got = (f'{index.dtype} {tuple(index.shape)}' if isinstance(
                    index, torch.Tensor) else type(index).__name__)
                raise ReIDUserError(
                    'TransMatcherHead: match_pairs needs an int64 index of '
                    f'shape [n, m] with n = {n} queries, got {got}')
            if index.numel() and not (0 <= int(index.min()) and int(
                    index.max()) < gallery.size(0)):
                raise ReIDUserError(
                    'TransMatcherHead: match_pairs index out of range for '
                    f'{gallery.size(0)} gallery maps: [{int(index.min())}, '
                    f'{int(index.max())}]')
        if query.device != gallery.device:
            raise ReIDUserError(f'TransMatcherHead: query on {query.device} '
                                f'but gallery on {gallery.device}')
        m = index.size(1)
        if n == 0 or m == 0:
            return query.new_zeros(n, m, dtype=self._param_dtype)
        index = index.to(gallery.device)
        needs_grad = torch.is_grad_enabled() and (query.requires_grad
                                                  or gallery.requires_grad)
        if self._uses_batch_stats() or needs_grad:
            return torch.cat([
                self.match(query[i:i + 1], gallery[index[i]])
                for i in range(n)
            ])
        dtype = self._compute_dtype(query, cpu_autocast=True)
        fold_dtype = torch.float64 if dtype == torch.float64 else \
            torch.float32
        mlp_dtype = self._param_dtype
        layers, offset = self._folded_layers(fold_dtype, mlp_dtype)
        block_bytes = self.memory_budget_mb * 2**20
        if query.device.type == 'cpu':
            block_bytes = min(block_bytes, CPU_BLOCK_BYTES_PER_THREAD)
        mlp_bytes, rows_bytes = self._mlp_rows_bytes(query.device)
        with torch.no_grad(), torch.autocast(query.device.type,
                                             enabled=False):
            return folded_pair_list_scores(
                query.flatten(2), gallery.flatten(2), index, layers, offset,
                dtype, mlp_dtype, int(block_bytes),
                chunk_bytes=self._chunk_bytes(), mlp_bytes=mlp_bytes,
                rows_bytes=rows_bytes)

    def forward(self,
                query: torch.Tensor,
                gallery: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Same as :meth:`match`; ``gallery=None`` scores ``query`` against
        itself.

        Args:
            query (Tensor): [q, L*d, h, w].
            gallery (Tensor, optional): [g, L*d, h, w].

        Returns:
            Tensor: [q, g] logits.
        """
        return self.match(query, query if gallery is None else gallery)

    def _batch_pair_scores(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, B] logits of all pairs of a training batch (for
        :meth:`PairLossMixin.loss`): the public layer stack, BatchNorm over
        all pairs in training mode, CPU autocast ignored."""
        return self._exact_scores(feats, feats, self._compute_dtype(feats))
