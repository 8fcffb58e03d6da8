"""The ``gadoreduce`` command: one subcommand per task, each a thin layer over GadoReduceLib.

Errors in the user's input (a missing file, a 2D image, a bad option) print one clear line
and exit with status 2; ``--debug`` shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import DISCLAIMER, __version__


def _cmd_info(args: argparse.Namespace) -> int:
    from .imageio import format_info, image_info
    infos = [image_info(path, args.series) for path in args.paths]
    if args.json:
        print(json.dumps(infos if len(infos) > 1 else infos[0], indent=2))
    else:
        print("\n\n".join(format_info(info) for info in infos))
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="print geometry, intensity range and header of images",
                       description="Print geometry (size, spacing, origin in LPS and RAS, axis directions), "
                                   "intensity range and header fields of NIfTI, NRRD or MetaImage files or "
                                   "DICOM folders. Patient-identifying DICOM fields are never printed.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image file or folder with one DICOM series")
    p.add_argument("--series", metavar="UID", help="DICOM SeriesInstanceUID, when a folder holds several series")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=_cmd_info)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gadoreduce",
        description="GadoReduce: gadolinium dose reduction for brain MRI (Pinetz, Kobler et al. 2024). "
                    + DISCLAIMER,
    )
    parser.add_argument("--version", action="version", version=f"gadoreduce {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_info(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # output piped into `head` and the like
        return 0
    except (ValueError, FileNotFoundError, OSError) as error:
        if args.debug:
            raise
        print(f"gadoreduce {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"gadoreduce {args.command}: interrupted; no partial outputs were kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
