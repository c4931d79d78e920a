"""Synthetic hand X-rays: anatomy (geometry), plan (random parameters), render (pixels), generate.

>>> from xaug.synth import synthesize   # doctest: +SKIP
"""
from xaug.synth.generate import synthesize, synth_spec

__all__ = ["synthesize", "synth_spec"]
