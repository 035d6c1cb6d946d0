"""`axe config init [PATH]`: write a commented starting customers.yaml — the project's
customers.example.yaml, every setting explained — as borgmatic's `config generate` does. It
never overwrites a file that is there (exit 2); the new file is 0600 (it names password
sources). cli.py registers it beside `config validate`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from axe_pipelines.errors import EXIT_OK, Unusable, UsageError

EXAMPLE = Path(__file__).resolve().parent.parent / "customers.example.yaml"
DEFAULT_TARGET = Path("~/.axe/customers.yaml")


def target_path(path: Path | None, config: Path | None) -> Path:
    """Given `axe config init`'s PATH and the global --config, return where to write: PATH,
    else --config, else $AXE_CONFIG, else ~/.axe/customers.yaml (where axe looks last)."""
    chosen = path or config or (Path(os.environ["AXE_CONFIG"])
                                if os.environ.get("AXE_CONFIG") else DEFAULT_TARGET)
    return chosen.expanduser()


def write_starting_config(target: Path, example: Path = EXAMPLE) -> Path:
    """Given where to write, create the starting customers.yaml there (mode 0600, its folder
    made if needed) and return its path. Raise UsageError if a file is already there, Unusable
    if the example or the folder cannot be read or written."""
    try:
        text = example.read_text()
    except OSError as exc:
        raise Unusable(f"cannot read the example configuration {example} ({exc.strerror}); "
                       f"reinstall axe-pipelines from its checkout (scripts/setup)") from None
    if target.exists() or target.is_symlink():
        raise _exists(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # 'x': a file that appeared since the check above is not overwritten either.
        with open(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
            out.write(text)
    except FileExistsError:
        raise _exists(target) from None
    except OSError as exc:
        raise Unusable(f"cannot write {target} ({exc.strerror}); choose a writable PATH") \
            from None
    return target


def _exists(target: Path) -> UsageError:
    return UsageError(f"{target} already exists; axe config init never overwrites a "
                      f"customers.yaml: edit that one, or give another PATH")


def cmd_config_init(args: argparse.Namespace) -> int:
    """`axe config init [PATH]`: write the starting customers.yaml and say what to do next."""
    written = write_starting_config(target_path(args.path, args.config))
    print(f"wrote {written}: a commented starting customers.yaml (customer axe, ring peer "
          f"realchoice). Edit it for this site, then: axe --config {written} config validate")
    return EXIT_OK


def add_config_init(config_commands: argparse._SubParsersAction) -> None:
    """Given the `axe config` subcommands, add `init [PATH]`."""
    init = config_commands.add_parser(
        "init", help="write a commented starting customers.yaml (never overwrites one)")
    init.add_argument("path", nargs="?", type=Path,
                      help="where (default: --config, $AXE_CONFIG, ~/.axe/customers.yaml)")
    init.set_defaults(func=cmd_config_init)
