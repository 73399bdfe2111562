# The CLI tests use the same tiny models as the engine tests.
from tests.engine.conftest import failing_model, model_dir, small_tile_model, tiny_model

__all__ = ["failing_model", "model_dir", "small_tile_model", "tiny_model"]
