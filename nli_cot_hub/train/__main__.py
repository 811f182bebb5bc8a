from nli_cot_hub.train.sft import cli_main

cli_main()
