"""Asset checks (SPEC 6): each a function of a dataset frame, run before the data is published."""
