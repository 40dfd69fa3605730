"""Serving cached recommendations: the lake's caches held in memory, reloaded when they change."""
