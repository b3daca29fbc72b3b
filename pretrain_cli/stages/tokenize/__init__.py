"""The tokenize stage: train (WordPiece or Unigram) or reuse a tokenizer, and encode a corpus into token shards."""
