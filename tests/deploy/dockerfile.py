"""Just enough of a Dockerfile parser for the checks in ``test_dockerfiles``."""

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    stage: int
    """0 for the first ``FROM`` stage, 1 for the second, ..."""


def instructions(path: Path, build_args: Mapping[str, str] | None = None) -> list[Instruction]:
    """The file's instructions; with ``build_args``, build arguments ``${NAME}`` replaced."""
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
    if build_args is not None:
        out = [
            Instruction(i.keyword, _substitute(i.args, build_args), i.stage)
            for i in out
            if i.keyword != "ARG"
        ]
    return out


def _substitute(text: str, build_args: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        return build_args[name] if name in build_args else match.group(0)

    return re.sub(r"\$\{([A-Z_]+)\}", value, text)


def copy_sources(path: Path, build_args: Mapping[str, str] | None = None) -> list[str]:
    """The build-context paths the file copies (not ``COPY --from=``)."""
    sources: list[str] = []
    for ins in instructions(path, build_args):
        if ins.keyword == "COPY" and "--from=" not in ins.args:
            *srcs, _dest = shlex.split(ins.args)
            sources.extend(s for s in srcs if not s.startswith("--"))
    return sources
