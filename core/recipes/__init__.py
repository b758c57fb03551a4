"""Training recipes, one per training kind (config key `training`), each `recipe(cfg, run, resume)`
reading top to bottom as setup -> train -> save on the shared set-up in `common` (model, tokenizer,
method, data, Trainer arguments, callbacks, saving).

A later training kind plugs in here: a module `core/recipes/KIND.py` with its `recipe`, one line in
RECIPES, and KIND added to config.IMPLEMENTED_KINDS. Nothing heavy is imported by this package.
"""

from __future__ import annotations

from typing import Callable

from . import cpt, dpo, grpo, kto, orpo, sft, simpo

RECIPES: dict[str, Callable] = {"sft": sft.recipe, "dpo": dpo.recipe, "orpo": orpo.recipe, "simpo": simpo.recipe,
                                 "kto": kto.recipe, "grpo": grpo.recipe, "cpt": cpt.recipe}


def recipe_for(kind: str) -> Callable:
    return RECIPES[kind]
