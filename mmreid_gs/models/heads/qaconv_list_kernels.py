"""QAConv kernel of the batched second stage of the class graph: each query
against its own list of gallery maps (``QAConvHead.match_pairs``).

Kept apart from :mod:`.qaconv_kernels` (the all-pairs kernels of
``QAConvHead.match``), whose worker-thread helper and integer-maxima rule
it shares.
"""

from typing import Optional

import torch

from mmreid_gs.utils.thread_state import cpu_workers, run_in_workers
from .qaconv_kernels import _bits_are_safe, _max_bits_dtype


def _list_block_maxima(q_t, g, bits, hw):
    """Both similarity maxima of one block of query lists.

    The block's similarities are laid out ``[b, hw (query location s),
    mj * hw (gallery item, gallery location r)]`` (one batched GEMM from
    the gallery rows as they are gathered): the max over the query
    locations is then a reduction over the middle dimension along long
    contiguous rows (fast), and only the max over the gallery locations
    reduces short innermost runs of ``hw``. Both read the similarities as
    integers where exact (``bits``, see
    :func:`~mmreid_gs.models.heads.qaconv_kernels._max_bits_dtype`); a
    negative integer maximum (an all-negative set) sends the block to the
    float reductions.

    Args:
        q_t (Tensor): [b, hw, c] query features (row = query location).
        g (Tensor): [b, mj * hw, c] gallery rows (item-major, then
            location).
        bits (torch.dtype, optional): Integer view of the reductions.
        hw (int): Locations per map.

    Returns:
        tuple[Tensor, Tensor]: ``m_g`` [b, mj, hw] (for each gallery
        location the max over the query locations) and ``m_q`` [b, hw, mj]
        (for each query location the max over the gallery locations), in
        the GEMM dtype.
    """
    b = q_t.size(0)
    mj = g.size(1) // hw
    sim = torch.bmm(q_t, g.transpose(1, 2))  # [b, s, (k, r)]
    red = sim if bits is None else sim.view(bits)
    m_g = red.amax(dim=1).view(b, mj, hw)
    m_q = red.view(b, hw, mj, hw).amax(dim=3)
    if bits is not None:
        if min(m_g.min().item(), m_q.min().item()) < 0:
            m_g = sim.amax(dim=1).view(b, mj, hw)
            m_q = sim.view(b, hw, mj, hw).amax(dim=3)
        else:
            m_g, m_q = m_g.view(sim.dtype), m_q.view(sim.dtype)
    return m_g, m_q


def folded_pair_list_scores(q: torch.Tensor,
                            gal: torch.Tensor,
                            w: torch.Tensor,
                            scale: float,
                            offset: float,
                            dtype: torch.dtype,
                            block_bytes: int,
                            index: Optional[torch.Tensor] = None
                            ) -> torch.Tensor:
    """Eval-mode QAConv scores of each query against its own gallery list
    (the batched second stage of the two-stage class graph), BatchNorm/fc
    folded as in :func:`folded_pair_scores`.

    One batched GEMM ``bmm([b, hw, c], [b, c, m_blk * hw])`` per block of
    ``b`` queries x ``m_blk`` list items, the block's similarities taking at
    most ``block_bytes`` (at least one pair), reduced as
    :func:`_list_block_maxima` (the layout keeps one of the two max
    reductions on long contiguous rows; the earlier ``[m_blk * hw, hw]``
    layout reduced short runs both times and cost about 2.4x more per pair,
    ``tools/analysis_tools/benchmark_graph.py --rolled``). Gallery maps
    with channels-last strides (``features.contiguous(memory_format=
    torch.channels_last)[index]``) are read without a copy. On the CPU the
    blocks are spread over one worker thread per intra-op thread
    (single-threaded kernels each), as :func:`folded_pair_scores`, also
    when there are fewer query blocks than threads (a single query with a
    long list of large maps): splitting every small GEMM and reduction over
    the threads instead cost up to 28x more time on a loaded machine.

    With ``index``, the lists are gathered block by block inside the
    workers from the [G, hw, c] rows of ``gal`` (each block's gallery is
    then read from the cache by its GEMM, and the gather runs in parallel)
    instead of by the caller into one [n, m, c, h, w] tensor.

    Args:
        q (Tensor): [n, hw, c] query features.
        gal (Tensor): [n, m, c, h, w] gallery maps, row i the list of
            query i; with ``index``: [G, hw, c] gallery features (row =
            location; a transposed view of [G, c, hw] maps is read as it
            is, only the gathered blocks are copied).
        w (Tensor): [hw] ``fc`` weights.
        scale (float): Folded scale of ``bn`` and ``logit_bn``.
        offset (float): Folded offset.
        dtype (torch.dtype): dtype of the similarity GEMM.
        block_bytes (int): Bytes of one similarity block.
        index (Tensor, optional): [n, m] int64, list i = ``gal[index[i]]``.

    Returns:
        Tensor: [n, m] float32 scores.
    """
    n, hw, c = q.shape
    m = gal.size(1) if index is None else index.size(1)
    out = torch.empty(n, m, dtype=torch.float32, device=q.device)
    if n == 0 or m == 0:
        return out
    pair_bytes = hw * hw * torch.empty((), dtype=dtype).element_size()
    pairs = max(1, int(block_bytes) // pair_bytes)
    m_blk = min(m, pairs)
    q_blk = max(1, min(n, pairs // m_blk))
    w32 = w.to(device=q.device, dtype=torch.float32)
    q_c = q.to(dtype)
    bits = _max_bits_dtype(dtype, q.device)

    def score(blocks):
        for i, j in blocks:
            b = min(q_blk, n - i)
            if index is None:
                g = gal[i:i + b, j:j + m_blk].to(dtype)
                mj = g.size(1)
                g = g.permute(0, 1, 3, 4, 2).reshape(b, mj * hw, c)
            else:
                ids = index[i:i + b, j:j + m_blk]
                mj = ids.size(1)
                # a dense [b * mj, hw, c] copy of the block's lists
                g = gal.index_select(0, ids.reshape(-1)).to(dtype).view(
                    b, mj * hw, c)
            # integer maxima where no NaN can arise, decided per block on
            # the block's own features (a test gallery is not scanned
            # whole on every call)
            q_blk_c = q_c[i:i + b]
            blk_bits = bits if bits is not None and _bits_are_safe(
                q_blk_c.reshape(-1, c), g, dtype) else None
            m_g, m_q = _list_block_maxima(q_blk_c, g, blk_bits, hw)
            s = torch.matmul(m_g.float(), w32)
            s += torch.matmul(w32, m_q.float())
            out[i:i + b, j:j + mj] = s

    # query block by query block, each along its list
    starts = [(i, j) for i in range(0, n, q_blk) for j in range(0, m, m_blk)]
    workers = max(1, min(cpu_workers(q.device), len(starts)))

    def run(part):
        with torch.no_grad(), torch.autocast(q.device.type, enabled=False):
            score(part)

    run_in_workers(run, [starts[k::workers] for k in range(workers)])
    return out.mul_(scale).add_(offset)
