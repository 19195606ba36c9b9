"""Patients, invitations, credentials and the audit log (migration 004_identity.sql).

A credential is ``ID.SECRET`` (both URL-safe): the id finds its row, the secret is compared with the
stored SHA-256 in constant time. Secrets and invitation codes are 256-bit random (``secrets``), so a
fast hash is enough: there is no password to guess. Nothing here knows HTTP: the gateway
(gateway/accounts.py) and the CLI (``rehab patient ...``) call it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from rehab.adapters.storage.repository import Database


class Conflict(Exception):
    """The patient exists under another clinician, or was removed."""


class Gone(Exception):
    """An invitation already used or expired, or a patient since removed."""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Identity:
    def __init__(self, db: Database):
        self.db = db

    # -- audit ------------------------------------------------------------------------------
    async def audit(self, actor: str, action: str, patient_id: str | None = None, **detail) -> None:
        await self.db.execute("INSERT INTO audit_log (actor, action, patient_id, detail) VALUES (%s, %s, %s, %s)",
                              (actor, action, patient_id, json.dumps(detail) if detail else None))

    async def audit_entries(self, patient_id: str) -> list[dict]:
        rows = await self.db.execute("SELECT at, actor, action, detail FROM audit_log WHERE patient_id=%s ORDER BY id",
                                     (patient_id,), fetch="all")
        return [{"at": str(r[0]), "actor": r[1], "action": r[2], "detail": json.loads(r[3]) if r[3] else {}}
                for r in rows]

    # -- credentials ------------------------------------------------------------------------
    async def new_credential(self, kind: str, subject: str) -> str:
        cid, secret = secrets.token_hex(16), secrets.token_urlsafe(32)
        await self.db.execute("INSERT INTO credentials (id, kind, subject, secret_sha256) VALUES (%s, %s, %s, %s)",
                              (cid, kind, subject, _sha256(secret)))
        return f"{cid}.{secret}"

    async def check_credential(self, credential: str) -> tuple[str, str, str]:
        """(kind, subject, credential id) of a valid credential; LookupError for an unknown, wrong or
        revoked one (one message for all: a caller learns nothing about which ids exist)."""
        cid, _, secret = credential.partition(".")
        row = None
        if cid and secret and len(cid) <= 32:
            row = await self.db.execute(
                "SELECT c.kind, c.subject, c.secret_sha256, c.revoked_at, p.removed_at FROM credentials c "
                "LEFT JOIN patients p ON c.kind = 'patient' AND p.id = c.subject WHERE c.id=%s", (cid,), fetch="one")
        if row is None or not hmac.compare_digest(row[2].encode(), _sha256(secret).encode()) or row[3] or row[4]:
            raise LookupError("unknown, wrong or revoked credential")
        return row[0], row[1], cid

    async def revoke_credential(self, cid: str, actor: str) -> None:
        row = await self.db.execute("SELECT kind, subject FROM credentials WHERE id=%s", (cid,), fetch="one")
        await self.db.execute("UPDATE credentials SET revoked_at=COALESCE(revoked_at, CURRENT_TIMESTAMP(3)) "
                              "WHERE id=%s", (cid,))
        if row is not None:
            await self.audit(actor, "credential_revoked", row[1] if row[0] == "patient" else None,
                             credential_id=cid, kind=row[0])

    async def revoked(self, cid: str | None, patient_id: str | None) -> bool:
        """Whether a token's credential was revoked or is gone (its patient erased), or its patient was
        removed (one indexed query)."""
        row = await self.db.execute(
            "SELECT (SELECT COUNT(*) FROM credentials WHERE id=%s AND revoked_at IS NULL), "
            "(SELECT COUNT(*) FROM patients WHERE id=%s AND removed_at IS NOT NULL)",
            (cid or "", patient_id or ""), fetch="one")
        return (cid is not None and not row[0]) or bool(row[1])

    async def changes_since(self, since) -> tuple[object, set[str], set[str]]:
        """(the database's time now, credentials revoked and patients removed since ``since``); a
        gateway polls this to close what a revocation elsewhere ended (None: since ever)."""
        now = (await self.db.execute("SELECT CURRENT_TIMESTAMP(3)", fetch="one"))[0]
        since = since or "1970-01-02"
        creds = await self.db.execute("SELECT id FROM credentials WHERE revoked_at >= %s", (since,), fetch="all")
        pats = await self.db.execute("SELECT id FROM patients WHERE removed_at >= %s", (since,), fetch="all")
        return now, {r[0] for r in creds}, {r[0] for r in pats}

    # -- patients ---------------------------------------------------------------------------
    async def patient(self, patient_id: str) -> dict | None:
        row = await self.db.execute("SELECT id, clinician_id, created_at, removed_at FROM patients WHERE id=%s",
                                    (patient_id,), fetch="one")
        if row is None:
            return None
        return {"patient_id": row[0], "clinician_id": row[1], "created_at": str(row[2]),
                "removed_at": None if row[3] is None else str(row[3])}

    async def enrol(self, patient_id: str, clinician_id: str | None, actor: str, ttl_s: int) -> tuple[str, float]:
        """Enrols the patient (or re-invites one of the same clinician): a fresh single-use invitation
        code and its lifetime in seconds. Conflict: the patient belongs to another clinician or was removed."""
        await self.db.execute("INSERT INTO patients (id, clinician_id) VALUES (%s, %s) "
                              "ON DUPLICATE KEY UPDATE id=id",
                              (patient_id, clinician_id))
        row = await self.patient(patient_id)
        if row["removed_at"] is not None:
            raise Conflict(f"patient {patient_id!r} was removed; enrol them under a new id")
        if clinician_id is not None and row["clinician_id"] != clinician_id:
            raise Conflict(f"patient {patient_id!r} is enrolled by another clinician")
        code = secrets.token_urlsafe(24)
        await self.db.execute(
            "INSERT INTO invitations (code_sha256, patient_id, created_by, expires_at) "
            "VALUES (%s, %s, %s, CURRENT_TIMESTAMP(3) + INTERVAL %s SECOND)",
            (_sha256(code), patient_id, actor, int(ttl_s)))
        await self.audit(actor, "invited", patient_id, clinician_id=row["clinician_id"])
        return code, ttl_s

    async def accept(self, code: str) -> tuple[str, str]:
        """Exchanges an invitation code, once, for (patient id, a new patient credential).
        LookupError: no such code; Gone: used, expired, or the patient was removed."""
        row = await self.db.execute(
            "SELECT i.patient_id, i.used_at, i.expires_at < CURRENT_TIMESTAMP(3), p.removed_at FROM invitations i "
            "JOIN patients p ON p.id = i.patient_id WHERE i.code_sha256=%s", (_sha256(code),), fetch="one")
        if row is None:
            raise LookupError("unknown invitation code")
        if row[1] is not None or row[2] or row[3] is not None:
            raise Gone("this invitation was already used or has expired: ask your clinician for a new one")
        # used once: of two concurrent exchanges only the one whose UPDATE changed the row gets a credential
        changed = await self.db.execute("UPDATE invitations SET used_at=CURRENT_TIMESTAMP(3) "
                                        "WHERE code_sha256=%s AND used_at IS NULL", (_sha256(code),))
        if changed != 1:
            raise Gone("this invitation was already used")
        credential = await self.new_credential("patient", row[0])
        await self.audit(f"patient:{row[0]}", "invitation_accepted", row[0],
                         credential_id=credential.partition(".")[0])
        return row[0], credential

    async def remove(self, patient_id: str, actor: str, enrol_missing: bool = False) -> bool:
        """Removes the patient: every credential of theirs revoked, their invitations void. False: no such
        patient (or removed before). ``enrol_missing``: a patient known only from sessions (demo mode)
        gets a row first, so that gateways see the removal and end their live sessions."""
        if enrol_missing:
            await self.db.execute("INSERT INTO patients (id) VALUES (%s) ON DUPLICATE KEY UPDATE id=id", (patient_id,))
        changed = await self.db.execute("UPDATE patients SET removed_at=CURRENT_TIMESTAMP(3) "
                                        "WHERE id=%s AND removed_at IS NULL", (patient_id,))
        if changed != 1:
            return False
        await self.db.execute("UPDATE credentials SET revoked_at=COALESCE(revoked_at, CURRENT_TIMESTAMP(3)) "
                              "WHERE kind='patient' AND subject=%s", (patient_id,))
        await self.db.execute("UPDATE invitations SET used_at=COALESCE(used_at, CURRENT_TIMESTAMP(3)) "
                              "WHERE patient_id=%s", (patient_id,))
        await self.audit(actor, "patient_removed", patient_id)
        return True

    async def sessions_of(self, patient_id: str) -> list[dict]:
        rows = await self.db.execute(
            "SELECT id, reference_id, mode, started_at, ended_at FROM sessions WHERE patient_id=%s ORDER BY started_at",
            (patient_id,), fetch="all")
        return [{"session_id": r[0], "reference_id": r[1], "mode": r[2], "started_at": str(r[3]),
                 "ended_at": None if r[4] is None else str(r[4])} for r in rows]

    # -- erasure (rehab/ops/erasure.py) ---------------------------------------------------------
    async def mark_erased(self, session_ids: list[str]) -> None:
        if session_ids:
            await self.db.execute_many("INSERT INTO erased_sessions (session_id) VALUES (%s) "
                                       "ON DUPLICATE KEY UPDATE session_id=session_id",
                                       [(sid,) for sid in session_ids])

    async def delete_patient(self, patient_id: str, session_ids: list[str]) -> dict[str, int]:
        """Deletes every row of the patient (the audit log aside); table -> rows deleted."""
        deleted = {"scores": 0}
        for i in range(0, len(session_ids), 500):
            chunk = session_ids[i:i + 500]
            deleted["scores"] += await self.db.execute(
                f"DELETE FROM scores WHERE session_id IN ({', '.join(['%s'] * len(chunk))})", chunk)
        for table, where in (("sessions", "patient_id=%s"), ("invitations", "patient_id=%s"),
                             ("credentials", "kind='patient' AND subject=%s"), ("patients", "id=%s")):
            deleted[table] = await self.db.execute(f"DELETE FROM {table} WHERE {where}", (patient_id,))
        return deleted
