"""ptk: from a raw text dump to a pretrained, fine-tuned and evaluated BERT, one resumable stage at a time."""

__version__ = "0.1.0"
