import dagster as dg

from amp_personalize.definitions import defs


def test_definitions_load():
    assert isinstance(defs, dg.Definitions)
    defs.resolve_all_job_defs()
