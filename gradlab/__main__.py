from .supervise import main

main()
