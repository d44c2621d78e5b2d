from rtmprelay.tap import main

main()
