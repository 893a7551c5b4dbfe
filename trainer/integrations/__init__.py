"""edgescope callbacks for training frameworks: ``trainer.integrations.lightning`` (Lightning >= 2) and
``trainer.integrations.transformers`` (Hugging Face ``Trainer``). Each module imports its framework only
when imported itself, so ``import trainer`` never needs either."""
