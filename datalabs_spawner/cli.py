"""The ``datalabs`` command that missions and operators run.

``datalabs catalogue check DIR...``  validate every datalab, volume and pipeline; print
                                   ``file: field: problem`` lines and exit 1 when anything is
                                   wrong (for a mission's own CI).
``datalabs catalogue list DIR... [--json]``  the entries the hub would serve.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .catalogue import Catalogue


def _catalogue(dirs: Sequence[str]) -> Catalogue:
    missing = [d for d in dirs if not Path(d).is_dir()]
    if missing:
        raise SystemExit(f"datalabs: not a directory: {', '.join(missing)}")
    catalogue = Catalogue(dirs)
    catalogue.refresh()
    return catalogue


def _pipelines(dirs: Sequence[str]):
    """The pipeline catalogue of the same folders (imported late: cwltool is slow to load)."""
    from datalabs_pipelines.catalogue import Catalogue as PipelineCatalogue

    return PipelineCatalogue([Path(d) for d in dirs])


def _relative(path: Path, dirs: Sequence[str]) -> str:
    for d in dirs:
        try:
            return path.resolve().relative_to(Path(d).resolve()).as_posix()
        except ValueError:
            continue
    return str(path)


def cmd_check(args: argparse.Namespace) -> int:
    catalogue = _catalogue(args.dirs)
    pipelines = _pipelines(args.dirs)
    problems = [str(p) for p in catalogue.problems]
    problems += [f"{_relative(p.path, args.dirs)}: (cwl): {p.reason}" for p in pipelines.problems()]
    for p in sorted(problems):
        print(p)
    n_datalabs = len(catalogue.datalabs.entries)
    n_volumes = len(catalogue.volumes.entries)
    n_pipelines = len(pipelines.pipelines())
    summary = (
        f"{n_datalabs} datalab(s), {n_volumes} volume(s), {n_pipelines} pipeline(s), "
        f"{len(problems)} problem(s)"
    )
    print(summary, file=sys.stderr)
    return 1 if problems else 0


def cmd_list(args: argparse.Namespace) -> int:
    catalogue = _catalogue(args.dirs)
    datalabs = [d.to_json() for d in catalogue.datalabs.entries.values()]
    volumes = [v.to_json() for v in catalogue.volumes.entries.values()]
    if args.json:
        pipelines = _pipelines(args.dirs)
        json.dump(
            {
                "datalabs": datalabs,
                "volumes": volumes,
                "pipelines": [p.to_json() for p in pipelines.pipelines()],
                "problems": [str(p) for p in catalogue.problems]
                + [
                    f"{_relative(p.path, args.dirs)}: (cwl): {p.reason}"
                    for p in pipelines.problems()
                ],
            },
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    print("Datalabs:")
    for d in datalabs:
        print(f"  {d['slug']:<28} {d['kind']:<8} {d['mission']:<12} {d['title']}")
    print("Volumes:")
    for v in volumes:
        who = (
            "everyone"
            if not (v["access"]["groups"] or v["access"]["users"])
            else (
                "groups "
                + ",".join(v["access"]["groups"])
                + " users "
                + ",".join(v["access"]["users"])
            )
        )
        print(f"  {v['id']:<28} {v['mission']:<12} {v['title']}  [{who}]")
    for p in catalogue.problems:
        print(f"problem: {p}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datalabs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cat = sub.add_parser("catalogue", help="check or list a catalogue directory")
    cat_sub = cat.add_subparsers(dest="action", required=True)
    check = cat_sub.add_parser("check", help="validate every entry; exit 1 on any problem")
    check.add_argument("dirs", nargs="+", metavar="DIR")
    check.set_defaults(func=cmd_check)
    lst = cat_sub.add_parser("list", help="print the entries the hub would serve")
    lst.add_argument("dirs", nargs="+", metavar="DIR")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
