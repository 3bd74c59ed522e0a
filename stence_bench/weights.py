"""Weights from a file: an encoder's given weights (``weights = "..."`` in a suite), read without running code.

- :func:`read_file` reads a safetensors file, or a PyTorch file with ``torch.load(weights_only=True)`` (a pickle
  that would build any other object is refused, never run), and hashes the very bytes it read (sha256).
- :func:`flatten` turns what a file holds into dotted tensor names (``{"model": {"a.b": t}}`` -> ``model.a.b``);
  :func:`select` keeps the names under the layout's ``prefix`` (stripped), drops those matching an ``ignore``
  glob, and applies the ``rename`` regular expressions in order
  (:class:`~stence_bench.specs.WeightsLayout`).
- :func:`fit` compares them with a module's ``state_dict``: missing, unexpected and other-shaped names. With
  ``strict`` any of them is a :class:`WeightsError` in one line naming the first of each, and the prefix that would
  have matched when the file's names carry one; without it the matching tensors load and the rest is reported.

Nothing is downloaded: the user passes the file they downloaded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import StenceBenchError
from .specs import WeightsLayout

if TYPE_CHECKING:
    import torch

#: How many names of each kind a load report keeps.
REPORT_NAMES = 20
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


class WeightsError(StenceBenchError):
    """A weights file that cannot be read, or whose tensors do not fit the encoder."""


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """A suite's weights path: ``~`` expanded, relative to the current folder, made absolute."""
    return Path(os.path.expanduser(str(path))).resolve()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's bytes (hex), computed once per file version (path, size, modification time)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the weights file: {exc.strerror or exc}") from None
    if not path.is_file():
        raise WeightsError(f"{path}: not a file")
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def is_safetensors(data: bytes) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON header starting with ``{``."""
    if len(data) < 10:
        return False
    size = int.from_bytes(data[:8], "little")
    return 2 <= size <= len(data) - 8 and data[8:9] == b"{"


def read_file(path: str | os.PathLike[str], sha256: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """Every tensor a weights file holds, by dotted name, and the sha256 of the bytes read. ``sha256``: the hash
    the file must have (the one a run was planned with); another is an error (the file changed)."""
    import torch

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read the weights file: {exc.strerror or exc}") from None
    found = hashlib.sha256(data).hexdigest()
    if sha256 is not None and found != sha256:
        raise WeightsError(f"{path}: the file changed since the run was planned (sha256 {found[:12]}..., planned with "
                           f"{sha256[:12]}...); run again to plan it anew")
    if is_safetensors(data):
        from safetensors.torch import load

        try:
            return dict(load(data)), found
        except Exception as exc:  # noqa: BLE001 - any failure of a damaged file is reported as such
            raise WeightsError(f"{path}: not a readable safetensors file: {_first_line(exc)}") from None
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a refused pickle, a truncated zip, something else entirely
        text = _first_line(exc)
        if "weights_only" in text or "Unsupported global" in text or "Weights only load failed" in text:
            raise WeightsError(
                f"{path}: the PyTorch file holds Python objects besides tensors, which stence-bench does not unpickle "
                f"(that could run code): {_refused_global(text)}; where you trust the file, save its tensors once as "
                "safetensors (docs/models.md says how)") from None
        raise WeightsError(f"{path}: neither a safetensors nor a PyTorch weights file ({text})") from None
    tensors = flatten(obj)
    if not tensors:
        raise WeightsError(f"{path}: the file holds no tensor")
    return tensors, found


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _refused_global(text: str) -> str:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    return f"it refers to {found.group(1)}" if found else "torch.load(weights_only=True) refused it"


def flatten(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of nested dicts, lists and tuples by dotted name; other values (epochs, configs) left out."""
    import torch

    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix[:-1]] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}{i}."))
    return out


def select(tensors: Mapping[str, torch.Tensor], layout: WeightsLayout, where: str = "weights") -> dict[str, torch.Tensor]:
    """The tensors under ``layout.prefix`` (prefix stripped), less those ``layout.ignore`` matches, renamed."""
    chosen = {k[len(layout.prefix):]: v for k, v in tensors.items() if k.startswith(layout.prefix)}
    if not chosen:
        raise WeightsError(f"{where}: no tensor name starts with prefix {layout.prefix!r}; the file's names start with "
                           f"{_name_heads(tensors)}")
    chosen = {k: v for k, v in chosen.items() if not any(fnmatch.fnmatchcase(k, pattern) for pattern in layout.ignore)}
    for pattern, replacement in layout.rename.items():
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise WeightsError(f"{where}: rename: {pattern!r} is not a regular expression ({exc})") from None
        renamed: dict[str, torch.Tensor] = {}
        for key, value in chosen.items():
            new = regex.sub(replacement, key)
            if new in renamed:
                raise WeightsError(f"{where}: rename {pattern!r} -> {replacement!r} gives two tensors the name {new!r}")
            renamed[new] = value
        chosen = renamed
    return chosen


def _name_heads(names: Any, n: int = 3) -> str:
    """``'model.' (300), 'optimizer.' (12)``: the first components of names, most common first."""
    heads = Counter(name.split(".", 1)[0] + ("." if "." in name else "") for name in names)
    return ", ".join(f"{head!r} ({count})" for head, count in heads.most_common(n)) or "nothing"


@dataclass
class Fit:
    """How a file's (selected) tensors fit a module's ``state_dict``."""

    matched: list[str]
    missing: list[str]
    unexpected: list[str]
    #: name -> (shape in the file, shape in the module)
    mismatched: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def report(self) -> dict[str, Any]:
        """What a result records of the load: counts and the first names of each kind."""
        return {"loaded": len(self.matched), "missing": len(self.missing), "unexpected": len(self.unexpected),
                "other_shape": len(self.mismatched), "first_missing": self.missing[:REPORT_NAMES],
                "first_unexpected": self.unexpected[:REPORT_NAMES],
                "first_other_shape": {k: [list(a), list(b)] for k, (a, b) in list(self.mismatched.items())[:REPORT_NAMES]}}


def fit(expected: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]]) -> Fit:
    """Compare the names and shapes a module expects with those a file gives (both in the module's order)."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    mismatched = {k: (tuple(given[k]), tuple(expected[k])) for k in expected
                  if k in given and tuple(given[k]) != tuple(expected[k])}
    matched = [k for k in expected if k in given and k not in mismatched]
    return Fit(matched=matched, missing=missing, unexpected=unexpected, mismatched=mismatched)


def misfit_message(result: Fit, expected: Mapping[str, Any], given: Mapping[str, Any], what: str) -> str:
    """One line: how many names are missing, unexpected or of another shape, the first of each, and a prefix that
    would have matched when the file's names carry one before the module's."""
    parts = []
    if result.missing:
        parts.append(f"{len(result.missing)} missing (first {result.missing[0]!r})")
    if result.unexpected:
        parts.append(f"{len(result.unexpected)} unexpected (first {result.unexpected[0]!r})")
    if result.mismatched:
        name, (in_file, in_module) = next(iter(result.mismatched.items()))
        parts.append(f"{len(result.mismatched)} of another shape (first {name!r}: {list(in_file)} in the file, "
                     f"{list(in_module)} in the encoder)")
    hint = _prefix_hint(expected, given)
    return f"{what}: the file's tensors do not fit: " + "; ".join(parts) + (f"; {hint}" if hint else "")


def _prefix_hint(expected: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """``set prefix = "model."`` when the file's names are the module's under a prefix; or the reverse."""
    found: Counter[str] = Counter()
    for name in given:
        if name in expected:
            continue
        parts = name.split(".")
        for i in range(1, len(parts)):
            if ".".join(parts[i:]) in expected:
                found[".".join(parts[:i]) + "."] += 1
                break
    if found:
        prefix, count = found.most_common(1)[0]
        return f"{count} of the file's names are the encoder's under {prefix!r}: add it to prefix"
    return ""


def state_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """The names and shapes of a module's ``state_dict`` (works on the meta device: nothing is allocated)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def load_into(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], *, strict: bool = True,
              what: str = "weights") -> Fit:
    """Copy the (selected) ``tensors`` into ``module``'s parameters and buffers, values exactly as stored (cast to
    the module's dtype where it differs). ``strict``: any missing, unexpected or other-shaped name is an error
    (:func:`misfit_message`); otherwise the names that fit load and the :class:`Fit` says what did not."""
    import torch

    expected = state_shapes(module)
    given = {k: tuple(v.shape) for k, v in tensors.items()}
    result = fit(expected, given)
    if not result.exact and (strict or not result.matched):
        message = misfit_message(result, expected, given, what)
        if not result.matched and not strict:
            message += " (none of them fits: strict = false loads nothing)"
        raise WeightsError(message)
    state = {k: tensors[k] for k in result.matched}
    with torch.no_grad():
        module.load_state_dict(state, strict=not result.missing)
    return result


def check_layout(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], *, strict: bool = True,
                 what: str = "weights") -> Fit:
    """What :func:`load_into` would find, without loading (``module`` may live on the meta device)."""
    expected = state_shapes(module)
    given = {k: tuple(v.shape) for k, v in tensors.items()}
    result = fit(expected, given)
    if not result.exact and (strict or not result.matched):
        raise WeightsError(misfit_message(result, expected, given, what))
    return result


def load_weights(module: torch.nn.Module, path: str | os.PathLike[str], layout: WeightsLayout, *,
                 sha256: str | None = None, strict: bool = True) -> Fit:
    """Read ``path`` (refused when its hash is not ``sha256``), select its tensors by ``layout`` and load them
    into ``module`` (:func:`load_into`)."""
    what = f"weights {path}"
    tensors, _ = read_file(path, sha256)
    return load_into(module, select(tensors, layout, what), strict=strict, what=what)


def build_for_checking(spec: Any, preset: str | None, options: Mapping[str, Any]) -> torch.nn.Module:
    """An encoder built to look at its parameter names and shapes: on the meta device (nothing allocated, fast at
    any size), or on the CPU when its factory cannot build there."""
    import torch

    try:
        with torch.device("meta"):
            return spec.build(preset, **options)
    except StenceBenchError:
        raise
    except Exception:  # noqa: BLE001 - a factory that computes with tensors while building: build it for real
        return spec.build(preset, **options)
