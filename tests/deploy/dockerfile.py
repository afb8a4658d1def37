"""Just enough of a Dockerfile parser for the checks in ``test_dockerfiles``."""

import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int
    """0 for the first ``FROM`` stage, 1 for the second, ..."""


def instructions(path: Path) -> list[Instruction]:
    out: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(keyword.upper(), args.strip(), stage))
    return out


def copy_sources(path: Path) -> list[str]:
    """The build-context paths the file copies (not ``COPY --from=``)."""
    sources: list[str] = []
    for ins in instructions(path):
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            *srcs, _dest = shlex.split(ins.args)
            sources.extend(s for s in srcs if not s.startswith("--"))
    return sources
