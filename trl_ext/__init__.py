"""TRL extensions: ClearSFTTrainer and InterleavedGRPOTrainer."""
