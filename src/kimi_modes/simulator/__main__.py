"""``python -m kimi_modes.simulator [OPTIONS]``: the same as ``kimi-modes simulate``."""

import typer

from kimi_modes.simulator.cli import simulate

typer.run(simulate)
