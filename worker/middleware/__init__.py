"""Dramatiq middleware: one file each; hooks do nothing unless overridden."""
