"""Architectures. Each module registers one adapter; importing this package registers them all."""
