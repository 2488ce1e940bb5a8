"""QAConv matching kernels: blockwise similarity maxima of feature-map pairs.

What :class:`~mmreid_gs.models.heads.QAConvHead` calls to score pairs:

- :func:`folded_pair_scores`: eval-mode scores with the BatchNorm / fc
  layers folded into one affine map, cache-sized blocks spread over worker
  threads on the CPU, max reductions on integer bit patterns where exact;
- :func:`pair_maxima_blocks` / :class:`PairMaxima`: the per-pair maxima of
  all pairs (training mode, where BatchNorm normalises over the pairs), with
  a memory-bounded backward pass.

No q x g x hw x hw tensor is built beyond one block.
"""
import math
from typing import Optional, Tuple

import torch

from mmreid_gs.utils.thread_state import cpu_workers, run_in_workers

# Similarity block size on CPU, per worker thread (x ceil(threads / 8), so
# that the Python loop of many threads does not hold the GIL too long):
# blocks that stay in the core's cache make the GEMM and the two max
# reductions after it much faster than blocks of the full memory budget
# (measured on AVX-512 Xeons with 2 MiB of L2 per core).
CPU_BLOCK_BYTES_PER_THREAD = 5 * 2**18
# Gallery items laid out for the GEMM at a time by the eval-mode scoring.
GALLERY_CHUNK = 512
# Query blocks scored one after the other against each gallery block.
QUERY_GROUP = 4


def pair_maxima_blocks(q: torch.Tensor,
                       g: torch.Tensor,
                       q_blk: int,
                       g_blk: int,
                       with_indices: bool = False):
    """Blockwise QAConv similarity maxima of all query/gallery pairs.

    Each block is ONE matrix multiply ``(q_blk*hw, c) @ (c, g_blk*hw)``
    viewed as ``[q_blk, hw (query loc s), g_blk, hw (gallery loc r)]``.

    Args:
        q (Tensor): [nq, hw, c] query features.
        g (Tensor): [ng, hw, c] gallery features.
        q_blk (int): Queries per block.
        g_blk (int): Gallery items per block.
        with_indices (bool): Whether to also return the argmax locations.

    Returns:
        tuple: ``(m_q, m_g, idx_q, idx_g)``; ``m_q`` [nq, ng, hw]: for each
        query location s the max over the gallery locations (the public
        ``score.max(dim=2)``); ``m_g`` [nq, ng, hw]: for each gallery
        location r the max over the query locations (``score.max(dim=3)``).
        The indices (int64, same shapes) are None unless ``with_indices``.
    """
    nq, hw, c = q.shape
    ng = g.size(0)
    q2 = q.reshape(nq * hw, c)
    g2t = g.reshape(ng * hw, c).t()
    m_q = q.new_empty(nq, ng, hw)
    m_g = q.new_empty(nq, ng, hw)
    idx_q = idx_g = None
    if with_indices:
        idx_q = torch.empty(nq, ng, hw, dtype=torch.long, device=q.device)
        idx_g = torch.empty(nq, ng, hw, dtype=torch.long, device=q.device)
    for i in range(0, nq, q_blk):
        qi = min(q_blk, nq - i)
        for j in range(0, ng, g_blk):
            gj = min(g_blk, ng - j)
            sim = torch.mm(q2[i * hw:(i + qi) * hw],
                           g2t[:, j * hw:(j + gj) * hw]).view(qi, hw, gj, hw)
            if with_indices:
                val, ind = sim.max(dim=3)  # [qi, s, gj]
                m_q[i:i + qi, j:j + gj] = val.transpose(1, 2)
                idx_q[i:i + qi, j:j + gj] = ind.transpose(1, 2)
                val, ind = sim.max(dim=1)  # [qi, gj, r]
                m_g[i:i + qi, j:j + gj] = val
                idx_g[i:i + qi, j:j + gj] = ind
            else:
                m_q[i:i + qi, j:j + gj] = sim.amax(dim=3).transpose(1, 2)
                m_g[i:i + qi, j:j + gj] = sim.amax(dim=1)
            del sim
    return m_q, m_g, idx_q, idx_g


def _block_views(sim_buf, max_g_buf, max_q_buf, qi, hw, g_blk, n_gal,
                 bits=None):
    """Views of the buffers for every gallery block of a chunk (built once,
    so that the inner loop only launches the three kernels).

    With ``bits`` (an integer dtype, see :func:`_max_bits_dtype`), the
    reductions read the similarity block and write the maxima as integers
    of the same width.
    """
    red_buf = sim_buf  # what the max reductions read
    if bits is not None:
        red_buf, max_g_buf, max_q_buf = (
            t.view(bits) for t in (sim_buf, max_g_buf, max_q_buf))
    views = []
    for j in range(0, n_gal, g_blk):
        gj = min(g_blk, n_gal - j)
        size = qi * hw * gj * hw
        start, stop = qi * hw * j, qi * hw * (j + gj)
        views.append((sim_buf[:size].view(qi * hw, gj * hw),
                      red_buf[:size].view(qi, hw, gj, hw),
                      max_g_buf[start:stop].view(qi, hw, gj),
                      max_q_buf[start:stop].view(qi, gj, hw)))
    return views


_BITS = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.bfloat16: torch.int16,
    torch.float16: torch.int16,
}


def _max_bits_dtype(dtype: torch.dtype,
                    device: torch.device) -> Optional[torch.dtype]:
    """The integer dtype whose maxima of the bit patterns replace the float
    maxima of a ``dtype`` similarity block on ``device`` (None: float max).

    IEEE floats (and bfloat16) are sign-magnitude: for a set holding at
    least one value >= +0, the signed-integer maximum of the bit patterns IS
    the bit pattern of the float maximum (negative values are negative
    integers; among the others the order is the same). A negative integer
    maximum (an all-negative set, rare for the best match over all
    locations) is detected and recomputed in floating point
    (:func:`_fix_negative_maxima`). On the CPU, PyTorch's integer max
    reductions skip the NaN handling of the float ones: about 2x faster in
    float32, and for bfloat16/float16 (whose float reductions widen every
    element to float32) about 5x, which matters because bfloat16 GEMMs run
    about 4x faster than float32 ones with AMX. NaNs are the exception (a
    NaN with its sign bit set would be dropped): blocks whose features could
    produce one take the float maxima (:func:`_bits_are_safe`).
    """
    return _BITS.get(dtype) if device.type == 'cpu' else None


def _bits_are_safe(q: torch.Tensor, g: torch.Tensor,
                   dtype: torch.dtype) -> bool:
    """Whether no similarity of ``q`` ([n, c] rows) and ``g`` (c channels
    on dim 1) in ``dtype`` can be NaN: all features finite and every
    product and partial sum of the GEMM bounded (|s| <= c * max|q| * max|g|)
    well inside the dtype's range, so no inf - inf arises.

    The integer maxima of :func:`_max_bits_dtype` would drop a NaN whose
    sign bit is set (x86 makes NaNs such as inf - inf with it set), where
    the float maxima propagate it; features that could produce one are
    scored with the float maxima.
    """
    if q.numel() == 0 or g.numel() == 0:
        return True
    bound = q.size(1)
    for x in (q, g):
        lo, hi = torch.aminmax(x)
        bound *= torch.maximum(-lo, hi).item()  # NaN if x holds one
    return bound < torch.finfo(dtype).max / 2  # False for NaN and inf


def _fix_negative_maxima(q_rows, g_cols, max_g, max_q, qi, hw, bits):
    """Recompute in floating point the blocks of a block row whose integer
    bit maxima came out negative (see :func:`_max_bits_dtype`).

    Args:
        q_rows (Tensor): [qi*hw, c] query rows of the block row.
        g_cols (list[Tensor]): [c, gj*hw] gallery columns of every block.
        max_g (Tensor): Flat float buffer, block j holds [qi, hw, gj].
        max_q (Tensor): Flat float buffer, block j holds [qi, gj, hw].
        qi (int): Queries of the block row.
        hw (int): Locations per map.
        bits (torch.dtype): The integer view of the buffers.
    """
    size = qi * sum(g.size(1) for g in g_cols)
    if not (max_g[:size].view(bits).lt(0).any()
            or max_q[:size].view(bits).lt(0).any()):
        return
    start = 0
    for g_col in g_cols:
        gj = g_col.size(1) // hw
        stop = start + qi * hw * gj
        if (max_g[start:stop].view(bits).lt(0).any()
                or max_q[start:stop].view(bits).lt(0).any()):
            sim = torch.mm(q_rows, g_col).view(qi, hw, gj, hw)
            max_g[start:stop].view(qi, hw, gj).copy_(sim.amax(dim=3))
            max_q[start:stop].view(qi, gj, hw).copy_(sim.amax(dim=1))
        start = stop


def _contract(max_g: torch.Tensor, max_q: torch.Tensor, w: torch.Tensor,
              row: torch.Tensor, g_blk: int) -> None:
    """``row = w . max_g + w . max_q`` for the blocks of one block row.

    Args:
        max_g (Tensor): Flat buffer, block j holds [qi, hw, gj].
        max_q (Tensor): Flat buffer, block j holds [qi, gj, hw].
        w (Tensor): [hw] float32 weights.
        row (Tensor): [qi, n] float32 output.
        g_blk (int): Gallery items per (full) block.
    """
    hw = w.numel()
    qi, n_gal = row.shape
    n_full = n_gal // g_blk
    rest = n_gal - n_full * g_blk
    if n_full:
        size = qi * hw * n_full * g_blk
        t = torch.matmul(w, max_g[:size].view(n_full, qi, hw, g_blk).float())
        t += torch.matmul(max_q[:size].view(n_full, qi, g_blk, hw).float(), w)
        row[:, :n_full * g_blk] = t.transpose(0, 1).reshape(
            qi, n_full * g_blk)
    if rest:
        start = qi * hw * n_full * g_blk
        stop = start + qi * hw * rest
        t = torch.matmul(w, max_g[start:stop].view(qi, hw, rest).float())
        t += torch.matmul(max_q[start:stop].view(qi, rest, hw).float(), w)
        row[:, n_full * g_blk:] = t


def _score_rows(q2: torch.Tensor, gal: torch.Tensor, w: torch.Tensor,
                out: torch.Tensor, q_blk: int, g_blk: int,
                bits: Optional[torch.dtype], q_starts, g_lo: int,
                g_hi: int) -> None:
    """fc-weighted sums of the similarity maxima, blockwise.

    Writes ``out[i, j] = w . max_r S_ij[s, r] + w . max_s S_ij[s, r]`` for
    the query blocks starting at ``q_starts`` and the gallery range
    ``[g_lo, g_hi)``, one GEMM ``(q_blk*hw, c) @ (c, g_blk*hw)`` per block.
    The gallery is laid out for the GEMM (``[c, n*hw]``) one chunk of
    ``GALLERY_CHUNK`` items at a time, so no full copy of it is made, and
    each gallery block serves ``QUERY_GROUP`` query blocks in a row while
    it is in the cache.

    Args:
        q2 (Tensor): [nq * hw, c] query features (row = query location), in
            the compute dtype.
        gal (Tensor): [ng, c, hw] gallery features.
        w (Tensor): [hw] float32 ``fc`` weights.
        out (Tensor): [nq, ng] float32 output.
        q_blk (int): Queries per block.
        g_blk (int): Gallery items per block.
        bits (torch.dtype, optional): Integer dtype the max reductions read
            the similarities as (see :func:`_max_bits_dtype`), or None for
            float reductions.
        q_starts (Sequence[int]): First query of each query block.
        g_lo (int): First gallery item.
        g_hi (int): End of the gallery range.
    """
    c, hw = gal.shape[1:]
    nq = q2.size(0) // hw
    dtype, device = q2.dtype, q2.device
    chunk = g_blk * max(1, GALLERY_CHUNK // g_blk)
    chunk = min(chunk, g_hi - g_lo)
    group = max(1, min(QUERY_GROUP, len(q_starts)))
    sim_buf = torch.empty(q_blk * hw * g_blk * hw, dtype=dtype, device=device)
    # per query block of a group, the maxima of its block row over a gallery
    # chunk, block after block: block j holds [qi, hw, gj] (max over the
    # gallery locations) and [qi, gj, hw] (max over the query locations)
    max_g_buf = torch.empty(
        group, q_blk * hw * chunk, dtype=dtype, device=device)
    max_q_buf = torch.empty_like(max_g_buf)
    for c_lo in range(g_lo, g_hi, chunk):
        c_hi = min(c_lo + chunk, g_hi)
        n_gal = c_hi - c_lo
        g2t = gal[c_lo:c_hi].to(dtype).permute(1, 0, 2).reshape(c, -1)
        g_cols = [
            g2t[:, j * hw:(j + g_blk) * hw] for j in range(0, n_gal, g_blk)
        ]
        views = {}  # (slot, query block size) -> views of every block
        for k0 in range(0, len(q_starts), group):
            members = []
            for k, i in enumerate(q_starts[k0:k0 + group]):
                qi = min(q_blk, nq - i)
                if (k, qi) not in views:
                    views[k, qi] = _block_views(sim_buf, max_g_buf[k],
                                                max_q_buf[k], qi, hw, g_blk,
                                                n_gal, bits)
                members.append((i, qi, q2[i * hw:(i + qi) * hw],
                                views[k, qi]))
            for j, g_col in enumerate(g_cols):
                for _, _, q_rows, block_views in members:
                    sim2d, sim4d, max_g, max_q = block_views[j]
                    # one GEMM, then max over the gallery / query locations
                    torch.mm(q_rows, g_col, out=sim2d)
                    torch.amax(sim4d, dim=3, out=max_g)
                    torch.amax(sim4d, dim=1, out=max_q)
            for k, (i, qi, q_rows, _) in enumerate(members):
                if bits is not None:
                    _fix_negative_maxima(q_rows, g_cols, max_g_buf[k],
                                         max_q_buf[k], qi, hw, bits)
                _contract(max_g_buf[k], max_q_buf[k], w,
                          out[i:i + qi, c_lo:c_hi], g_blk)


class PairMaxima(torch.autograd.Function):
    """Differentiable blockwise similarity maxima with bounded memory.

    Only the argmax locations are kept for the backward pass, which rebuilds
    the (sparse) gradient of each similarity block and multiplies it back,
    so no q x g x hw x hw tensor exists beyond a block in either pass. The
    gradient equals that of ``torch.max`` on the full similarity tensor.
    """

    @staticmethod
    def forward(ctx, q, g, q_blk, g_blk):
        need_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        m_q, m_g, idx_q, idx_g = pair_maxima_blocks(
            q, g, q_blk, g_blk, with_indices=need_grad)
        if need_grad:
            ctx.save_for_backward(q, g, idx_q, idx_g)
        ctx.blocks = (q_blk, g_blk)
        return m_q, m_g

    @staticmethod
    def backward(ctx, grad_m_q, grad_m_g):
        q, g, idx_q, idx_g = ctx.saved_tensors
        q_blk, g_blk = ctx.blocks
        nq, hw, c = q.shape
        ng = g.size(0)
        grad_m_q = grad_m_q.to(q.dtype)
        grad_m_g = grad_m_g.to(q.dtype)
        grad_q = torch.zeros_like(q)
        grad_g = torch.zeros_like(g)
        q2, g2 = q.reshape(nq * hw, c), g.reshape(ng * hw, c)
        for i in range(0, nq, q_blk):
            qi = min(q_blk, nq - i)
            for j in range(0, ng, g_blk):
                gj = min(g_blk, ng - j)
                d_sim = q.new_zeros(qi, hw, gj, hw)
                # m_q[p, k, s] = sim[p, s, k, idx_q[p, k, s]]
                d_sim.scatter_add_(
                    3, idx_q[i:i + qi, j:j + gj].transpose(1, 2).unsqueeze(3),
                    grad_m_q[i:i + qi, j:j + gj].transpose(1, 2).unsqueeze(3))
                # m_g[p, k, r] = sim[p, idx_g[p, k, r], k, r]
                d_sim.scatter_add_(
                    1, idx_g[i:i + qi, j:j + gj].unsqueeze(1),
                    grad_m_g[i:i + qi, j:j + gj].unsqueeze(1))
                d_sim = d_sim.view(qi * hw, gj * hw)
                grad_q[i:i + qi] += torch.mm(
                    d_sim, g2[j * hw:(j + gj) * hw]).view(qi, hw, c)
                grad_g[j:j + gj] += torch.mm(
                    d_sim.t(), q2[i * hw:(i + qi) * hw]).view(gj, hw, c)
        return grad_q, grad_g, None, None


def folded_pair_scores(q: torch.Tensor, gal: torch.Tensor, w: torch.Tensor,
                       scale: float, offset: float, dtype: torch.dtype,
                       q_blk: int, g_blk: int) -> torch.Tensor:
    """Eval-mode QAConv scores of all pairs, blockwise, BatchNorm/fc folded:
    ``scale * (w . max_r S[s, r] + w . max_s S[s, r]) + offset``.

    On CPU with several intra-op threads, the blocks are spread over as
    many Python worker threads, each running single-threaded kernels on its
    own cache-sized block (no synchronisation between the threads inside a
    block, which is much faster than splitting every small GEMM and
    reduction over all threads). The workers run in the caller's grad /
    inference mode (:func:`~mmreid_gs.utils.thread_state.run_in_workers`).

    Args:
        q (Tensor): [nq, hw, c] query features.
        gal (Tensor): [ng, c, hw] gallery features.
        w (Tensor): [hw] ``fc`` weights.
        scale (float): Folded scale of ``bn`` and ``logit_bn``.
        offset (float): Folded offset.
        dtype (torch.dtype): dtype of the similarity GEMM.
        q_blk (int): Queries per block.
        g_blk (int): Gallery items per block.

    Returns:
        Tensor: [nq, ng] float32 scores.
    """
    nq, hw, c = q.shape
    ng = gal.size(0)
    out = torch.empty(nq, ng, dtype=torch.float32, device=q.device)
    q2 = q.to(dtype).reshape(nq * hw, c)
    w32 = w.to(device=q.device, dtype=torch.float32)
    q_blk, g_blk = min(q_blk, nq), min(g_blk, ng)
    q_starts = list(range(0, nq, q_blk))
    bits = _max_bits_dtype(dtype, q.device)
    if bits is not None and not _bits_are_safe(q2, gal, dtype):
        bits = None
    workers = cpu_workers(q.device)
    if workers > 1 and len(q_starts) >= workers:
        # query block rows dealt round-robin
        tasks = [(q_starts[k::workers], 0, ng) for k in range(workers)]
    elif workers > 1 and ng >= 2 * g_blk:
        # few queries: split the gallery into contiguous ranges
        n_blk = math.ceil(ng / g_blk)
        cuts = [g_blk * (n_blk * k // workers) for k in range(workers)]
        cuts = sorted(set(cuts)) + [ng]
        tasks = [(q_starts, lo, hi) for lo, hi in zip(cuts, cuts[1:])]
    else:
        tasks = [(q_starts, 0, ng)]

    # the workers enter the caller's grad/inference mode (thread-local
    # state: outputs created under torch.inference_mode() are inference
    # tensors that only an inference-mode thread may write)
    def run(task):
        with torch.no_grad(), torch.autocast(q.device.type, enabled=False):
            _score_rows(q2, gal, w32, out, q_blk, g_blk, bits, *task)

    run_in_workers(run, tasks)
    return out.mul_(scale).add_(offset)


def block_sizes(hw: int,
                num_query: int,
                num_gallery: int,
                dtype: torch.dtype,
                device: torch.device,
                memory_budget_mb: float,
                prob_batch_size: Optional[int] = None,
                gal_batch_size: Optional[int] = None) -> Tuple[int, int]:
    """Queries and gallery items per similarity block.

    Args:
        hw (int): Locations per map.
        num_query (int): Number of queries.
        num_gallery (int): Number of gallery items.
        dtype (torch.dtype): dtype of the similarity block.
        device (torch.device): Device of the computation.
        memory_budget_mb (float): Upper bound of one block in MiB.
        prob_batch_size (int, optional): Override of the query count.
        gal_batch_size (int, optional): Override of the gallery count.

    Returns:
        tuple[int, int]: ``(q_blk, g_blk)`` such that a
        ``q_blk x g_blk x hw x hw`` block fits in ``memory_budget_mb`` (on
        the CPU in ``CPU_BLOCK_BYTES_PER_THREAD`` per intra-op thread, about
        square GEMM outputs), unless overridden.
    """
    pair_bytes = hw * hw * torch.empty((), dtype=dtype).element_size()
    budget = memory_budget_mb * 2**20
    num_query, num_gallery = max(num_query, 1), max(num_gallery, 1)
    if torch.device(device).type == 'cpu':
        threads = max(1, torch.get_num_threads())
        budget = min(budget,
                     CPU_BLOCK_BYTES_PER_THREAD * math.ceil(threads / 8))
        pairs = max(1, int(budget // pair_bytes))
        g_blk = max(1, pairs // max(1, math.isqrt(pairs)))
    else:
        pairs = max(1, int(budget // pair_bytes))
        g_blk = pairs
    g_blk = min(num_gallery, g_blk)
    g_blk = gal_batch_size or g_blk
    q_blk = prob_batch_size or max(1, pairs // g_blk)
    return max(1, min(q_blk, num_query)), max(1, g_blk)
