"""A BERT encoder written as a sentence-transformers model directory, giving the vectors ptk computes.

    write_sentence_transformers(Path("work/ckpt/final"), Path("work/st"), pooling="cls", max_seq_length=128)
    SentenceTransformer("work/st").encode(texts)  # == encode_texts(..., pooling="cls", max_length=128)

The layout is the classic one that sentence-transformers 3.0 and later all read:

    config.json, model.safetensors    a plain `BertModel` (encoder and pooler; no pretraining heads and
                                      never the training-only SimCSE projection)
    tokenizer files                   as the tokenizer saves itself
    modules.json                      a Transformer at the top, a Pooling module in 1_Pooling/
    sentence_bert_config.json         max_seq_length, do_lower_case false (the tokenizer does its own)
    1_Pooling/config.json             cls or mean pooling over the real tokens
    config_sentence_transformers.json versions and the similarity function (cosine)
    sentence_embedding.json           ptk's own record, so ptk reads the pooling back
    README.md                         a short model card

There is no Normalize module: the vectors are ptk's, unnormalised.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pretrain_cli import __version__
from pretrain_cli.console import quiet_transformers
from pretrain_cli.modeling.sentence import SENTENCE_CONFIG, ST_CONFIG, ST_POOLING, ST_POOLING_DIR
from pretrain_cli.store import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from transformers import BertConfig

# The oldest sentence-transformers release that reads every key written here (similarity_fn_name
# came in 3.0); a newer stamp would make older releases warn for nothing.
ST_FORMAT_VERSION = "3.0.0"


def write_sentence_transformers(model_dir: Path, out: Path, *, pooling: str, max_seq_length: int) -> None:
    """Write `model_dir`'s encoder (a `ptk pretrain` checkpoint, an HF BERT or a sentence-transformers
    directory with its transformer at the top) into `out` as described in the module doc."""
    import torch
    import transformers
    from transformers import AutoTokenizer, BertModel

    with quiet_transformers():
        model, loading = BertModel.from_pretrained(model_dir, dtype=torch.float32, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        if any(key.startswith("pooler.") for key in loading["missing_keys"]):
            model.pooler = None  # the source has none: a freshly drawn one would make each export differ
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    hidden = model.config.hidden_size
    atomic_write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": ST_POOLING_DIR, "type": "sentence_transformers.models.Pooling"},
    ])
    atomic_write_json(out / ST_CONFIG, {"max_seq_length": max_seq_length, "do_lower_case": False})
    atomic_write_json(out / ST_POOLING, {
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
        "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    })
    atomic_write_json(out / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": ST_FORMAT_VERSION, "transformers": transformers.__version__,
                        "pytorch": torch.__version__},
        "model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None,
        "similarity_fn_name": "cosine",
    })
    atomic_write_json(out / SENTENCE_CONFIG, {"pooling": pooling, "max_seq_length": max_seq_length})
    card = model_card(out.name, model.config, pooling, max_seq_length)
    atomic_write_bytes(out / "README.md", card.encode())


def model_card(name: str, config: BertConfig, pooling: str, max_seq_length: int) -> str:
    """README.md: what the model is, how it pools, and how to load it."""
    how = ("the vector of its [CLS] token" if pooling == "cls"
           else "the mean of its tokens' vectors, padding left out")
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags:
- sentence-transformers
- feature-extraction
- sentence-similarity
---

# {name}

A BERT encoder ({config.num_hidden_layers} layers, hidden size {config.hidden_size}, vocabulary \
{config.vocab_size:,}) exported by ptk {__version__} as a sentence-transformers model. A sentence's \
embedding is taken from the encoder's last layer: {how} (`{pooling}` pooling). Inputs longer than \
{max_seq_length} tokens are cut.

The embeddings are not normalised (there is no Normalize module): they are the same numbers ptk \
computes for this model. The model's similarity function is cosine, which normalises; pass \
`normalize_embeddings=True` to `encode` for unit vectors.

## Usage

```python
from sentence_transformers import SentenceTransformer

model = SentenceTransformer("{name}")  # the path of this directory
embeddings = model.encode(["A first sentence.", "And a second one."])
print(model.similarity(embeddings, embeddings))
```

The directory is also a plain Hugging Face `BertModel` (`BertModel.from_pretrained`,
`AutoTokenizer.from_pretrained`); ptk reads the pooling back from `sentence_embedding.json`.
"""
