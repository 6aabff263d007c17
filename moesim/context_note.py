"""A note when a scenario's sequence runs past its RoPE model's max_position_embeddings (Qwen3-235B-A22B's config
says 40,960; a long-context run trains at 131,072): not an error, a long-context recipe extends the context."""

from __future__ import annotations


def rope_context_warning(scenario) -> str | None:
    """The warning for a RoPE model whose training sequence exceeds its max_position_embeddings; None otherwise
    (another position kind, no max_position_embeddings given, or a sequence within it)."""
    model = scenario.model
    seq = scenario.seq_lens[0]  # a decoder-only model's sequence (RoPE models here are decoder-only)
    limit = model.max_position_embeddings
    if model.position_embedding != "rope" or limit <= 0 or seq <= limit:
        return None
    # moesim's model spec has no rope_scaling field (moesim/specs/model.py; `moesim model config.json` reads
    # max_position_embeddings only), so the note says what extends it and that nothing here changes with it
    return (f"training.seq_len {seq:,} tokens exceeds the max_position_embeddings {limit:,} of model "
            f"'{model.name}' (RoPE): a run this long extends the context with YaRN or another rope_scaling "
            f"(a field of the checkpoint's config.json, which moesim's model spec does not hold); priced at "
            f"{seq:,} tokens as given")
