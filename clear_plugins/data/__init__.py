"""Training data for CLEAR: the row schema shared by SFT, GRPO and the App. C build pipeline."""
