"""Given weights (``weights = "..."`` in a suite): read without running code, selected, renamed and checked against
the encoder, with one clear line when they do not fit; a checkpoint stence-bench wrote loads back bit for bit."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch
from conftest import BUILTINS_ONLY, run_cli

from stence_bench.registry import Registry
from stence_bench.specs import WeightsLayout
from stence_bench.suite import parse_suite, plan
from stence_bench.weights import WeightsError, fit, flatten, load_weights, read_file, select


@pytest.fixture(scope="module")
def registry():
    return Registry.load(environ=BUILTINS_ONLY)


def tiny_resnet(seed: int) -> torch.nn.Module:
    from stence_bench_plugins.encoders.resnet1d import resnet1d_wang

    torch.manual_seed(seed)
    return resnet1d_wang(n_leads=12, width=16)


def suite_text(weights: str | None, objectives: str = '["pretrained"]', extra: str = "") -> str:
    """A one-cell suite: the tiny ResNet with ``weights`` (TOML: a quoted path or a table), linear probe at 100 %."""
    given = "" if weights is None else f"weights = {weights}"
    return f"""
name = "byom"
tasks = ["stenosis.70"]
objectives = {objectives}
controls = false
[[encoders]]
name = "resnet1d_wang"
preset = "tiny"
{given}
{extra}
[protocol]
stages = ["linear_probe"]
fractions = [1.0]
bootstrap = 20
[data]
synthetic = {{patients = 60, seed = 3, angiograms = false}}
"""


def test_a_checkpoint_stence_bench_wrote_loads_back_bit_for_bit_through_weights(registry, tmp_path):
    """The encoder checkpoint a pretraining writes (safetensors with the cell in its metadata), named by a suite's
    ``weights``: every tensor of the encoder the cell evaluates is the saved one, bit for bit, and the file's sha256
    is in the cell's key and provenance."""
    from stence_bench.protocol.evaluate import encoder_for
    from stence_bench.protocol.pretrain import save_checkpoint

    saved = tiny_resnet(seed=7)
    with torch.no_grad():  # batch-norm statistics too, so that every tensor differs from a fresh build
        for buffer in saved.buffers():
            if buffer.is_floating_point():
                buffer.uniform_(0.5, 1.5)
    path = tmp_path / "mine.safetensors"
    (cell,) = plan(parse_suite(suite_text(None, '["none"]')), registry)
    save_checkpoint(path, saved, cell, {"note": "a stence-bench checkpoint"})

    (given,) = plan(parse_suite(suite_text(f'"{path}"')), registry)
    assert given.weights.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert given.weights.path == str(path) and given.weights.strict
    encoder, name = encoder_for(given, registry, tmp_path)
    want = saved.state_dict()
    got = encoder.state_dict()
    assert list(got) == list(want)
    for key in want:
        assert torch.equal(got[key], want[key]), key
    assert encoder.given_weights["loaded"] == len(want) and encoder.given_weights["missing"] == 0
    assert name.startswith("given-resnet1d_wang-")


def test_the_hash_is_in_the_key_the_path_is_not(registry, tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "moved" / "a.safetensors"
    from safetensors.torch import save_file

    b.parent.mkdir()
    state = {k: v.contiguous() for k, v in tiny_resnet(1).state_dict().items()}
    save_file(state, str(a))
    save_file(state, str(b))
    other = tmp_path / "c.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_resnet(2).state_dict().items()}, str(other))
    (at_a,), (at_b,), (changed,) = (plan(parse_suite(suite_text(f'"{p}"')), registry) for p in (a, b, other))
    assert at_a.key == at_b.key and at_a.weights.path != at_b.weights.path  # a moved file: the same cell
    assert changed.key != at_a.key  # other contents: another cell, never a finished one


def test_a_pytorch_file_nested_in_a_training_checkpoint_is_read_by_its_prefix(registry, tmp_path):
    """A training checkpoint as most code saves one: the weights under ``model``, beside an epoch, an optimizer
    state with tensors and a config. Without the prefix the error names the first missing and unexpected tensors
    and the prefix that would fit; with it, the encoder gets the weights."""
    saved = tiny_resnet(3)
    path = tmp_path / "training.pt"
    torch.save({"epoch": 12, "model": saved.state_dict(), "config": {"lr": 0.1, "name": "run 3"},
                "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}, "param_groups": [{"lr": 0.1}]}}, path)
    encoder = tiny_resnet(0)
    with pytest.raises(WeightsError) as caught:
        load_weights(encoder, path, WeightsLayout())
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    first = next(iter(saved.state_dict()))
    assert f"missing (first {first!r})" in message and "unexpected (first 'model." in message
    assert "under 'model.': add it to prefix" in message

    fitted = load_weights(encoder, path, WeightsLayout(prefix="model."))
    assert fitted.exact and all(torch.equal(encoder.state_dict()[k], v) for k, v in saved.state_dict().items())


def test_a_pickle_that_would_run_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "extra": Payload()}, path)
    with pytest.raises(WeightsError) as caught:
        read_file(path)
    assert not marker.exists()
    message = str(caught.value)
    assert "\n" not in message and "does not unpickle" in message and "safetensors" in message

    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"w": [1, 2, 3]}, protocol=2))  # a plain pickle, not a torch file
    with pytest.raises(WeightsError, match="plain.pkl"):
        read_file(plain)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightsError, match="garbage.safetensors"):
        read_file(garbage)


def test_flatten_select_ignore_and_rename_by_hand():
    t = {name: torch.full((1,), float(i)) for i, name in enumerate("abcdef")}
    nested = {"state_dict": {"backbone.conv.weight": t["a"], "backbone.conv.bias": t["b"], "dense.weight": t["c"]},
              "epoch": 4, "history": [t["d"], {"x": t["e"]}]}
    flat = flatten(nested)
    assert list(flat) == ["state_dict.backbone.conv.weight", "state_dict.backbone.conv.bias", "state_dict.dense.weight",
                          "history.0", "history.1.x"]
    chosen = select(flat, WeightsLayout(prefix="state_dict.", ignore=("dense.*",),
                                        rename={r"^backbone\.": "", r"\.conv\.": ".convolution."}))
    assert list(chosen) == ["conv.weight", "conv.bias"]  # the second rename finds nothing after the first
    assert chosen["conv.weight"] is t["a"]
    with pytest.raises(WeightsError, match="two tensors the name 'w'"):
        select({"x.w": t["a"], "y.w": t["b"]}, WeightsLayout(rename={r"^\w\.": ""}))
    with pytest.raises(WeightsError, match=r"no tensor name starts with prefix 'model\.'.*'state_dict\.' \(3\)"):
        select(flat, WeightsLayout(prefix="model."))


def test_fit_counts_missing_unexpected_and_other_shapes():
    result = fit({"a": (2, 3), "b": (4,), "c": (1,)}, {"a": (2, 3), "b": (5,), "d": (1,)})
    assert result.matched == ["a"] and result.missing == ["c"] and result.unexpected == ["d"]
    assert result.mismatched == {"b": ((5,), (4,))}
    assert result.report()["first_other_shape"] == {"b": [[5], [4]]}


def test_another_preset_is_named_by_the_first_tensor_of_another_shape(tmp_path):
    from safetensors.torch import save_file

    from stence_bench_plugins.encoders.resnet1d import resnet1d_wang

    path = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in resnet1d_wang(n_leads=12, width=32).state_dict().items()}, str(path))
    with pytest.raises(WeightsError) as caught:
        load_weights(tiny_resnet(0), path, WeightsLayout())
    message = str(caught.value)
    assert "\n" not in message and "of another shape (first 'stem.0.weight': [32, 12, 7] in the file, [16, 12, 7] in " \
                                  "the encoder)" in message


def test_strict_false_loads_what_fits_and_reports_the_rest(tmp_path):
    from safetensors.torch import save_file

    saved = tiny_resnet(5).state_dict()
    kept = {k: v.contiguous() for k, v in saved.items() if not k.startswith("layers.2.")}
    kept["head.weight"] = torch.zeros(3, 32)
    path = tmp_path / "partial.safetensors"
    save_file(kept, str(path))
    fresh = tiny_resnet(0)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(WeightsError, match="missing \\(first 'layers.2."):
        load_weights(fresh, path, WeightsLayout())
    fitted = load_weights(fresh, path, WeightsLayout(), strict=False)
    report = fitted.report()
    assert report["unexpected"] == 1 and report["first_unexpected"] == ["head.weight"]
    assert report["missing"] == sum(k.startswith("layers.2.") for k in saved) and report["loaded"] == len(kept) - 1
    state = fresh.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in kept if k != "head.weight")
    assert all(torch.equal(state[k], before[k]) for k in saved if k.startswith("layers.2."))  # left at init
    nothing = tmp_path / "nothing.safetensors"
    save_file({"x": torch.zeros(1)}, str(nothing))
    with pytest.raises(WeightsError, match="none of them fits"):
        load_weights(tiny_resnet(0), nothing, WeightsLayout(), strict=False)


def test_a_file_changed_after_planning_is_refused_when_loaded(registry, tmp_path):
    from safetensors.torch import save_file

    from stence_bench.protocol.evaluate import encoder_for

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_resnet(1).state_dict().items()}, str(path))
    (cell,) = plan(parse_suite(suite_text(f'"{path}"')), registry)
    save_file({k: v.contiguous() for k, v in tiny_resnet(2).state_dict().items()}, str(path))
    with pytest.raises(WeightsError, match="changed since the run was planned"):
        encoder_for(cell, registry, tmp_path)


def test_a_pinned_hash_refuses_another_file_and_a_missing_file_is_named(registry, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_resnet(1).state_dict().items()}, str(path))
    pinned = "0" * 64
    with pytest.raises(WeightsError, match=f"the suite pins {pinned}"):
        plan(parse_suite(suite_text(f'{{path = "{path}", sha256 = "{pinned}"}}')), registry)
    right = hashlib.sha256(path.read_bytes()).hexdigest()
    assert plan(parse_suite(suite_text(f'{{path = "{path}", sha256 = "{right}"}}')), registry)
    with pytest.raises(WeightsError, match=r"encoders\[0\]\.weights: .*absent.safetensors: no such file"):
        plan(parse_suite(suite_text(f'"{tmp_path / "absent.safetensors"}"')), registry)


def test_validate_names_a_wrong_layout_in_one_line_before_the_run(tmp_path):
    """`stence-bench validate` builds the encoder on the meta device and compares the file's names and shapes: a
    wrong key layout is one line naming the first missing and unexpected tensors (exit 2, no traceback)."""
    saved = tiny_resnet(3)
    path = tmp_path / "training.pt"
    torch.save({"epoch": 1, "model": saved.state_dict()}, path)
    suite = tmp_path / "byom.toml"
    suite.write_text(suite_text(f'"{path}"'))
    out = run_cli("validate", str(suite), cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, errors
    assert "encoders[0].weights" in errors[0] and "missing (first 'stem.0.weight')" in errors[0]
    assert "unexpected (first 'model.stem.0.weight')" in errors[0] and "add it to prefix" in errors[0]
    suite.write_text(suite_text(f'{{path = "{path}", prefix = "model."}}'))
    out = run_cli("validate", str(suite), cwd=tmp_path)
    assert out.returncode == 0 and ": ok: " in out.stdout, out.stdout + out.stderr


def test_suites_refuse_pretrained_without_weights_and_entries_listed_twice(registry, tmp_path):
    from stence_bench.suite import check_names

    text = suite_text(None)
    problems = check_names(parse_suite(text), registry, "byom.toml")
    assert problems == ["byom.toml: objectives[0]: objective 'pretrained' evaluates an encoder's given weights as "
                        "loaded, and no encoder of the suite has weights = \"...\""]
    plain = suite_text(None, '["none"]')
    twice = plain + '\n[[encoders]]\nname = "resnet1d_wang"\npreset = "tiny"\n'
    assert any("listed twice" in p for p in check_names(parse_suite(twice), registry, "byom.toml"))
    both = plain + '\n[[encoders]]\nname = "resnet1d_wang"\npreset = "tiny"\nweights = "w.safetensors"\n'
    assert check_names(parse_suite(both), registry, "byom.toml") == []  # the architecture twice: with and without
