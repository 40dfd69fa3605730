"""The Dagster code location (`dagster dev -w workspace.yaml`, `dg dev`).

The receiver stands alone; the pipeline's assets, sensor and checks are registered here.
"""

import dagster as dg

defs = dg.Definitions()
