from patentclf.cli import main

main()
