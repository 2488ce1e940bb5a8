"""Graph Sampler of Liao & Shao (CVPR 2022) as an MMEngine data sampler."""
import math
from typing import Dict, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Sampler

from mmreid_gs.registry import DATA_SAMPLERS
from mmreid_gs.utils.errors import ReIDUserError

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[Sequence[int]]]


def _dataset_labels(dataset) -> np.ndarray:
    """Read the class label of every sample of ``dataset``.

    Uses ``dataset.get_gt_labels()`` when the dataset has it, otherwise
    ``dataset.get_data_info(i)['gt_label']`` for every index.

    Returns:
        np.ndarray: int64 labels of shape [N].
    """
    if hasattr(dataset, 'get_gt_labels'):
        labels = dataset.get_gt_labels()
        source = 'dataset.get_gt_labels()'
    elif hasattr(dataset, 'get_data_info'):
        labels = [dataset.get_data_info(i)['gt_label']
                  for i in range(len(dataset))]
        source = "dataset.get_data_info(i)['gt_label']"
    else:
        raise ReIDUserError(
            'GraphSampler needs a dataset with `get_gt_labels()` or '
            f"`get_data_info(i)['gt_label']`; got {type(dataset).__name__}.")
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    if not (isinstance(labels, np.ndarray) and labels.ndim == 1):
        # e.g. a list of ints, 0-d tensors or one-element arrays
        labels = np.asarray([
            np.asarray(lb.cpu() if isinstance(lb, torch.Tensor) else lb
                       ).reshape(-1)[0] for lb in labels
        ]) if len(labels) else np.zeros(0, dtype=np.int64)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        as_int = labels.astype(np.int64)
        if not np.array_equal(as_int, labels):
            raise ReIDUserError(
                f'GraphSampler needs integer class labels; {source} '
                f'returned values of dtype {labels.dtype}.')
        labels = as_int
    return labels.astype(np.int64)


#: What :class:`GraphSamplerHook` reads and calls on a train sampler: a
#: sampler variant of a user's (another batch layout, another way to use the
#: graph) is one class with these members, no subclassing needed.
#:
#: - ``set_graph(neighbors)``: take an int array [C, num_neighbors] whose row
#:   i lists the nearest classes of label i (best first);
#: - ``num_classes`` (int): C; ``num_neighbors`` (int): neighbours per class
#:   the sampler wants;
#: - ``class_indices`` (list of int arrays): the dataset indices of each
#:   class's images (the hook draws one image per class from them);
#: - ``seed`` (int): the sampler's seed (the hook's draw depends on it and on
#:   the epoch, so that every rank draws the same images).
#:
#: Optional: ``state_dict()`` / ``load_state_dict(state)`` (saved in
#: checkpoints and restored on resume), ``batch_size`` (checked against the
#: DataLoader's).
GRAPH_SAMPLER_PROTOCOL = ('set_graph', 'num_classes', 'num_neighbors',
                          'class_indices', 'seed')


def missing_graph_sampler_members(sampler) -> List[str]:
    """Members of :data:`GRAPH_SAMPLER_PROTOCOL` that ``sampler`` lacks.

    Args:
        sampler: Any object (None gives every member).

    Returns:
        list[str]: The missing names; empty when the sampler follows the
        protocol.
    """
    if sampler is None:
        return list(GRAPH_SAMPLER_PROTOCOL)
    missing = [
        name for name in GRAPH_SAMPLER_PROTOCOL
        if not hasattr(sampler, name)
    ]
    if 'set_graph' not in missing and not callable(sampler.set_graph):
        missing.append('set_graph (not callable)')
    return missing


def _random_neighbours(centres: torch.Tensor, num_classes: int, k: int,
                       generator: torch.Generator) -> torch.Tensor:
    """For every centre, ``k`` distinct random classes other than itself.

    Vectorised Floyd sampling: k draws over all rows at once, O(len * k^2).

    Args:
        centres (Tensor): Centre classes, LongTensor [M].
        num_classes (int): Number of classes C (k <= C - 1).
        k (int): Number of classes to draw for each centre.
        generator (torch.Generator): Source of randomness.

    Returns:
        Tensor: LongTensor [M, k]; row i has distinct values in
        ``range(C)`` without ``centres[i]``.
    """
    m = centres.numel()
    sel = torch.empty(m, k, dtype=torch.long)
    n = num_classes - 1  # sample from range(C - 1), then skip the centre
    for t, j in enumerate(range(n - k, n)):
        r = torch.randint(0, j + 1, (m, ), generator=generator)
        dup = (sel[:, :t] == r[:, None]).any(dim=1)
        sel[:, t] = torch.where(dup, torch.full_like(r, j), r)
    return sel + (sel >= centres[:, None]).long()


@DATA_SAMPLERS.register_module()
class GraphSampler(Sampler):
    """Graph Sampler (GS): one mini-batch per class, made of the class and
    its nearest classes.

    Liao & Shao, "Graph Sampling Based Deep Metric Learning for Generalizable
    Person Re-Identification", CVPR 2022. With ``P = batch_size //
    num_instances``, an epoch has exactly ``C`` batches (``C`` = number of
    classes; or ``batches_per_epoch``) of ``batch_size = P * K`` indices:
    for every batch centre ``c`` (by default every class once, in an order
    shuffled by the epoch's generator) the batch holds ``c`` and its ``P - 1``
    neighbours from the graph row ``c`` (see :meth:`set_graph`), ``K``
    images each, in that order. The images of a class are taken by
    walking through a shuffled list of the class's images with a per-class
    pointer; the list is reshuffled when it is used up (the images not yet
    in the current batch first), so every image of a class is used once
    before any is used again and a class with at least ``K`` images never
    repeats an image inside a batch. Classes with fewer than ``K`` images
    repeat images (all of them are in the batch).

    Without a graph (before :class:`GraphSamplerHook` sets one, e.g. during
    the PK warm-up epochs) the sampler yields random PK batches with the
    same length: ``C`` batches, each of ``P`` distinct classes (every class
    is the first class of one batch, the ``P - 1`` others are random).

    Epoch length: ``batches_per_epoch=None`` gives the paper's ``C`` batches
    per epoch. An integer ``N`` fixes it, whatever the number of classes
    (equal iterations at any scale): the ``N`` centres are drawn without
    replacement from the shuffled classes (distinct when ``N <= C``; when
    ``N > C`` the epoch goes through ``ceil(N / C)`` shuffles of all
    classes, cut at ``N``), with a graph and without one (PK) alike.
    ``N = C`` gives the same indices as None.

    The sampler yields flat indices; the DataLoader must batch them with the
    same ``batch_size``. ``len(sampler)`` is in indices and never changes
    between epochs.

    Distributed training: every rank computes the same list of the epoch's
    ``C`` (or ``batches_per_epoch``) batches (same seed, epoch and graph)
    and takes whole batches ``rank, rank + W, ...``. With ``round_up=True``
    the list is padded by repeating batches from its start up to a multiple
    of ``W``, so all ranks yield ``ceil(C / W)`` (``ceil(N / W)``) batches
    and every centre of the list is a batch centre exactly once per epoch
    over all ranks. ``batches_per_epoch`` counts the batches of the epoch
    over all ranks, as ``C`` does: the length per rank depends only on it,
    the world size and ``round_up``, never on the epoch.

    Determinism: the indices of an epoch depend only on ``seed``, the epoch,
    the graph and the per-class image lists and pointers at the start of the
    epoch. The whole epoch is computed when iteration starts, then the
    per-class state advances. Iterating again over the same epoch without a
    new graph yields the same indices (like ``DefaultSampler`` when
    ``set_epoch`` is not called). :meth:`state_dict` /
    :meth:`load_state_dict` save and restore that state, so a resumed run
    continues exactly.

    Changing labels (pseudo-labels, :class:`PseudoLabelHook`): the labels
    are read when the sampler is built; :meth:`set_labels` takes new ones
    (the length stays, so ``batches_per_epoch`` must be set). Samples
    labelled -1 (clustering outliers) are never sampled.

    Args:
        dataset (Dataset): Dataset with ``get_gt_labels()`` or
            ``get_data_info(i)['gt_label']`` giving labels ``0..C-1`` (-1:
            a sample left out).
        batch_size (int): Images per batch ``B``; a multiple of
            ``num_instances``. Defaults to 64.
        num_instances (int): Images per class in a batch ``K``.
            Defaults to 4.
        shuffle (bool): Shuffle the order of batch centres, the images of
            every class and the random PK classes. If False, centres come
            in label order (with ``batches_per_epoch``, each epoch going on
            where the previous one stopped), images in dataset order and,
            without a graph, batch ``c`` holds classes ``c, c+1, ...,
            c+P-1`` (mod C).
            Defaults to True.
        seed (int, optional): Random seed; the generator of epoch ``e`` is
            seeded with ``seed + e``. If None, a seed shared by all ranks is
            drawn with :func:`mmengine.dist.sync_random_seed`.
            Defaults to None.
        round_up (bool): Pad the batches to a multiple of the world size so
            every rank yields the same number. Defaults to True.
        rank (int, optional): Rank of this process; None reads it from
            :func:`mmengine.dist.get_dist_info` (the argument is for tests).
            Defaults to None.
        world_size (int, optional): Number of processes; None reads it from
            :func:`mmengine.dist.get_dist_info`. Defaults to None.
        batches_per_epoch (int, optional): Batches of an epoch over all
            ranks; None for ``C`` (the paper). Defaults to None.
    """

    def __init__(self,
                 dataset,
                 batch_size: int = 64,
                 num_instances: int = 4,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 round_up: bool = True,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None,
                 batches_per_epoch: Optional[int] = None) -> None:
        dist_rank, dist_world = get_dist_info()
        self.rank = dist_rank if rank is None else int(rank)
        self.world_size = dist_world if world_size is None else int(
            world_size)
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ReIDUserError(f'GraphSampler: invalid rank {self.rank} for '
                                f'world size {self.world_size}.')
        if int(num_instances) < 1:
            raise ReIDUserError(
                'GraphSampler: num_instances must be >= 1, got '
                f'{num_instances}.')
        if int(batch_size) < 1 or int(batch_size) % int(num_instances):
            raise ReIDUserError(
                f'GraphSampler: batch_size ({batch_size}) must be a positive '
                f'multiple of num_instances ({num_instances}); P = '
                'batch_size / num_instances classes per batch.')
        if batches_per_epoch is not None and (
                isinstance(batches_per_epoch, bool)
                or not isinstance(batches_per_epoch, (int, np.integer))
                or batches_per_epoch < 1):
            raise ReIDUserError(
                'GraphSampler: batches_per_epoch must be None (C batches '
                'per epoch) or a positive int, got '
                f'{batches_per_epoch!r}.')
        self.batches_per_epoch = None if batches_per_epoch is None else int(
            batches_per_epoch)
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.num_instances = int(num_instances)
        self.num_classes_per_batch = self.batch_size // self.num_instances
        self.shuffle = bool(shuffle)
        self.round_up = bool(round_up)
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.epoch = 0

        self._graph: Optional[np.ndarray] = None
        self._graph_version = 0
        self._apply_labels(_dataset_labels(dataset))

    def _apply_labels(self, labels: np.ndarray) -> None:
        """Check ``labels`` (int64 [N]; -1: not sampled) and rebuild the
        per-class state from them (image lists reshuffled on first use)."""
        if labels.ndim != 1 or labels.size == 0:
            raise ReIDUserError('GraphSampler: the dataset has no labelled '
                                f'samples (labels of shape {labels.shape}).')
        if labels.min() < -1:
            raise ReIDUserError(
                'GraphSampler: labels must be 0..C-1, or -1 for a sample '
                f'left out (an outlier); got {int(labels.min())}.')
        used = labels[labels >= 0]
        if used.size == 0:
            raise ReIDUserError('GraphSampler: every sample is labelled -1 '
                                '(left out): nothing to sample.')
        num_classes = int(used.max()) + 1
        present = np.bincount(used, minlength=num_classes)
        if (present == 0).any():
            missing = np.flatnonzero(present == 0)[:5].tolist()
            raise ReIDUserError(
                'GraphSampler needs class labels 0..C-1 with every label '
                'used (relabel the train split); got labels from '
                f'{used.min()} to {used.max()} with '
                f'{len(np.unique(used))} distinct values, missing e.g. '
                f'{missing}.')
        if num_classes < self.num_classes_per_batch:
            raise ReIDUserError(
                f'GraphSampler: the dataset has {num_classes} classes, fewer '
                f'than P = batch_size / num_instances = {self.batch_size} / '
                f'{self.num_instances} = {self.num_classes_per_batch} '
                'classes per batch.')
        self.labels = labels
        self.num_classes = num_classes
        order = np.argsort(labels, kind='stable')[labels.size - used.size:]
        bounds = np.cumsum(present)[:-1]
        self.class_indices: List[np.ndarray] = np.split(order, bounds)
        self._counts = present.astype(np.int64)

        # per-class image lists and pointers; pointer == count means "used up"
        # so the first epoch that needs a class shuffles its list.
        self._orders: List[np.ndarray] = [
            idx.copy() for idx in self.class_indices
        ]
        self._pointers = self._counts.copy()
        self._cache = None  # (epoch, graph_version, batches [C, B])

    def set_labels(self, labels: Optional[ArrayLike] = None) -> None:
        """Take new class labels (e.g. this epoch's pseudo-labels).

        The sampler reads the dataset's labels once, when it is built; a
        training set whose labels change (:class:`UnlabeledReIDDataset`,
        relabelled by :class:`PseudoLabelHook`) calls this after each
        change. The per-class image lists restart from the new classes and
        the graph is dropped (it was over the old classes): until the next
        :meth:`set_graph` the batches are random PK batches. Samples
        labelled -1 (outliers) are never sampled. The length does not
        change, so the epoch length must not depend on ``C``:
        ``batches_per_epoch`` must be set.

        Args:
            labels (array-like, optional): int [N] new label of every
                sample of the dataset (``0..C-1``, or -1 to leave the sample
                out). None re-reads them from the dataset
                (``get_gt_labels()``).

        Raises:
            ReIDUserError: If ``batches_per_epoch`` is None, the labels do
                not match the dataset size or are not ``0..C-1`` / -1 with
                ``C >= P``.
        """
        if self.batches_per_epoch is None:
            raise ReIDUserError(
                'GraphSampler.set_labels needs a fixed epoch length: set '
                'train_dataloader.sampler.batches_per_epoch (with None the '
                'epoch has C batches, and C changes with the labels).')
        if labels is None:
            new = _dataset_labels(self.dataset)
        else:
            new = np.asarray(labels.detach().cpu() if isinstance(
                labels, torch.Tensor) else labels)
            if new.size and not np.issubdtype(new.dtype, np.integer):
                raise ReIDUserError('GraphSampler.set_labels: labels must be '
                                    f'integers; got dtype {new.dtype}.')
            new = new.astype(np.int64).reshape(-1)
        if new.size != self.labels.size:
            raise ReIDUserError(
                f'GraphSampler.set_labels: got {new.size} labels for a '
                f'dataset of {self.labels.size} samples.')
        self._apply_labels(new)
        self._graph = None
        self._graph_version += 1

    # ------------------------------------------------------------------ info
    @property
    def num_neighbors(self) -> int:
        """int: Neighbours per class in the graph, ``P - 1``."""
        return self.num_classes_per_batch - 1

    @property
    def graph(self) -> Optional[np.ndarray]:
        """np.ndarray | None: Current graph [C, P-1] (a copy) or None."""
        return None if self._graph is None else self._graph.copy()

    @property
    def total_batches(self) -> int:
        """int: Batches of an epoch over all ranks (before the padding of
        ``round_up``): ``batches_per_epoch``, or ``C`` when it is None."""
        return self.num_classes if self.batches_per_epoch is None else \
            self.batches_per_epoch

    @property
    def num_batches(self) -> int:
        """int: Batches this rank yields per epoch (the epoch has
        :attr:`total_batches` batches over all ranks, plus padding with
        ``round_up``)."""
        if self.round_up:
            return math.ceil(self.total_batches / self.world_size)
        return len(range(self.rank, self.total_batches, self.world_size))

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch (fixed)."""
        return self.num_batches * self.batch_size

    # ------------------------------------------------------------- control
    def set_epoch(self, epoch: int) -> None:
        """Set the epoch; the epoch's generator is seeded with
        ``seed + epoch``.

        Args:
            epoch (int): Epoch number.
        """
        self.epoch = int(epoch)

    def set_graph(self, neighbors: Optional[ArrayLike]) -> None:
        """Set the class graph used from the next iteration on.

        Args:
            neighbors (array-like | None): Integer array [C, P-1]; row ``i``
                lists the ``P - 1`` nearest classes of label ``i`` (distinct,
                without ``i``). None removes the graph (random PK batches).
        """
        if neighbors is None:
            self._graph = None
            self._graph_version += 1
            return
        if isinstance(neighbors, torch.Tensor):
            neighbors = neighbors.detach().cpu().numpy()
        nbrs = np.asarray(neighbors)
        expected = (self.num_classes, self.num_neighbors)
        if nbrs.ndim == 1 and nbrs.size == 0 and expected[1] == 0:
            nbrs = nbrs.reshape(expected)
        if nbrs.shape != expected:
            raise ValueError(
                f'GraphSampler.set_graph: neighbors must have shape [C, P-1] '
                f'= {list(expected)} (C classes, P = batch_size / '
                f'num_instances = {self.num_classes_per_batch}); got shape '
                f'{list(nbrs.shape)}.')
        if nbrs.size and not np.issubdtype(nbrs.dtype, np.integer):
            raise ValueError('GraphSampler.set_graph: neighbors must be an '
                             f'integer array; got dtype {nbrs.dtype}.')
        nbrs = nbrs.astype(np.int64)
        if nbrs.size:
            bad = (nbrs < 0) | (nbrs >= self.num_classes)
            if bad.any():
                row = int(np.flatnonzero(bad.any(1))[0])
                raise ValueError(
                    'GraphSampler.set_graph: neighbour labels must be in '
                    f'[0, {self.num_classes - 1}]; row {row} is '
                    f'{nbrs[row].tolist()}.')
            selfloop = nbrs == np.arange(self.num_classes)[:, None]
            if selfloop.any():
                row = int(np.flatnonzero(selfloop.any(1))[0])
                raise ValueError(
                    'GraphSampler.set_graph: row i must not contain class i; '
                    f'row {row} is {nbrs[row].tolist()}.')
            srt = np.sort(nbrs, axis=1)
            dup = (srt[:, 1:] == srt[:, :-1]).any(1)
            if dup.any():
                row = int(np.flatnonzero(dup)[0])
                raise ValueError(
                    'GraphSampler.set_graph: the neighbours of a class must '
                    f'be distinct; row {row} is {nbrs[row].tolist()}.')
        self._graph = nbrs
        self._graph_version += 1

    # ----------------------------------------------------------- sampling
    def _new_pass(self, c: int, order: np.ndarray,
                  generator: torch.Generator) -> np.ndarray:
        """The order of class ``c``'s images for its next pass.

        A new shuffle of the images (``shuffle=True``), else the same
        order. Samplers that arrange a class's images otherwise (e.g. over
        its cameras) override this.

        Args:
            c (int): The class.
            order (np.ndarray): int64 [n] the class's images, previous pass.
            generator (torch.Generator): The epoch's generator.

        Returns:
            np.ndarray: int64 [n] the same images in the new pass's order.
        """
        if self.shuffle and len(order) > 1:
            return order[torch.randperm(len(order),
                                        generator=generator).numpy()]
        return order

    def _take(self, c: int, generator: torch.Generator) -> np.ndarray:
        """Take the next ``K`` images of class ``c`` and advance its pointer.

        The images of a class form a stream of passes; each pass is a new
        shuffle of all its images, and a pass that starts in the middle of a
        batch puts the images not yet in that batch first. So the use
        counts of a class's images never differ by more than one, and a
        batch holds ``min(n, K)`` distinct images of a class with ``n``
        images.
        """
        k = self.num_instances
        order, ptr = self._orders[c], int(self._pointers[c])
        n = len(order)
        parts, need = [], k
        while need > 0:
            if ptr >= n:  # start a new pass
                order = self._new_pass(c, order, generator)
                if parts:
                    in_batch = np.isin(order, np.concatenate(parts))
                    order = np.concatenate([order[~in_batch],
                                            order[in_batch]])
                ptr = 0
            take = min(need, n - ptr)
            parts.append(order[ptr:ptr + take])
            ptr += take
            need -= take
        self._orders[c] = order
        self._pointers[c] = ptr
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _centres(self, generator: torch.Generator) -> torch.Tensor:
        """The batch centres of the current epoch.

        Shuffled: ``ceil(N / C)`` permutations of the classes from the
        epoch's generator, concatenated and cut at ``N`` (one permutation,
        the paper's epoch, when ``N = C``). Not shuffled: the classes in
        label order, from where the previous epoch stopped.

        Returns:
            Tensor: LongTensor [N] (N = :attr:`total_batches`).
        """
        num_classes, n = self.num_classes, self.total_batches
        if not self.shuffle:
            return (self.epoch * n + torch.arange(n)) % num_classes
        passes = [torch.randperm(num_classes, generator=generator)
                  for _ in range(math.ceil(n / num_classes))]
        return (passes[0] if len(passes) == 1 else torch.cat(passes))[:n]

    def _compute_epoch(self) -> np.ndarray:
        """All batches of the current epoch; advances the state.

        Returns:
            np.ndarray: int64 [N, B] dataset indices, one row per batch
            (N = :attr:`total_batches`).
        """
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        num_classes, p = self.num_classes, self.num_classes_per_batch
        centres = self._centres(g)
        if self._graph is not None:
            nbrs = torch.from_numpy(self._graph)[centres]
        elif not self.shuffle:
            nbrs = (centres[:, None] + torch.arange(1, p)) % num_classes
        else:
            nbrs = _random_neighbours(centres, num_classes, p - 1, g)
        classes = torch.cat([centres[:, None], nbrs], dim=1).numpy()
        batches = np.empty((len(classes), self.batch_size), dtype=np.int64)
        k = self.num_instances
        for b, row in enumerate(classes):
            for j, c in enumerate(row):
                batches[b, j * k:(j + 1) * k] = self._take(int(c), g)
        return batches

    def __iter__(self) -> Iterator[int]:
        key = (self.epoch, self._graph_version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._compute_epoch())
        batches = self._cache[1]
        num_rows, world = len(batches), self.world_size
        if world > 1:
            if self.round_up:
                total = math.ceil(num_rows / world) * world
                rows = np.arange(self.rank, total, world) % num_rows
            else:
                rows = np.arange(self.rank, num_rows, world)
            batches = batches[rows]
        return iter(batches.reshape(-1).tolist())

    # -------------------------------------------------------------- state
    def state_dict(self) -> Dict:
        """State to resume sampling exactly (tensors and ints only).

        Returns:
            dict: ``seed``, ``epoch``, ``num_classes``, ``graph`` (LongTensor
            [C, P-1] or None), ``counts`` and ``pointers`` (LongTensor [C]:
            images of each class, position in its list) and ``orders``
            (LongTensor [N]: the per-class image lists concatenated in label
            order).
        """
        return dict(
            seed=self.seed,
            epoch=self.epoch,
            num_classes=self.num_classes,
            graph=None if self._graph is None else torch.from_numpy(
                self._graph.copy()),
            counts=torch.from_numpy(self._counts.copy()),
            pointers=torch.from_numpy(self._pointers.copy()),
            orders=torch.from_numpy(np.concatenate(self._orders)))

    def load_state_dict(self, state_dict: Dict) -> None:
        """Restore a state saved by :meth:`state_dict`.

        Args:
            state_dict (dict): The saved state; it must come from a sampler
                over the same dataset (same classes and images per class).
        """
        if int(state_dict['num_classes']) != self.num_classes:
            raise ReIDUserError(
                'GraphSampler.load_state_dict: the saved state has '
                f"{state_dict['num_classes']} classes, the dataset has "
                f'{self.num_classes}.')
        orders = np.asarray(state_dict['orders'], dtype=np.int64)
        pointers = np.asarray(state_dict['pointers'], dtype=np.int64)
        num_labelled = int((self.labels >= 0).sum())
        if orders.shape != (num_labelled, ) or pointers.shape != (
                self.num_classes, ):
            raise ReIDUserError(
                'GraphSampler.load_state_dict: the saved image lists do not '
                f'match the dataset ({orders.shape[0]} saved indices for '
                f'{num_labelled} labelled samples).')
        counts = state_dict.get('counts')
        if counts is not None and not np.array_equal(
                np.asarray(counts), self._counts):
            c = int(np.flatnonzero(np.asarray(counts) != self._counts)[0])
            raise ReIDUserError(
                'GraphSampler.load_state_dict: the saved state has '
                f'{int(counts[c])} images of class {c}, the dataset has '
                f'{self._counts[c]}; was the state saved with another '
                'dataset?')
        split = np.split(orders, np.cumsum(self._counts)[:-1])
        for c, part in enumerate(split):
            if not np.array_equal(np.sort(part), self.class_indices[c]):
                raise ReIDUserError(
                    'GraphSampler.load_state_dict: the saved images of class '
                    f'{c} differ from the dataset\'s; was the state saved '
                    'with another dataset?')
        graph = state_dict.get('graph')
        self.seed = int(state_dict.get('seed', self.seed))
        self.set_epoch(int(state_dict.get('epoch', self.epoch)))
        self.set_graph(None if graph is None else np.asarray(graph))
        self._orders = [part.copy() for part in split]
        self._pointers = pointers.copy()
        self._cache = None
