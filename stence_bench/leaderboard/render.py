"""Render: the data model -> a static site (Jinja2, autoescaped), written atomically.

Templates are looked up first in the user's folder (``--templates DIR``), then in the package's ``templates/``,
then as ``stence/NAME`` in the package's (a :class:`jinja2.ChoiceLoader` in that order): a user overrides one page
or the shared ``base.html`` by a file of the same name, which may ``{% extends "stence/base.html" %}``.
A ``static/`` folder inside the user's folder adds
files to, or replaces files of, the site's ``static/`` (CSS, JS). Nothing on a page loads from outside the site.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ..errors import StenceBenchError
from .build import CONTROL, Site, SuiteResults, archive, csv_text, fraction_label, json_results
from .svg import curves, heatmap, objective_colours

PACKAGE_DIR = Path(__file__).resolve().parent
#: A file every site built here holds, so that ``-o`` never overwrites a folder that is not one.
MARKER = ".stence-bench-site"
PAGES = ("index.html", "suite.html", "task.html", "provenance.html")


def _num(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.3f}"


def _signed(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:+.3f}"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {s} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _breakable(text: str) -> Markup:
    """Escaped text with line-break opportunities after ``_`` and before ``[`` (long names on a phone)."""
    return Markup(str(escape(text)).replace("_", "_<wbr>").replace("[", "<wbr>["))


def environment(templates: Path | None = None) -> jinja2.Environment:
    """The Jinja2 environment: autoescape on, undefined names an error, the user's folder before the package's."""
    loaders: list[jinja2.BaseLoader] = []
    if templates is not None:
        if not Path(templates).is_dir():
            raise StenceBenchError(f"{templates}: no such templates folder")
        loaders.append(jinja2.FileSystemLoader(str(templates)))
    package = jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates"))
    # a user's template of the same name replaces the package's; "stence/NAME" is always the package's own
    loaders += [package, jinja2.PrefixLoader({"stence": package})]
    env = jinja2.Environment(loader=jinja2.ChoiceLoader(loaders), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(
        num=_num, signed=_signed, duration=_duration, breakable=_breakable,
        frac=lambda f: fraction_label(f),
        tojson_pretty=lambda v: json.dumps(v, indent=1, sort_keys=True, ensure_ascii=False),
        tojson_compact=lambda v: json.dumps(v, sort_keys=True, ensure_ascii=False),
    )
    from .._version import __version__

    env.globals.update(version=__version__, control=CONTROL, curves=curves, heatmap=heatmap)
    return env


def _render(env: jinja2.Environment, name: str, **context: Any) -> str:
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateSyntaxError as exc:
        raise StenceBenchError(f"template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise StenceBenchError(f"template {name}: cannot find {exc.name!r}") from None
    except jinja2.UndefinedError as exc:
        raise StenceBenchError(f"template {name}: {exc.message}") from None


def render_site(site: Site, suites: Sequence[SuiteResults], out: Path, templates: Path | None = None) -> Path:
    """Write the site into ``out`` (replacing an earlier site there) and return the index page's path.

    ``out`` must be absent, empty, or a site built earlier; the pages are written into a temporary folder beside
    it first, so a failed build leaves the earlier site as it was."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StenceBenchError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise StenceBenchError(f"{out}: not empty and not a stence-bench site; give a new or empty folder")
    env = environment(templates)
    by_name = {s.name: s for s in suites}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _copy_static(tmp / "static", templates)
        (tmp / MARKER).write_text("Built by stence-bench leaderboard; -o may replace this folder.\n")
        (tmp / "index.html").write_text(_render(env, "index.html", site=site, root=""), encoding="utf-8")
        for suite in site.suites:
            folder = tmp / suite.slug
            folder.mkdir()
            encoders = [e.label for e in suite.encoders]
            objectives = [o.name for o in suite.objectives]
            ctx = dict(site=site, suite=suite, root="../", encoders=encoders, objectives=objectives,
                       colours=objective_colours(objectives))
            (folder / "index.html").write_text(_render(env, "suite.html", **ctx), encoding="utf-8")
            for task in suite.tasks:
                (folder / f"{task.slug}.html").write_text(_render(env, "task.html", task=task, **ctx), encoding="utf-8")
                (folder / f"{task.slug}.provenance.html").write_text(
                    _render(env, "provenance.html", task=task, **ctx), encoding="utf-8")
            source = by_name[suite.name]
            (folder / "results.csv").write_text(csv_text(source), encoding="utf-8")
            (folder / "results.json").write_bytes(json_results(source))
            (folder / "results.zip").write_bytes(archive(source))
        for path in tmp.rglob("*"):
            if path.is_file():
                os.chmod(path, 0o644)
            elif path.is_dir():
                os.chmod(path, 0o755)
        os.chmod(tmp, 0o755)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "index.html"


def _copy_static(dest: Path, templates: Path | None) -> None:
    shutil.copytree(PACKAGE_DIR / "static", dest)
    user = Path(templates) / "static" if templates is not None else None
    if user is not None and user.is_dir():
        shutil.copytree(user, dest, dirs_exist_ok=True)


def _replace(new: Path, out: Path) -> None:
    """Move the freshly built ``new`` to ``out``; an earlier site there is removed only once the new one is in place."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(new, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
