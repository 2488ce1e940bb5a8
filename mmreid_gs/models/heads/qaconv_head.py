"""QAConv matching head: query-adaptive convolution scores of image pairs."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.model import BaseModule

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.errors import ReIDUserError
from .pair_head import PairLossMixin, pair_compute_dtype
from .qaconv_kernels import (CPU_BLOCK_BYTES_PER_THREAD, PairMaxima,
                             block_sizes, folded_pair_scores,
                             pair_maxima_blocks)
from .qaconv_list_kernels import folded_pair_list_scores


@MODELS.register_module()
class QAConvHead(PairLossMixin, BaseModule):
    """Query-adaptive convolution (QAConv) matching head.

    Scores a pair of L2-normalised feature maps Q, G (c x hw each) as the
    public QAConv code (Liao & Shao, ECCV 2020): S = Q^T G (hw x hw location
    similarities); the max over the gallery locations for every query
    location and the max over the query locations for every gallery location
    (2 x hw values) go through ``bn`` (BatchNorm1d(1) over all values), the
    shared ``fc`` (Linear(hw, 1)) on each half, the sum of the two halves and
    ``logit_bn`` (BatchNorm1d(1)): one logit per pair, higher = more similar.
    The sub-module names equal the public ones, so
    ``head.load_state_dict(public_qaconv.state_dict(), strict=False)``
    reproduces its scores.

    :meth:`match` never builds a q x g x hw x hw tensor: the pairs are
    scored in blocks of ``q_blk`` queries x ``g_blk`` gallery items, each
    block being one matrix multiply ``(q_blk*hw, c) @ (c, g_blk*hw)`` of at
    most ``memory_budget_mb`` MiB. On CPU the blocks are cache sized
    (``CPU_BLOCK_BYTES_PER_THREAD``) and, with several intra-op threads
    (OpenMP builds of PyTorch), spread over as many worker threads that each
    run single-threaded kernels; the intra-op thread count is restored
    afterwards. In eval mode the BatchNorm layers are affine maps and
    ``fc`` is linear, so they are folded into one scale and one offset
    applied to ``fc.weight``-weighted sums of the maxima. In training
    mode the BatchNorm layers normalise over all pairs of the call (as the
    public code), so the maxima of all pairs are gathered first (memory
    O(q * g * hw)); :meth:`loss` always works that way on the B x B pairs of
    a batch, with a memory-bounded backward pass.

    Under CUDA autocast the similarity GEMM runs in the autocast dtype
    (half / bfloat16); under CPU autocast :meth:`match` runs it in
    bfloat16 (fast with AMX) while :meth:`loss` ignores CPU autocast and
    computes in the features' dtype (no mixed-precision training on the
    CPU); the BatchNorm / fc layers always run in float32.

    Args:
        num_features (int): Channels c of the feature maps.
        height (int): Height h of the feature maps.
        width (int): Width w of the feature maps.
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
            Defaults to None: ``fc.weight`` is 1/(h*w) and the BatchNorm
            layers are reset, as the public ``reset_parameters``.
    """

    def __init__(self,
                 num_features: int,
                 height: int,
                 width: int,
                 loss=dict(type='PairwiseMatchingLoss'),
                 memory_budget_mb: float = 256,
                 prob_batch_size: Optional[int] = None,
                 gal_batch_size: Optional[int] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for name, value in (('num_features', num_features),
                            ('height', height), ('width', width)):
            if int(value) <= 0:
                raise ReIDUserError(f'QAConvHead: {name} must be positive, '
                                    f'got {value}')
        if memory_budget_mb <= 0:
            raise ReIDUserError(
                'QAConvHead: memory_budget_mb must be positive, '
                f'got {memory_budget_mb}')
        self.num_features = int(num_features)
        self.height = int(height)
        self.width = int(width)
        self.memory_budget_mb = memory_budget_mb
        self.prob_batch_size = prob_batch_size
        self.gal_batch_size = gal_batch_size
        self.bn = nn.BatchNorm1d(1)
        self.fc = nn.Linear(self.height * self.width, 1)
        self.logit_bn = nn.BatchNorm1d(1)
        if not isinstance(loss, nn.Module):
            loss = MODELS.build(loss)
        self.loss_module = loss
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reset the BatchNorm layers and set ``fc.weight`` to 1/(h*w)."""
        self.bn.reset_parameters()
        self.logit_bn.reset_parameters()
        with torch.no_grad():
            self.fc.weight.fill_(1. / (self.height * self.width))

    def reset_running_stats(self) -> None:
        """Reset the running statistics of ``bn`` and ``logit_bn``."""
        self.bn.reset_running_stats()
        self.logit_bn.reset_running_stats()

    # ------------------------------------------------------------------
    # helpers
    def _check_shape(self, feats: torch.Tensor, name: str) -> None:
        """Raise a ValueError unless ``feats`` is [N, c, h, w] of the head."""
        expected = (self.num_features, self.height, self.width)
        if feats.dim() != 4 or tuple(feats.shape[1:]) != expected:
            raise ReIDUserError(
                f'QAConvHead: {name} feature maps must have shape '
                f'[N, {expected[0]}, {expected[1]}, {expected[2]}] '
                f'(num_features, height, width of the head), got '
                f'{tuple(feats.shape)}')

    def _flatten(self, feats: torch.Tensor, name: str) -> torch.Tensor:
        """Check a feature map batch and return it as [n, hw, c]."""
        self._check_shape(feats, name)
        return feats.flatten(2).transpose(1, 2).contiguous()

    #: dtype of the similarity GEMM (:func:`pair_compute_dtype`)
    _compute_dtype = staticmethod(pair_compute_dtype)

    def block_sizes(self,
                    num_query: int,
                    num_gallery: int,
                    dtype: torch.dtype = torch.float32,
                    device: torch.device = torch.device('cpu'),
                    prob_batch_size: Optional[int] = None,
                    gal_batch_size: Optional[int] = None) -> Tuple[int, int]:
        """Queries and gallery items per similarity block.

        Args:
            num_query (int): Number of queries.
            num_gallery (int): Number of gallery items.
            dtype (torch.dtype): dtype of the similarity block.
            device (torch.device): Device of the computation.
            prob_batch_size (int, optional): Override of the query count.
            gal_batch_size (int, optional): Override of the gallery count.

        Returns:
            tuple[int, int]: ``(q_blk, g_blk)``, such that a
            ``q_blk x g_blk x hw x hw`` block fits in ``memory_budget_mb``
            (and, on CPU, in ``CPU_BLOCK_BYTES_PER_THREAD`` per intra-op
            thread), unless overridden.
        """
        return block_sizes(self.height * self.width, num_query, num_gallery,
                           dtype, device, self.memory_budget_mb,
                           prob_batch_size or self.prob_batch_size,
                           gal_batch_size or self.gal_batch_size)

    @staticmethod
    def _bn_affine(bn: nn.BatchNorm1d) -> Tuple[torch.Tensor, torch.Tensor]:
        """Eval-mode BatchNorm1d(1) as ``a * x + b`` (float64 scalars)."""
        inv = torch.rsqrt(bn.running_var.detach().double() + bn.eps)
        a = inv * (bn.weight.detach().double() if bn.affine else 1.)
        b = -bn.running_mean.detach().double() * a
        if bn.affine:
            b = b + bn.bias.detach().double()
        return a.reshape(()), b.reshape(())

    def _folded_affine(self) -> Tuple[torch.Tensor, float, float]:
        """Eval-mode ``bn -> fc -> sum of halves -> logit_bn`` as
        ``score = scale * (w . m_q + w . m_g) + offset``."""
        w = self.fc.weight.detach().reshape(-1).double()
        fc_b = (self.fc.bias.detach().double().sum()
                if self.fc.bias is not None else w.new_zeros(()))
        a1, b1 = self._bn_affine(self.bn)
        a2, b2 = self._bn_affine(self.logit_bn)
        scale = a2 * a1
        offset = a2 * 2. * (b1 * w.sum() + fc_b) + b2
        return w, float(scale), float(offset)

    def _uses_batch_stats(self) -> bool:
        return any(m.training or not m.track_running_stats
                   or m.running_mean is None
                   for m in (self.bn, self.logit_bn))

    def _scores_from_maxima(self, m_q: torch.Tensor,
                            m_g: torch.Tensor) -> torch.Tensor:
        """The public layer stack on the maxima of all pairs.

        Args:
            m_q (Tensor): [nq, ng, hw] max over gallery locations.
            m_g (Tensor): [nq, ng, hw] max over query locations.

        Returns:
            Tensor: [nq, ng] float32 logits.
        """
        nq, ng, hw = m_q.shape
        x = torch.cat((m_q.float(), m_g.float()), dim=-1).view(-1, 1, hw)
        x = self.bn(x).view(-1, hw)
        x = self.fc(x).view(-1, 2).sum(dim=1, keepdim=True)
        return self.logit_bn(x).view(nq, ng)

    # ------------------------------------------------------------------
    # public API
    def match(self,
              query: torch.Tensor,
              gallery: torch.Tensor,
              prob_batch_size: Optional[int] = None,
              gal_batch_size: Optional[int] = None) -> torch.Tensor:
        """QAConv logits of every query/gallery pair.

        In eval mode (BatchNorm with running statistics) and when the
        features do not require grad, the fast folded blockwise path is used
        and the result carries no gradient. Otherwise (training mode, or
        features requiring grad) the exact public layer stack runs on the
        maxima of all pairs (BatchNorm over all pairs in training mode).

        Args:
            query (Tensor): [q, c, h, w] query feature maps.
            gallery (Tensor): [g, c, h, w] gallery feature maps.
            prob_batch_size (int, optional): Queries per block.
            gal_batch_size (int, optional): Gallery items per block.

        Returns:
            Tensor: [q, g] float32 logits, higher = more similar.
        """
        self._check_shape(query, 'query')
        self._check_shape(gallery, 'gallery')
        if query.device != gallery.device:
            raise ValueError(f'QAConvHead: query on {query.device} but '
                             f'gallery on {gallery.device}')
        nq, ng = query.size(0), gallery.size(0)
        dtype = self._compute_dtype(query, cpu_autocast=True)
        q_blk, g_blk = self.block_sizes(nq, ng, dtype, query.device,
                                        prob_batch_size, gal_batch_size)
        needs_grad = torch.is_grad_enabled() and (query.requires_grad
                                                  or gallery.requires_grad)
        if nq == 0 or ng == 0:
            return query.new_zeros(nq, ng, dtype=torch.float32)
        if self._uses_batch_stats() or needs_grad:
            return self._exact_scores(
                self._flatten(query, 'query'),
                self._flatten(gallery, 'gallery'), dtype, q_blk, g_blk)
        with torch.no_grad():
            return self._fast_scores(
                self._flatten(query, 'query'), gallery.flatten(2), dtype,
                q_blk, g_blk)

    def _exact_scores(self, q, g, dtype, q_blk, g_blk) -> torch.Tensor:
        """Exact public formula; BatchNorm over all pairs in training."""
        with torch.autocast(q.device.type, enabled=False):
            q, g = q.to(dtype), g.to(dtype)
            if torch.is_grad_enabled() and (q.requires_grad
                                            or g.requires_grad):
                m_q, m_g = PairMaxima.apply(q, g, q_blk, g_blk)
            else:
                m_q, m_g, _, _ = pair_maxima_blocks(q, g, q_blk, g_blk)
            return self._scores_from_maxima(m_q, m_g)

    def _fast_scores(self, q, gal, dtype, q_blk, g_blk) -> torch.Tensor:
        """Blockwise eval-mode scores with BatchNorm/fc folded
        (:func:`~mmreid_gs.models.heads.qaconv_kernels.folded_pair_scores`).

        Args:
            q (Tensor): [nq, hw, c] query features.
            gal (Tensor): [ng, c, hw] gallery features.
        """
        w, scale, offset = self._folded_affine()
        return folded_pair_scores(q, gal, w, scale, offset, dtype, q_blk,
                                  g_blk)

    def match_pairs(self,
                    query: torch.Tensor,
                    gallery: torch.Tensor,
                    index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """QAConv logits of each query against its own list of gallery maps.

        ``out[i, j]`` is the score of :meth:`match` for the pair
        ``(query[i], gallery[i, j])``: the second stage of the two-stage
        class graph (each class against its own candidates) in batched
        GEMMs instead of one :meth:`match` call per class. In eval mode the
        BatchNorm/fc layers are folded (no gradient); otherwise (training
        mode, or inputs requiring grad) :meth:`match` is called per query.

        Args:
            query (Tensor): [n, c, h, w] query feature maps.
            gallery (Tensor): [n, m, c, h, w] gallery maps, row i the list
                of query i (read without a copy when gathered from
                channels-last maps); with ``index``: [G, c, h, w] maps.
            index (Tensor, optional): [n, m] int64 indices into ``gallery``:
                list i is ``gallery[index[i]]``, gathered block by block
                by the kernel (what :func:`build_class_graph` passes: no
                [n, m, c, h, w] copy is made).

        Returns:
            Tensor: [n, m] float32 logits, higher = more similar.
        """
        self._check_shape(query, 'query')
        expected = (self.num_features, self.height, self.width)
        if index is not None:
            self._check_shape(gallery, 'gallery')
            if (index.dim() != 2 or index.size(0) != query.size(0)
                    or index.dtype != torch.long):
                raise ValueError(
                    'QAConvHead: match_pairs needs an int64 index of shape '
                    f'[n, m] with n = {query.size(0)} queries, got '
                    f'{index.dtype} {tuple(index.shape)}')
            if index.numel() and not (0 <= int(index.min())
                                      and int(index.max()) < gallery.size(0)):
                raise ValueError(
                    'QAConvHead: match_pairs index out of range for '
                    f'{gallery.size(0)} gallery maps: [{int(index.min())}, '
                    f'{int(index.max())}]')
        elif (gallery.dim() != 5 or gallery.size(0) != query.size(0)
              or tuple(gallery.shape[2:]) != expected):
            raise ValueError(
                'QAConvHead: match_pairs needs gallery lists of shape '
                f'[n, m, {expected[0]}, {expected[1]}, {expected[2]}] with n '
                f'= {query.size(0)} queries, got {tuple(gallery.shape)}')
        if query.device != gallery.device:
            raise ValueError(f'QAConvHead: query on {query.device} but '
                             f'gallery on {gallery.device}')
        needs_grad = torch.is_grad_enabled() and (query.requires_grad
                                                  or gallery.requires_grad)
        m = gallery.size(1) if index is None else index.size(1)
        if self._uses_batch_stats() or needs_grad:
            rows = [
                self.match(query[i:i + 1],
                           gallery[i] if index is None else gallery[index[i]])
                for i in range(query.size(0))
            ]
            if not rows:
                return query.new_zeros(0, m, dtype=torch.float32)
            return torch.cat(rows)
        dtype = self._compute_dtype(query, cpu_autocast=True)
        budget = self.memory_budget_mb * 2**20
        if query.device.type == 'cpu':
            budget = min(budget, CPU_BLOCK_BYTES_PER_THREAD)
        w, scale, offset = self._folded_affine()
        with torch.no_grad():
            if index is not None:
                # [G, hw, c] rows (a view: a gallery of any size is not
                # copied), gathered block by block by the kernel
                gallery = gallery.flatten(2).transpose(1, 2)
            return folded_pair_list_scores(
                self._flatten(query, 'query'), gallery, w, scale, offset,
                dtype, budget, index=index)

    def forward(self,
                query: torch.Tensor,
                gallery: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Same as :meth:`match`; ``gallery=None`` scores ``query`` against
        itself.

        Args:
            query (Tensor): [q, c, h, w].
            gallery (Tensor, optional): [g, c, h, w].

        Returns:
            Tensor: [q, g] logits.
        """
        return self.match(query, query if gallery is None else gallery)

    def _batch_pair_scores(self, feats: torch.Tensor) -> torch.Tensor:
        """[B, B] logits of all pairs of a training batch (for
        :meth:`PairLossMixin.loss`): the public layer stack, BatchNorm over
        all pairs in training mode, CPU autocast ignored."""
        x = self._flatten(feats, 'training')
        dtype = self._compute_dtype(x)
        n = x.size(0)
        q_blk, g_blk = self.block_sizes(n, n, dtype, x.device)
        return self._exact_scores(x, x, dtype, q_blk, g_blk)

    @torch.no_grad()
    def pair_correspondence(self, query: torch.Tensor,
                            gallery: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Local correspondences of one pair and what each location adds to
        its score (for drawing, as the QAConv paper's Fig. 2).

        The eval-mode score (BatchNorm with running statistics, whatever the
        module's mode; the same value as :meth:`match` in eval mode) is
        decomposed exactly: with ``bn(x) = a1 * x + b1`` and
        ``logit_bn(x) = a2 * x + b2``,
        ``score = sum(query_contrib) + sum(gallery_contrib) + bias`` where
        ``query_contrib[i] = a2 * fc.weight[i] * bn(query_max[i])`` (the fc
        weight times the BN'd maximum, in logit units), likewise for the
        gallery side, and ``bias = a2 * 2 * fc.bias + b2``. Computed in
        float64.

        Args:
            query (Tensor): [c, h, w] or [1, c, h, w] query feature map.
            gallery (Tensor): [c, h, w] or [1, c, h, w] gallery feature map.

        Returns:
            dict[str, Tensor]: float64 unless noted, with hw = h * w and
            locations numbered row-major (``y * w + x``):

            - ``similarity``: [hw, hw] location similarities Q^T G.
            - ``query_max`` / ``query_argmax`` (int64): [hw] best similarity
              of each query location over the gallery locations and the
              gallery location reaching it.
            - ``gallery_max`` / ``gallery_argmax`` (int64): [hw] the same
              for each gallery location over the query locations.
            - ``query_contrib`` / ``gallery_contrib``: [hw] contribution of
              each location to the score.
            - ``bias``: [] the constant part of the score.
            - ``score``: [] the pair's logit.

        Raises:
            ValueError: On maps of the wrong shape or more than one pair, or
                BatchNorm layers without running statistics.
        """
        maps = []
        for feats, name in ((query, 'query'), (gallery, 'gallery')):
            feats = feats.unsqueeze(0) if feats.dim() == 3 else feats
            self._check_shape(feats, name)
            if feats.size(0) != 1:
                raise ValueError(
                    'QAConvHead.pair_correspondence: one pair at a time; '
                    f'got {feats.size(0)} {name} maps')
            maps.append(feats[0].flatten(1).double())
        if any(m.running_mean is None for m in (self.bn, self.logit_bn)):
            raise ValueError(
                'QAConvHead.pair_correspondence needs BatchNorm running '
                'statistics (track_running_stats=True).')
        q, g = maps
        with torch.autocast(q.device.type, enabled=False):
            sim = q.t() @ g.to(q.device)
        q_max, q_arg = sim.max(dim=1)
        g_max, g_arg = sim.max(dim=0)
        w = self.fc.weight.detach().reshape(-1).double().to(q.device)
        fc_b = (self.fc.bias.detach().double().sum()
                if self.fc.bias is not None else w.new_zeros(()))
        a1, b1 = self._bn_affine(self.bn)
        a2, b2 = self._bn_affine(self.logit_bn)
        a1, b1, a2, b2 = (v.to(q.device) for v in (a1, b1, a2, b2))
        q_contrib = a2 * w * (a1 * q_max + b1)
        g_contrib = a2 * w * (a1 * g_max + b1)
        bias = a2 * 2. * fc_b.to(q.device) + b2
        return dict(
            similarity=sim,
            query_max=q_max,
            query_argmax=q_arg,
            gallery_max=g_max,
            gallery_argmax=g_arg,
            query_contrib=q_contrib,
            gallery_contrib=g_contrib,
            bias=bias,
            score=q_contrib.sum() + g_contrib.sum() + bias)
