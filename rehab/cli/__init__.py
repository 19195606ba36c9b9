"""``rehab``: the command line. Every command gives a clear message and a non-zero exit on bad input.

  rehab stack up|down|status         the local Kafka broker and MariaDB
  rehab migrate                      apply SQL migrations
  rehab reference add VIDEO [VIDEO ...] --name N [--mistake "LABEL=VIDEO"]...
                                     register a guide: correct takes, named mistakes (into MySQL)
  rehab reference list
  rehab extract VIDEO [--jsonl]      keypoint frames of a video or image
  rehab score --reference REF [--reference REF ...] [--mistake LABEL=FILE]... ATTEMPT [ATTEMPT ...] [--json]
                                     score attempts (videos or keypoint files; JSON Lines with --json)
  rehab stream VIDEO --reference ID  stream a file to the gateway over WebRTC, print live scores
  rehab serve gateway|worker|processor
  rehab demo                         the whole live pipeline on the bundled clips
  rehab clinician add ID             a clinician credential
  rehab patient invite|remove|erase|sessions ID
"""
from __future__ import annotations

import argparse
import logging
import sys

from rehab.adapters import kafka_compat
from rehab.cli import live, offline, patients, stack


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rehab", description="ReHab Live command line")
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)
    stack.add_commands(sub)
    offline.add_commands(sub)
    live.add_commands(sub)
    patients.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from edge.backends.base import BackendError
    from edge.video import VideoError
    from rehab.settings import SettingsError
    from rehab.stack.proc import StackError

    kafka_compat.apply()
    try:
        return args.func(args) or 0
    except (VideoError, BackendError, StackError, SettingsError, FileNotFoundError, ValueError) as exc:
        print(f"rehab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:  # e.g. MySQL or Kafka unreachable
        print(f"rehab {args.command}: error: {exc} (is the stack up? rehab stack up)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
