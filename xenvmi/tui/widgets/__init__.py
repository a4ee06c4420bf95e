"""Reusable widgets of the TUI; each renders model dataclasses it is handed."""
