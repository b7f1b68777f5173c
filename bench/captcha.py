"""OCR captcha bench: success per attempt and per check, per difficulty.

    .venv/bin/python bench/captcha.py [--n 200] [--difficulties easy,normal,hard] [--seed 1]

For each difficulty it renders ``n`` sandbox captchas (fixtures/captcha_image.py), solves them
with ``flows.captcha.OcrSolver`` and prints a table: per-attempt success ``p``, the per-check
success within ``settings.captcha_attempts`` computed as ``1-(1-p)^attempts`` and simulated
(checks drawn from the measured outcomes, each attempt a fresh captcha), and solve times.
Targets at the default difficulty ("normal"): p ≥ 30 %, per-check ≥ 99 %.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.captcha_image import random_text, render  # noqa: E402
from flows.captcha import OcrSolver  # noqa: E402
from worker.core.settings import Settings  # noqa: E402


def measure(difficulty: str, n: int, seed: int) -> tuple[list[bool], list[float]]:
    rng = random.Random(seed)
    solver = OcrSolver()
    outcomes: list[bool] = []
    times: list[float] = []
    for i in range(n):
        text = random_text(rng, difficulty)
        image = render(text, difficulty, rng)
        start = time.perf_counter()
        guess = solver.solve(image, key=f"bench-{i}")
        times.append(time.perf_counter() - start)
        outcomes.append(guess == text)
    return outcomes, times


def simulate(outcomes: list[bool], attempts: int, checks: int, seed: int) -> float:
    """Share of checks that succeed within ``attempts`` captchas drawn from the measured ones."""
    rng = random.Random(seed)
    ok = sum(any(rng.choice(outcomes) for _ in range(attempts)) for _ in range(checks))
    return ok / checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--difficulties", default="easy,normal,hard")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--checks", type=int, default=100_000, help="simulated checks")
    args = parser.parse_args(argv)
    attempts = Settings().captcha_attempts

    header = (
        f"{'difficulty':<10} {'n':>5} {'p/attempt':>10} {'mean tries':>10} "
        f"{'check (calc)':>13} {'check (sim)':>12} {'median s':>9} {'p95 s':>7} {'max s':>7}"
    )
    print(f"OCR captcha bench — attempts per check = {attempts}")
    print(header)
    print("-" * len(header))
    for difficulty in args.difficulties.split(","):
        outcomes, times = measure(difficulty, args.n, args.seed)
        p = sum(outcomes) / len(outcomes)
        calc = 1 - (1 - p) ** attempts
        sim = simulate(outcomes, attempts, args.checks, args.seed)
        tries = f"{1 / p:.1f}" if p else "inf"
        p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
        print(
            f"{difficulty:<10} {len(outcomes):>5} {p:>10.1%} {tries:>10} {calc:>13.2%} "
            f"{sim:>12.2%} {statistics.median(times):>9.3f} {p95:>7.3f} {max(times):>7.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
