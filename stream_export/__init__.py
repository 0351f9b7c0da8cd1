"""Stream per-timestep hidden states of Keras recurrent models over Parquet corpora into LSTMVis projects."""

__version__ = "0.1.0"


def export(config, **kwargs):
    """Run an export; see stream_export.pipeline.export."""
    from stream_export.pipeline import export as run

    return run(config, **kwargs)
