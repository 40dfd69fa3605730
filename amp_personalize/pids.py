"""Whether a process is still there: for work a killed process left behind (temp files, runs)."""

import os
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: there all the same
        return True
    return True


def started_at(pid: int) -> float | None:
    """When the process started (epoch seconds), from /proc; None where that cannot be read.

    A pid is reused once its process is gone: a process started after the work it is supposed
    to be doing is not the one doing it.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")
