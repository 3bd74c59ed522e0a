"""The plugin's own test: stence-bench's contract check on the encoder, through the installed registry."""

from stence_bench.testing import assert_encoder_contract


def test_example_cnn_meets_the_encoder_contract():
    assert_encoder_contract("example_cnn")


def test_example_cnn_is_registered_with_its_distribution(stence_registry, ecg_batch):
    entry = stence_registry.encoders.entry("example_cnn")
    assert entry.plugin.distribution == "stence-bench-example"
    assert tuple(ecg_batch("example_cnn", batch_size=4).shape) == (4, 3, 1000)
