"""Wan2.2 model package: presets (torch-free), loading, sharded inference, video encoding.

Importing `wan` or `wan.presets` never imports torch; the heavy modules do.
"""
