#!/usr/bin/env python3
"""Issue 18's package moves, as a script that can be run again (idempotent).

    python3 scripts/restructure_layers.py .      (issue 18, applied on branch i18: the record of
    where each old module went; run it again to move what a branch on the old layout adds)

1. ``git mv`` every module of the old flat ``worker/`` (and its tests) to its layer package,
   when the old path exists and the new one does not. Folders are moved file by file, so a
   file someone added to an old folder since the last run is moved too.
2. Rewrites every reference to an old module — dotted (``worker.engine``, ``"worker.cli:main"``,
   ``-A worker.celery_app``) and as a path (``worker/storage.py``, ``tests/worker/web/``) — in
   every tracked text file. A new module path that extends its old one (``worker.engine`` ->
   ``worker.engine.check``) is only rewritten where it is not already followed by one of the
   new package's modules, so a second run changes nothing.
3. Creates the layer packages' ``__init__.py`` when missing (content is added by hand).

Nothing else: code changes are separate commits.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

#: old module (dotted) -> new module (dotted). Order does not matter.
MODULES: dict[str, str] = {
    # core: what every layer may use
    "worker.statuses": "worker.core.statuses",
    "worker.settings": "worker.core.settings",
    "worker.errors": "worker.core.errors",
    "worker.logs": "worker.core.logs",
    # intake
    "worker.intake": "worker.intake.sheet",
    # storage
    "worker.storage": "worker.storage.repository",
    "worker.migrate": "worker.storage.migrate",
    "worker.migrations": "worker.storage.migrations",
    # report
    "worker.report": "worker.report.workbook",
    "worker.reporting": "worker.report.data",
    # engine
    "worker.engine": "worker.engine.check",
    "worker.limits": "worker.engine.limits",
    "worker.embedded": "worker.engine.embedded",
    "worker.celery_app": "worker.engine.celery_app",
    "worker.celeryconfig": "worker.engine.celeryconfig",
    "worker.tasks": "worker.engine.tasks",
    "worker.dispatch": "worker.engine.dispatch",
    "worker.sweeper": "worker.engine.sweeper",
    "worker.notify": "worker.engine.notify",
    # services
    "worker.service": "worker.services.batches",
    "worker.recheck": "worker.services.recheck",
    "worker.purge": "worker.services.purge",
    "worker.schedule": "worker.services.schedule",
    # interfaces
    "worker.cli": "worker.interfaces.cli",
    "worker.commands": "worker.interfaces.commands",
    "worker.terminal": "worker.interfaces.terminal",
    "worker.validate": "worker.interfaces.validate",
    "worker.web": "worker.interfaces.web",
    # modules added on other branches (wave 1), put in their layer
    "worker.batchfiles": "worker.storage.files",
    "worker.counts": "worker.report.counts",
    "worker.cli_es": "worker.interfaces.cli_es",
    "worker.captcha_solve": "worker.interfaces.captcha_solve",
    # modules added on main after i18 was built (wave 2: i23 doctor, i24 accounts/API)
    "worker.doctor_runs": "worker.storage.doctor_runs",
    "worker.doctor": "worker.services.doctor",
    "worker.preflight": "worker.services.preflight",
    "worker.roles": "worker.core.roles",
    "worker.accounts": "worker.storage.accounts",
    "worker.audit": "worker.storage.audit",
    "worker.webhooks": "worker.engine.webhooks",  # its tables and queries: storage/webhooks.py
    "worker.accounts_cli": "worker.interfaces.accounts_cli",
}

#: Test files mirror the packages: old path -> new path (relative to the repository).
TESTS: dict[str, str] = {
    "tests/worker/test_logs.py": "tests/worker/core/test_logs.py",
    "tests/worker/test_settings.py": "tests/worker/core/test_settings.py",
    "tests/worker/test_intake.py": "tests/worker/intake/test_intake.py",
    "tests/worker/test_intake_fuzz.py": "tests/worker/intake/test_intake_fuzz.py",
    "tests/worker/test_intake_hostile.py": "tests/worker/intake/test_intake_hostile.py",
    "tests/worker/test_storage.py": "tests/worker/storage/test_storage.py",
    "tests/worker/test_report.py": "tests/worker/report/test_report.py",
    "tests/worker/test_engine.py": "tests/worker/engine/test_check.py",
    "tests/worker/test_distributed.py": "tests/worker/engine/test_distributed.py",
    "tests/worker/test_limits.py": "tests/worker/engine/test_limits.py",
    "tests/worker/test_sweeper.py": "tests/worker/engine/test_sweeper.py",
    "tests/worker/test_notify.py": "tests/worker/engine/test_notify.py",
    "tests/worker/test_purge.py": "tests/worker/services/test_purge.py",
    "tests/worker/test_recheck.py": "tests/worker/services/test_recheck.py",
    "tests/worker/test_schedule.py": "tests/worker/services/test_schedule.py",
    "tests/worker/test_terminal.py": "tests/worker/interfaces/test_terminal.py",
    "tests/worker/test_validate.py": "tests/worker/interfaces/test_validate.py",
    "tests/worker/test_cli.py": "tests/worker/interfaces/test_cli.py",
    "tests/worker/web": "tests/worker/interfaces/web",
    # tests added on other branches (wave 1)
    "tests/worker/test_blocked_portal.py": "tests/worker/engine/test_blocked_portal.py",
    "tests/worker/test_pause.py": "tests/worker/engine/test_pause.py",
    "tests/worker/test_counts.py": "tests/worker/report/test_counts.py",
    "tests/worker/test_data_dir.py": "tests/worker/interfaces/test_data_dir.py",
    "tests/worker/test_intake_formulas.py": "tests/worker/intake/test_intake_formulas.py",
    "tests/worker/test_intake_messages.py": "tests/worker/intake/test_intake_messages.py",
    "tests/worker/test_statuses.py": "tests/worker/core/test_statuses.py",
    # tests added on main after i18 was built (wave 2)
    "tests/worker/test_doctor.py": "tests/worker/services/test_doctor.py",
    "tests/worker/test_preflight.py": "tests/worker/services/test_preflight.py",
    "tests/worker/test_webhooks.py": "tests/worker/engine/test_webhooks.py",
}

PACKAGES = {
    "worker/core": "The core every layer may use: statuses, settings, errors, logs, text.",
    "worker/intake": "Intake: a spreadsheet in, the rows and their CURPs out.",
    "worker/storage": "Storage: the models, the one repository with every query, the migrations.",
    "worker/report": "The report: reporte.xlsx from a batch's stored results.",
    "worker/engine": "The engine: one check, the limits, the embedded and Celery executors.",
    "worker/services": "Services: batches, re-checks, people, purge, the schedule.",
    "worker/interfaces": "Interfaces: the command line and the HR web page.",
}
TEST_PACKAGES = ["tests/worker/core", "tests/worker/intake", "tests/worker/storage",
                 "tests/worker/report", "tests/worker/engine", "tests/worker/services",
                 "tests/worker/interfaces"]

SELF = "scripts/restructure_layers.py"

TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".sh", ".txt", ".mako",
                 ".html", ".js"}
TEXT_NAMES = {"Dockerfile", "Makefile", "run", ".dockerignore", ".gitignore"}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True).stdout


def move(root: Path, old: Path, new: Path) -> None:
    tracked = set(git(root, "ls-files").splitlines())
    if old.is_dir():
        for path in sorted(old.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_file() and rel in tracked:
                move(root, path, new / path.relative_to(old))
        return
    rel = old.relative_to(root).as_posix()
    if not old.is_file() or rel not in tracked or new.exists():
        return
    new.parent.mkdir(parents=True, exist_ok=True)
    git(root, "mv", rel, new.relative_to(root).as_posix())
    print(f"moved {rel} -> {new.relative_to(root).as_posix()}")
    deeper = len(new.relative_to(root).parts) - len(old.relative_to(root).parts)
    if deeper and new.suffix == ".py":
        # ``Path(__file__).resolve().parents[2]`` (the repository) is one level further now.
        text = new.read_text(encoding="utf-8")
        fixed = re.sub(r"(Path\(__file__\)\.resolve\(\)\.parents\[)(\d+)(\])",
                       lambda m: f"{m.group(1)}{int(m.group(2)) + deeper}{m.group(3)}", text)
        if fixed != text:
            new.write_text(fixed, encoding="utf-8")


def submodules(root: Path, dotted: str) -> list[str]:
    folder = root.joinpath(*dotted.split("."))
    if not folder.is_dir():
        return []
    return sorted({p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
                  | {p.name for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"})


def rewrite_rules(root: Path) -> list[tuple[re.Pattern[str], str]]:
    rules: list[tuple[re.Pattern[str], str]] = []
    for old, new in MODULES.items():
        guard = r"\b"
        if new.startswith(old + "."):
            # ``worker.engine`` is now a package, named as such in code and prose written since:
            # only an import from it (``from worker.engine import``) or one of its old module's
            # attributes (``worker.engine.Engine``, never one of the package's own modules) still
            # means the old module.
            subs = submodules(root, old)
            own = r"(?!(?:" + "|".join(map(re.escape, subs)) + r")\b)" if subs else ""
            guard = r"(?=\s+(?:import|as)\b|\." + own + r"[A-Za-z_])"
        # Dotted: ``worker.engine``, not ``worker.engines`` nor ``myworker.engine``.
        rules.append((re.compile(r"(?<![\w.])" + re.escape(old) + guard), new))
        # As a path: ``worker/engine.py`` and ``worker/web/`` (docs, comments, SECURITY.md).
        old_path, new_path = old.replace(".", "/"), new.replace(".", "/")
        if (root / (new_path + ".py")).is_file():
            rules.append((re.compile(r"(?<![\w/])" + re.escape(old_path) + r"\.py\b"),
                          new_path + ".py"))
        elif (root / new_path).is_dir():
            rules.append((re.compile(r"(?<![\w/])" + re.escape(old_path) + r"(?=/)"), new_path))
    for old, new in TESTS.items():
        # Longest first is not needed: test paths are disjoint.
        dotted_old = old.removesuffix(".py").replace("/", ".")
        dotted_new = new.removesuffix(".py").replace("/", ".")
        rules.append((re.compile(r"(?<![\w/])" + re.escape(old) + r"(?![\w])"), new))
        rules.append((re.compile(r"(?<![\w.])" + re.escape(dotted_old) + r"\b"), dotted_new))
    # One import of a module through its parent package.
    rules.append((re.compile(r"from worker import storage as st\b"),
                  "import worker.storage.repository as st"))
    return rules


def rewrite(root: Path) -> None:
    rules = rewrite_rules(root)
    changed: list[str] = []
    for rel in git(root, "ls-files").splitlines():
        if rel == SELF:
            continue  # its tables name the old modules on purpose
        path = root / rel
        if not path.is_file() or (path.suffix not in TEXT_SUFFIXES and path.name not in TEXT_NAMES):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = text
        for pattern, replacement in rules:
            new = pattern.sub(replacement, new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {rel}")
            changed.append(rel)
    ruff = root / ".venv" / "bin" / "ruff"
    py = [d for d in ("worker", "flows", "fixtures", "tests", "bench") if (root / d).is_dir()]
    if ruff.exists():
        # Renamed modules sort differently: re-sort those imports (ruff's isort rule) only.
        subprocess.run([str(ruff), "check", "--silent", "--select", "I", "--fix", *py],
                       cwd=root, check=False)


def main(root: Path) -> None:
    for old, new in MODULES.items():
        old_base, new_base = root.joinpath(*old.split(".")), root.joinpath(*new.split("."))
        if old_base.with_suffix(".py").is_file():
            move(root, old_base.with_suffix(".py"), new_base.with_suffix(".py"))
        elif old_base.is_dir() and not new.startswith(old + "."):
            # A folder (``worker/web``); a package that replaced a module of the same name
            # (``worker/intake/``) is the new place, not something to move.
            move(root, old_base, new_base)
    for old, new in TESTS.items():
        move(root, root / old, root / new)
    for pkg, doc in PACKAGES.items():
        init = root / pkg / "__init__.py"
        if (root / pkg).is_dir() and not init.exists():
            init.write_text(f'"""{doc}"""\n', encoding="utf-8")
            git(root, "add", init.relative_to(root).as_posix())
    for pkg in TEST_PACKAGES:
        init = root / pkg / "__init__.py"
        if (root / pkg).is_dir() and not init.exists():
            init.write_text("", encoding="utf-8")
            git(root, "add", init.relative_to(root).as_posix())
    rewrite(root)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve())
