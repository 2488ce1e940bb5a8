"""TransMatcher matching kernels: blockwise weighted similarity maxima and
the per-pair MLP.

What :class:`~mmreid_gs.models.heads.TransMatcherHead` calls to score
pairs, per matching layer, on the ``fc1`` outputs ``Q`` (query) and ``G``
(gallery) of one ``d_model`` chunk of the feature maps:
``S[s, t] = (Q[t] . G[s]) * sigmoid(score_embed)[s, t]`` for gallery
location ``s`` and query location ``t``, the max over ``s`` for every ``t``
and the max over ``t`` for every ``s`` (``2 x hw`` values per pair), then
the MLP ``bn1 -> fc2 -> bn2 -> ReLU -> fc3`` on each half, the halves summed,
``bn3``; the layers' scores summed and ``decoder.norm``.

- :func:`folded_pair_scores`: eval-mode scores of all pairs with the
  BatchNorm layers folded into ``fc2`` / ``fc3`` and one offset,
  cache-sized blocks spread over worker threads on the CPU;
- :func:`folded_pair_list_scores`: the same scores of each query against
  its own list of gallery items (``match_pairs``), the query-side ``fc1``
  folded so that the gathered gallery maps enter the GEMM as they are;
- :func:`weighted_pair_maxima_blocks` / :class:`WeightedPairMaxima`: the
  maxima of all pairs (training mode, where BatchNorm normalises over the
  pairs), with a memory-bounded backward pass that keeps only the argmax
  locations and the similarities there;
- :func:`similarity_dtype`: float16 only where no similarity can overflow
  it (the maps are not L2-normalised), else float32.

No q x g x hw x hw tensor is built beyond one block.
"""
import math
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.logging import MMLogger
from torch.autograd.function import once_differentiable

from mmreid_gs.utils.thread_state import cpu_workers, run_in_workers
from .qaconv_kernels import block_sizes  # noqa: F401 (one sizing rule)

# Bytes of one worker's similarity maxima waiting for the MLP (the rows of
# a query block x a gallery range) on the CPU; on a GPU a quarter of the
# memory budget.
CPU_ROWS_BYTES = 2**20
# Bytes of one worker's hidden MLP activations (fc2 outputs) on the CPU; on
# a GPU a quarter of the memory budget.
CPU_MLP_BYTES = 2**21
#: Largest bound of the similarities (and ``fc1`` outputs) computed in
#: float16: a quarter of its range (65,504), the margin covering the
#: rounding of a GEMM's output.
FLOAT16_SAFE_BOUND = torch.finfo(torch.float16).max / 4

_warned_float16 = False


def max_norm(x: torch.Tensor) -> torch.Tensor:
    """The largest L2 norm of the rows of ``x`` along its last dimension,
    computed in float32 (``inf`` when ``x`` holds an inf, NaN with a NaN).

    Args:
        x (Tensor): [..., d] vectors (any float dtype).

    Returns:
        Tensor: [] float32 (0 for an empty ``x``).
    """
    if x.numel() == 0:
        return torch.zeros((), dtype=torch.float32, device=x.device)
    with torch.no_grad():
        return torch.linalg.vector_norm(x.detach(), dim=-1,
                                        dtype=torch.float32).amax()


def similarity_dtype(dtype: torch.dtype, bound) -> torch.dtype:
    """dtype of TransMatcher similarities bounded in magnitude by
    ``bound``.

    TransMatcher's maps are not L2-normalised: the similarities
    ``fc1(Q)[t] . fc1(G)[s]`` grow with the squared feature scale, and a
    float16 GEMM output above 65,504 is ``inf`` (a skipped training step,
    a meaningless score; loss scaling cannot help a forward overflow).
    With ``bound`` the Cauchy-Schwarz bound ``max|fc1(Q)[t]| *
    max|fc1(G)[s]|`` of a block (times the ``embed`` factor, at most 1),
    float16 is kept only when the bound stays below
    :data:`FLOAT16_SAFE_BOUND`; bfloat16 / float32 / float64 (the range of
    float32) are always kept.

    Args:
        dtype (torch.dtype): The GEMM dtype the caller would use (e.g. the
            autocast dtype).
        bound (float | Tensor): Upper bound of the magnitudes (``inf`` /
            NaN when the inputs overflowed already).

    Returns:
        torch.dtype: ``dtype``, or float32 for an unsafe float16 block.
    """
    if dtype != torch.float16:
        return dtype
    bound = float(bound)
    if bound <= FLOAT16_SAFE_BOUND:  # False for NaN and inf
        return dtype
    global _warned_float16
    if not _warned_float16:
        _warned_float16 = True
        MMLogger.get_current_instance().warning(
            f'TransMatcher: similarities of up to {bound:.4g} could '
            'overflow float16 (the maps are not L2-normalised); such '
            'blocks are computed in float32 (logged once)')
    return torch.float32


# ---------------------------------------------------------------------------
# training mode: the maxima of all pairs
def weighted_pair_maxima_blocks(q: torch.Tensor,
                                g: torch.Tensor,
                                embed: torch.Tensor,
                                q_blk: int,
                                g_blk: int,
                                with_indices: bool = False):
    """Blockwise weighted similarity maxima of all query/gallery pairs.

    Each block is ONE matrix multiply ``(q_blk*hw, d) @ (d, g_blk*hw)``
    viewed as ``[q_blk, hw (query loc t), g_blk, hw (gallery loc s)]``, times
    ``embed`` (broadcast), then the two max reductions.

    Args:
        q (Tensor): [nq, hw, d] query ``fc1`` outputs.
        g (Tensor): [ng, hw, d] gallery ``fc1`` outputs.
        embed (Tensor): [hw (s), hw (t)] ``sigmoid(score_embed)``, same
            dtype as ``q``.
        q_blk (int): Queries per block.
        g_blk (int): Gallery items per block.
        with_indices (bool): Whether to also return what the backward pass
            needs (then two similarity blocks exist at a time, else one).

    Returns:
        tuple: ``(m_q, m_g, extra)``; ``m_q`` [nq, ng, hw]: for each query
        location t the max over the gallery locations (the public
        ``score.max(dim=1)``); ``m_g`` [nq, ng, hw]: for each gallery
        location s the max over the query locations (``score.max(dim=2)``).
        ``extra`` is None unless ``with_indices``, else
        ``(idx_q, idx_g, raw_q, raw_g)``: the argmax locations (int64) and
        the similarities before the ``embed`` factor there, each
        [nq, ng, hw].
    """
    nq, hw, d = q.shape
    ng = g.size(0)
    q2 = q.reshape(nq * hw, d)
    g2t = g.reshape(ng * hw, d).t()
    factor = embed.t().reshape(1, hw, 1, hw)  # [t, s] to broadcast
    m_q = q.new_empty(nq, ng, hw)
    m_g = q.new_empty(nq, ng, hw)
    extra = None
    if with_indices:
        extra = (torch.empty(nq, ng, hw, dtype=torch.long, device=q.device),
                 torch.empty(nq, ng, hw, dtype=torch.long, device=q.device),
                 q.new_empty(nq, ng, hw), q.new_empty(nq, ng, hw))
    for i in range(0, nq, q_blk):
        qi = min(q_blk, nq - i)
        for j in range(0, ng, g_blk):
            gj = min(g_blk, ng - j)
            sim = torch.mm(q2[i * hw:(i + qi) * hw],
                           g2t[:, j * hw:(j + gj) * hw]).view(qi, hw, gj, hw)
            if extra is None:
                sim.mul_(factor)
                m_q[i:i + qi, j:j + gj] = sim.amax(dim=3).transpose(1, 2)
                m_g[i:i + qi, j:j + gj] = sim.amax(dim=1)
                del sim
                continue
            idx_q, idx_g, raw_q, raw_g = (t[i:i + qi, j:j + gj]
                                          for t in extra)
            weighted = sim * factor
            val, ind = weighted.max(dim=3)  # [qi, t, gj]: best s
            m_q[i:i + qi, j:j + gj] = val.transpose(1, 2)
            idx_q.copy_(ind.transpose(1, 2))
            raw_q.copy_(sim.gather(3, ind.unsqueeze(3)).squeeze(3)
                        .transpose(1, 2))
            val, ind = weighted.max(dim=1)  # [qi, gj, s]: best t
            m_g[i:i + qi, j:j + gj] = val
            idx_g.copy_(ind)
            raw_g.copy_(sim.gather(1, ind.unsqueeze(1)).squeeze(1))
            del sim, weighted
    return m_q, m_g, extra


class WeightedPairMaxima(torch.autograd.Function):
    """Differentiable :func:`weighted_pair_maxima_blocks` with bounded
    memory.

    ``apply(q [nq, hw, d], g [ng, hw, d], embed [hw, hw], q_blk, g_blk) ->
    (m_q, m_g)``. Only the argmax locations and the similarities there are
    kept for the backward pass, which rebuilds the (sparse) gradient of
    each similarity block and multiplies it back, so no q x g x hw x hw
    tensor exists beyond a block in either pass. The gradients (to both
    feature sets and to ``embed``) equal those of ``torch.max`` on the full
    weighted similarity tensor, as the public einsum formula computes.
    """

    @staticmethod
    def forward(ctx, q, g, embed, q_blk, g_blk):
        need_grad = any(ctx.needs_input_grad[:3])
        m_q, m_g, extra = weighted_pair_maxima_blocks(
            q, g, embed, q_blk, g_blk, with_indices=need_grad)
        if need_grad:
            ctx.save_for_backward(q, g, embed, *extra)
        ctx.blocks = (q_blk, g_blk)
        return m_q, m_g

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_m_q, grad_m_g):
        q, g, embed, idx_q, idx_g, raw_q, raw_g = ctx.saved_tensors
        q_blk, g_blk = ctx.blocks
        nq, hw, d = q.shape
        ng = g.size(0)
        grad_m_q = grad_m_q.to(q.dtype)
        grad_m_g = grad_m_g.to(q.dtype)
        grad_q = grad_g = grad_embed = None
        if ctx.needs_input_grad[2]:
            # m_q[p, k, t] = raw_q * embed[idx_q, t];
            # m_g[p, k, s] = raw_g * embed[s, idx_g]
            acc = torch.float64 if q.dtype == torch.float64 else torch.float32
            pos = torch.arange(hw, device=q.device)
            flat = torch.zeros(hw * hw, dtype=acc, device=q.device)
            flat.index_add_(0, (idx_q * hw + pos).flatten(),
                            (grad_m_q * raw_q).flatten().to(acc))
            flat.index_add_(0, (pos * hw + idx_g).flatten(),
                            (grad_m_g * raw_g).flatten().to(acc))
            grad_embed = flat.view(hw, hw).to(embed.dtype)
        need_q, need_g = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if need_q or need_g:
            factor = embed.t().reshape(1, hw, 1, hw)
            q2, g2 = q.reshape(nq * hw, d), g.reshape(ng * hw, d)
            grad_q = torch.zeros_like(q) if need_q else None
            grad_g = torch.zeros_like(g) if need_g else None
            for i in range(0, nq, q_blk):
                qi = min(q_blk, nq - i)
                for j in range(0, ng, g_blk):
                    gj = min(g_blk, ng - j)
                    d_sim = q.new_zeros(qi, hw, gj, hw)
                    d_sim.scatter_add_(
                        3, idx_q[i:i + qi, j:j + gj].transpose(1,
                                                              2).unsqueeze(3),
                        grad_m_q[i:i + qi, j:j + gj].transpose(1,
                                                               2).unsqueeze(3))
                    d_sim.scatter_add_(
                        1, idx_g[i:i + qi, j:j + gj].unsqueeze(1),
                        grad_m_g[i:i + qi, j:j + gj].unsqueeze(1))
                    d_sim = d_sim.mul_(factor).view(qi * hw, gj * hw)
                    if need_q:
                        grad_q[i:i + qi] += torch.mm(
                            d_sim, g2[j * hw:(j + gj) * hw]).view(qi, hw, d)
                    if need_g:
                        grad_g[j:j + gj] += torch.mm(
                            d_sim.t(),
                            q2[i * hw:(i + qi) * hw]).view(gj, hw, d)
        return grad_q, grad_g, grad_embed, None, None


# ---------------------------------------------------------------------------
# eval mode: folded blockwise scores
class FoldedLayer(NamedTuple):
    """One matching layer in eval mode, its BatchNorm layers folded.

    The pair score of the layer (before the final offset) is
    ``w3 . relu(m_q @ w2t + c2) + w3 . relu(m_g @ w2t + c2)`` on the maxima
    of :func:`weighted_pair_maxima_blocks`: ``bn1`` and ``bn2`` folded into
    ``w2t`` / ``c2``, ``bn3`` and ``decoder.norm``'s scales into ``w3``.

    Attributes:
        fc1_weight (Tensor): [d, d] ``fc1.weight`` in the GEMM dtype.
        fc1_bias (Tensor): [d] ``fc1.bias`` in the GEMM dtype.
        embed (Tensor): [hw (t), 1, hw (s)] ``sigmoid(score_embed)``
            arranged to broadcast with a ``[q, t, g, s]`` block, GEMM dtype.
        w2t (Tensor): [hw, ff] folded ``fc2`` weights, transposed (MLP
            dtype).
        c2 (Tensor): [ff] folded ``fc2`` offsets.
        w3 (Tensor): [ff] folded ``fc3`` weights.
    """
    fc1_weight: torch.Tensor
    fc1_bias: torch.Tensor
    embed: torch.Tensor
    w2t: torch.Tensor
    c2: torch.Tensor
    w3: torch.Tensor


def _fc1_rows(feats: torch.Tensor, layer: FoldedLayer, dtype: torch.dtype,
              channels: slice) -> torch.Tensor:
    """``fc1`` of one layer's chunk of query maps, one row a location.

    Args:
        feats (Tensor): [n, L*d, hw] maps.

    Returns:
        Tensor: [n * hw, d] (row ``i * hw + t``).
    """
    x = feats[:, channels].transpose(1, 2).reshape(
        -1, layer.fc1_weight.size(1))
    return torch.addmm(layer.fc1_bias, x.to(dtype), layer.fc1_weight.t())


def _fc1_cols(feats: torch.Tensor, layer: FoldedLayer, dtype: torch.dtype,
              channels: slice) -> torch.Tensor:
    """``fc1`` of one layer's chunk of gallery maps laid out for the GEMM.

    Args:
        feats (Tensor): [n, L*d, hw] maps.

    Returns:
        Tensor: [d, n * hw] (column ``k * hw + s``).
    """
    x = feats[:, channels].permute(1, 0, 2).reshape(
        layer.fc1_weight.size(1), -1)
    return torch.addmm(layer.fc1_bias[:, None], layer.fc1_weight,
                       x.to(dtype))


def _mlp_into(x: torch.Tensor, layer: FoldedLayer, hidden: torch.Tensor,
              acc: torch.Tensor) -> None:
    """``acc[p] += w3 . relu(x[2p] @ w2t + c2) + w3 . relu(x[2p+1] @ ...)``
    in pieces of ``hidden.size(0)`` rows (an even number).

    Args:
        x (Tensor): [2 * pairs, hw] maxima, the two halves of each pair in
            consecutive rows.
        layer (FoldedLayer): The folded layer.
        hidden (Tensor): [rows, ff] buffer of the MLP dtype.
        acc (Tensor): [pairs] accumulator of the MLP dtype.
    """
    rows = hidden.size(0)
    for r0 in range(0, x.size(0), rows):
        r1 = min(r0 + rows, x.size(0))
        h = torch.addmm(layer.c2, x[r0:r1].to(hidden.dtype), layer.w2t,
                        out=hidden[:r1 - r0])
        h.relu_()
        acc[r0 // 2:r1 // 2] += torch.mv(h, layer.w3).view(-1, 2).sum(dim=1)


def _score_rows(q_rows: Sequence[torch.Tensor],
                g_cols: Sequence[torch.Tensor],
                layers: Sequence[FoldedLayer], out: torch.Tensor, q_blk: int,
                g_blk: int, hw: int, rows_bytes: int, mlp_rows: int,
                q_starts, g_lo: int, g_hi: int) -> None:
    """Folded scores of the query blocks starting at ``q_starts`` against
    the gallery range ``[g_lo, g_hi)`` (without the final offset).

    For a query block and a range of gallery blocks, every layer's blocks
    are one GEMM ``(q_blk*hw, d) @ (d, g_blk*hw)``, the ``embed`` factor and
    the two max reductions written straight into the MLP's input rows;
    then the MLP runs on these rows in pieces.

    Args:
        q_rows (Sequence[Tensor]): Per layer [nq * hw, d] query ``fc1``
            outputs.
        g_cols (Sequence[Tensor]): Per layer [d, ng * hw] gallery ``fc1``
            outputs.
        layers (Sequence[FoldedLayer]): The folded layers.
        out (Tensor): [nq, ng] output (MLP dtype).
        q_blk (int): Queries per block.
        g_blk (int): Gallery items per block.
        hw (int): Locations per map.
        rows_bytes (int): Bound of the maxima buffer.
        mlp_rows (int): MLP rows per piece (even).
        q_starts (Sequence[int]): First query of each query block.
        g_lo (int): First gallery item.
        g_hi (int): End of the gallery range.
    """
    nq = out.size(0)
    dtype, device = q_rows[0].dtype, q_rows[0].device
    mlp_dtype = out.dtype
    elem = torch.empty((), dtype=dtype).element_size()
    span = g_blk * max(1, rows_bytes // (q_blk * g_blk * 2 * hw * elem))
    span = min(span, g_hi - g_lo)
    sim_buf = torch.empty(q_blk * hw * g_blk * hw, dtype=dtype, device=device)
    rows_buf = torch.empty(q_blk * span * 2 * hw, dtype=dtype, device=device)
    hidden = torch.empty(mlp_rows, layers[0].w2t.size(1), dtype=mlp_dtype,
                         device=device)
    acc_buf = torch.empty(q_blk * span, dtype=mlp_dtype, device=device)
    for i in q_starts:
        qi = min(q_blk, nq - i)
        for a in range(g_lo, g_hi, span):
            b = min(a + span, g_hi)
            n = b - a
            acc = acc_buf[:qi * n].zero_()
            rows = rows_buf[:qi * n * 2 * hw].view(qi, n, 2, hw)
            for layer, q_l, g_l in zip(layers, q_rows, g_cols):
                q_blk_rows = q_l[i * hw:(i + qi) * hw]
                for j in range(a, b, g_blk):
                    gj = min(g_blk, b - j)
                    sim = sim_buf[:qi * hw * gj * hw].view(qi * hw, gj * hw)
                    torch.mm(q_blk_rows, g_l[:, j * hw:(j + gj) * hw],
                             out=sim)
                    sim4 = sim.view(qi, hw, gj, hw).mul_(layer.embed)
                    # max over gallery locations s, per query location t
                    torch.amax(sim4, dim=3,
                               out=rows[:, j - a:j - a + gj, 0].transpose(
                                   1, 2))
                    # max over query locations t, per gallery location s
                    torch.amax(sim4, dim=1, out=rows[:, j - a:j - a + gj, 1])
                _mlp_into(rows.view(qi * n * 2, hw), layer, hidden, acc)
            out[i:i + qi, a:b] = acc.view(qi, n)


def _chunks(total: int, size: int) -> List[Tuple[int, int]]:
    return [(i, min(i + size, total)) for i in range(0, total, size)]


def folded_pair_scores(query: torch.Tensor,
                       gallery: torch.Tensor,
                       layers: Sequence[FoldedLayer],
                       offset: float,
                       dtype: torch.dtype,
                       mlp_dtype: torch.dtype,
                       q_blk: int,
                       g_blk: int,
                       chunk_bytes: int,
                       mlp_bytes: int,
                       rows_bytes: int,
                       safe_layers: Optional[Sequence[FoldedLayer]] = None
                       ) -> torch.Tensor:
    """Eval-mode TransMatcher scores of all pairs, blockwise, BatchNorm
    layers folded (:class:`FoldedLayer`).

    The queries and the gallery are taken in chunks whose ``fc1`` outputs
    (all layers) take at most ``chunk_bytes`` each; the ``fc1`` GEMMs of a
    chunk run in the calling thread. On the CPU with several intra-op
    threads, the blocks of a query chunk x gallery chunk are then spread
    over as many Python worker threads, each running single-threaded
    kernels on its own cache-sized blocks (as
    :func:`~mmreid_gs.models.heads.qaconv_kernels.folded_pair_scores`), in
    the caller's grad / inference mode
    (:func:`~mmreid_gs.utils.thread_state.run_in_workers`).

    Args:
        query (Tensor): [nq, L*d, hw] query maps.
        gallery (Tensor): [ng, L*d, hw] gallery maps.
        layers (Sequence[FoldedLayer]): The L folded layers.
        offset (float): Folded constant of all layers and
            ``decoder.norm``.
        dtype (torch.dtype): dtype of ``fc1`` and the similarity GEMMs.
        mlp_dtype (torch.dtype): dtype of the MLP and of the output.
        q_blk (int): Queries per block.
        g_blk (int): Gallery items per block.
        chunk_bytes (int): Bound of a chunk's ``fc1`` outputs.
        mlp_bytes (int): Bound of a worker's hidden MLP activations.
        rows_bytes (int): Bound of a worker's maxima buffer.
        safe_layers (Sequence[FoldedLayer], optional): The layers in
            float32. With a float16 ``dtype``, a query chunk x gallery
            chunk whose similarities could overflow float16
            (:func:`similarity_dtype` on the norms of its ``fc1`` outputs)
            is scored with these in float32 (in blocks of the same pairs,
            so of twice the bytes).

    Returns:
        Tensor: [nq, ng] scores (``mlp_dtype``).
    """
    nq, ng = query.size(0), gallery.size(0)
    hw = query.size(2)
    d = layers[0].fc1_weight.size(0)
    num_layers = len(layers)
    out = torch.empty(nq, ng, dtype=mlp_dtype, device=query.device)
    if nq == 0 or ng == 0:
        return out
    q_blk, g_blk = min(q_blk, nq), min(g_blk, ng)
    elem = torch.empty((), dtype=dtype).element_size()
    item_bytes = num_layers * hw * d * elem
    per_chunk = max(1, chunk_bytes // item_bytes)
    q_chunk = q_blk * max(1, per_chunk // q_blk)
    g_chunk = g_blk * max(1, per_chunk // g_blk)
    ff = layers[0].w2t.size(1)
    mlp_elem = torch.empty((), dtype=mlp_dtype).element_size()
    mlp_rows = max(2, mlp_bytes // (ff * mlp_elem)) // 2 * 2
    workers = cpu_workers(query.device)
    channels = [slice(k * d, (k + 1) * d) for k in range(num_layers)]

    def run(task):
        q_rows, g_cols, out_view, task_layers, q_starts, lo, hi = task
        with torch.no_grad(), torch.autocast(
                query.device.type, enabled=False):
            _score_rows(q_rows, g_cols, task_layers, out_view, q_blk, g_blk,
                        hw, rows_bytes, mlp_rows, q_starts, lo, hi)

    for q_lo, q_hi in _chunks(nq, q_chunk):
        q_rows = [
            _fc1_rows(query[q_lo:q_hi], layer, dtype, ch)
            for layer, ch in zip(layers, channels)
        ]
        q_starts = list(range(0, q_hi - q_lo, q_blk))
        for g_lo, g_hi in _chunks(ng, g_chunk):
            g_cols = [
                _fc1_cols(gallery[g_lo:g_hi], layer, dtype, ch)
                for layer, ch in zip(layers, channels)
            ]
            chunk_layers, chunk_q_rows = layers, q_rows
            if dtype == torch.float16 and safe_layers is not None:
                bound = max(
                    max_norm(q_l) * max_norm(g_l.t())
                    for q_l, g_l in zip(q_rows, g_cols))
                if similarity_dtype(dtype, bound) != dtype:
                    chunk_layers = safe_layers
                    chunk_q_rows = [
                        _fc1_rows(query[q_lo:q_hi], layer, torch.float32,
                                  ch)
                        for layer, ch in zip(safe_layers, channels)
                    ]
                    g_cols = [
                        _fc1_cols(gallery[g_lo:g_hi], layer, torch.float32,
                                  ch)
                        for layer, ch in zip(safe_layers, channels)
                    ]
            out_view = out[q_lo:q_hi, g_lo:g_hi]
            n_gal = g_hi - g_lo
            if workers > 1 and len(q_starts) >= workers:
                # query block rows dealt round-robin
                splits = [(q_starts[k::workers], 0, n_gal)
                          for k in range(workers)]
            elif workers > 1 and n_gal >= 2 * g_blk:
                # few queries: split the gallery into contiguous ranges
                n_blk = math.ceil(n_gal / g_blk)
                cuts = sorted({g_blk * (n_blk * k // workers)
                               for k in range(workers)}) + [n_gal]
                splits = [(q_starts, lo, hi)
                          for lo, hi in zip(cuts, cuts[1:])]
            else:
                splits = [(q_starts, 0, n_gal)]
            run_in_workers(run, [(chunk_q_rows, g_cols, out_view,
                                  chunk_layers) + s for s in splits])
    return out.add_(offset)


# ---------------------------------------------------------------------------
# eval mode: each query against its own list of gallery items
def _fold_query(query: torch.Tensor, layer: FoldedLayer, channels: slice,
                fold_dtype: torch.dtype,
                with_norms: bool = False) -> Tuple[torch.Tensor, ...]:
    """One layer's query side with ``fc1`` folded: ``fc1(Q)[t] . fc1(G)[s]
    = (W^T fc1(Q)[t]) . G[s] + fc1(Q)[t] . b`` for ``fc1(x) = W x + b``.

    Args:
        query (Tensor): [n, L*d, hw] query maps.
        layer (FoldedLayer): The layer (``fc1`` in ``fold_dtype``).
        channels (slice): The layer's channels.
        fold_dtype (torch.dtype): dtype of the fold (float32 or float64).
        with_norms (bool): Whether to compute ``norms``.

    Returns:
        tuple: ``(qp, cq, norms)``: ``qp`` [n, hw, d] ``W^T fc1(Q)``, ``cq``
        [n, hw, 1] ``fc1(Q) . b`` and ``norms`` [n] the largest norm of
        ``fc1(Q)[t]`` of each query (None without ``with_norms``), all
        ``fold_dtype``.
    """
    n, hw = query.size(0), query.size(2)
    w = layer.fc1_weight.to(fold_dtype)
    b = layer.fc1_bias.to(fold_dtype)
    d = w.size(1)
    x = query[:, channels].transpose(1, 2).reshape(n * hw, d)
    f = torch.addmm(b, x.to(fold_dtype), w.t())  # fc1(Q): [n * hw, d]
    qp = torch.mm(f, w).view(n, hw, d)
    cq = torch.mv(f, b).view(n, hw, 1)
    norms = None
    if with_norms:
        norms = torch.linalg.vector_norm(f, dim=1).view(n, hw).amax(dim=1)
    return qp, cq, norms


def folded_pair_list_scores(query: torch.Tensor,
                            gallery: torch.Tensor,
                            index: torch.Tensor,
                            layers: Sequence[FoldedLayer],
                            offset: float,
                            dtype: torch.dtype,
                            mlp_dtype: torch.dtype,
                            block_bytes: int,
                            chunk_bytes: int,
                            mlp_bytes: int,
                            rows_bytes: int) -> torch.Tensor:
    """Eval-mode TransMatcher scores of each query against its own list of
    gallery items, ``out[i, j]`` the score of ``(query[i],
    gallery[index[i, j]])`` (:meth:`TransMatcherHead.match_pairs`).

    The query-side ``fc1`` is folded (:func:`_fold_query`, once per chunk
    of queries whose folded features take at most ``chunk_bytes``), so the
    gallery maps enter the GEMM as they are: no ``fc1`` of a gathered
    item, no pass over the whole gallery. Per block of ``b`` queries x
    ``mj`` list items and per layer: the block's gallery rows gathered
    ``[b, mj * hw, d]`` (one copy, read by the GEMM from the cache), ONE
    batched product ``baddbmm(fc1(Q) . b, W^T fc1(Q) [b, hw, d], G^T)``
    laid out ``[b, hw (query location t), mj * hw (item, gallery location
    s)]``, times ``embed``, both maxima into the MLP's input rows, then
    the folded MLP (:func:`_mlp_into`). A block's similarities and gathered
    rows take at most ``block_bytes`` (at least one pair). On the CPU the
    blocks are spread over worker threads in the caller's grad / inference
    mode (:func:`~mmreid_gs.utils.thread_state.run_in_workers`), as
    :func:`folded_pair_scores`.

    With a float16 ``dtype`` each block's layer is checked against the
    Cauchy-Schwarz bound ``max|fc1(Q)[t]| * (||W||_2 max|G[s]| + |b|)``
    and computed in float32 where float16 could overflow
    (:func:`similarity_dtype`).

    Args:
        query (Tensor): [n, L*d, hw] query maps.
        gallery (Tensor): [G, L*d, hw] gallery maps.
        index (Tensor): [n, m] int64 indices into ``gallery``.
        layers (Sequence[FoldedLayer]): The L folded layers, ``fc1`` and
            ``embed`` in the fold dtype (float64 for a float64 ``dtype``,
            else float32).
        offset (float): Folded constant of all layers and
            ``decoder.norm``.
        dtype (torch.dtype): dtype of the similarity GEMMs.
        mlp_dtype (torch.dtype): dtype of the MLP and of the output.
        block_bytes (int): Bound of one block's similarities and gathered
            gallery rows.
        chunk_bytes (int): Bound of a query chunk's folded features.
        mlp_bytes (int): Bound of a worker's hidden MLP activations.
        rows_bytes (int): Bound of a worker's maxima buffer: the maxima of
            a query block and a span of its list wait for one MLP call per
            layer (an MLP call per GEMM block would read ``fc2``'s weights
            for a few rows each time).

    Returns:
        Tensor: [n, m] scores (``mlp_dtype``).
    """
    n, m = index.shape
    out = torch.empty(n, m, dtype=mlp_dtype, device=query.device)
    if n == 0 or m == 0:
        return out
    hw = query.size(2)
    d = layers[0].fc1_weight.size(0)
    num_layers = len(layers)
    fold_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    check16 = dtype == torch.float16
    # float16 maxima of a float32 fallback block may exceed float16
    rows_dtype = fold_dtype if check16 else dtype
    elem = torch.empty((), dtype=dtype).element_size()
    pairs = max(1, int(block_bytes) // (hw * (hw + d) * elem))
    m_blk = min(m, pairs)
    q_blk = max(1, min(n, pairs // m_blk))
    # list items of a query block whose maxima wait for one MLP call
    rows_elem = torch.empty((), dtype=rows_dtype).element_size()
    span = m_blk * max(1, int(rows_bytes) //
                       (q_blk * m_blk * 2 * hw * rows_elem))
    span = min(span, m)
    per_query = num_layers * hw * (d + 1) * elem
    if dtype != fold_dtype:
        per_query += num_layers * hw * (d + 1) * 4
    q_chunk = q_blk * max(1, int(chunk_bytes) // per_query // q_blk)
    ff = layers[0].w2t.size(1)
    mlp_elem = torch.empty((), dtype=mlp_dtype).element_size()
    mlp_rows = max(2, int(mlp_bytes) // (ff * mlp_elem)) // 2 * 2
    channels = [slice(k * d, (k + 1) * d) for k in range(num_layers)]
    # [G, hw, d] rows of each layer (views: the gallery is not copied)
    gal_rows = [gallery[:, ch].transpose(1, 2) for ch in channels]
    embeds = {fold_dtype: [layer.embed.to(fold_dtype) for layer in layers]}
    embeds[dtype] = [layer.embed.to(dtype) for layer in layers]
    if check16:
        # ||W||_2 and |b| of every layer: |fc1(G)[s]| <= ||W||_2 |G[s]| + |b|
        sigma = [
            float(torch.linalg.matrix_norm(layer.fc1_weight.double(), ord=2))
            for layer in layers
        ]
        beta = [float(layer.fc1_bias.double().norm()) for layer in layers]
    index = index.to(query.device)

    def block_maxima(folded, k, i, b, ids, rows):
        """Layer k's maxima of queries i..i+b (of the chunk) against their
        items ``ids`` [b, mj], written into ``rows`` [b, mj, 2, hw]."""
        mj = ids.size(1)
        g = gal_rows[k].index_select(0, ids.reshape(-1))
        blk_dtype = dtype
        if check16:
            g = g.to(dtype)
            q_norm = folded[k][fold_dtype][2][i:i + b].amax()
            bound = torch.maximum(
                q_norm * (sigma[k] * max_norm(g) + beta[k]),
                q_norm * sigma[k])  # also |W^T fc1(Q)[t]|
            blk_dtype = similarity_dtype(dtype, bound)
        qp, cq = folded[k][blk_dtype][:2]
        g = g.to(blk_dtype).view(b, mj * hw, d)
        sim = torch.baddbmm(cq[i:i + b], qp[i:i + b], g.transpose(1, 2))
        sim4 = sim.view(b, hw, mj, hw).mul_(embeds[blk_dtype][k])
        if blk_dtype == rows.dtype:
            # max over gallery locations s, per query location t
            torch.amax(sim4, dim=3, out=rows[:, :, 0].transpose(1, 2))
            # max over query locations t, per gallery location s
            torch.amax(sim4, dim=1, out=rows[:, :, 1])
        else:
            rows[:, :, 0].copy_(sim4.amax(dim=3).transpose(1, 2))
            rows[:, :, 1].copy_(sim4.amax(dim=1))

    def score(tasks, folded, lo):
        hidden = torch.empty(mlp_rows, ff, dtype=mlp_dtype,
                             device=query.device)
        rows_buf = torch.empty(q_blk * span * 2 * hw, dtype=rows_dtype,
                               device=query.device)
        acc_buf = torch.empty(q_blk * span, dtype=mlp_dtype,
                              device=query.device)
        chunk = folded[0][fold_dtype][0].size(0)
        for i, a in tasks:
            b, n_items = min(q_blk, chunk - i), min(span, m - a)
            ids = index[lo + i:lo + i + b, a:a + n_items]
            acc = acc_buf[:b * n_items].zero_()
            rows = rows_buf[:b * n_items * 2 * hw].view(b, n_items, 2, hw)
            for k, layer in enumerate(layers):
                for j in range(0, n_items, m_blk):
                    block_maxima(folded, k, i, b, ids[:, j:j + m_blk],
                                 rows[:, j:j + m_blk])
                _mlp_into(rows.view(b * n_items * 2, hw), layer, hidden,
                          acc)
            out[lo + i:lo + i + b, a:a + n_items] = acc.view(b, n_items)

    def run(task):
        tasks, folded, lo = task
        with torch.no_grad(), torch.autocast(query.device.type,
                                             enabled=False):
            score(tasks, folded, lo)

    for lo, hi in _chunks(n, q_chunk):
        folded = []
        for layer, ch in zip(layers, channels):
            qp, cq, norms = _fold_query(query[lo:hi], layer, ch, fold_dtype,
                                        with_norms=check16)
            per_dtype = {fold_dtype: (qp, cq, norms)}
            if dtype != fold_dtype:
                per_dtype[dtype] = (qp.to(dtype), cq.to(dtype), norms)
            folded.append(per_dtype)
        starts = [(i, a) for i in range(0, hi - lo, q_blk)
                  for a in range(0, m, span)]
        workers = max(1, min(cpu_workers(query.device), len(starts)))
        run_in_workers(run, [(starts[k::workers], folded, lo)
                             for k in range(workers)])
    return out.add_(offset)
