"""Recommendation backends: one interface, a local recommender and AWS Personalize."""
