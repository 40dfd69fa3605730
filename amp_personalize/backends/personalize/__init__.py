"""The AWS Personalize backend: real-time PutEvents, bulk import, training, cached results."""
