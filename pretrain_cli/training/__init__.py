"""The training engine: example loading, optimiser and schedule, checkpoints, monitoring, the loop."""
