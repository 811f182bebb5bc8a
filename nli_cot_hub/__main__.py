from nli_cot_hub.cli import main

main()
