"""The embedded recommender: EASE or item-item cosine, with time-decayed popularity."""
