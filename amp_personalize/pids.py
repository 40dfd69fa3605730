"""Whether a process is still there: for work a killed process left behind (temp files, runs)."""

import os


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: there all the same
        return True
    return True
