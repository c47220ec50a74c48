"""Thin LightningModules, one per job: wiring, logging and checkpoints around plain modules."""
