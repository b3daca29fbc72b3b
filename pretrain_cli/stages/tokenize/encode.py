"""Encoding: corpus shards in, token shards out, through the Rust tokenizer in batches.

    encoder = ShardEncoder("work/tokens/tokenizer/tokenizer.json", id_dtype="uint16", batch_size=1000,
                           unk_id=1, control_ids=(0, 2, 3, 4), threads=1)
    parts = [encoder(chunk) for chunk in shard_chunks("work/docs/train-00000.arrow", corpus_table)]
    shard = pa.concat_tables(table for table, _ in parts).combine_chunks()

Work is cut into chunks of whole documents, about `CHUNK_SENTENCES` sentences each, by a rule that
depends on the shard alone, so any number of processes can share one big shard and the joined
result is the same. A token shard has one row per corpus document: `id`; `sentences:
list<list<uintN>>`, each sentence's ids without special tokens; `word_starts: list<list<bool>>`,
the same shape, True where a token begins a word (its `Encoding.word_ids` value differs from the
previous token's, and at the first token of every sentence); `n_tokens: int32`.

For the two pre-tokenizers ptk trains with, whether a token begins a word shows in the token
itself (WordPiece: no `##`; Metaspace Unigram: a leading `▁`), so those tokenizers run
`encode_batch_fast`, which skips offsets and word indices and encodes a quarter faster, and read word
starts from a table over the vocabulary. Any other tokenizer takes `encode_batch` and `word_ids`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pretrain_cli.errors import UserError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from tokenizers import Encoding, Tokenizer

CHUNK_SENTENCES = 16_384
SENTENCE_MARK = "\ue000"  # a private-use character: see `_encode_marked`
# Narrowest first: ids are stored in the first type that holds every id of the vocabulary.
ID_DTYPES = (("uint8", 1 << 8), ("uint16", 1 << 16), ("uint32", 1 << 32))


def narrowest_id_dtype(vocab_size: int) -> str:
    """The smallest unsigned integer type that holds ids 0 .. vocab_size - 1."""
    return next(name for name, limit in ID_DTYPES if vocab_size <= limit)


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Rows [start, stop) of the corpus shard at `path`: one process's unit of work."""

    path: str
    start: int
    stop: int


def shard_chunks(path: str, table: pa.Table) -> list[Chunk]:
    """`table` (the shard at `path`) cut between documents every `CHUNK_SENTENCES` sentences or so;
    an empty shard is one empty chunk, so that its (empty) token shard is written too."""
    import numpy as np

    from pretrain_cli.store import list_parts

    _, offsets = list_parts(sentence_column(table, path))
    cuts = np.searchsorted(offsets, np.arange(CHUNK_SENTENCES, offsets[-1], CHUNK_SENTENCES))
    bounds = np.unique(np.concatenate([[0], cuts, [table.num_rows]]))
    if bounds.size == 1:
        return [Chunk(path, 0, 0)]
    return [Chunk(path, int(start), int(stop)) for start, stop in zip(bounds[:-1], bounds[1:], strict=True)]


@dataclasses.dataclass(frozen=True)
class ShardEncoder:
    """Encodes chunks of corpus shards, so a worker process can run it.

    tokenizer_file: the saved `tokenizer.json`.
    id_dtype: "uint8", "uint16" or "uint32" (see `narrowest_id_dtype`).
    batch_size: sentences per `encode_batch` call.
    unk_id: the [UNK] id; `control_ids` found in text are stored as it.
    control_ids: special and reserved ids other than [UNK]: only later stages place them.
    threads: Rust threads per process (tokenizers' pool), so that processes × threads ≈ cores.
    """

    tokenizer_file: str
    id_dtype: str
    batch_size: int
    unk_id: int
    control_ids: tuple[int, ...]
    threads: int

    def __call__(self, chunk: Chunk) -> tuple[pa.Table, int]:
        from pretrain_cli.store import read_shard

        with _rust_threads(self.threads):
            version = os.stat(self.tokenizer_file)
            tokenizer, starts, marked = _load_tokenizer(self.tokenizer_file, version.st_mtime_ns,
                                                        version.st_size)
            docs = read_shard(Path(chunk.path)).slice(chunk.start, chunk.stop - chunk.start)
            return encode_table(tokenizer, docs, self.id_dtype, self.batch_size, where=chunk.path,
                                unk_id=self.unk_id, control_ids=self.control_ids, start_table=starts,
                                marked=marked)


@functools.lru_cache(maxsize=1)
def _load_tokenizer(path: str, mtime_ns: int,
                    size: int) -> tuple[Tokenizer, np.ndarray | None, Tokenizer | None]:
    """The tokenizer saved at `path`, its `word_start_table` and `marked_copy`, loaded once per
    process and file version (a worker encodes dozens of chunks; a big vocabulary takes tens of
    milliseconds)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(path)
    # "[MASK]" written in the text is text, not the mask token.
    tokenizer.encode_special_tokens = True
    tokenizer.no_truncation()
    tokenizer.no_padding()
    starts = word_start_table(tokenizer)
    return tokenizer, starts, marked_copy(tokenizer) if starts is not None else None


def word_start_table(tokenizer: Tokenizer) -> np.ndarray | None:
    """Per id, whether the token begins a word, when the token alone tells (else None).

    WordPiece after BERT's pre-tokenizer: a word's first piece never carries the `##` prefix (a
    `#` in text is a word of its own), every later one does; a whole-word [UNK] is a first piece.
    Unigram after Metaspace (a `▁` before every word, words split at it): a word's first piece
    starts with `▁`, which is always in the vocabulary, and no later piece does. Added tokens that
    text can match would be words of their own, so a tokenizer with any takes the general path.
    """
    import json

    import numpy as np

    record = json.loads(tokenizer.to_str())
    model, words = record["model"], record.get("pre_tokenizer") or {}
    if any(not token["special"] for token in record["added_tokens"]):
        return None
    if model["type"] == "WordPiece" and words.get("type") == "BertPreTokenizer":
        prefix = model["continuing_subword_prefix"]
        begins = [not token.startswith(prefix) for token in model["vocab"]]
        ids = list(model["vocab"].values())
    elif (model["type"] == "Unigram" and words.get("type") == "Metaspace"
          and words.get("prepend_scheme") == "always" and words.get("split", True)):
        begins = [piece.startswith(words["replacement"]) for piece, _ in model["vocab"]]
        ids = list(range(len(begins)))
    else:
        return None
    table = np.zeros(max(tokenizer.get_vocab_size(with_added_tokens=True), max(ids) + 1), bool)
    table[ids] = begins
    return table


@contextlib.contextmanager
def _rust_threads(threads: int) -> Iterator[None]:
    """tokenizers parallelises `encode_batch` unless TOKENIZERS_PARALLELISM is off, and reads the
    variable at every call; RAYON_NUM_THREADS sizes its pool when a process first uses it."""
    saved = {name: os.environ.get(name) for name in ("TOKENIZERS_PARALLELISM", "RAYON_NUM_THREADS")}
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def encode_table(tokenizer: Tokenizer, docs: pa.Table, id_dtype: str, batch_size: int, *,
                 where: str = "corpus shard", unk_id: int | None = None, control_ids: Collection[int] = (),
                 start_table: np.ndarray | None = None,
                 marked: Tokenizer | None = None) -> tuple[pa.Table, int]:
    """The token shard of the corpus table `docs` (columns `id`, `sentences`), and its token count.

    tokenizer: encodes whole sentences: no padding, no truncation (a reused tokenizer may carry
        its model's; `_load_tokenizer` switches them off).
    start_table: `word_start_table(tokenizer)`, when not None: word starts from it, not from word_ids.
    marked: `marked_copy(tokenizer)`, when not None with a start table: one encode per document.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from pretrain_cli.store import list_parts

    sentences = sentence_column(docs, where)
    texts, doc_offsets = list_parts(sentences)
    if texts.null_count:
        raise UserError(f"{where}: {texts.null_count} null sentence(s); rebuild it with `ptk corpus build`")
    if (start_table is not None and marked is not None
            and not pc.any(pc.match_substring(texts, SENTENCE_MARK)).as_py()):
        values, lengths = _encode_marked(marked, sentences, batch_size)
    else:
        # Offsets and word indices cost a quarter of the encoding time; skip them when the table tells.
        encode = tokenizer.encode_batch if start_table is None else tokenizer.encode_batch_fast
        texts = texts.to_pylist()
        lengths, ids, words = [], [], []
        for start in range(0, len(texts), batch_size):
            encodings = encode(texts[start:start + batch_size], add_special_tokens=False)
            lengths.extend(len(e) for e in encodings)
            ids.append(np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int64))
            if start_table is None:
                words.append(_word_ids(encodings))
        values = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    sentence_offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=sentence_offsets[1:])
    if start_table is None:
        starts = word_starts(np.concatenate(words) if words else values, sentence_offsets)
    else:
        starts = start_table[values]
        starts[_sentence_firsts(sentence_offsets)] = True
    if control_ids and values.size:
        assert unk_id is not None, "control ids need an [UNK] to become"
        # A model may spell a special token out of ordinary text (a Unigram piece "[MASK]" when
        # a character of it is missing from the vocabulary); only later stages may place one.
        values[np.isin(values, np.fromiter(control_ids, np.int64))] = unk_id
    assert values.size == 0 or values.max() < dict(ID_DTYPES)[id_dtype], "id beyond the id dtype"

    documents = pa.array(doc_offsets, pa.int32())
    in_sentences = pa.array(sentence_offsets, pa.int32())
    table = pa.table({
        "id": docs.column("id").combine_chunks().cast(pa.string()),
        "sentences": pa.ListArray.from_arrays(documents, pa.ListArray.from_arrays(
            in_sentences, pa.array(values.astype(id_dtype)))),
        "word_starts": pa.ListArray.from_arrays(documents, pa.ListArray.from_arrays(
            in_sentences, pa.array(starts))),
        "n_tokens": pa.array(np.diff(sentence_offsets[doc_offsets]), pa.int32()),
    })
    return table, int(values.size)


def marked_copy(tokenizer: Tokenizer) -> Tokenizer | None:
    """A copy of `tokenizer` that also splits text at SENTENCE_MARK, for `_encode_marked`; None
    when the vocabulary already holds the mark (then text could spell it)."""
    from tokenizers import AddedToken, Tokenizer

    if tokenizer.token_to_id(SENTENCE_MARK) is not None:
        return None
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.encode_special_tokens = tokenizer.encode_special_tokens
    copy.add_tokens([AddedToken(SENTENCE_MARK, normalized=False)])
    return copy


def _encode_marked(marked: Tokenizer, sentences: pa.ListArray,
                   batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and per-sentence lengths, encoding whole documents with a mark after each sentence.

    An added token splits the text before normalisation and pre-tokenisation, so each sentence is
    still encoded on its own (the fast path's tokenizers keep no state across pieces), while one
    call per document instead of per sentence saves a tenth of the encoding time. The mark is a
    private-use character, and a chunk whose text contains it is encoded sentence by sentence.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from pretrain_cli.store import list_parts

    mark = marked.token_to_id(SENTENCE_MARK)
    texts, offsets = list_parts(sentences)
    joined = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pc.binary_join_element_wise(
        texts, pa.scalar(""), pa.scalar(SENTENCE_MARK)))
    documents = pc.binary_join(joined, "").to_pylist()
    per_call = max(1, batch_size * len(documents) // max(1, len(joined.flatten())))
    ids = [np.fromiter(itertools.chain.from_iterable(e.ids for e in marked.encode_batch_fast(
        documents[start:start + per_call], add_special_tokens=False)), np.int64)
           for start in range(0, len(documents), per_call)]
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    marks = np.flatnonzero(flat == mark)
    assert marks.size == len(joined.flatten()), "one mark per sentence"
    return flat[flat != mark], np.diff(marks, prepend=-1) - 1


def _word_ids(encodings: Sequence[Encoding]) -> np.ndarray:
    """Every token's word index, -1 for a token outside any word (an added token in the text)."""
    import numpy as np

    flat = itertools.chain.from_iterable(e.word_ids for e in encodings)
    try:
        return np.fromiter(flat, np.int64)
    except TypeError:  # a None among them: the rare slow path
        flat = itertools.chain.from_iterable(e.word_ids for e in encodings)
        return np.fromiter((-1 if w is None else w for w in flat), np.int64)


def word_starts(word_ids: np.ndarray, sentence_offsets: np.ndarray) -> np.ndarray:
    """True where a token begins a word: its word id differs from the previous token's, or it opens
    its sentence (word ids restart in every sentence), or it belongs to no word."""
    import numpy as np

    starts = np.ones(word_ids.size, bool)
    starts[1:] = word_ids[1:] != word_ids[:-1]
    starts[_sentence_firsts(sentence_offsets)] = True
    starts[word_ids < 0] = True
    return starts


def _sentence_firsts(sentence_offsets: np.ndarray) -> np.ndarray:
    """Positions of the first token of every non-empty sentence."""
    import numpy as np

    return sentence_offsets[:-1][np.diff(sentence_offsets) > 0]


def sentence_column(table: pa.Table, where: Path | str) -> pa.ListArray:
    """The `sentences` column of a corpus shard, checked to be list<string> beside an `id` column."""
    import pyarrow as pa

    if "sentences" not in table.column_names or "id" not in table.column_names:
        raise UserError(f"{where}: no `id`/`sentences` column (found {', '.join(table.column_names)}); "
                        f"it is not a `ptk corpus build` shard, rebuild it with that command")
    column = table.column("sentences").combine_chunks()
    if not (pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type)):
        raise UserError(f"{where}: column `sentences` is {column.type}, expected list<string>; rebuild it "
                        f"with `ptk corpus build`")
    return column
