"""nli-cot-hub: turn an NLI data set into a chain-of-thought NLI model, the Hugging Face way."""

__version__ = "0.1.0"
