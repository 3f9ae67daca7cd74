"""`python -m ast_min.bench {features,model} [options]`: run one benchmark and print its table."""

import sys
from importlib import import_module

BENCHMARKS = {"features": "ast_min.bench.features", "model": "ast_min.bench.model"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m ast_min.bench {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    return import_module(BENCHMARKS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
