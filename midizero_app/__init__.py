"""MIDI-Zero desktop: identify which piece of your score library you are playing."""
__version__ = "0.1.0"

from .core import sources as _sources  # noqa: E402 - after the version, which has no deps

# Recordings reach the library through core's source interface; the audio package is
# imported only when a library first scans (so `import midizero_app.core` loads no audio).
_sources.register("midizero_app.audio.cache:SOURCE")
