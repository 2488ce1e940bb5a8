"""First stage of the two-stage class graph: cheap proxies that propose
candidate classes (used by :func:`mmreid_gs.engine.graph.build_class_graph`,
which re-exports :func:`candidate_classes` and :data:`CANDIDATE_FUNCTIONS`),
and the checks both modules share."""
import math
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

Matcher = Callable[[Tensor, Tensor], Tensor]


# ---------------------------------------------------------------- proxies
def _gap_prepare(features: Tensor) -> Tensor:
    """Global average pooling over locations, then L2 normalisation."""
    pooled = features.flatten(2).mean(dim=2) if features.dim() > 2 \
        else features
    return F.normalize(pooled.float(), dim=1)


def _gap_score(q: Tensor, g: Tensor) -> Tensor:
    return q @ g.t()


def _pooled_prepare(features: Tensor) -> Tensor:
    """2x2 average pooling of the maps and L2 normalisation per location.

    Returns:
        Tensor: [C, c, L] with L = ceil(h/2) * ceil(w/2) locations.
    """
    if features.dim() != 4:
        raise ValueError("candidate_fn='pooled' needs feature maps "
                         f'[C, c, h, w]; got shape {list(features.shape)}.')
    pooled = F.avg_pool2d(features.float(), 2, ceil_mode=True)
    return F.normalize(pooled.flatten(2), dim=1)


def _pooled_score(q: Tensor, g: Tensor) -> Tensor:
    """Unweighted QAConv on pooled maps: mean over query locations of the
    best gallery location plus the converse. Computed in cache-sized blocks
    of about 4 MiB (one GEMM each)."""
    nq, c, loc = q.shape
    ng = g.shape[0]
    out = q.new_empty(nq, ng)
    q2 = q.transpose(1, 2).reshape(nq * loc, c)
    g2t = g.transpose(1, 2).reshape(ng * loc, c).t()
    q_blk = min(nq, 8)
    g_blk = max(1, 2**20 // (q_blk * loc * loc))
    for i in range(0, nq, q_blk):
        qi = min(q_blk, nq - i)
        for j in range(0, ng, g_blk):
            gj = min(g_blk, ng - j)
            sim = torch.mm(q2[i * loc:(i + qi) * loc],
                           g2t[:, j * loc:(j + gj) * loc]).view(
                               qi, loc, gj, loc)
            out[i:i + qi, j:j + gj] = sim.amax(3).mean(1) + sim.amax(1).mean(2)
    return out


#: Named first-stage proxies: name -> (prepare(features), score(q, g)).
#: ``'gap'`` (default): cosine of global-average-pooled, L2-normalised maps
#: (C^2 * c work, negligible next to QAConv).
#: ``'pooled'``: unweighted QAConv max matching on 2x2-pooled maps (16x
#: fewer FLOPs per pair than QAConv on 24x8 maps, about 4x less time on CPU):
#: better recall than ``'gap'`` for the same N, but its C^2 pairs dominate
#: the cost for large C.
#: Measured on CPU (tools/analysis_tools/benchmark_graph.py, C=3000,
#: N=300, 15 neighbours, QAConvHead): ``'gap'`` recall 0.983 at 6.4x less
#: CPU time than exact; ``'pooled'`` recall 0.997 at 4.2x.
CANDIDATE_FUNCTIONS = {
    'gap': (_gap_prepare, _gap_score),
    'pooled': (_pooled_prepare, _pooled_score),
}


# ---------------------------------------------------------------- helpers
def _check_scores(scores: Tensor, nq: int, ng: int, who: str) -> Tensor:
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (nq, ng):
        shape = list(scores.shape) if isinstance(scores, Tensor) else type(
            scores).__name__
        raise ValueError(f'{who} must return a Tensor [q, g] = [{nq}, {ng}]; '
                         f'got {shape}.')
    scores = scores.float()
    return torch.nan_to_num(scores, nan=-math.inf)


def _resolve_rows(rows: Optional[Union[Sequence[int], Tensor]],
                  num_classes: int) -> Tensor:
    if rows is None:
        return torch.arange(num_classes)
    rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1).cpu()
    if rows.numel() and (rows.min() < 0 or rows.max() >= num_classes):
        raise ValueError('rows must be class indices in '
                         f'[0, {num_classes - 1}]; got values from '
                         f'{int(rows.min())} to {int(rows.max())}.')
    return rows


def candidate_classes(features: Tensor,
                      num_candidates: int,
                      candidate_fn: Union[str, Matcher, None] = 'gap',
                      rows: Optional[Union[Sequence[int], Tensor]] = None,
                      block_size: int = 256) -> Tensor:
    """First stage: ``num_candidates`` cheap-proxy candidates per class.

    Args:
        features (Tensor): [C, c, h, w] one feature map per class.
        num_candidates (int): Candidates per class (self excluded), < C.
        candidate_fn (str | callable | None): A name of
            :data:`CANDIDATE_FUNCTIONS` (``'gap'``, ``'pooled'``), or a
            callable ``fn(q, g) -> [q, g]`` scores on the raw features.
            None means ``'gap'``. Defaults to ``'gap'``.
        rows (Sequence[int] | Tensor, optional): Classes to propose for; None
            means all. Defaults to None.
        block_size (int): Query rows per proxy call. Defaults to 256.

    Returns:
        Tensor: LongTensor [R, num_candidates] on the features' device,
        sorted by class index.
    """
    num_classes = features.shape[0]
    rows = _resolve_rows(rows, num_classes)
    if candidate_fn is None:
        candidate_fn = 'gap'
    if isinstance(candidate_fn, str):
        if candidate_fn not in CANDIDATE_FUNCTIONS:
            raise ValueError(
                f'Unknown candidate_fn {candidate_fn!r}; use one of '
                f'{sorted(CANDIDATE_FUNCTIONS)} or a callable.')
        prepare, score = CANDIDATE_FUNCTIONS[candidate_fn]
        prepared = prepare(features)
    elif callable(candidate_fn):
        prepared, score = features, candidate_fn
    else:
        raise ValueError('candidate_fn must be a name or a callable; got '
                         f'{type(candidate_fn).__name__}.')
    out = []
    for i in range(0, rows.numel(), max(1, int(block_size))):
        blk = rows[i:i + block_size].to(features.device)
        s = _check_scores(score(prepared[blk], prepared), blk.numel(),
                          num_classes, 'candidate_fn')
        s[torch.arange(blk.numel(), device=s.device), blk] = -math.inf
        out.append(s.topk(num_candidates, dim=1).indices.sort(dim=1).values)
    if not out:
        return torch.empty(0, num_candidates, dtype=torch.long)
    return torch.cat(out)


def _check_candidate_fn(features: Tensor,
                        candidate_fn: Union[str, Matcher, None]) -> None:
    """Raise a ValueError for an unknown proxy name, a proxy that is not
    callable, or ``'pooled'`` on features that are not maps."""
    if candidate_fn is None or callable(candidate_fn):
        return
    if not isinstance(candidate_fn, str):
        raise ValueError('candidate_fn must be a name or a callable; got '
                         f'{type(candidate_fn).__name__}.')
    if candidate_fn not in CANDIDATE_FUNCTIONS:
        raise ValueError(
            f'Unknown candidate_fn {candidate_fn!r}; use one of '
            f'{sorted(CANDIDATE_FUNCTIONS)} or a callable.')
    if candidate_fn == 'pooled' and features.dim() != 4:
        raise ValueError("candidate_fn='pooled' needs feature maps "
                         f'[C, c, h, w]; got shape {list(features.shape)}.')
