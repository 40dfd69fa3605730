"""Sensors: landing windows become runs; finished windows refresh the aggregate."""
