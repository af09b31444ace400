"""What the benchmark scripts share: describing the machine they ran on."""

import platform
from pathlib import Path


def cpu_name():
    """The CPU model from /proc/cpuinfo, else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
