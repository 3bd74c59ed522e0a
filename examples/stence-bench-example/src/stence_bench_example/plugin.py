"""The plugin module named by this package's ``stence_bench`` entry point.

It only builds specs: the model lives in ``model.py`` and is imported when the encoder is built, so that
``stence-bench list`` stays fast and never imports torch.
"""

from stence_bench import EncoderPreset, EncoderSpec, hookimpl


@hookimpl
def register_encoders(register):
    register(
        EncoderSpec(
            name="example_cnn",
            description="A small dilated CNN on three leads at 250 Hz (example plugin)",
            factory="stence_bench_example.model:build",
            sampling_rate=250,
            window_s=4.0,
            leads=("I", "II", "V1"),
            embed_dim=64,
            bandpass_hz=(0.5, 40.0),
            normalization="zscore_record",
            presets={
                "tiny": EncoderPreset(options={"channels": 8}, embed_dim=8),
                "base": EncoderPreset(options={"channels": 64}, embed_dim=64),
            },
            default_preset="base",
        )
    )
