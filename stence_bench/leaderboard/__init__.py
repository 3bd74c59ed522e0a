"""The HTML leaderboard: result files -> a static site (``stence-bench leaderboard RESULTS_DIR... -o SITE``).

Two steps: :func:`build` turns the result files into a data model (a pure function: tables, ranks, aggregates,
missing cells kept as missing), :func:`render_site` writes it out with Jinja2 (autoescape on; templates in the
package, overridable by a user folder). See docs/leaderboards.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .build import Site, SuiteResults, archive, build, csv_text, json_results, load_suites
from .render import environment, render_site

__all__ = ["Site", "SuiteResults", "archive", "build", "build_site", "csv_text", "environment", "json_results", "load_suites",
           "render_site"]


def build_site(folders: Sequence[Path], out: Path, *, registry: Any = None, templates: Path | None = None) -> Path:
    """Read ``folders`` (run folders or their ``results/``), build, render into ``out``; the index page's path."""
    suites = load_suites(folders)
    site = build(suites, registry)
    return render_site(site, suites, out, templates)
