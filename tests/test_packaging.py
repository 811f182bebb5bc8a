"""The package is self-contained: what `nli-cot train / card / demo` read lives inside nli_cot_hub/, and the
repository's top-level recipes/ and model_card/template.md are links to those very files (one source).
`make wheel-check` installs the built wheel outside the checkout and runs the quick demo from it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "nli_cot_hub"


def test_top_level_recipes_and_card_template_are_the_packaged_files():
    from nli_cot_hub import demo, model_card

    assert (REPO / "recipes").is_symlink() and (REPO / "model_card" / "template.md").is_symlink()
    assert (REPO / "recipes").resolve() == (PACKAGE / "recipes").resolve()
    assert (REPO / "model_card" / "template.md").resolve() == Path(model_card.TEMPLATE).resolve()
    assert Path(demo.RECIPE).resolve().is_relative_to(PACKAGE.resolve()) and Path(demo.RECIPE).is_file()
    assert Path(model_card.TEMPLATE).resolve().is_relative_to(PACKAGE.resolve())
