"""Dagster assets: landing -> raw_events -> interactions / impressions -> user_item_scores."""
