"""The README and docs/ stay short, linked and current."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "data" / "README.md",
         ROOT / "export" / "README.md"]
SHARED = "/".join(["..", "shared"])  # spelled apart, so that this file does not name it
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_readme_is_at_most_12000_characters():
    assert len((ROOT / "README.md").read_text(encoding="utf-8")) <= 12_000


def test_every_relative_link_resolves_to_a_file_in_the_repository():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists() or ROOT not in path.parents:
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


def test_readme_links_every_docs_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert not [p for p in sorted(pages) if f"(docs/{p})" not in readme]


def test_cli_reference_is_generated_from_the_current_parser():
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "make_cli_reference.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_nothing_refers_to_a_shared_folder_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (an sdist): read what is there
        tracked = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file() and ".venv" not in p.parts]
    offenders = [name for name in tracked if name.endswith((".py", ".md", ".cfg", ".toml", ".sh"))
                 and SHARED in (ROOT / name).read_text(encoding="utf-8", errors="replace")]
    assert not offenders


# The command lines of the docs, checked by the real argument parser: a renamed flag or preset fails here.
COMMAND_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "export" / "README.md",
                 ROOT / "export" / "web" / "README.md", ROOT / "docs" / "tutorial.ipynb"]
# The placeholders the docs write for a value of the reader's: each stands for one value the parser accepts.
PLACEHOLDERS = {"COMMAND": "train", "NAME": "mlp", "P": "lecture", "Q": "dynamic", "PATIENCE": "3", "RATE": "0.1", "N": "4", "S": "1"}
FENCE = re.compile(r"^ {0,3}```.*?^ {0,3}```[^\n]*$", re.S | re.M)
INLINE = re.compile(r"`([^`]+)`")
COMMAND = re.compile(r"(?:^|(?<=[\s/(!]))keras-makemore[ \t]+([^\n]*)")
PRINTED = re.compile(r"\s*keras-makemore(:|\s+\d)")  # a line the command prints: an error, its version
SHELL_END = re.compile(r"\s(?:&&|\|\||\||;|#|>|2>)\s|\s(?:&&|\|\|)$")


def _joined(block: str) -> str:
    """A shell block with its continuation lines (`\\` at the end) joined into one line each.

    Lines the command prints are left out: its errors (`keras-makemore: error: ...`) and its version.
    """
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()
    return "\n".join(line for line in lines if not PRINTED.match(line))


def _command_texts(text: str) -> list[str]:
    """What follows `keras-makemore` on each command line of a Markdown text: code blocks and inline code."""
    found = []
    for fence in FENCE.findall(text):
        found += COMMAND.findall(_joined(fence))
    prose = FENCE.sub("", text)
    for span in INLINE.findall(prose):  # inline code is a command when it starts with one
        span = " ".join(span.split())
        if re.match(r"(\S*/)?keras-makemore\s", span) and not PRINTED.match(span):
            found += COMMAND.findall(span)
    prose = INLINE.sub(" ", prose)
    indented = "\n".join(line for line in prose.splitlines() if line.startswith("    "))
    found += COMMAND.findall(_joined(indented))
    return found


def _page_commands(page: Path) -> list[str]:
    if page.suffix != ".ipynb":
        return _command_texts(page.read_text(encoding="utf-8"))
    import json

    cells = json.loads(page.read_text(encoding="utf-8"))["cells"]
    texts = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    texts += ["\n".join("    " + line[1:] for line in "".join(c["source"]).splitlines() if line.startswith("!"))
              for c in cells if c["cell_type"] == "code"]
    return [command for text in texts for command in _command_texts(text)]


def _argv_variants(command: str) -> list[list[str]]:
    """The argument lists a command line stands for: shell operators cut it, `a|b` is each of a and b."""
    import shlex

    command = SHELL_END.split(command, maxsplit=1)[0].strip()
    if command.endswith(")") and command.count(")") > command.count("("):
        command = command[:-1]  # the end of a parenthesis around the command, as in train's last line
    try:
        tokens = shlex.split(command)
    except ValueError as error:  # an unclosed quote: reported as the command's failure
        return [[f"<{error}: {command}>"]]
    argv = [PLACEHOLDERS.get(token, token) for token in tokens if token not in ("...", "…")]
    if not argv:  # `keras-makemore ...`: any command
        return []
    variants = [[]]
    for token in argv:
        choices = token.split("|") if "|" in token and not token.startswith("-") else [token]
        variants = [v + [c] for v in variants for c in choices]
    return variants


def _parse_error(argv: list[str]) -> str | None:
    """None if the real parser takes `argv` (as `keras-makemore` reads it), else what it said."""
    import contextlib
    import io

    from keras_makemore.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # argparse lists its subcommands nowhere public
    for command in commands.values():
        command.allow_abbrev = False  # the docs spell each flag whole: a prefix breaks when a flag is added
    if len(argv) == 1 and not argv[0].startswith("-"):  # `keras-makemore sample` alone names the command, in prose or a table
        return None if argv[0] in commands else f"no command {argv[0]!r}"
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            args, _ = parser.parse_known_args(argv)
            if args.command is None:
                return f"no command in {argv}"
            args.command_parser.parse_intermixed_args(argv[argv.index(args.command) + 1:])
    except SystemExit as exit_:  # --help and --version exit with 0
        return None if exit_.code == 0 else err.getvalue().strip() or f"exit {exit_.code}"
    return None


def test_every_command_line_in_the_docs_parses():
    """Each `keras-makemore ...` line of the docs parses with today's parser; `keras-makemore NAME` alone names a command."""
    checked, failures = 0, []
    for page in COMMAND_PAGES:
        for command in _page_commands(page):
            for argv in _argv_variants(command):
                checked += 1
                error = _parse_error(argv)
                if error:
                    failures.append(f"{page.relative_to(ROOT)}: keras-makemore {' '.join(argv)}\n    {error}")
    print(f"{checked} command lines checked")
    assert not failures, f"{len(failures)} of {checked} command lines do not parse:\n" + "\n".join(failures)
    assert checked >= 80, f"only {checked} command lines found: is the extraction broken?"


def _anchors(page: Path) -> set[str]:
    """The `#fragment`s a Markdown page has: GitHub's heading anchors and explicit `<a id="...">` tags."""
    text = page.read_text(encoding="utf-8")
    found = set(re.findall(r'<a id="([^"]+)">', text))
    for heading in re.findall(r"^#+ (.*)$", FENCE.sub("", text), flags=re.M):
        heading = re.sub(r"<[^>]+>", "", heading).strip().lower()
        found.add(re.sub(r"[^\w\- ]", "", heading).replace(" ", "-"))
    return found


def test_every_link_to_a_section_finds_it():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or "#" not in target:
                continue
            name, fragment = target.split("#", 1)
            linked = (page.parent / name).resolve() if name else page
            if linked.suffix == ".md" and linked.exists() and fragment not in _anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken
