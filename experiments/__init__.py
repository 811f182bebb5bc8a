"""The accuracy experiments: does CoT fine-tuning help the embedded model on real NLI data?

``prepare_data`` builds the evaluation and training sets from ``../shared/data``, ``run`` makes one
run with the project's own CLI stages, ``tfidf_baseline`` is the classic baseline, ``summarise``
writes ``docs/RESULTS.md``, ``carry`` moves what the GPU machine lacks. See ``experiments/README.md``.
"""
