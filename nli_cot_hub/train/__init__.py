"""QLoRA fine-tuning with TRL's ``SFTTrainer``, split by concern:

- :mod:`.sft`: the entry point (``make_parser``, ``main``, ``cli_main``); ``python -m nli_cot_hub.train``,
  ``accelerate launch -m nli_cot_hub.train``, ``nli-cot train`` and the repository's ``train.py`` all run it
- :mod:`.configs`: the recipe's own fields (``NliScriptArguments``) and ``RecipeError``
- :mod:`.data`: prompt/completion examples from a data set, train/eval splits, token lengths
- :mod:`.model`: tokenizer and model loading, 4-bit quantization, FSDP / ZeRO-3 helpers
- :mod:`.schedule`: optimizer steps and warm-up, planned and checked before the model loads
- :mod:`.loss`: the label-weighted completion loss
- :mod:`.checkpoint`: exact resume and checkpoint-on-signal
- :mod:`.outputs`: resolved recipe, metrics JSON, training curves
"""
