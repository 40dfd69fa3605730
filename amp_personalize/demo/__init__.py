"""Demo data: a seeded, realistic Amplitude event stream for demos, benchmarks and model evaluation."""
