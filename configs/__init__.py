"""The presets: ``<adapter>.yaml`` (CPU) and ``<adapter>-<preset>.yaml``, installed as package data."""
