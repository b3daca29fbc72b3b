"""Pair examples as flat numpy columns, and the fixed order in which training reads them.

    examples = PairExamples.from_manifest(read_manifest(examples_dir, "mask"), "train", vocab_size=8192)
    order = SampleOrder(len(examples), seed=0)
    batches = MicroBatches(examples, order, start=0, micro_batch_size=32, accum=4, steps=100, pad_id=0)
    batches[0]   # a Batch of torch tensors, padded to its longest example

Shards stay memory-mapped: each record batch's list columns are kept as their flat value buffer
plus offsets (zero-copy views), so building a batch slices arrays and never loops over tokens.

Dynamic masking: when `ptk mask --dynamic` stored the train examples unmasked, `collate` masks
each example with the rule recorded in the manifest and a generator seeded by (seed, epoch, example
index): a fresh choice every epoch (RoBERTa), yet the same for any batch size, world size or resume.

Order: epoch e reads the examples in `numpy.random.default_rng((seed, e)).permutation(n)`, and
training consumes that endless stream front to back. The whole data state is therefore one
position, shown as (epoch, index in the epoch's permutation): a resumed run starts there and never
replays the loader. One optimizer step (accum micro-batches on every rank) consumes exactly
micro × accum × world_size positions, whatever the world size; `MicroBatches` says how a step's
positions are dealt to micro-batches and ranks.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import torch

from pretrain_cli.errors import UserError
from pretrain_cli.stages.mask.masking import MaskRule, mask_sequences
from pretrain_cli.store import Manifest, iter_shards, list_parts

if TYPE_CHECKING:
    from pretrain_cli.training.pairs import ContrastPairs

COLUMNS = ("input_ids", "segment_b_start", "masked_positions", "masked_labels", "next_sentence_label")
DYNAMIC_STREAM = 0x6D61736B  # "mask": keeps the masking generators apart from the order's


@dataclasses.dataclass
class Batch:
    """One padded micro-batch; masked positions are flat (row, column) pairs, so no label padding."""

    input_ids: torch.Tensor  # (B, L) int64
    token_type_ids: torch.Tensor  # (B, L) int64: 0 for [CLS] A [SEP], 1 for B [SEP]
    attention_mask: torch.Tensor  # (B, L) int64: 1 for real tokens, 0 for padding
    mlm_rows: torch.Tensor  # (M,) int64
    mlm_cols: torch.Tensor  # (M,) int64
    mlm_labels: torch.Tensor  # (M,) int64: the original token at each masked position
    nsp_labels: torch.Tensor  # (B,) int64: NSP 1 = B is random, SOP 1 = swapped; (0,) without a pair task
    tokens: int  # real (unpadded) tokens the encoder reads in this batch, every pass counted
    contrast_ids: torch.Tensor  # (R, L') int64 unmasked sentences, view-major; (0, 0) without SimCSE
    contrast_mask: torch.Tensor  # (R, L') int64 attention mask of contrast_ids
    anchors: int = 0  # contrastive anchors (sentences whose positive is to be found) in this batch
    positions: int = -1  # padded positions the encoder reads, every pass counted (-1: input_ids' size)

    def __post_init__(self) -> None:
        if self.positions < 0:
            self.positions = self.input_ids.numel()

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def masked(self) -> int:
        return self.mlm_labels.shape[0]

    def _map(self, fn: object) -> Batch:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Batch(**{name: fn(v) if torch.is_tensor(v) else v for name, v in values.items()})  # type: ignore[operator]

    def to(self, device: torch.device) -> Batch:
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:  # called by DataLoader(pin_memory=True)
        return self._map(lambda t: t.pin_memory())


@dataclasses.dataclass
class _Piece:
    """One record batch of one shard, as numpy views into the memory map."""

    ids: np.ndarray
    ids_offsets: np.ndarray
    segment_b: np.ndarray
    positions: np.ndarray
    labels: np.ndarray
    mask_offsets: np.ndarray
    nsp: np.ndarray
    word_starts: pa.Array | None  # dynamic examples only: bool per token of `ids`, sliced on use


def _numpy(parts: tuple[pa.Array, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`list_parts` with the values as a zero-copy numpy view into the memory map."""
    values, offsets = parts
    return values.to_numpy(), offsets


def _check(piece: _Piece, vocab_size: int, where: Path) -> None:
    """Vectorised sanity checks, so a malformed shard fails here with its name, not deep inside torch."""
    lengths = np.diff(piece.ids_offsets)
    length_at_mask = np.repeat(lengths, np.diff(piece.mask_offsets))
    problem = None
    if max(piece.ids.max(initial=0), piece.labels.max(initial=0)) >= vocab_size:
        problem = f"token ids outside the {vocab_size}-token vocabulary of the manifest"
    elif ((piece.segment_b < 1) | (piece.segment_b > lengths)).any():
        problem = "segment_b_start outside its example"
    elif ((piece.positions < 0) | (piece.positions >= length_at_mask)).any():
        problem = "masked_positions outside their example"
    if problem:
        raise UserError(f"{where}: {problem}; rebuild the examples with `ptk mask --force`")


@dataclasses.dataclass(frozen=True)
class DynamicMasking:
    """How unmasked (`ptk mask --dynamic`) examples are masked at load time."""

    rule: MaskRule  # from the examples' manifest
    seed: int       # the training seed: other seeds, other masks

    def apply(self, ids: np.ndarray, word_starts: np.ndarray, epoch: int,
              index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(masked ids, positions, labels) of one example in one epoch."""
        rng = np.random.default_rng([self.seed, DYNAMIC_STREAM, epoch, index])
        masked = mask_sequences(ids, np.array([0, ids.size]), self.rule, rng, word_starts=word_starts)
        return masked.input_ids, masked.positions, masked.labels


class PairExamples:
    """Every example of one split, addressable by a global row index."""

    def __init__(self, pieces: list[_Piece], *, pair_task: bool = True,
                 dynamic: DynamicMasking | None = None) -> None:
        self.pieces = pieces
        self.pair_task = pair_task  # False for MLM-only examples (objective none): no NSP/SOP labels
        self.dynamic = dynamic
        self.starts = np.cumsum([0] + [len(p.nsp) for p in pieces])

    @classmethod
    def from_manifest(cls, manifest: Manifest, split: str, vocab_size: int, seed: int = 0) -> PairExamples:
        """Load `split`; dynamic examples (train split of `ptk mask --dynamic`) are masked with `seed`."""
        dynamic = None
        if split == "train" and manifest.extra.get("dynamic"):
            dynamic = DynamicMasking(MaskRule.from_dict(manifest.extra["masking"]), seed)
        pieces = []
        for info, table in iter_shards(manifest, split):
            where = Path(manifest.directory or ".") / info.file
            missing = [c for c in COLUMNS if c not in table.column_names]
            if missing:
                raise UserError(f"{where}: no column(s) {', '.join(missing)}, so it is not `ptk mask` "
                                f"output of this ptk; rebuild it with `ptk mask --force`")
            for batch in table.to_batches():
                ids, ids_offsets = _numpy(list_parts(batch.column("input_ids")))
                positions, mask_offsets = _numpy(list_parts(batch.column("masked_positions")))
                labels, label_offsets = _numpy(list_parts(batch.column("masked_labels")))
                if not np.array_equal(mask_offsets, label_offsets):
                    raise UserError(f"{where}: masked_positions and masked_labels differ in length in "
                                    f"some rows; rebuild it with `ptk mask --force`")
                word_starts = None
                if dynamic is not None:
                    if "word_starts" not in batch.schema.names:
                        raise UserError(f"{where}: dynamic examples without a word_starts column; rebuild "
                                        f"them with `ptk mask --force`")
                    word_starts = list_parts(batch.column("word_starts"))[0]  # rows as input_ids
                pieces.append(_Piece(ids=ids, ids_offsets=ids_offsets,
                                     segment_b=batch.column("segment_b_start").to_numpy(),
                                     positions=positions, labels=labels, mask_offsets=mask_offsets,
                                     nsp=batch.column("next_sentence_label").to_numpy(),
                                     word_starts=word_starts))
                _check(pieces[-1], vocab_size, where)
        if not pieces:
            raise UserError(f"{manifest.directory}: no {split!r} examples; rebuild it with `ptk mask` "
                            f"on more text")
        return cls(pieces, pair_task=manifest.extra.get("objective", "mlm+nsp") != "mlm", dynamic=dynamic)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def lengths(self) -> np.ndarray:
        """Tokens of every example, in global row order."""
        return np.concatenate([np.diff(p.ids_offsets) for p in self.pieces])

    def lengths_of(self, indices: np.ndarray) -> np.ndarray:
        """Tokens of the examples at `indices` (without materialising every length)."""
        piece_of = np.searchsorted(self.starts, indices, side="right") - 1
        local = indices - self.starts[piece_of]
        out = np.empty(len(indices), dtype=np.int64)
        for p in np.unique(piece_of):  # vectorised per record batch: a step may hold thousands
            rows = piece_of == p
            offsets = self.pieces[p].ids_offsets
            out[rows] = offsets[local[rows] + 1] - offsets[local[rows]]
        return out

    def total_tokens(self) -> int:
        return sum(int(p.ids_offsets[-1] - p.ids_offsets[0]) for p in self.pieces)

    def masked_fraction(self) -> float:
        """Share of tokens the MLM head predicts (dynamic examples: the rule's rate, near enough)."""
        if self.dynamic is not None:
            return self.dynamic.rule.masked_lm_prob
        masked = sum(int(p.mask_offsets[-1] - p.mask_offsets[0]) for p in self.pieces)
        return masked / max(1, self.total_tokens())

    def collate(self, indices: np.ndarray, pad_id: int, epochs: np.ndarray | None = None,
                pad_multiple: int = 1, segments: bool = False) -> Batch:
        """The examples at `indices`, padded to the longest of them (a loop over rows, not tokens).

        epochs: the epoch each index is read in (dynamic masking draws its masks from it; 0 if None).
        pad_multiple: round the padded length up to this (8 on GPUs keeps matmuls tensor-core shaped).
        segments: also give each example's first segment, `[CLS] A [SEP]` with the masked tokens put
            back, as contrast rows (unsupervised SimCSE's sentences).
        """
        piece_of = np.searchsorted(self.starts, indices, side="right") - 1
        local = indices - self.starts[piece_of]
        spans = [(self.pieces[p], int(i)) for p, i in zip(piece_of, local, strict=True)]
        lengths = [int(p.ids_offsets[i + 1] - p.ids_offsets[i]) for p, i in spans]
        width = -(-max(lengths) // pad_multiple) * pad_multiple
        input_ids = np.full((len(spans), width), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(spans), width), dtype=np.int64)
        attention_mask = np.zeros((len(spans), width), dtype=np.int64)
        rows, cols, labels, nsp = [], [], [], np.empty(len(spans), dtype=np.int64)
        firsts = []
        epochs = np.zeros(len(spans), np.int64) if epochs is None else epochs
        for row, ((piece, i), length) in enumerate(zip(spans, lengths, strict=True)):
            lo, hi = piece.ids_offsets[i], piece.ids_offsets[i + 1]
            if self.dynamic is not None:
                assert piece.word_starts is not None
                starts = piece.word_starts.slice(lo, hi - lo).to_numpy(zero_copy_only=False)
                ids, positions, targets = self.dynamic.apply(piece.ids[lo:hi], starts, int(epochs[row]),
                                                             int(indices[row]))
            else:
                a, b = piece.mask_offsets[i], piece.mask_offsets[i + 1]
                ids, positions, targets = piece.ids[lo:hi], piece.positions[a:b], piece.labels[a:b]
            input_ids[row, :length] = ids
            attention_mask[row, :length] = 1
            token_type_ids[row, piece.segment_b[i]:length] = 1
            cols.append(positions)
            labels.append(targets)
            rows.append(np.full(len(positions), row, dtype=np.int64))
            nsp[row] = piece.nsp[i]
            if segments:
                original = np.array(ids, dtype=np.int64)
                original[positions] = targets
                firsts.append(original[:piece.segment_b[i]])
        contrast_ids, contrast_mask = padded(firsts, pad_id, pad_multiple)
        return Batch(input_ids=torch.from_numpy(input_ids), token_type_ids=torch.from_numpy(token_type_ids),
                     attention_mask=torch.from_numpy(attention_mask),
                     mlm_rows=torch.from_numpy(np.concatenate(rows)),
                     mlm_cols=torch.from_numpy(np.concatenate(cols).astype(np.int64)),
                     mlm_labels=torch.from_numpy(np.concatenate(labels).astype(np.int64)),
                     nsp_labels=torch.from_numpy(nsp if self.pair_task else nsp[:0]), tokens=sum(lengths),
                     contrast_ids=torch.from_numpy(contrast_ids),
                     contrast_mask=torch.from_numpy(contrast_mask), anchors=len(firsts))


def padded(sequences: list[np.ndarray], pad_id: int, pad_multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(ids, attention mask) of `sequences` padded to the longest; (0, 0) arrays for none."""
    width = -(-max((len(s) for s in sequences), default=0) // pad_multiple) * pad_multiple
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        ids[row, :len(sequence)] = sequence
        mask[row, :len(sequence)] = 1
    return ids, mask


class SampleOrder:
    """The endless stream of example indices: a fresh permutation per epoch, fixed by the seed."""

    def __init__(self, num_examples: int, seed: int) -> None:
        self.num_examples = num_examples
        self.seed = seed
        self._permutations: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:  # a batch spans at most two epochs at a time
                self._permutations.pop(min(self._permutations))
            rng = np.random.default_rng((self.seed, epoch))
            self._permutations[epoch] = rng.permutation(self.num_examples)
        return self._permutations[epoch]

    def cursor(self, position: int) -> tuple[int, int]:
        """(epoch, index in that epoch's permutation) of a stream position."""
        return divmod(position, self.num_examples)

    def epochs(self, position: int, count: int) -> np.ndarray:
        """The epoch of each stream position in [position, position + count)."""
        return (position + np.arange(count)) // self.num_examples

    def take(self, position: int, count: int) -> np.ndarray:
        """The example indices at stream positions [position, position + count)."""
        out = []
        while count > 0:
            epoch, index = self.cursor(position)
            chunk = self.permutation(epoch)[index:index + count]
            out.append(chunk)
            position += len(chunk)
            count -= len(chunk)
        return np.concatenate(out)


@dataclasses.dataclass(frozen=True)
class ContrastSource:
    """Where a step's contrastive sentences come from (a SimCSE objective)."""

    mlm: bool  # the masked examples train too (mlm+simcse), so their tokens count as read
    pairs: ContrastPairs | None = None  # supervised pairs; None: each example's first segment, twice
    pair_order: SampleOrder | None = None  # the pairs' own endless order, read at the examples' positions


class MicroBatches(torch.utils.data.Dataset):
    """The micro-batches one rank trains on, from stream position `start` on, `accum` per step.

    Every optimizer step takes the next micro × accum × world positions of the stream. With more
    than one micro-batch per step, they are bucketed: the step's examples are sorted by length and
    dealt out in slices, so each micro-batch pads to a length close to its own rows' and padding
    stays small. Slice c = j·world + rank is micro-batch j of `rank`; one process with accum·world
    micro-batches reads exactly the slices that `world` processes read together, so the process
    count changes neither which examples a step trains on nor how they are grouped. Within a slice
    rows stay in stream order. Supervised contrastive pairs are dealt the same way, in slices of
    their own order at the same positions.
    """

    def __init__(self, examples: PairExamples, order: SampleOrder, *, start: int, micro_batch_size: int,
                 accum: int, steps: int, pad_id: int, world_size: int = 1, rank: int = 0,
                 pad_multiple: int = 1, contrast: ContrastSource | None = None) -> None:
        self.examples, self.order = examples, order
        self.start, self.micro, self.accum, self.steps = start, micro_batch_size, accum, steps
        self.world_size, self.rank, self.pad_id, self.pad_multiple = world_size, rank, pad_id, pad_multiple
        self.contrast = contrast
        self._cached: tuple[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def __len__(self) -> int:
        return self.steps * self.accum

    @property
    def per_step(self) -> int:
        return self.micro * self.accum * self.world_size

    def _step(self, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(example indices, their epochs, positions sorted by length) of one step; the accum
        micro-batches of a step come one after another, so the last step is kept for the next."""
        if self._cached is None or self._cached[0] != step:
            position = self.start + step * self.per_step
            indices = self.order.take(position, self.per_step)
            by_length = np.argsort(self.examples.lengths_of(indices), kind="stable")
            self._cached = (step, (indices, self.order.epochs(position, self.per_step), by_length))
        return self._cached[1]

    def __getitem__(self, k: int) -> Batch:
        step, j = divmod(k, self.accum)
        indices, epochs, by_length = self._step(step)
        slice_index = j * self.world_size + self.rank
        chosen = np.sort(by_length[slice_index * self.micro:(slice_index + 1) * self.micro])
        contrast = self.contrast
        segments = contrast is not None and contrast.pairs is None
        batch = self.examples.collate(indices[chosen], self.pad_id, epochs[chosen],
                                      pad_multiple=self.pad_multiple, segments=segments)
        if contrast is None:
            return batch
        read, padded_read = (batch.tokens, batch.input_ids.numel()) if contrast.mlm else (0, 0)
        if contrast.pairs is None:  # each first segment is encoded twice
            return dataclasses.replace(batch, tokens=read + 2 * int(batch.contrast_mask.sum()),
                                       positions=padded_read + 2 * batch.contrast_mask.numel())
        assert contrast.pair_order is not None
        position = self.start + step * self.per_step + slice_index * self.micro
        ids, mask = contrast.pairs.collate(contrast.pair_order.take(position, self.micro), self.pad_id,
                                           self.pad_multiple)
        return dataclasses.replace(batch, contrast_ids=torch.from_numpy(ids),
                                   contrast_mask=torch.from_numpy(mask), anchors=self.micro,
                                   tokens=read + int(mask.sum()), positions=padded_read + mask.size)


def loader(batches: MicroBatches, *, workers: int, pin_memory: bool) -> torch.utils.data.DataLoader:
    """Batches in order, built by `workers` processes (0: in this one); workers change speed only."""
    return torch.utils.data.DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin_memory,
        # DataLoader draws a seed for its workers from this generator; left at None it would draw
        # from the global torch RNG and shift dropout masks after a resume.
        generator=torch.Generator().manual_seed(0),
        prefetch_factor=4 if workers else None, persistent_workers=False)
