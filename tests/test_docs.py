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


def test_readme_is_at_most_15000_characters():
    assert len((ROOT / "README.md").read_text(encoding="utf-8")) <= 15_000


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
