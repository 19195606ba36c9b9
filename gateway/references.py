"""The guide recordings' routes: list and read them (what the caller may see), register one from an
uploaded video or keypoint file (and add takes and named mistakes to it), and score an uploaded attempt against one (gateway/app.py mounts them; who may see
which guide: ``Accounts.reference_scope``)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import asyncmy
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.accounts import Accounts
from gateway.http import error
from gateway.resources import Resources
from gateway.uploads import UploadError, receive_video
from rehab.reference import _ID as ID_PATTERN
from rehab.settings import Settings


class References:
    def __init__(self, settings: Settings, accounts: Accounts, res: Resources):
        """``res``: the gateway's resources (its database, the upload extractor and folder), opened by
        its lifespan."""
        self.settings, self.accounts, self.res = settings, accounts, res

    def routes(self) -> list[Route]:
        return [
            Route("/references", self.listing, methods=["GET"]),
            Route("/references", self.add, methods=["POST"]),
            Route("/references/{reference_id}", self.get, methods=["GET"]),
            Route("/references/{reference_id}/score", self.score, methods=["POST"]),
            Route("/references/{reference_id}/takes", self.add_take, methods=["POST"]),
        ]

    async def listing(self, request: Request):
        """
        summary: The guide recordings the caller may see.
        description: The clinic's shared guides (registered by an admin) and those of the caller's
          clinician (a clinician's own; a patient's clinician's). The admin API key, and anyone in demo
          mode, see all.
        security: [{bearer: []}, {api_key: []}]
        responses:
          200: {description: "[{id, name, fps, n_frames, model, created_at, clinician_id, correct_takes, mistakes}]"}
          401: {description: no, expired or revoked token}
        """
        scope = await self.accounts.reference_scope(request)
        return JSONResponse(await self.res.db.list_references(scope))

    async def visible(self, scope: set | None, ref_id: str) -> bool:
        exists, owner = await self.res.db.reference_owner(ref_id)
        return exists and (scope is None or owner in scope)

    async def get(self, request: Request):
        """
        summary: One guide recording; ?frames=true adds its keypoints (one 17x3 list or null per frame).
        parameters:
          - {$ref: "#/components/parameters/reference_id"}
          - {name: frames, in: query, schema: {type: string, enum: ["true", "false", "1", "0"]}}
        security: [{bearer: []}, {api_key: []}]
        responses:
          200: {description: "{id, name, fps, width, height, model, model_version, source_sha256, n_frames,
            correct_takes, mistakes: [label]}"}
          401: {description: no, expired or revoked token}
          404: {description: unknown reference, or one the caller may not see}
        """
        scope = await self.accounts.reference_scope(request)
        ref = await self.res.db.get_reference(request.path_params["reference_id"])
        if ref is None or not await self.visible(scope, ref.id):
            return error(404, "unknown reference")
        out = {"id": ref.id, "name": ref.name, "fps": ref.fps, "width": ref.width, "height": ref.height,
               "model": ref.model, "model_version": ref.model_version, "source_sha256": ref.source_sha256,
               "n_frames": len(ref.frames), "frames_with_subject": sum(f is not None for f in ref.frames),
               **ref.summary()}
        if request.query_params.get("frames") in ("1", "true"):
            out["frames"] = ref.frames
        return JSONResponse(out)

    async def upload(self, request: Request) -> Path:
        return await receive_video(request, self.settings.upload_max_bytes, Path(self.res.uploads.name))

    async def add(self, request: Request):
        """
        summary: Register a guide from an uploaded video (the body; mp4/mov, webm/mkv or avi) or keypoint file
          (JSON or JSON Lines as `rehab extract` writes it). POST /references/{id}/takes adds takes and named mistakes.
        description: Needs the admin API key (X-API-Key; the guide is the whole clinic's) or a clinician's
          own token (the guide is then theirs; they and their patients see it). Query name= (required) and id= (optional,
          default derived from the name); an existing id is replaced. The video's type is taken from its
          first bytes, not from Content-Type.
        security: [{api_key: []}]
        parameters:
          - {name: name, in: query, required: true, schema: {type: string}}
          - {name: id, in: query, schema: {type: string}}
        requestBody: {required: true, content: {application/octet-stream: {schema: {type: string, format: binary}}}}
        responses:
          201: {description: "{reference_id, name, fps, frames, frames_with_subject}"}
          400: {description: missing name, empty body}
          401: {description: no API key or clinician token}
          403: {description: wrong API key or origin, not a clinician's own token}
          409: {description: the id or name is another clinician's guide}
          413: {description: larger than REHAB_UPLOAD_MAX_BYTES}
          415: {description: neither a video container nor a keypoint file}
          422: {description: unreadable video or keypoint file, or nobody in it}
        """
        _, clinician = await self.accounts.staff(request)
        name = request.query_params.get("name")
        if not name:
            return error(400, "query parameter 'name' is required")
        ref_id = request.query_params.get("id")
        if ref_id is not None and not ID_PATTERN.match(ref_id):
            return error(400, "id must be 1-64 letters, digits, '_', '.', '-'")
        path = None
        try:
            path = await self.upload(request)
            ref = await self.res.extractor.reference(path, name, ref_id)
        except UploadError as exc:
            return error(exc.status, str(exc))
        except ValueError as exc:  # nobody in the video, a name no id can be made from, ...
            return error(422, f"cannot use this video as a reference: {exc}")
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        for key in (ref.id, ref.name):  # a clinician replaces their own guides only; an admin any
            exists, owner = await self.res.db.reference_owner(key)
            if exists and clinician is not None and owner != clinician:
                return error(409, f"a guide named or numbered {key!r} belongs to someone else: choose another name")
        try:
            await self.res.db.save_reference(ref, clinician)
        except asyncmy.errors.IntegrityError:  # the name is another guide's (another id)
            return error(409, f"a guide named {ref.name!r} exists: choose another name, or its id to replace it")
        return JSONResponse({"reference_id": ref.id, "name": ref.name, "fps": ref.fps, "frames": len(ref.frames),
                             "frames_with_subject": sum(f is not None for f in ref.frames)}, status_code=201)

    async def add_take(self, request: Request):
        """
        summary: Add a take to a guide (the body, a video or keypoint file); label= makes it a named mistake.
        description: Without label, another correct take (the guide's takes' natural variation is the
          scorer's tolerance). With label (1-128 printable characters, e.g. "knees cave in"), a recording
          of that mistake; an attempt nearer to it than to every correct take scores lower and its hint names
          the mistake. The same label again adds another recording of that mistake. Who may do it is as for
          replacing the guide (the admin; a clinician for their own guides). Up to 16 takes besides the
          first. Sessions started afterwards are scored with the new takes.
        security: [{api_key: []}, {bearer: []}]
        parameters:
          - {$ref: "#/components/parameters/reference_id"}
          - {name: label, in: query, schema: {type: string}}
        requestBody: {required: true, content: {application/octet-stream: {schema: {type: string, format: binary}}}}
        responses:
          201: {description: "{reference_id, correct_takes, mistakes: [label]}"}
          400: {description: empty body, a label that is not 1-128 printable characters, too many takes}
          401: {description: no API key or clinician token}
          404: {description: unknown reference, or one the caller may not see}
          409: {description: another clinician's guide}
          413: {description: larger than REHAB_UPLOAD_MAX_BYTES}
          415: {description: neither a video container nor a keypoint file}
          422: {description: unreadable video or keypoint file, or nobody in it}
        """
        from rehab.reference import MAX_TAKES, TOO_MANY_TAKES, check_label

        _, clinician = await self.accounts.staff(request)
        label = request.query_params.get("label")
        try:
            if label is not None:
                check_label(label)
        except ValueError as exc:
            return error(400, str(exc))
        ref = await self.res.db.get_reference(request.path_params["reference_id"])
        if ref is None or not await self.visible(None if clinician is None else {None, clinician}, ref.id):
            return error(404, "unknown reference")
        _, owner = await self.res.db.reference_owner(ref.id)
        if clinician is not None and owner != clinician:
            return error(409, f"the guide {ref.id!r} belongs to someone else: only they or an admin may change it")
        if len(ref.takes) >= MAX_TAKES:  # refused before the upload is read and its keypoints extracted
            return error(400, TOO_MANY_TAKES)
        path = None
        try:
            path = await self.upload(request)
            take = await self.res.extractor.take(path, None if label is None else label.strip())
        except UploadError as exc:
            return error(exc.status, str(exc))
        except ValueError as exc:
            return error(422, f"cannot use this recording as a take: {exc}")
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        try:
            added = await self.res.db.add_take(ref.id, take, MAX_TAKES)
        except LookupError:  # removed meanwhile
            return error(404, "unknown reference")
        if added is None:  # others were added meanwhile
            return error(400, TOO_MANY_TAKES)
        ref = await self.res.db.get_reference(ref.id)
        if ref is None:  # removed right after
            return error(404, "unknown reference")
        return JSONResponse({"reference_id": ref.id, **ref.summary()}, status_code=201)

    async def score(self, request: Request):
        """
        summary: Score an uploaded attempt (the body, a video or keypoint file) against a stored reference.
        description: Needs the admin API key or a clinician's token. Same code and output as
          `rehab score --json` (similarity in [0, 1], verdict, thresholds, per-joint similarity, corrections,
          the nearest named mistake, repetitions, phase coverage). Query mirror=auto|off.
        security: [{api_key: []}, {bearer: []}]
        parameters:
          - {$ref: "#/components/parameters/reference_id"}
          - {name: mirror, in: query, schema: {type: string, enum: [auto, "off"]}}
        requestBody: {required: true, content: {application/octet-stream: {schema: {type: string, format: binary}}}}
        responses:
          200: {description: "{similarity, verdict, thresholds, mistake, reps, windows, phase_coverage, joints, corrections, ...}"}
          401: {description: no API key}
          404: {description: unknown reference}
          413: {description: too large}
          415: {description: not a video container}
          422: {description: unreadable video}
        """
        from rehab.scoring import score_attempt

        _, clinician = await self.accounts.staff(request)
        mirror = request.query_params.get("mirror", "auto")
        if mirror not in ("auto", "off"):
            return error(400, "mirror must be 'auto' or 'off'")
        ref = await self.res.db.get_reference(request.path_params["reference_id"])
        if ref is None or not await self.visible(None if clinician is None else {None, clinician}, ref.id):
            return error(404, "unknown reference")
        path = None
        try:
            path = await self.upload(request)
            frames = await self.res.extractor.frames(path)
        except UploadError as exc:
            return error(exc.status, str(exc))
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        if not frames:
            return error(422, "the video has no frames")
        result = await asyncio.to_thread(score_attempt, ref, frames, mirror)
        return JSONResponse(result)

