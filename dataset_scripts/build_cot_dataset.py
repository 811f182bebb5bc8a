#!/usr/bin/env python
"""Build the CoT NLI data set (configs original / reflected / combined) and write and/or push it.

This script is ``nli-cot build`` under another name: it passes its arguments to that command unchanged, so
``python dataset_scripts/build_cot_dataset.py --help`` lists the options. It needs the package installed
(``make setup``, or ``pip install -e .`` in the repository root).
"""

from __future__ import annotations

import sys

from nli_cot_hub.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "build", *sys.argv[1:]]
    main()
