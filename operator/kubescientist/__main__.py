from kubescientist.cli import main

main()
