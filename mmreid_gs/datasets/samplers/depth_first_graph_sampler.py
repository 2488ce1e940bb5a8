"""Depth-first graph sampling (DFGS) as an MMEngine data sampler."""
import logging
from typing import List, Optional

import numpy as np
import torch
from mmengine.logging import print_log

from mmreid_gs.registry import DATA_SAMPLERS
from mmreid_gs.utils.errors import ReIDUserError
from .graph_sampler import ArrayLike, GraphSampler


def _dataset_cameras(dataset, num_samples: int) -> Optional[np.ndarray]:
    """Read the camera of every sample of ``dataset``.

    Uses ``dataset.get_cam_ids()`` when the dataset has it, otherwise
    ``dataset.get_data_info(i)['cam_id']`` for every index.

    Args:
        dataset: The training dataset.
        num_samples (int): Its number of samples.

    Returns:
        np.ndarray | None: int64 cameras of shape [N], or None when the
        dataset does not give them.
    """
    if hasattr(dataset, 'get_cam_ids'):
        cams = dataset.get_cam_ids()
    elif hasattr(dataset, 'get_data_info'):
        infos = [dataset.get_data_info(i) for i in range(num_samples)]
        if not all('cam_id' in info for info in infos):
            return None
        cams = [info['cam_id'] for info in infos]
    else:
        return None
    if isinstance(cams, torch.Tensor):
        cams = cams.cpu().numpy()
    cams = np.asarray(cams)
    if cams.shape != (num_samples, ) or (
            cams.size and not np.issubdtype(cams.dtype, np.integer)):
        raise ReIDUserError(
            'DepthFirstGraphSampler needs one integer camera id per sample; '
            f'the dataset gave cameras of shape {list(cams.shape)} and dtype '
            f'{cams.dtype} for {num_samples} samples.')
    return cams.astype(np.int64)


def camera_round_robin(images: np.ndarray,
                       cams: np.ndarray,
                       num_instances: int,
                       generator: Optional[torch.Generator] = None
                       ) -> np.ndarray:
    """Order one class's images round-robin over its cameras.

    The arrangement of the public DFGS sampler: the images of every camera
    in a list (shuffled with ``generator``); then, round after round, the
    cameras with images left are ordered by the number they have left (most
    first; ties in camera order, itself shuffled with ``generator``) and
    the first ``min(K, cameras left)`` of them give one image each. Cut into
    chunks of ``K`` consecutive images, the order gives every chunk images
    of as many cameras as it can.

    Args:
        images (np.ndarray): int64 [n] dataset indices of the class.
        cams (np.ndarray): int64 [n] camera of each image.
        num_instances (int): Images per chunk ``K``.
        generator (torch.Generator, optional): Shuffles the images of each
            camera and the order of the cameras; None keeps the images in
            the given order and the cameras in increasing id.

    Returns:
        np.ndarray: int64 [n] the same images, round-robin over cameras.
    """
    ids, inverse = np.unique(cams, return_inverse=True)
    camera_order = np.arange(len(ids))
    if generator is not None and len(ids) > 1:
        camera_order = torch.randperm(len(ids), generator=generator).numpy()
    groups = []
    for cam in camera_order:
        group = images[inverse == cam]
        if generator is not None and len(group) > 1:
            group = group[torch.randperm(len(group),
                                         generator=generator).numpy()]
        groups.append(group)
    left = np.array([len(g) for g in groups], dtype=np.int64)
    used = np.zeros_like(left)
    out: List[int] = []
    while left.any():
        # most images left first; a stable sort keeps ties in camera order
        for cam in np.argsort(-left, kind='stable')[:num_instances]:
            if left[cam] == 0:
                break
            out.append(groups[cam][used[cam]])
            used[cam] += 1
            left[cam] -= 1
    return np.asarray(out, dtype=np.int64)


@DATA_SAMPLERS.register_module()
class DepthFirstGraphSampler(GraphSampler):
    """Depth-first graph sampling (DFGS): mini-batches grown by a
    depth-first walk of the class k-nearest-neighbour graph.

    After the public DFGS sampler (repository DG-ReiD/DFGS, "Enhancing
    Robustness of ViT in Cross-domain Person Retrieval: A Domain Guided
    Framework via Depth First Graph Sampling"). With ``P = batch_size //
    num_instances``:

    - every class's images are taken in chunks of ``K``: the images are
      arranged round-robin over the class's cameras
      (:func:`camera_round_robin`, cameras from ``get_cam_ids()`` or
      ``get_data_info(i)['cam_id']``), a new arrangement every time the
      class's images are used up (the image stream of
      :class:`GraphSampler`, so a class with fewer than ``K`` images
      repeats some);
    - a batch starts at a class, takes a chunk of it and pushes the class's
      ``num_neighbors`` graph neighbours on a stack, farthest first, so the
      nearest is popped first; the next class is the top of the stack (a
      class that is in the batch already or has no chunk left in the round
      is skipped), which pushes its own neighbours, and so on until the
      batch has ``P`` classes (each at most once);
    - the walk goes on across batches: a batch starts at the top of the
      stack its previous batch left (the next class of the walk), or at a
      random class at the start of the epoch or when that stack holds no
      usable class;
    - when the walk runs out inside a batch (no class on the stack is
      usable) it restarts at a random usable class outside the batch
      (counted in :attr:`restarts`).

    A round gives every class ``max(1, n_c // K)`` chunks (``n_c`` its
    images): a class leaves the walk when its chunks of the round are used,
    and a new round starts (every class usable again, the neighbours of the
    batch's classes pushed again) when the usable classes outside the batch
    are too few to complete it.

    Without a graph (before :class:`GraphSamplerHook` sets one, e.g. during
    the PK warm-up epochs) every class of a batch is a random start: random
    PK batches of ``P`` distinct classes, with the same length.

    Where this departs from the public code:

    - fixed epoch length: ``batches_per_epoch`` batches, or with None one
      round (``sum_c max(1, n_c // K) // P`` batches, about one pass over
      the data, as the public epoch), the same in every epoch and with or
      without a graph; the public epoch ends when its walk is stuck (so its
      length changes from epoch to epoch) and drops the last, incomplete
      batch;
    - when the walk runs out the public epoch ends; here the walk restarts
      at a random class (inside a batch) and a new round starts when the
      round's classes cannot complete a batch;
    - a class already in the batch is skipped (the public code puts it back
      at the bottom of the stack, for a later batch);
    - the neighbours are the graph's first ``num_neighbors`` columns, the
      nearest classes (the public code skips the 4 nearest classes and
      takes the next 10, from Euclidean feature distances); the graph comes
      from :class:`GraphSamplerHook` (``build_class_graph``: the model's
      ``match``) and the sampler never touches the model;
    - the images a class has left over (``n_c`` not a multiple of ``K``)
      start its next chunk instead of being dropped, and a class with one
      image is kept (it repeats its image, as classes with fewer than ``K``
      images do);
    - randomness from the epoch's ``torch.Generator`` (``seed + epoch``),
      every rank computes the same epoch and takes whole batches ``rank,
      rank + W, ...`` (as :class:`GraphSampler`), state saved in
      checkpoints.

    A dataset without cameras (no ``get_cam_ids`` and no ``cam_id`` in its
    data infos) is treated as one camera, with a warning.

    Args:
        dataset (Dataset): Dataset with ``get_gt_labels()`` or
            ``get_data_info(i)['gt_label']`` giving labels ``0..C-1``, and
            ``get_cam_ids()`` or ``get_data_info(i)['cam_id']``.
        batch_size (int): Images per batch ``B``; a multiple of
            ``num_instances``. Defaults to 64.
        num_instances (int): Images per class in a batch ``K``.
            Defaults to 4.
        num_neighbors (int): Graph neighbours of a class that the walk
            follows, ``k`` (independent of the batch size; at most
            ``C - 1``). :class:`GraphSamplerHook` builds graphs with this
            many columns. Defaults to 15.
        shuffle (bool): Random starts, camera and image order. If False,
            a start is the lowest usable label and images come in dataset
            order within each camera. Defaults to True.
        seed (int, optional): Random seed; the generator of epoch ``e`` is
            seeded with ``seed + e``. If None, a seed shared by all ranks is
            drawn with :func:`mmengine.dist.sync_random_seed`.
            Defaults to None.
        batches_per_epoch (int, optional): Batches of an epoch over all
            ranks; None for one round (see above). Defaults to None.
        round_up (bool): Pad the batches to a multiple of the world size so
            every rank yields the same number. Defaults to True.
        rank (int, optional): Rank of this process; None reads it from
            :func:`mmengine.dist.get_dist_info`. Defaults to None.
        world_size (int, optional): Number of processes; None reads it from
            :func:`mmengine.dist.get_dist_info`. Defaults to None.
    """

    def __init__(self,
                 dataset,
                 batch_size: int = 64,
                 num_instances: int = 4,
                 num_neighbors: int = 15,
                 shuffle: bool = True,
                 seed: Optional[int] = None,
                 batches_per_epoch: Optional[int] = None,
                 round_up: bool = True,
                 rank: Optional[int] = None,
                 world_size: Optional[int] = None) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            num_instances=num_instances,
            shuffle=shuffle,
            seed=seed,
            round_up=round_up,
            rank=rank,
            world_size=world_size,
            batches_per_epoch=batches_per_epoch)
        if isinstance(num_neighbors, bool) or not isinstance(
                num_neighbors, (int, np.integer)) or not \
                1 <= num_neighbors <= self.num_classes - 1:
            raise ReIDUserError(
                'DepthFirstGraphSampler: num_neighbors must be an int in '
                f'[1, C - 1] = [1, {self.num_classes - 1}] (C = '
                f'{self.num_classes} classes); got {num_neighbors!r}.')
        self._num_neighbors = int(num_neighbors)
        cams = _dataset_cameras(dataset, len(self.labels))
        if cams is None:
            print_log(
                'DepthFirstGraphSampler: the dataset gives no cameras '
                '(get_cam_ids() or cam_id in its data infos); all images '
                'are taken as one camera.',
                logger='current',
                level=logging.WARNING)
            cams = np.zeros(len(self.labels), dtype=np.int64)
        self.cam_ids = cams
        #: int64 [N]: random starts after the first class in each batch of
        #: the epoch computed last (0: the batch is one walk).
        self.restarts = np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ info
    @property
    def num_neighbors(self) -> int:
        """int: Graph neighbours per class the walk follows (and the hook
        builds): ``num_neighbors``, at most ``C - 1``."""
        return min(self._num_neighbors, self.num_classes - 1)

    def chunks_per_round(self) -> np.ndarray:
        """Chunks of ``K`` images each class gives in a round.

        Returns:
            np.ndarray: int64 [C], ``max(1, n_c // K)``.
        """
        return np.maximum(1, self._counts // self.num_instances)

    @property
    def total_batches(self) -> int:
        """int: Batches of an epoch over all ranks (before the padding of
        ``round_up``): ``batches_per_epoch``, or with None one round,
        ``max(1, sum_c max(1, n_c // K) // P)``."""
        if self.batches_per_epoch is not None:
            return self.batches_per_epoch
        return max(1,
                   int(self.chunks_per_round().sum()) //
                   self.num_classes_per_batch)

    # ------------------------------------------------------------- control
    def set_graph(self, neighbors: Optional[ArrayLike]) -> None:
        """Set the class graph used from the next iteration on.

        Args:
            neighbors (array-like | None): Integer array [C, k'] with
                ``k' >= num_neighbors``; row ``i`` lists the nearest classes
                of label ``i``, best first (distinct, without ``i``); the
                first ``num_neighbors`` columns are used. None removes the
                graph (random PK batches).
        """
        if neighbors is None:
            super().set_graph(None)
            return
        if isinstance(neighbors, torch.Tensor):
            neighbors = neighbors.detach().cpu().numpy()
        nbrs = np.asarray(neighbors)
        k = self.num_neighbors
        if nbrs.ndim != 2 or nbrs.shape[0] != self.num_classes or \
                nbrs.shape[1] < k:
            raise ValueError(
                'DepthFirstGraphSampler.set_graph: neighbors must have shape '
                f'[C, >= num_neighbors] = [{self.num_classes}, >= {k}]; got '
                f'shape {list(nbrs.shape)}.')
        super().set_graph(nbrs[:, :k])

    # ----------------------------------------------------------- sampling
    def _new_pass(self, c: int, order: np.ndarray,
                  generator: torch.Generator) -> np.ndarray:
        """Class ``c``'s images round-robin over its cameras (see
        :func:`camera_round_robin`), for its next pass."""
        images = np.sort(order)
        return camera_round_robin(images, self.cam_ids[images],
                                  self.num_instances,
                                  generator if self.shuffle else None)

    def _push(self, stack: List[int], classes: List[int], uses: np.ndarray,
              quota: np.ndarray, in_batch: np.ndarray) -> List[int]:
        """Push the usable graph neighbours of ``classes`` (in that order)
        on ``stack``, each class's farthest first, so that the nearest
        neighbour of the last class is on top.

        Args:
            stack (list[int]): The walk's stack (extended in place).
            classes (list[int]): Classes whose neighbours are pushed.
            uses (np.ndarray): int64 [C] chunks of each class used in the
                round.
            quota (np.ndarray): int64 [C] chunks of each class a round.
            in_batch (np.ndarray): bool [C] the classes of the batch.

        Returns:
            list[int]: ``stack``.
        """
        if self._graph is None:
            return stack
        for c in classes:
            nbrs = self._graph[c]
            keep = (uses[nbrs] < quota[nbrs]) & ~in_batch[nbrs]
            stack.extend(nbrs[keep][::-1].tolist())
        return stack

    def _compute_epoch(self) -> np.ndarray:
        """All batches of the current epoch (the walk); advances the state.

        Returns:
            np.ndarray: int64 [N, B] dataset indices, one row per batch
            (N = :attr:`total_batches`), ``K`` images per class.
        """
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        num_classes, p, k = (self.num_classes, self.num_classes_per_batch,
                             self.num_instances)
        quota = self.chunks_per_round()
        num_batches = self.total_batches
        batches = np.empty((num_batches, self.batch_size), dtype=np.int64)
        restarts = np.zeros(num_batches, dtype=np.int64)
        uses = np.zeros(num_classes, dtype=np.int64)
        in_batch = np.zeros(num_classes, dtype=bool)
        num_open = num_classes  # classes with chunks left in the round
        carry: List[int] = []  # the stack the previous batch left
        for b in range(num_batches):
            members: List[int] = []
            open_in_batch = 0
            stack = carry
            while len(members) < p:
                if num_open - open_in_batch < p - len(members):
                    # a new round: every class has its chunks again, the
                    # neighbours of the batch's classes are usable again
                    uses[:] = 0
                    num_open = num_classes
                    open_in_batch = len(members)
                    if members:
                        stack = self._push([], members, uses, quota,
                                           in_batch)
                c = -1
                while stack:
                    top = stack.pop()
                    if uses[top] < quota[top] and not in_batch[top]:
                        c = top
                        break
                if c < 0:  # the walk ran out: a random usable class
                    usable = np.flatnonzero((uses < quota) & ~in_batch)
                    if self.shuffle:
                        c = int(usable[torch.randint(
                            len(usable), (1, ), generator=g)])
                    else:
                        c = int(usable[0])
                    restarts[b] += len(members) > 0
                if not members:
                    stack = []  # the batch's own walk from its first class
                batches[b, len(members) * k:(len(members) + 1) * k] = \
                    self._take(c, g)
                members.append(c)
                in_batch[c] = True
                uses[c] += 1
                if uses[c] == quota[c]:
                    num_open -= 1
                else:
                    open_in_batch += 1
                stack = self._push(stack, [c], uses, quota, in_batch)
            in_batch[members] = False
            carry = stack
        self.restarts = restarts
        return batches
