"""Global-embedding head: pooling, BNNeck, L2-normalised embedding."""
from typing import Dict, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from mmreid_gs.registry import MODELS
from mmreid_gs.utils.errors import ReIDUserError

POOLINGS = ('avg', 'max', 'gem')
METRICS = ('cosine', 'euclidean')


def _build_loss(cfg: Optional[Union[dict, nn.Module]]):
    if cfg is None or isinstance(cfg, nn.Module):
        return cfg
    return MODELS.build(cfg)


@MODELS.register_module()
class GlobalEmbeddingHead(BaseModule):
    """One embedding vector per image, matched by cosine similarity.

    ``[B, c, h, w]`` feature maps (or ``[B, c]`` pooled features / tokens,
    e.g. a ViT's class token) -> pooling (``'avg'``, ``'max'`` or ``'gem'``:
    generalised mean ``mean(x^p)^(1/p)`` with a learnable ``p``) -> BNNeck
    (``BatchNorm1d(c)`` with a frozen zero bias, Luo et al. 2019) ->
    L2 normalisation: the embedding [B, c] of :meth:`embed`.

    :meth:`match` scores every query/gallery pair with one GEMM per block of
    queries (``metric='cosine'``: the dot product of the normalised
    embeddings; ``'euclidean'``: minus their Euclidean distance), higher =
    more similar; memory beyond the [q, g] output is one block.

    :meth:`loss` on a mini-batch: the batch-hard triplet loss on the B x B
    matrix of the same similarities as :meth:`match` (the default
    :class:`HardTripletLoss` with margin 0.3; ``soft_margin=True`` for the
    soft-margin form), plus, with ``num_classes`` and ``id_loss``, an
    identity (classification) loss of a bias-free linear classifier on the
    BNNeck features (e.g. ``dict(type='mmpretrain.LabelSmoothLoss',
    label_smooth_val=0.1)``). Each loss carries its weight (its
    ``loss_weight``); the total is their sum.

    Args:
        in_channels (int): Channels c of the input features.
        pooling (str): ``'avg'``, ``'max'`` or ``'gem'``. Defaults to
            ``'avg'``.
        gem_p (float): Initial GeM exponent. Defaults to 3.
        gem_learnable (bool): Learn the GeM exponent. Defaults to True.
        metric (str): ``'cosine'`` or ``'euclidean'``. Defaults to
            ``'cosine'``.
        normalize (bool): L2-normalise the embedding. Defaults to True.
        triplet_loss (dict | nn.Module, optional): Loss on the B x B
            similarities, called as ``loss(scores, labels) -> (loss, acc)``;
            None for none. Defaults to ``dict(type='HardTripletLoss',
            margin=0.3)``.
        num_classes (int, optional): Training identities; needed by
            ``id_loss``. Defaults to None.
        id_loss (dict | nn.Module, optional): Classification loss called as
            ``loss(logits [B, num_classes], labels [B]) -> loss``
            (mmpretrain's convention: the loss alone; the head computes
            ``id_acc``). Defaults to None.
        block_size (int): Queries per GEMM block of :meth:`match`.
            Defaults to 1024.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to None: BNNeck weight 1, classifier N(0, 0.001).
    """

    def __init__(self,
                 in_channels: int,
                 pooling: str = 'avg',
                 gem_p: float = 3.,
                 gem_learnable: bool = True,
                 metric: str = 'cosine',
                 normalize: bool = True,
                 triplet_loss=dict(type='HardTripletLoss', margin=0.3),
                 num_classes: Optional[int] = None,
                 id_loss=None,
                 block_size: int = 1024,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        if int(in_channels) <= 0:
            raise ReIDUserError('GlobalEmbeddingHead: in_channels must be '
                                f'positive, got {in_channels}')
        if pooling not in POOLINGS:
            raise ReIDUserError(f'GlobalEmbeddingHead: pooling must be one of '
                                f'{POOLINGS}, got {pooling!r}')
        if metric not in METRICS:
            raise ReIDUserError(f'GlobalEmbeddingHead: metric must be one of '
                                f'{METRICS}, got {metric!r}')
        if id_loss is not None and not num_classes:
            raise ReIDUserError('GlobalEmbeddingHead: id_loss needs '
                                'num_classes (the training identities), got '
                                f'{num_classes!r}')
        if int(block_size) <= 0:
            raise ReIDUserError('GlobalEmbeddingHead: block_size must be '
                                f'positive, got {block_size}')
        if triplet_loss is None and id_loss is None:
            raise ReIDUserError('GlobalEmbeddingHead: give triplet_loss or '
                                'id_loss (or both)')
        self.in_channels = int(in_channels)
        self.pooling = pooling
        self.metric = metric
        self.normalize = bool(normalize)
        self.block_size = int(block_size)
        if pooling == 'gem':
            self.gem_p = nn.Parameter(torch.tensor(float(gem_p)),
                                      requires_grad=bool(gem_learnable))
        self.bnneck = nn.BatchNorm1d(self.in_channels)
        self.bnneck.bias.requires_grad_(False)
        self.num_classes = int(num_classes) if num_classes else None
        self.classifier = None
        if self.num_classes:
            self.classifier = nn.Linear(self.in_channels,
                                        self.num_classes,
                                        bias=False)
        self.triplet_loss = _build_loss(triplet_loss)
        self.id_loss = _build_loss(id_loss)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BNNeck weight 1 and bias 0; classifier weights N(0, 0.001)."""
        self.bnneck.reset_parameters()
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)

    # ------------------------------------------------------------ features
    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """Pool feature maps to vectors.

        Args:
            feats (Tensor): [B, c, h, w] maps, or [B, c] vectors (returned
                as they are).

        Returns:
            Tensor: [B, c].
        """
        if feats.dim() == 2:
            x = feats
        elif feats.dim() == 4:
            if self.pooling == 'avg':
                x = feats.mean(dim=(2, 3))
            elif self.pooling == 'max':
                x = feats.amax(dim=(2, 3))
            else:
                p = self.gem_p.clamp(min=1.)
                x = feats.float().clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(
                    1. / p).to(feats.dtype)
        else:
            raise ReIDUserError(
                'GlobalEmbeddingHead: expected feature maps [B, c, h, w] or '
                f'vectors [B, c], got shape {tuple(feats.shape)} (for a '
                "VisionTransformer use out_type='cls_token', 'avg_featmap' "
                "or 'featmap')")
        if x.size(1) != self.in_channels:
            raise ReIDUserError(
                f'GlobalEmbeddingHead: features have {x.size(1)} channels, '
                f'the head expects in_channels={self.in_channels} (shape '
                f'{tuple(feats.shape)})')
        return x

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) if self.normalize else x

    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """The embedding that :meth:`match` compares.

        Args:
            feats (Tensor): [B, c, h, w] maps or [B, c] vectors.

        Returns:
            Tensor: [B, c] pooled, BNNeck'd and (with ``normalize``)
            L2-normalised embeddings.
        """
        return self._finish(self.bnneck(self.pool(feats)))

    # ------------------------------------------------------------ matching
    def _check(self, x: torch.Tensor, name: str) -> None:
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ReIDUserError(
                f'GlobalEmbeddingHead: {name} embeddings must have shape '
                f'[N, {self.in_channels}] (in_channels of the head), got '
                f'{tuple(x.shape)}')

    def _pair_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Similarities of all pairs of two blocks (differentiable)."""
        if self.metric == 'cosine':
            if not self.normalize:
                q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
            return q @ g.t()
        sq = (q * q).sum(1, keepdim=True) + (g * g).sum(1)[None] \
            - 2. * (q @ g.t())
        return -sq.clamp(min=1e-12).sqrt()

    def match(self, query: torch.Tensor,
              gallery: torch.Tensor) -> torch.Tensor:
        """Similarity of every query/gallery pair of embeddings.

        One GEMM per block of ``block_size`` queries; the result of each
        block goes straight into the [q, g] output.

        Args:
            query (Tensor): [q, c] embeddings from :meth:`embed`.
            gallery (Tensor): [g, c] embeddings.

        Returns:
            Tensor: [q, g] float32 similarities (cosine: in [-1, 1];
            euclidean: minus the distance), higher = more similar.
        """
        self._check(query, 'query')
        self._check(gallery, 'gallery')
        if query.device != gallery.device:
            raise ReIDUserError(
                f'GlobalEmbeddingHead: query on {query.device} '
                f'but gallery on {gallery.device}')
        nq, ng = query.size(0), gallery.size(0)
        needs_grad = torch.is_grad_enabled() and (query.requires_grad
                                                  or gallery.requires_grad)
        if needs_grad:
            return self._pair_scores(query, gallery).float()
        out = torch.empty(nq, ng, dtype=torch.float32, device=query.device)
        if nq == 0 or ng == 0:
            return out
        with torch.no_grad():
            for i in range(0, nq, self.block_size):
                out[i:i + self.block_size] = self._pair_scores(
                    query[i:i + self.block_size], gallery)
        return out

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(feats)

    # ------------------------------------------------------------ training
    def loss(self, feats: torch.Tensor,
             labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Triplet and identity losses of a mini-batch.

        Args:
            feats (Tensor): [B, c, h, w] maps or [B, c] vectors.
            labels (Tensor): [B] identity labels (0..num_classes-1).

        Returns:
            dict[str, Tensor]: ``loss_triplet`` and ``pair_acc`` (with a
            triplet loss), ``loss_id`` and ``id_acc`` (with an identity
            loss). MMEngine sums the keys holding ``loss``.
        """
        labels = labels.reshape(-1).to(feats.device)
        if labels.numel() != feats.size(0):
            raise ReIDUserError(
                f'GlobalEmbeddingHead: {labels.numel()} labels '
                f'for {feats.size(0)} features')
        neck = self.bnneck(self.pool(feats))
        out = {}
        if self.triplet_loss is not None:
            emb = self._finish(neck).float()
            loss, acc = self.triplet_loss(self._pair_scores(emb, emb), labels)
            out.update(loss_triplet=loss, pair_acc=acc)
        if self.id_loss is not None:
            if labels.numel() and (int(labels.min()) < 0
                                   or int(labels.max()) >= self.num_classes):
                raise ReIDUserError(
                    'GlobalEmbeddingHead: labels must be in [0, '
                    f'{self.num_classes - 1}] (num_classes), got '
                    f'{int(labels.min())}..{int(labels.max())}')
            logits = self.classifier(neck.float())
            out['loss_id'] = self.id_loss(logits, labels)
            with torch.no_grad():
                out['id_acc'] = (logits.argmax(1) == labels).float().mean()
        return out
