from vbench.cli import main

if __name__ == "__main__":  # not when a worker process (multiprocessing spawn) re-imports it
    main()
