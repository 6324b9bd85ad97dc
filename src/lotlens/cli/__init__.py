"""The command line, one module per group of commands: `classify`; `train`, `train sweep`, `split`,
`evaluate` (training); `db upgrade`, `serve`, `config show` (server); `fix`, `models ...` (registry);
`dataset ...`, `reclassify`, `monitor` (datasets); `jobs ...`, `worker` (jobs). `common` holds the app,
its one table of domain errors (message and exit status) and the helpers every command shares.
"""

from __future__ import annotations

from lotlens.cli import classify, datasets, registry, server, training  # noqa: F401 -- they register their commands
from lotlens.cli import jobs as _jobs
from lotlens.cli.common import _die, app, err, out, progress_bar

_jobs.register(app)

__all__ = ["app", "err", "main", "out", "progress_bar", "_die"]


def main() -> None:
    """Entry point of the `lotlens` script."""
    app()


if __name__ == "__main__":
    main()
