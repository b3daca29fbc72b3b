"""The tokenize stage: train (WordPiece or Unigram) or reuse a tokenizer; encode a corpus into shards."""
