"""IMSS captcha bench: the default solver on real captchas and on the sandbox's drawing.

    .venv/bin/python bench/captcha.py [--real ../shared/captchas/real] [--n 3000] [--seed 7]

Real captchas (``<real>/labelled/labels.tsv``: file, answer; never used for training): the
exact-match rate on the first try, per-character accuracy, the most confused pairs (case
pairs C/c K/k P/p S/s U/u V/v W/w X/x Y/y first), CPU ms per solve, and what the confidence
threshold (``CONSTANCIAS_CAPTCHA_MIN_CONFIDENCE``) does there; on ``<real>/unlabelled/``, the
share of readings the threshold would let through.

Sandbox (``n`` captchas drawn by ``fixtures/captcha_image.py`` from ``--seed``): for each
threshold, the share of images answered, of answers that are wrong (each one costs a round
trip and counts at the portal's bot protection), and of checks solved within 1, 2 and 3
images — computed from the measured per-image outcomes (a check takes fresh images until one
is answered right; an unanswered image is refreshed, a wrong answer refused) and simulated over
``--checks`` checks drawn from them. Last, what the threshold stops when the captcha changes
(the sandbox's legacy drawing, which the network was never shown).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.captcha_image import random_text, render  # noqa: E402
from flows.captcha import NetSolver  # noqa: E402
from worker.core.settings import Settings  # noqa: E402

CASE_PAIRS = tuple(f"{c}{c.lower()}" for c in "CKPSUVWXY")
DEFAULT_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "captchas" / "real"
THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 0.9)


def _timed_read(solver: NetSolver, image: bytes) -> tuple[str, float, float]:
    start = time.process_time()
    reading = solver.read(image)
    return reading.answer, reading.confidence, time.process_time() - start


def real_labelled(solver: NetSolver, folder: Path, threshold: float) -> None:
    rows = [line.split("\t") for line in (folder / "labels.tsv").read_text().splitlines()
            if line.strip()]
    exact = chars = answered = answered_right = 0
    confused: Counter[tuple[str, str]] = Counter()
    cpu: list[float] = []
    misses: list[str] = []
    confidences: list[tuple[float, bool]] = []
    for name, truth in ((r[0], r[1].strip()) for r in rows):
        # Decoding the JPEG is part of a solve: read the bytes, not a decoded image.
        guess, confidence, seconds = _timed_read(solver, (folder / name).read_bytes())
        cpu.append(seconds)
        confidences.append((confidence, guess == truth))
        exact += guess == truth
        chars += sum(g == t for g, t in zip(guess, truth, strict=False))
        confused.update((t, g) for g, t in zip(guess, truth, strict=False) if g != t)
        if confidence >= threshold:
            answered += 1
            answered_right += guess == truth
        if guess != truth:
            misses.append(f"{name} {truth}→{guess} ({confidence:.2f})")
    n = len(rows)
    print(f"Real labelled captchas ({folder}): {n}")
    print(f"  exact on the first try      {exact / n:8.2%}  ({exact}/{n})")
    print(f"  per character               {chars / (7 * n):8.2%}")
    print(f"  CPU per solve               {statistics.mean(cpu) * 1e3:8.2f} ms mean, "
          f"{statistics.median(cpu) * 1e3:.2f} median, {max(cpu) * 1e3:.2f} max")
    print(f"  threshold {threshold:.2f}: answered {answered / n:.2%}, right when answered "
          f"{answered_right / max(1, answered):.2%}, "
          f"wrong answers sent {answered - answered_right}")
    print("  per threshold, refreshed / wrong answers sent: " + ", ".join(
        f"{t:.2f} {sum(c < t for c, _ in confidences)}/"
        f"{sum(c >= t and not ok for c, ok in confidences)}" for t in THRESHOLDS))
    case = [(p, confused[(p[0], p[1])] + confused[(p[1], p[0])]) for p in CASE_PAIRS]
    print("  case pairs confused (either way): "
          + ", ".join(f"{p[0]}/{p[1]} {k}" for p, k in case))
    others = [(a, b, k) for (a, b), k in confused.most_common() if a.lower() != b.lower()]
    print("  other confusions (truth→read): "
          + (", ".join(f"{a}→{b} {k}" for a, b, k in others[:10]) or "none"))
    if misses:
        print("  misses: " + "; ".join(misses))


def real_unlabelled(solver: NetSolver, folder: Path, threshold: float) -> None:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        return
    confidences = [solver.read(p.read_bytes()).confidence for p in files]
    print(f"Real unlabelled captchas ({folder}): {len(files)}; confidence min "
          f"{min(confidences):.3f}, median {statistics.median(confidences):.3f}")
    print("  refreshed instead of sent (confidence below): " + ", ".join(
        f"{t:.2f} {sum(c < t for c in confidences) / len(files):.1%}" for t in THRESHOLDS[1:]))


def sandbox_outcomes(solver: NetSolver, n: int, seed: int) -> list[tuple[bool, float]]:
    rng = random.Random(seed)
    outcomes = []
    for _ in range(n):
        text = random_text(rng)
        reading = solver.read(render(text, rng))
        outcomes.append((reading.answer == text, reading.confidence))
    return outcomes


def _check_images(outcomes: list[tuple[bool, float]], threshold: float, rng: random.Random,
                  cap: int) -> tuple[int, int]:
    """(images used until solved, capped at ``cap`` + 1 for unsolved; wrong answers sent)."""
    wrong = 0
    for used in range(1, cap + 1):
        right, confidence = rng.choice(outcomes)
        if confidence < threshold:
            continue
        if right:
            return used, wrong
        wrong += 1
    return cap + 1, wrong


def sandbox_table(outcomes: list[tuple[bool, float]], checks: int, seed: int) -> None:
    n = len(outcomes)
    print(f"Sandbox captchas: {n} drawn; {checks} checks simulated from their outcomes")
    header = (f"{'threshold':>9} {'answered':>9} {'wrong/answer':>12} {'≤1 image':>9} "
              f"{'≤2 images':>10} {'≤3 images':>10} {'wrong sent/check':>16}")
    print(header)
    print("-" * len(header))
    for threshold in THRESHOLDS:
        answered = [right for right, c in outcomes if c >= threshold]
        p_wrong = 1 - sum(answered) / max(1, len(answered))
        rng = random.Random(seed)
        runs = [_check_images(outcomes, threshold, rng, 3) for _ in range(checks)]
        within = [sum(used <= k for used, _ in runs) / checks for k in (1, 2, 3)]
        wrong = sum(w for _, w in runs) / checks
        label = "off" if threshold == 0 else f"{threshold:.2f}"
        print(f"{label:>9} {len(answered) / n:>9.2%} {p_wrong:>12.3%} {within[0]:>9.3%} "
              f"{within[1]:>10.3%} {within[2]:>10.3%} {wrong:>16.4f}")


def changed_captcha(solver: NetSolver, n: int, seed: int) -> None:
    """What the threshold stops when the portal draws something else: the sandbox's legacy
    style (5–6 characters, other fonts: every reading is wrong)."""
    from fixtures import captcha_legacy

    rng = random.Random(seed)
    confidences = []
    for _ in range(n):
        image = captcha_legacy.render(captcha_legacy.random_text(rng), rng=rng)
        confidences.append(solver.read(image).confidence)
    print(f"A changed captcha ({n} legacy-style sandbox images, every reading wrong): sent at "
          "threshold " + ", ".join(
              f"{t:.2f} {sum(c >= t for c in confidences) / n:.1%}" for t in THRESHOLDS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL,
                        help="folder with labelled/ and unlabelled/ real captchas")
    parser.add_argument("--n", type=int, default=3000, help="sandbox captchas drawn")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--checks", type=int, default=200_000, help="simulated checks")
    args = parser.parse_args(argv)
    threshold = Settings().captcha_min_confidence
    solver = NetSolver(min_confidence=threshold)
    print(f"IMSS captcha bench — {time.strftime('%Y-%m-%d')}, solver net, "
          f"threshold {threshold:.2f}")
    labelled = args.real / "labelled"
    if not (labelled / "labels.tsv").is_file():
        print(f"bench: no labelled real captchas at {labelled} (use --real)", file=sys.stderr)
        return 2
    real_labelled(solver, labelled, threshold)
    if (args.real / "unlabelled").is_dir():
        real_unlabelled(solver, args.real / "unlabelled", threshold)
    sandbox_table(sandbox_outcomes(solver, args.n, args.seed), args.checks, args.seed)
    changed_captcha(solver, 300, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
