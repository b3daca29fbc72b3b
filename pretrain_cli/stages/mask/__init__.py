"""The mask stage: sentence pairs or packed sequences (NSP, SOP, none) and MLM masking from token shards."""
