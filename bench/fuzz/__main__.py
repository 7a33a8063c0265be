"""``python -m bench.fuzz``: the same campaign as ``python -m bench.fuzz_inputs``."""

from bench.fuzz.campaign import main

if __name__ == "__main__":
    raise SystemExit(main())
