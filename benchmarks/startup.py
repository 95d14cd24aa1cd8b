"""Start-up time of the commands that must answer at once, against importing torch (issue 9's target: no
slower than `python -c "import torch"`). Each command is a fresh process; interleaved rounds, median.

    vbench bench startup [--rounds 7]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from _timing import argument_parser  # noqa: E402
from rich.console import Console
from rich.table import Table

COMMANDS = {
    'python -c "import torch"': [sys.executable, "-c", "import torch"],
    "vbench --help": [sys.executable, "-m", "vbench", "--help"],
    "vbench list backbones": [sys.executable, "-m", "vbench", "list", "backbones"],
    "vbench list suites": [sys.executable, "-m", "vbench", "list", "suites"],
}


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    for command in COMMANDS.values():  # warm the file cache and Python's bytecode cache first
        seconds(command)
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            samples[name].append(seconds(command))
    torch_median = statistics.median(samples['python -c "import torch"'])
    table = Table(title="Start-up, fresh process each time", caption=f"median of {args.rounds} interleaved rounds")
    for column in ("command", "median s", "min", "max", "vs import torch"):
        table.add_column(column, justify="left" if column == "command" else "right")
    for name, values in samples.items():
        median = statistics.median(values)
        table.add_row(name, f"{median:.3f}", f"{min(values):.3f}", f"{max(values):.3f}", f"{median / torch_median:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
