"""MIDI-Zero desktop: identify which piece of your score library you are playing."""
__version__ = "0.1.0"
