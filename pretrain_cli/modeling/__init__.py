"""Model presets and builders, the pretraining loss (masked positions only), PEFT wiring."""
