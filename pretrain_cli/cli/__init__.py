"""The `ptk` command line: one module per stage, each registering a command built from its config."""
