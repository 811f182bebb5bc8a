"""`accelerate launch train.py --config recipes/...`: the training entry point, nli_cot_hub/train/sft.py."""

from nli_cot_hub.train.sft import cli_main

if __name__ == "__main__":
    cli_main()
