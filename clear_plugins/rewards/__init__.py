"""Rewards of Interleaved GRPO (Sec. 3.4, App. I): accuracy (through judges), format and decision."""
