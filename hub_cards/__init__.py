"""Model cards and export for the Hub."""
