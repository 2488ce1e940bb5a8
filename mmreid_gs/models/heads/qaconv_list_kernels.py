"""QAConv kernel of the batched second stage of the class graph: each query
against its own list of gallery maps (``QAConvHead.match_pairs``).

Kept apart from :mod:`.qaconv_kernels` (the all-pairs kernels of
``QAConvHead.match``), whose worker-thread helper it shares.
"""

import torch

from mmreid_gs.utils.thread_state import cpu_workers, run_in_workers


def folded_pair_list_scores(q: torch.Tensor, gal: torch.Tensor,
                            w: torch.Tensor, scale: float, offset: float,
                            dtype: torch.dtype,
                            block_bytes: int) -> torch.Tensor:
    """Eval-mode QAConv scores of each query against its own gallery list
    (the batched second stage of the two-stage class graph), BatchNorm/fc
    folded as in :func:`folded_pair_scores`.

    One batched GEMM ``bmm([b, m_blk * hw, c], [b, c, hw])`` per block of
    ``b`` queries x ``m_blk`` list items, the block's similarities taking at
    most ``block_bytes`` (at least one pair). Gallery maps with
    channels-last strides (``features.contiguous(memory_format=
    torch.channels_last)[index]``) are read without a copy. On the CPU the
    blocks are spread over one worker thread per intra-op thread
    (single-threaded kernels each), as :func:`folded_pair_scores`, also
    when there are fewer query blocks than threads (a single query with a
    long list of large maps): splitting every small GEMM and reduction over
    the threads instead cost up to 28x more time on a loaded machine.

    Args:
        q (Tensor): [n, hw, c] query features.
        gal (Tensor): [n, m, c, h, w] gallery maps, row i the list of
            query i.
        w (Tensor): [hw] ``fc`` weights.
        scale (float): Folded scale of ``bn`` and ``logit_bn``.
        offset (float): Folded offset.
        dtype (torch.dtype): dtype of the similarity GEMM.
        block_bytes (int): Bytes of one similarity block.

    Returns:
        Tensor: [n, m] float32 scores.
    """
    n, hw, c = q.shape
    m = gal.size(1)
    out = torch.empty(n, m, dtype=torch.float32, device=q.device)
    if n == 0 or m == 0:
        return out
    pair_bytes = hw * hw * torch.empty((), dtype=dtype).element_size()
    pairs = max(1, int(block_bytes) // pair_bytes)
    m_blk = min(m, pairs)
    q_blk = max(1, min(n, pairs // m_blk))
    w32 = w.to(device=q.device, dtype=torch.float32)
    q_t = q.to(dtype).transpose(1, 2)  # [n, c, hw]

    def score(blocks):
        for i, j in blocks:
            b = min(q_blk, n - i)
            g = gal[i:i + b, j:j + m_blk].to(dtype)
            mj = g.size(1)
            g = g.permute(0, 1, 3, 4, 2).reshape(b, mj * hw, c)
            # sim[p, k, r, s]: gallery location r, query location s
            sim = torch.bmm(g, q_t[i:i + b]).view(b, mj, hw, hw)
            s = torch.matmul(sim.amax(dim=2).float(), w32)
            s += torch.matmul(sim.amax(dim=3).float(), w32)
            out[i:i + b, j:j + mj] = s

    # query block by query block, each along its list
    starts = [(i, j) for i in range(0, n, q_blk) for j in range(0, m, m_blk)]
    workers = max(1, min(cpu_workers(q.device), len(starts)))

    def run(part):
        with torch.no_grad(), torch.autocast(q.device.type, enabled=False):
            score(part)

    run_in_workers(run, [starts[k::workers] for k in range(workers)])
    return out.mul_(scale).add_(offset)
