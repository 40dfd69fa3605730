"""Object storage: the one way this product talks to S3 (SPEC section 9)."""
