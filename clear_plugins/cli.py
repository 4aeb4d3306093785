"""The ``clear`` command line (placeholder, replaced below)."""


def main() -> int:
    """Entry point."""
    return 0
