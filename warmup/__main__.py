from warmup.cli.main import main

main()
