"""The engine's shape (issue 18): one flat pipeline — Interrogator under 250 lines, one ClipEncoder per CLIP text
encoder with no way back to the pipeline, every model in one pool — so a target with four encoders or a new
caption family lands without pulling a knot tighter."""
import ast
import inspect
from pathlib import Path

from interrogator_core import Interrogator, InterrogatorConfig, encoder, pool
from interrogator_core.encoder import ClipEncoder

CORE = Path(__file__).resolve().parents[1] / "interrogator_core"


def test_the_pipeline_class_is_small():
    lines, _ = inspect.getsourcelines(Interrogator)
    assert len(lines) < 250, f"Interrogator is {len(lines)} lines: move a stage out (encoder, pool, compose)"


def test_no_part_of_the_engine_reaches_a_parent_interrogator():
    """No back-pointer: an encoder and the pool neither import the pipeline at run time nor hold one."""
    for module in (encoder, pool):
        tree = ast.parse(Path(module.__file__).read_text())
        runtime_imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "interrogator"
                           and not _under_type_checking(tree, n)]
        assert not runtime_imports, f"{module.__name__} imports the pipeline"
    for path in CORE.glob("*.py"):
        assert "_root" not in path.read_text(), f"{path.name} keeps a back-pointer (_root)"


def _under_type_checking(tree: ast.AST, node: ast.AST) -> bool:
    for block in ast.walk(tree):
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING":
            if any(n is node for n in ast.walk(block)):
                return True
    return False


def test_each_clip_encoder_is_a_plain_part_and_models_live_in_one_pool(tiny_models, registry_to_tiny):
    ci = Interrogator(InterrogatorConfig(target="sd35", caption_model=None, cache_dir=None))
    assert list(ci.encoders) == ["clip_g", "clip_l"]
    for enc in ci.encoders.values():
        assert isinstance(enc, ClipEncoder) and enc.pool is ci.pool
        assert not any(isinstance(v, Interrogator) for v in vars(enc).values()), "no encoder holds a pipeline"
    dual = Interrogator(InterrogatorConfig(target="sdxl", sdxl_dual=True, caption_model=None, cache_dir=None))
    hidream = Interrogator(InterrogatorConfig(target="hidream", caption_model=None, cache_dir=None))
    assert list(dual.encoders) == ["clip_g", "clip_l"] and list(hidream.encoders) == ["", "clip_l", "clip_g"]  # "": ranks the negative
