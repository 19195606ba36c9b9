"""rehab clinician add, rehab patient invite|remove|erase|sessions: accounts and erasure from the
server's side (the same operations as the gateway's REST calls, for an operator on the database's
machine; every one is written to the audit log as ``cli:USER``)."""
from __future__ import annotations

import asyncio
import getpass
import json
import sys

from rehab.settings import Settings


def add_commands(sub) -> None:
    c = sub.add_parser("clinician", help="clinician credentials")
    c.add_argument("action", choices=["add"])
    c.add_argument("clinician_id")
    c.set_defaults(func=run_clinician)
    p = sub.add_parser("patient", help="enrol (invite), remove or erase a patient; list their sessions")
    p.add_argument("action", choices=["invite", "remove", "erase", "sessions"])
    p.add_argument("patient_id")
    p.add_argument("--clinician", help="invite: the clinician the patient is enrolled by")
    p.add_argument("--yes", action="store_true", help="erase: do not ask for confirmation")
    p.set_defaults(func=run_patient)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name (a container without /etc/passwd entry)
        return "cli"


def _check_id(value: str, what: str) -> str:
    from rehab.reference import _ID

    if not _ID.match(value):
        raise ValueError(f"{what} must be 1-64 letters, digits, '_', '.', '-'")
    return value


async def _with_identity(settings: Settings, fn):
    from rehab.adapters.storage.identity import Identity
    from rehab.adapters.storage.repository import Database

    async with Database.opened(settings) as db:
        return await fn(Identity(db))


def run_clinician(args) -> int:
    settings = Settings.from_env()
    clinician = _check_id(args.clinician_id, "clinician_id")

    async def add(identity):
        credential = await identity.new_credential("clinician", clinician)
        await identity.audit(_actor(), "clinician_credential_issued", None, clinician_id=clinician,
                             credential_id=credential.partition(".")[0])
        return credential

    credential = asyncio.run(_with_identity(settings, add))
    print(json.dumps({"clinician_id": clinician, "credential": credential}))
    print("keep the credential: it is shown once (the clinician exchanges it at POST /tokens)", file=sys.stderr)
    return 0


def run_patient(args) -> int:
    from rehab.adapters.storage.identity import Conflict

    settings = Settings.from_env()
    patient = _check_id(args.patient_id, "patient_id")
    if args.action == "invite":
        clinician = None if args.clinician is None else _check_id(args.clinician, "--clinician")
        try:
            code, ttl = asyncio.run(_with_identity(settings, lambda i: i.enrol(
                patient, clinician, _actor(), settings.invitation_ttl_s)))
        except Conflict as exc:
            raise ValueError(str(exc)) from None
        print(json.dumps({"patient_id": patient, "invitation_code": code, "expires_in_s": ttl,
                          "invitation_url": f"{settings.gateway_url.rstrip('/')}/?invite={code}"}))
        return 0
    if args.action == "sessions":
        print(json.dumps(asyncio.run(_with_identity(settings, lambda i: i.sessions_of(patient))), indent=1))
        return 0
    if args.action == "remove":
        removed = asyncio.run(_with_identity(settings, lambda i: i.remove(patient, _actor())))
        if not removed:
            raise ValueError(f"no enrolled patient {patient!r} (or removed before)")
        print(json.dumps({"patient_id": patient, "removed": True}))
        return 0
    # erase
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValueError("erasing cannot be undone: pass --yes")
        if input(f"erase every record of patient {patient!r}? this cannot be undone [type the id]: ") != patient:
            print("not erased", file=sys.stderr)
            return 1
    from rehab.ops.erasure import erase_patient

    try:
        report = asyncio.run(erase_patient(settings, patient, _actor()))
    except LookupError as exc:
        raise ValueError(str(exc)) from None
    print(json.dumps(report.as_dict()))
    if report.not_compacted:
        print(f"note: {', '.join(report.not_compacted)} are not compacted (created by an older version): the "
              "patient's records there stay until the topic's retention (rehab init --compact-existing)",
              file=sys.stderr)
    return 0
