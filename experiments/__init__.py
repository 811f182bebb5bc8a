"""The accuracy experiments: does CoT fine-tuning help the embedded model on real NLI data?

``prepare_data`` builds the evaluation and training sets from ``../shared/data``, ``run`` makes one
run with the project's own CLI stages, ``tfidf_baseline`` is the classic baseline, ``choose_weight`` picks the
label-loss weight on the training data, ``summarise`` writes ``docs/RESULTS.md``. See ``experiments/README.md``.
"""
