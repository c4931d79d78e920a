from xaug.cli import main

main()
