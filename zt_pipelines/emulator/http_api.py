"""The HTTP/1.1 half of the emulator: the Storage JSON API, Vertex AI REST (pipeline jobs,
schedules, custom jobs) and the BigQuery dataset/table IAM calls.

Routes are ``(verb, pattern) -> Route``; each route function takes the parsed request and
returns ``(http status, body)``. Google errors leave as :class:`EmulatorError` and are rendered
as Google's JSON error envelope.
"""

from __future__ import annotations

import contextlib
import datetime
import email.message
import email.parser
import email.policy
import json
import re
import socket
import struct
import urllib.parse
import uuid
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any

from zt_pipelines.emulator import artifact_registry, policies
from zt_pipelines.emulator.audit_logs import log_run
from zt_pipelines.emulator.gate import Gate
from zt_pipelines.emulator.routing import Body, Handler, Request, Route
from zt_pipelines.emulator.run_details import create_time_filter, pipeline_job_filter, record_run
from zt_pipelines.emulator.runs import simulate_run
from zt_pipelines.emulator.world import EmulatorError, World, deep_copy_json, page
from zt_pipelines.gcp.emulator_tokens import caller_from_authorization
from zt_pipelines.policy.snapshot import AllowPolicy, Binding, Condition, Node, PersistentResource
from zt_pipelines.resources import BIGQUERY, CRM, IAM, STORAGE

HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
MALFORMED_BODY = b'{"kind": "storage#bucket", "name": '


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- Storage -------------------------------------------------------------------------------------


def _bucket_node(world: World, bucket: str) -> Node:
    node = world.node(STORAGE + bucket)
    if node is None or node.kind != "bucket":
        raise EmulatorError("NOT_FOUND", f"The specified bucket does not exist: {bucket}")
    return node


def _bucket_json(world: World, node: Node) -> dict[str, Any]:
    name = node.name[len(STORAGE) :]
    project = (node.parent or "").rsplit("/", 1)[-1]
    body: dict[str, Any] = {
        "kind": "storage#bucket",
        "id": name,
        "selfLink": f"https://www.googleapis.com/storage/v1/b/{name}",
        "name": name,
        "metageneration": "1",
        "location": "US-CENTRAL1",
        "storageClass": "STANDARD",
        "etag": "CAE=",
        # a world bucket that does not say is uniform (the demo world's are)
        "iamConfiguration": {
            "uniformBucketLevelAccess": {"enabled": node.uniform_bucket_level_access is not False}
        },
    }
    if node.parent and node.parent.startswith(CRM + "projects/"):
        body["projectNumber"] = world.project_number(project)
    return body


def bucket_get(world: World, req: Request) -> tuple[int, Body]:
    """storage.buckets.get — with projectNumber (aiplatform checks it against the project)."""
    bucket = req.segments["bucket"]
    node = _bucket_node(world, bucket)
    world.authorize(req.caller, "storage.buckets.get", node.name)
    body = _bucket_json(world, node)
    if req.query.get("projection") == "full":
        # ACLs are part of the bucket's access control: Google wants getIamPolicy for them
        world.authorize(req.caller, "storage.buckets.getIamPolicy", node.name)
        if node.uniform_bucket_level_access is False:  # with uniform access there are none
            body["acl"] = _acl_json(node.acl or (), name=node.name, kind="bucketAccessControl")
            body["defaultObjectAcl"] = _acl_json(
                node.default_object_acl or (), name=node.name, kind="objectAccessControl"
            )
    return 200, body


def _acl_json(entries: Any, *, name: str, kind: str) -> list[dict[str, Any]]:
    """ACL entries as the JSON API writes them (``entity``, ``role``, ``email`` ...)."""
    bucket = name[len(STORAGE) :]
    out = []
    for e in entries:
        item: dict[str, Any] = {
            "kind": f"storage#{kind}",
            "bucket": bucket,
            "entity": e.entity,
            "role": e.role,
            "etag": "CAE=",
        }
        head, _, tail = e.entity.partition("-")
        if head in ("user", "group") and "@" in tail:
            item["email"] = tail
        elif head == "domain":
            item["domain"] = tail
        out.append(item)
    return out


def bucket_get_iam(world: World, req: Request) -> tuple[int, Body]:
    """storage.buckets.getIamPolicy."""
    node = _bucket_node(world, req.segments["bucket"])
    try:
        version = int(req.query.get("optionsRequestedPolicyVersion") or 1)
    except ValueError as exc:
        raise EmulatorError("INVALID_ARGUMENT", "bad optionsRequestedPolicyVersion") from exc
    policies.check_requested_version(version)
    world.authorize(req.caller, "storage.buckets.getIamPolicy", node.name)
    policy = world.policy_of(node.name)
    if version < 3 and any(b.condition is not None for b in policy.bindings):
        # Cloud Storage refuses rather than hide conditions from a version-1 reader
        raise EmulatorError(
            "INVALID_ARGUMENT",
            "the bucket's IAM policy has conditions: request it with "
            "optionsRequestedPolicyVersion=3",
        )
    body = policies.to_json(policy)
    body.update(kind="storage#policy", resourceId=f"projects/_/buckets/{req.segments['bucket']}")
    return 200, body


def bucket_set_iam(world: World, req: Request) -> tuple[int, Body]:
    """storage.buckets.setIamPolicy: a stale etag answers 412 Precondition Failed."""
    node = _bucket_node(world, req.segments["bucket"])
    world.authorize(req.caller, "storage.buckets.setIamPolicy", node.name)
    sent = req.json()
    policy = policies.from_json(sent, "storage.buckets.setIamPolicy")
    policies.check_writable(policy, int(sent.get("version") or 1) if isinstance(sent, dict) else 1)
    with world.lock:
        current = world.policy_of(node.name)
        etag = sent.get("etag") if isinstance(sent, dict) else None
        if etag and etag != current.etag:
            raise EmulatorError(
                "FAILED_PRECONDITION",
                "At least one of the pre-conditions you specified did not hold.",
                http_status=412,
            )
        stored = world.set_policy(node.name, policy, etag_matches=True)
    body = policies.to_json(stored)
    body.update(kind="storage#policy", resourceId=f"projects/_/buckets/{req.segments['bucket']}")
    return 200, body


def bucket_test_permissions(world: World, req: Request) -> tuple[int, Body]:
    """storage.buckets.testIamPermissions: which of ``permissions`` the caller holds."""
    node = _bucket_node(world, req.segments["bucket"])
    world.authenticate(req.caller)
    asked = [v for k, v in req.query_list if k == "permissions"]
    held = [p for p in asked if req.caller and world.decide(req.caller, node.name, p) == "granted"]
    return 200, {"kind": "storage#testIamPermissionsResponse", "permissions": held}


_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


def bucket_insert(world: World, req: Request) -> tuple[int, Body]:
    """storage.buckets.insert (a write): the bucket joins the project, with an empty policy."""
    ref = req.query.get("project", "")
    if not ref:
        raise EmulatorError("INVALID_ARGUMENT", "Required parameter: project")
    project = world.project_id(ref) or ref
    world.authorize(req.caller, "storage.buckets.create", CRM + "projects/" + project)
    sent = req.json()
    name = sent.get("name", "") if isinstance(sent, dict) else ""
    if not isinstance(name, str) or not _BUCKET_NAME.match(name):
        raise EmulatorError("INVALID_ARGUMENT", f"Invalid bucket name: {name!r}")
    with world.lock:
        if world.node(STORAGE + name) is not None:
            raise EmulatorError(
                "ALREADY_EXISTS",
                "Your previous request to create the named bucket succeeded and you already "
                "own it.",
            )
        node = Node(
            name=STORAGE + name,
            kind="bucket",
            parent=CRM + "projects/" + project,
            policy=AllowPolicy(etag=world.new_etag()),
        )
        world.add_node(node)
    return 200, _bucket_json(world, node)


def _object_json(bucket: str, name: str, data: bytes, content_type: str) -> dict[str, Any]:
    quoted = urllib.parse.quote(name, safe="")
    return {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/1",
        "name": name,
        "bucket": bucket,
        "generation": "1",
        "metageneration": "1",
        "contentType": content_type,
        "size": str(len(data)),
        "mediaLink": f"/download/storage/v1/b/{bucket}/o/{quoted}?generation=1&alt=media",
    }


def _multipart(req: Request) -> tuple[dict[str, Any], bytes, str]:
    content_type = req.headers.get("content-type", "")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + req.body
    )
    parts = list(message.iter_parts()) if message.is_multipart() else []
    if len(parts) != 2:
        raise EmulatorError("INVALID_ARGUMENT", "multipart upload needs metadata and media parts")
    meta_raw = parts[0].get_payload(decode=True)
    data = parts[1].get_payload(decode=True)
    try:
        meta = json.loads(meta_raw if isinstance(meta_raw, bytes) else b"{}")
    except ValueError as exc:
        raise EmulatorError("INVALID_ARGUMENT", "upload metadata is not JSON") from exc
    media_type = parts[1].get_content_type()
    return meta, data if isinstance(data, bytes) else b"", media_type


def object_insert(world: World, req: Request) -> tuple[int, Body]:
    """storage.objects.insert (a write): multipart and media uploads."""
    bucket = req.segments["bucket"]
    node = _bucket_node(world, bucket)
    upload_type = req.query.get("uploadType", "")
    if upload_type == "multipart":
        meta, data, content_type = _multipart(req)
        name = str(meta.get("name") or req.query.get("name", ""))
        content_type = str(meta.get("contentType") or content_type)
    elif upload_type == "media":
        name, data = req.query.get("name", ""), req.body
        content_type = req.headers.get("content-type", "application/octet-stream")
    else:
        raise EmulatorError(
            "INVALID_ARGUMENT", f"uploadType {upload_type!r} is not supported by the emulator"
        )
    if not name:
        raise EmulatorError("INVALID_ARGUMENT", "Required parameter: name")
    world.authorize(req.caller, "storage.objects.create", node.name, object_name=name)
    with world.lock:
        world.objects[(bucket, name)] = (data, content_type)
    return 200, _object_json(bucket, name, data, content_type)


def object_get(world: World, req: Request) -> tuple[int, Body]:
    """storage.objects.get: metadata, or the bytes with ``alt=media`` / the download path."""
    bucket, name = req.segments["bucket"], req.segments["object"]
    node = _bucket_node(world, bucket)
    world.authorize(req.caller, "storage.objects.get", node.name, object_name=name)
    with world.lock:
        stored = world.objects.get((bucket, name))
    if stored is None:
        raise EmulatorError("NOT_FOUND", f"No such object: {bucket}/{name}")
    data, content_type = stored
    if req.query.get("alt") == "media" or req.path.startswith("/download/"):
        return 200, (data, content_type)
    return 200, _object_json(bucket, name, data, content_type)


def object_list(world: World, req: Request) -> tuple[int, Body]:
    """storage.objects.list (prefix filter, paginated)."""
    bucket = req.segments["bucket"]
    node = _bucket_node(world, bucket)
    world.authorize(req.caller, "storage.objects.list", node.name)
    prefix = req.query.get("prefix", "")
    with world.lock:
        found = sorted(
            (n, d, c)
            for (b, n), (d, c) in world.objects.items()
            if b == bucket and n.startswith(prefix)
        )
    items, token = page(
        found, int(req.query.get("maxResults", "0") or 0), req.query.get("pageToken", ""), 1000
    )
    body: dict[str, Any] = {
        "kind": "storage#objects",
        "items": [_object_json(bucket, n, d, c) for n, d, c in items],
    }
    if token:
        body["nextPageToken"] = token
    return 200, body


def project_get_ancestry(world: World, req: Request) -> tuple[int, Body]:
    """cloudresourcemanager v1 projects.getAncestry: the project and its ancestors, bottom to
    top; needs ``resourcemanager.projects.get``, and an unknown project is PERMISSION_DENIED
    (as Google answers for containers the caller cannot see)."""
    ref = req.segments["project"]
    project = world.project_id(ref)
    name = CRM + "projects/" + (project or ref)
    if project is None:
        raise EmulatorError(
            "PERMISSION_DENIED",
            f"The caller does not have permission on projects/{ref} (or it does not exist)",
        )
    world.authorize(req.caller, "resourcemanager.projects.get", name)
    chain = [name]
    with world.lock:
        node = world.nodes.get(name)
        while node is not None and node.parent and len(chain) < 64:
            chain.append(node.parent)
            node = world.nodes.get(node.parent)
    singular = {"projects": "project", "folders": "folder", "organizations": "organization"}
    ancestors = []
    for full in chain:
        kind, _, ident = full.removeprefix(CRM).partition("/")
        ancestors.append({"resourceId": {"type": singular.get(kind, kind), "id": ident}})
    return 200, {"ancestor": ancestors}


def hmac_key_list(world: World, req: Request) -> tuple[int, Body]:
    """storage.hmacKeys.list: the project's HMAC keys (the snapshot's ``hmacKeys`` of its
    service accounts, all ACTIVE), ``serviceAccountEmail`` filter, paginated."""
    ref = req.segments["project"]
    project = world.project_id(ref)
    name = CRM + "projects/" + (project or ref)
    world.authorize(req.caller, "storage.hmacKeys.list", name)
    if project is None:
        raise EmulatorError("NOT_FOUND", f"project {ref} not found")
    wanted = req.query.get("serviceAccountEmail", "").lower()
    with world.lock:
        found = sorted(
            (sa.email, access_id)
            for sa in world.service_accounts.values()
            if sa.project_id == project and (not wanted or sa.email.lower() == wanted)
            for access_id in sa.hmac_keys
        )
    items, token = page(
        found, int(req.query.get("maxResults", "0") or 0), req.query.get("pageToken", ""), 250
    )
    body: dict[str, Any] = {
        "kind": "storage#hmacKeysMetadata",
        "items": [
            {
                "kind": "storage#hmacKeyMetadata",
                "id": f"{project}/{access_id}",
                "accessId": access_id,
                "projectId": project,
                "serviceAccountEmail": email,
                "state": "ACTIVE",
                "timeCreated": "2026-01-01T00:00:00.000Z",
                "updated": "2026-01-01T00:00:00.000Z",
                "etag": "CAE=",
            }
            for email, access_id in items
        ],
    }
    if token:
        body["nextPageToken"] = token
    return 200, body


def api_key_list(world: World, req: Request) -> tuple[int, Body]:
    """apikeys.keys.list (v2): the project's API keys — the snapshot's ``apiKeys`` of its
    service accounts, each bound to its account (``serviceAccountEmail``) — paginated."""
    ref = req.segments["project"]
    if req.segments["location"] != "global":
        raise EmulatorError("INVALID_ARGUMENT", "API keys live in location global")
    project = world.project_id(ref)
    world.authorize(req.caller, "apikeys.keys.list", CRM + "projects/" + (project or ref))
    if project is None:
        raise EmulatorError("NOT_FOUND", f"project {ref} not found")
    with world.lock:
        found = sorted(
            (sa.email, uid)
            for sa in world.service_accounts.values()
            if sa.project_id == project
            for uid in sa.api_keys
        )
    items, token = page(
        found, int(req.query.get("pageSize", "0") or 0), req.query.get("pageToken", ""), 300
    )
    number = world.project_number(project)
    body: dict[str, Any] = {
        "keys": [
            {
                "name": f"projects/{number}/locations/global/keys/{uid}",
                "uid": uid,
                "displayName": f"bound to {email}",
                "createTime": "2026-01-01T00:00:00Z",
                "updateTime": "2026-01-01T00:00:00Z",
                "serviceAccountEmail": email,
                "etag": f'W/"{uid}"',
            }
            for email, uid in items
        ]
    }
    if token:
        body["nextPageToken"] = token
    return 200, body


# -- Vertex AI -----------------------------------------------------------------------------------


def _location_parent(world: World, req: Request) -> tuple[str, str, str]:
    ref, location = req.segments["project"], req.segments["location"]
    project = world.project_id(ref) or ref
    return project, location, f"projects/{world.project_number(project)}/locations/{location}"


def _act_as(world: World, caller: str | None, service_account: Any) -> None:
    if not service_account:
        return
    if not isinstance(service_account, str):
        raise EmulatorError("INVALID_ARGUMENT", "serviceAccount must be a string")
    email_ = service_account.lower()
    with world.lock:
        sa = world.service_accounts.get(email_)
    domain = email_.partition("@")[2]
    project = sa.project_id if sa else domain.split(".", 1)[0]
    world.authorize(
        caller,
        "iam.serviceAccounts.actAs",
        f"{IAM}projects/{project}/serviceAccounts/{sa.email if sa else service_account}",
        parent=f"{CRM}projects/{project}" if project else None,
    )


def _vertex_named(
    world: World, req: Request, permission: str, collection: str
) -> tuple[str, str, str]:
    """Authorize ``permission`` on the project; the project, parent and the named resource."""
    project, _location, parent = _location_parent(world, req)
    world.authorize(req.caller, permission, CRM + "projects/" + project)
    return project, parent, f"{parent}/{collection}/{req.segments['id']}"


def _served(store: dict[str, dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    """The resource ``name`` in ``store`` (caller holds the world lock), else NOT_FOUND."""
    found = store.get(name)
    if found is None:
        raise EmulatorError("NOT_FOUND", f"{what} {name} not found")
    return found


def _vertex_list(
    world: World, req: Request, permission: str, store: dict[str, Any], key: str
) -> tuple[int, Body]:
    """One page of the Vertex resources in ``store`` under the request's location."""
    project, _location, parent = _location_parent(world, req)
    world.authorize(req.caller, permission, CRM + "projects/" + project)
    with world.lock:
        found = [deep_copy_json(r) for n, r in sorted(store.items()) if n.startswith(parent)]
    items, token = page(
        found, int(req.query.get("pageSize", "0") or 0), req.query.get("pageToken", ""), 100
    )
    body: dict[str, Any] = {key: items}
    if token:
        body["nextPageToken"] = token
    return 200, body


def _store_new(
    world: World,
    store: dict[str, dict[str, Any]],
    parent: str,
    collection: str,
    sent: dict[str, Any],
    state: str,
) -> dict[str, Any]:
    """Store a copy of ``sent`` under a new numeric id in ``state``; the stored resource."""
    name = f"{parent}/{collection}/{uuid.uuid4().int % 10**19}"
    served = deep_copy_json(sent)
    served.update(name=name, state=state, createTime=_now(), updateTime=_now())
    with world.lock:
        store[name] = served
    return served


def _job_id(req: Request, key: str) -> str:
    job_id = req.query.get(key) or f"zt-{uuid.uuid4().hex[:16]}"
    if not re.match(r"^[a-z0-9][a-z0-9-]{0,127}$", job_id):
        raise EmulatorError("INVALID_ARGUMENT", f"invalid {key} {job_id!r}")
    return job_id


def pipeline_job_create(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.pipelineJobs.create: needs create on the project and actAs on the job's SA."""
    project, _location, parent = _location_parent(world, req)
    sent = req.json()
    if not isinstance(sent, dict):
        raise EmulatorError("INVALID_ARGUMENT", "the pipeline job must be a JSON object")
    world.authorize(req.caller, "aiplatform.pipelineJobs.create", CRM + "projects/" + project)
    _act_as(world, req.caller, sent.get("serviceAccount"))
    if not sent.get("pipelineSpec") and not sent.get("templateUri"):
        raise EmulatorError("INVALID_ARGUMENT", "pipelineSpec or templateUri is required")
    name = f"{parent}/pipelineJobs/{_job_id(req, 'pipelineJobId')}"
    served = deep_copy_json(sent)
    served.update(name=name, state="PIPELINE_STATE_PENDING", createTime=_now(), updateTime=_now())
    with world.lock:
        if name in world.served_jobs:
            raise EmulatorError("ALREADY_EXISTS", f"pipeline job {name} already exists")
        world.pipeline_jobs[name] = deep_copy_json(sent)
        world.served_jobs[name] = served
    return 200, served


_PIPELINE_DONE = {"PIPELINE_STATE_SUCCEEDED", "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}


def pipeline_job_get(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.pipelineJobs.get: a pending job has succeeded by the time it is read."""
    project, parent, name = _vertex_named(world, req, "aiplatform.pipelineJobs.get", "pipelineJobs")
    with world.lock:
        job = _served(world.served_jobs, name, "pipeline job")
        if job["state"] not in _PIPELINE_DONE:
            _finish_pipeline_job(world, job, project, parent)
        return 200, deep_copy_json(job)


def _finish_pipeline_job(world: World, job: dict[str, Any], project: str, parent: str) -> None:
    """End a pending job: succeeded, or — when runs are simulated — what Vertex would find."""
    if not world.simulate_runs:
        job.update(state="PIPELINE_STATE_SUCCEEDED", endTime=_now(), updateTime=_now())
        return
    runner = job.get("serviceAccount") or (
        f"{world.project_number(project)}-compute@developer.gserviceaccount.com"
    )

    def decide(member: str, resource: str, permission: str, obj: str | None) -> str:
        return world.decide(member, resource, permission, object_name=obj)

    result = simulate_run(job, project, str(runner), decide)
    job.update(state=result.state, endTime=_now(), updateTime=_now())
    if result.error:
        job["error"] = {"code": 7, "message": result.error}  # google.rpc.Code PERMISSION_DENIED
    scripts = world.run_scripts.all()
    steps = record_run(
        job,
        parent=parent,
        runner=str(runner),
        scripts=scripts,
        custom_jobs=world.custom_jobs,
        succeeded=not result.error,
    )
    world.step_runs.extend(steps)
    root = str((job.get("runtimeConfig") or {}).get("gcsOutputDirectory") or "")
    log_run(world.log_store, world.snapshot(), project, steps, scripts, root)


def pipeline_job_list(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.pipelineJobs.list (paginated; ``schedule_name`` and ``create_time`` filters
    applied, any other is INVALID_ARGUMENT)."""
    try:
        keep = pipeline_job_filter(req.query.get("filter", ""))
    except ValueError as exc:
        raise EmulatorError("INVALID_ARGUMENT", f"filter: {exc}") from exc
    store = world.served_jobs
    if keep is not None:
        with world.lock:
            store = {n: j for n, j in world.served_jobs.items() if keep(j)}
    return _vertex_list(world, req, "aiplatform.pipelineJobs.list", store, "pipelineJobs")


def start_scheduled_run(world: World, schedule_name: str) -> str:
    """Start one run of a schedule as Vertex does when it fires: a pipeline job from the
    schedule's ``createPipelineJobRequest`` with ``scheduleName`` set, run to its end; its name.

    Raises:
        EmulatorError: NOT_FOUND when there is no such schedule.
    """
    with world.lock:
        schedule = _served(world.schedules, schedule_name, "schedule")
        request = schedule.get("createPipelineJobRequest") or {}
        sent = deep_copy_json(request.get("pipelineJob") or {})
        parent = schedule_name.rsplit("/schedules/", 1)[0]
        project = world.project_id(parent.split("/")[1]) or parent.split("/")[1]
        count = int(schedule.get("startedRunCount") or 0) + 1
        base = re.sub(r"[^a-z0-9-]", "-", str(sent.get("displayName") or "run").lower())
        name = f"{parent}/pipelineJobs/{base[:40].strip('-') or 'run'}-{uuid.uuid4().hex[:12]}"
        served = deep_copy_json(sent)
        fired = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
        served.update(  # fired a moment ago: by now the run has ended
            name=name,
            state="PIPELINE_STATE_PENDING",
            createTime=fired.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            updateTime=_now(),
            scheduleName=schedule_name,
        )
        world.pipeline_jobs[name] = deep_copy_json(sent)
        world.served_jobs[name] = served
        schedule["startedRunCount"] = str(count)
        schedule["lastScheduledRunResponse"] = {
            "scheduledRunTime": served["createTime"],
            "runResponse": name,
        }
        _finish_pipeline_job(world, served, project, parent)
    return name


def pipeline_job_cancel(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.pipelineJobs.cancel (a write)."""
    _project, _parent, name = _vertex_named(
        world, req, "aiplatform.pipelineJobs.cancel", "pipelineJobs"
    )
    with world.lock:
        job = _served(world.served_jobs, name, "pipeline job")
        if job["state"] in _PIPELINE_DONE:
            raise EmulatorError("FAILED_PRECONDITION", f"pipeline job {name} has already ended")
        job.update(state="PIPELINE_STATE_CANCELLED", updateTime=_now())
    return 200, {}


def custom_job_create(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.customJobs.create: needs create on the project and actAs on the job's SA."""
    project, location, parent = _location_parent(world, req)
    sent = req.json()
    if not isinstance(sent, dict) or not isinstance(sent.get("jobSpec"), dict):
        raise EmulatorError("INVALID_ARGUMENT", "a custom job needs a jobSpec")
    world.authorize(req.caller, "aiplatform.customJobs.create", CRM + "projects/" + project)
    _act_as(world, req.caller, sent["jobSpec"].get("serviceAccount"))
    resource_id = sent["jobSpec"].get("persistentResourceId")
    if resource_id:
        found = _persistent_resource(world, project, location, str(resource_id))
        if sent["jobSpec"].get("serviceAccount") and not found.enable_custom_service_account:
            raise EmulatorError(
                "INVALID_ARGUMENT",
                f"persistent resource {resource_id} does not allow custom service accounts "
                "(resourceRuntimeSpec.serviceAccountSpec.enableCustomServiceAccount)",
            )
    return 200, _store_new(
        world, world.custom_jobs, parent, "customJobs", sent, "JOB_STATE_PENDING"
    )


def custom_job_get(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.customJobs.get: a pending job has succeeded by the time it is read."""
    _project, _parent, name = _vertex_named(world, req, "aiplatform.customJobs.get", "customJobs")
    with world.lock:
        job = _served(world.custom_jobs, name, "custom job")
        if job["state"] == "JOB_STATE_PENDING":
            job.update(state="JOB_STATE_SUCCEEDED", endTime=_now(), updateTime=_now())
        return 200, deep_copy_json(job)


def custom_job_list(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.customJobs.list (paginated; ``create_time`` filters applied)."""
    try:
        keep = create_time_filter(req.query.get("filter", ""))
    except ValueError as exc:
        raise EmulatorError("INVALID_ARGUMENT", f"filter: {exc}") from exc
    store = world.custom_jobs
    if keep is not None:
        with world.lock:
            store = {n: j for n, j in world.custom_jobs.items() if keep(j)}
    return _vertex_list(world, req, "aiplatform.customJobs.list", store, "customJobs")


def custom_job_cancel(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.customJobs.cancel (a write)."""
    _project, _parent, name = _vertex_named(
        world, req, "aiplatform.customJobs.cancel", "customJobs"
    )
    with world.lock:
        job = _served(world.custom_jobs, name, "custom job")
        job.update(state="JOB_STATE_CANCELLED", updateTime=_now())
    return 200, {}


def _persistent_resource(
    world: World, project: str, location: str, resource_id: str
) -> PersistentResource:
    """The world's persistent resource (snapshot names use the project id), else NOT_FOUND."""
    name = f"projects/{project}/locations/{location}/persistentResources/{resource_id}"
    found = world.snapshot().persistent_resources.get(name)
    if found is None:
        raise EmulatorError("NOT_FOUND", f"persistent resource {name} not found")
    return found


def persistent_resource_get(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.persistentResources.get, answered as Vertex does (project number in names)."""
    project, location, parent = _location_parent(world, req)
    world.authorize(req.caller, "aiplatform.persistentResources.get", CRM + "projects/" + project)
    found = _persistent_resource(world, project, location, req.segments["id"])
    body: dict[str, Any] = {
        "name": f"{parent}/persistentResources/{req.segments['id']}",
        "resourceRuntimeSpec": {
            "serviceAccountSpec": {
                "enableCustomServiceAccount": found.enable_custom_service_account
            }
        },
    }
    if found.state:
        body["state"] = found.state
    return 200, body


def schedule_create(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.schedules.create: also needs actAs on the scheduled pipeline job's SA."""
    project, _location, parent = _location_parent(world, req)
    sent = req.json()
    if not isinstance(sent, dict):
        raise EmulatorError("INVALID_ARGUMENT", "the schedule must be a JSON object")
    world.authorize(req.caller, "aiplatform.schedules.create", CRM + "projects/" + project)
    job = (sent.get("createPipelineJobRequest") or {}).get("pipelineJob") or {}
    _act_as(world, req.caller, job.get("serviceAccount") if isinstance(job, dict) else None)
    return 200, _store_new(world, world.schedules, parent, "schedules", sent, "ACTIVE")


def schedule_get(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.schedules.get."""
    _project, _parent, name = _vertex_named(world, req, "aiplatform.schedules.get", "schedules")
    with world.lock:
        return 200, deep_copy_json(_served(world.schedules, name, "schedule"))


def schedule_patch(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.schedules.update (schedules.patch): the fields ``updateMask`` names are set
    from the body (camelCase, as the REST transport sends them); other fields are kept."""
    _project, _parent, name = _vertex_named(world, req, "aiplatform.schedules.update", "schedules")
    sent = req.json()
    if not isinstance(sent, dict):
        raise EmulatorError("INVALID_ARGUMENT", "the schedule must be a JSON object")
    mask = [m for m in str(req.query.get("updateMask", "")).split(",") if m]
    if not mask:
        raise EmulatorError("INVALID_ARGUMENT", "updateMask is required")
    with world.lock:
        found = _served(world.schedules, name, "schedule")
        for field in mask:
            key = "".join(
                part if i == 0 else part[:1].upper() + part[1:]
                for i, part in enumerate(field.split("_"))
            )
            if key in sent:
                found[key] = deep_copy_json(sent[key])
            else:
                found.pop(key, None)
        return 200, deep_copy_json(found)


def schedule_list(world: World, req: Request) -> tuple[int, Body]:
    """aiplatform.schedules.list (paginated)."""
    return _vertex_list(world, req, "aiplatform.schedules.list", world.schedules, "schedules")


# -- BigQuery ------------------------------------------------------------------------------------


def _bq_names(world: World, req: Request) -> tuple[str, str]:
    project = world.project_id(req.segments["project"]) or req.segments["project"]
    dataset = f"{BIGQUERY}projects/{project}/datasets/{req.segments['dataset']}"
    table = req.segments.get("table")
    return dataset, f"{dataset}/tables/{table}" if table else dataset


_SPECIAL = {"allAuthenticatedUsers": ("specialGroup", "allAuthenticatedUsers")}


def _access_entry(role: str, member: str, condition: Condition | None = None) -> dict[str, Any]:
    entry = _access_entry_plain(role, member)
    if condition is not None:
        # BigQuery carries an access entry's IAM condition on the entry itself
        entry["condition"] = {"expression": condition.expression}
        if condition.title:
            entry["condition"]["title"] = condition.title
        if condition.description:
            entry["condition"]["description"] = condition.description
    return entry


def _access_entry_plain(role: str, member: str) -> dict[str, Any]:
    kind, _, value = member.partition(":")
    if member in _SPECIAL:
        key, value = _SPECIAL[member]
        return {"role": role, key: value}
    if kind in ("user", "serviceAccount"):
        return {"role": role, "userByEmail": value}
    if kind == "group":
        return {"role": role, "groupByEmail": value}
    if kind == "domain":
        return {"role": role, "domain": value}
    return {"role": role, "iamMember": member}


def _entry_condition(entry: dict[str, Any]) -> Condition | None:
    """The IAM condition of a sent access entry (``None``: unconditional)."""
    raw = entry.get("condition")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("expression"), str):
        raise EmulatorError("INVALID_ARGUMENT", f"malformed access entry condition {raw!r}")
    if not raw["expression"].strip():
        raise EmulatorError("INVALID_ARGUMENT", "an access entry condition needs an expression")
    return Condition(
        raw["expression"], str(raw.get("title") or ""), str(raw.get("description") or "")
    )


def dataset_get(world: World, req: Request) -> tuple[int, Body]:
    """bigquery.datasets.get: access entries from the dataset's allow policy. Below
    ``accessPolicyVersion=3`` (absent included) a conditional entry comes back as BigQuery
    sends it: its role renamed ``ROLE_with_conditionalbinding_HASH``, without its condition."""
    try:
        version = int(req.query.get("accessPolicyVersion") or 1)
    except ValueError as exc:
        raise EmulatorError("INVALID_ARGUMENT", "bad accessPolicyVersion") from exc
    policies.check_requested_version(version)
    return _dataset_body(world, req, version)


def _dataset_body(world: World, req: Request, version: int) -> tuple[int, Body]:
    name, _ = _bq_names(world, req)
    node = world.node(name)
    if node is None or node.kind != "dataset":
        raise EmulatorError(
            "NOT_FOUND", f"Not found: Dataset {req.segments['project']}:{req.segments['dataset']}"
        )
    world.authorize(req.caller, "bigquery.datasets.get", name)
    policy = world.policy_of(name)
    if version < 3:
        policy = policies.as_dataset_version_1(policy)
    access = [_access_entry(b.role, m, b.condition) for b in policy.bindings for m in b.members]
    with world.lock:
        access.extend(deep_copy_json(e) for e in world.dataset_extras.get(name, []))
    project = name.split("/")[4]
    return 200, {
        "kind": "bigquery#dataset",
        "id": f"{project}:{req.segments['dataset']}",
        "datasetReference": {"projectId": project, "datasetId": req.segments["dataset"]},
        "access": access,
        "etag": policy.etag,
        "location": "US",
    }


_LEGACY_DATASET_ROLES = {
    "READER": "roles/bigquery.dataViewer",
    "WRITER": "roles/bigquery.dataEditor",
    "OWNER": "roles/bigquery.dataOwner",
}


def _entry_member(entry: dict[str, Any]) -> str | None:
    """The IAM member of a dataset access entry (``None``: views, routines, special groups)."""
    if isinstance(entry.get("userByEmail"), str):
        email = entry["userByEmail"].lower()
        kind = "serviceAccount" if email.endswith(".gserviceaccount.com") else "user"
        return f"{kind}:{email}"
    if isinstance(entry.get("groupByEmail"), str):
        return "group:" + str(entry["groupByEmail"]).lower()
    if isinstance(entry.get("domain"), str):
        return "domain:" + str(entry["domain"])
    if isinstance(entry.get("iamMember"), str):
        return str(entry["iamMember"])
    if entry.get("specialGroup") == "allAuthenticatedUsers":
        return "allAuthenticatedUsers"
    return None


def dataset_patch(world: World, req: Request) -> tuple[int, Body]:
    """bigquery.datasets.update (PATCH/PUT; a write): access entries become the dataset's allow
    policy; ``If-Match`` with a stale etag answers 412."""
    name, _ = _bq_names(world, req)
    node = world.node(name)
    if node is None or node.kind != "dataset":
        raise EmulatorError("NOT_FOUND", f"Not found: Dataset {req.segments['dataset']}")
    world.authorize(req.caller, "bigquery.datasets.update", name)
    sent = req.json()
    if not isinstance(sent, dict):
        raise EmulatorError("INVALID_ARGUMENT", "the dataset must be a JSON object")
    with world.lock:
        current = world.policy_of(name)
        if_match = req.headers.get("if-match")
        if if_match and if_match != current.etag:
            raise EmulatorError(
                "FAILED_PRECONDITION", "Precondition check failed.", http_status=412
            )
        if "access" in sent:
            if not isinstance(sent["access"], list):
                raise EmulatorError("INVALID_ARGUMENT", "access must be a list")
            grants: dict[tuple[str, Condition | None], list[str]] = {}
            extras: list[dict[str, Any]] = []
            for entry in sent["access"]:
                if not isinstance(entry, dict) or not isinstance(entry.get("role") or "", str):
                    raise EmulatorError("INVALID_ARGUMENT", f"malformed access entry {entry!r}")
                member = _entry_member(entry)
                role = entry.get("role") or ""
                role = _LEGACY_DATASET_ROLES.get(role, role)
                if member is None or not role:
                    extras.append(deep_copy_json(entry))
                else:
                    grants.setdefault((role, _entry_condition(entry)), []).append(member)
            bindings = tuple(
                Binding(role=r, members=tuple(dict.fromkeys(m)), condition=c)
                for (r, c), m in grants.items()
            )
            version = 3 if any(b.condition for b in bindings) else 1
            world.set_policy(
                name, AllowPolicy(bindings=bindings, version=version), etag_matches=True
            )
            world.dataset_extras[name] = extras
    return _dataset_body(world, req, 3)  # the written entries, conditions included


def _table_node(world: World, req: Request) -> Node:
    _, name = _bq_names(world, req)
    node = world.node(name)
    if node is None or node.kind != "table":
        raise EmulatorError("NOT_FOUND", f"Not found: Table {req.segments['table']}")
    return node


def table_get_iam(world: World, req: Request) -> tuple[int, Body]:
    """bigquery.tables.getIamPolicy: below ``options.requestedPolicyVersion=3`` (absent
    included) a conditional binding's role is renamed and its condition hidden, as IAM does."""
    node = _table_node(world, req)
    sent = req.json()
    options = sent.get("options") if isinstance(sent, dict) else None
    raw = options.get("requestedPolicyVersion") if isinstance(options, dict) else None
    try:
        version = int(raw or 1)
    except (TypeError, ValueError) as exc:
        raise EmulatorError("INVALID_ARGUMENT", "bad options.requestedPolicyVersion") from exc
    policies.check_requested_version(version)
    world.authorize(req.caller, "bigquery.tables.getIamPolicy", node.name)
    policy = world.policy_of(node.name)
    return 200, policies.to_json(policies.as_version_1(policy) if version < 3 else policy)


def table_set_iam(world: World, req: Request) -> tuple[int, Body]:
    """bigquery.tables.setIamPolicy: a stale etag answers 409 ABORTED."""
    node = _table_node(world, req)
    world.authorize(req.caller, "bigquery.tables.setIamPolicy", node.name)
    sent = req.json()
    body = sent.get("policy") if isinstance(sent, dict) else None
    policy = policies.from_json(body, "bigquery.tables.setIamPolicy")
    policies.check_conditions(policy)
    assert isinstance(body, dict)
    with world.lock:
        current = world.policy_of(node.name)
        etag = body.get("etag")
        stored = world.set_policy(node.name, policy, etag_matches=not etag or etag == current.etag)
    return 200, policies.to_json(stored)


# -- routing -------------------------------------------------------------------------------------

_P = r"(?P<project>[^/]+)"
_L = r"(?P<location>[^/]+)"
_V = rf"^/v1/projects/{_P}/locations/{_L}"
_B = r"^/storage/v1/b/(?P<bucket>[^/]+)"
_BQ = rf"^/bigquery/v2/projects/{_P}/datasets/(?P<dataset>[^/]+)"


def tokeninfo(world: World, req: Request) -> tuple[int, Body]:
    """OAuth 2.0 tokeninfo (``oauth2.googleapis.com/tokeninfo``): who an access token belongs
    to. The emulator's tokens name their caller; any other token is ``invalid_token``, as
    Google answers for a token it did not issue."""
    member = caller_from_authorization("Bearer " + req.query.get("access_token", ""))
    kind, _, email = (member or "").partition(":")
    if kind not in ("user", "serviceAccount") or "@" not in email:
        raise EmulatorError("INVALID_ARGUMENT", "invalid_token: Invalid Value")
    return 200, {
        "email": email,
        "email_verified": "true",
        "expires_in": "3599",
        "access_type": "online",
        "scope": "https://www.googleapis.com/auth/cloud-platform openid "
        "https://www.googleapis.com/auth/userinfo.email",
    }


def _t_bucket(r: Request) -> str:
    return r.segments.get("bucket", "")


def _t_path(r: Request) -> str:
    return r.path


def _t_project(r: Request) -> str:
    return "projects/" + r.query.get("project", "")


def _route(
    verb: str,
    pattern: str,
    api: str,
    method: str,
    write: bool,
    handler: Handler,
    target: Callable[[Request], str] = _t_path,
) -> Route:
    return Route(verb, re.compile(pattern + "$"), api, method, write, handler, target)


ROUTES: tuple[Route, ...] = (
    _route("GET", r"^/tokeninfo", "oauth2", "oauth2.tokeninfo", False, tokeninfo),
    _route("GET", _B, "storage", "storage.buckets.get", False, bucket_get, _t_bucket),
    _route(
        "GET",
        _B + "/iam/testPermissions",
        "storage",
        "storage.buckets.testIamPermissions",
        False,
        bucket_test_permissions,
        _t_bucket,
    ),
    _route(
        "GET",
        _B + "/iam",
        "storage",
        "storage.buckets.getIamPolicy",
        False,
        bucket_get_iam,
        _t_bucket,
    ),
    _route(
        "PUT",
        _B + "/iam",
        "storage",
        "storage.buckets.setIamPolicy",
        True,
        bucket_set_iam,
        _t_bucket,
    ),
    _route(
        "POST",
        r"^/storage/v1/b",
        "storage",
        "storage.buckets.insert",
        True,
        bucket_insert,
        _t_project,
    ),
    _route(
        "POST",
        rf"^/v1/projects/{_P}:getAncestry",
        "cloudresourcemanager",
        "projects.getAncestry",
        False,
        project_get_ancestry,
    ),
    _route(
        "GET",
        rf"^/storage/v1/projects/{_P}/hmacKeys",
        "storage",
        "storage.hmacKeys.list",
        False,
        hmac_key_list,
    ),
    _route(
        "GET",
        rf"^/v2/projects/{_P}/locations/{_L}/keys",
        "apikeys",
        "apikeys.keys.list",
        False,
        api_key_list,
    ),
    _route("GET", _B + "/o", "storage", "storage.objects.list", False, object_list, _t_bucket),
    _route("GET", _B + "/o/(?P<object>.+)", "storage", "storage.objects.get", False, object_get),
    _route(
        "GET",
        r"^/download/storage/v1/b/(?P<bucket>[^/]+)/o/(?P<object>.+)",
        "storage",
        "storage.objects.get",
        False,
        object_get,
    ),
    _route(
        "POST",
        r"^/upload/storage/v1/b/(?P<bucket>[^/]+)/o",
        "storage",
        "storage.objects.insert",
        True,
        object_insert,
    ),
    _route(
        "POST",
        _V + "/pipelineJobs",
        "aiplatform",
        "aiplatform.pipelineJobs.create",
        True,
        pipeline_job_create,
    ),
    _route(
        "GET",
        _V + "/pipelineJobs",
        "aiplatform",
        "aiplatform.pipelineJobs.list",
        False,
        pipeline_job_list,
    ),
    _route(
        "GET",
        _V + "/pipelineJobs/(?P<id>[^/:]+)",
        "aiplatform",
        "aiplatform.pipelineJobs.get",
        False,
        pipeline_job_get,
    ),
    _route(
        "POST",
        _V + "/pipelineJobs/(?P<id>[^/:]+):cancel",
        "aiplatform",
        "aiplatform.pipelineJobs.cancel",
        True,
        pipeline_job_cancel,
    ),
    _route(
        "POST",
        _V + "/customJobs",
        "aiplatform",
        "aiplatform.customJobs.create",
        True,
        custom_job_create,
    ),
    _route(
        "GET",
        _V + "/customJobs",
        "aiplatform",
        "aiplatform.customJobs.list",
        False,
        custom_job_list,
    ),
    _route(
        "GET",
        _V + "/customJobs/(?P<id>[^/:]+)",
        "aiplatform",
        "aiplatform.customJobs.get",
        False,
        custom_job_get,
    ),
    _route(
        "POST",
        _V + "/customJobs/(?P<id>[^/:]+):cancel",
        "aiplatform",
        "aiplatform.customJobs.cancel",
        True,
        custom_job_cancel,
    ),
    _route(
        "GET",
        _V + "/persistentResources/(?P<id>[^/:]+)",
        "aiplatform",
        "aiplatform.persistentResources.get",
        False,
        persistent_resource_get,
    ),
    _route(
        "POST",
        _V + "/schedules",
        "aiplatform",
        "aiplatform.schedules.create",
        True,
        schedule_create,
    ),
    _route(
        "GET", _V + "/schedules", "aiplatform", "aiplatform.schedules.list", False, schedule_list
    ),
    _route(
        "GET",
        _V + "/schedules/(?P<id>[^/:]+)",
        "aiplatform",
        "aiplatform.schedules.get",
        False,
        schedule_get,
    ),
    _route(
        "PATCH",
        _V + "/schedules/(?P<id>[^/:]+)",
        "aiplatform",
        "aiplatform.schedules.update",
        True,
        schedule_patch,
    ),
    _route("GET", _BQ, "bigquery", "bigquery.datasets.get", False, dataset_get),
    _route("PATCH", _BQ, "bigquery", "bigquery.datasets.update", True, dataset_patch),
    _route("PUT", _BQ, "bigquery", "bigquery.datasets.update", True, dataset_patch),
    _route(
        "POST",
        _BQ + "/tables/(?P<table>[^/:]+):getIamPolicy",
        "bigquery",
        "bigquery.tables.getIamPolicy",
        False,
        table_get_iam,
    ),
    _route(
        "POST",
        _BQ + "/tables/(?P<table>[^/:]+):setIamPolicy",
        "bigquery",
        "bigquery.tables.setIamPolicy",
        True,
        table_set_iam,
    ),
)


def all_routes() -> tuple[Route, ...]:
    """Every served route: these, then the ones of the emulator's other modules."""
    from zt_pipelines.emulator.segmentation_api import ROUTES as SEGMENTATION_ROUTES

    return (*ROUTES, *SEGMENTATION_ROUTES)


STORAGE_BATCH_PATH = "/batch/storage/v1"
#: Google's bound on the calls in one storage batch request
STORAGE_BATCH_LIMIT = 100
BatchCall = tuple[str, str, dict[str, str], bytes]


def parse_batch(content_type: str, body: bytes) -> list[tuple[str, BatchCall]] | None:
    """The calls of a ``multipart/mixed`` batch body: ``(Content-ID, (verb, target, headers,
    body))`` in order; ``None`` when it is not one (no boundary, a part that is no request)."""
    # read by hand (RFC 2046 §5.1.1), not with the email package: its parser cost more of the
    # emulator's CPU than the calls in the batch
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/mixed":
        return None
    boundary = _boundary(params)
    if not boundary:
        return None
    # a delimiter starts a line: the body with LF lines, split at "\n--BOUNDARY"
    chunks = (b"\n" + body.replace(b"\r\n", b"\n")).split(b"\n--" + boundary)
    calls: list[tuple[str, BatchCall]] = []
    for chunk in chunks[1:]:  # the first is the preamble
        if chunk.startswith(b"--"):  # the close delimiter: the rest is the epilogue
            return calls
        padding, newline, part = chunk.partition(b"\n")
        if not newline or padding.strip(b" \t"):
            return None  # a boundary that does not end its line is no delimiter
        if part.startswith(b"\n"):  # a part without headers
            head, blank, content = b"", b"\n", part[1:]
        else:
            head, blank, content = part.partition(b"\n\n")
        if not blank:
            return None
        headers = {}
        for line in head.decode("latin-1").split("\n") if head else ():
            name, sep, value = line.partition(":")
            if not sep:
                return None
            headers[name.strip().lower()] = value.strip()
        call = _nested_request(content)
        if call is None:
            return None
        calls.append((headers.get("content-id", "").strip("<>"), call))
    return None  # no close delimiter: a truncated body


def _boundary(params: str) -> bytes | None:
    """The ``boundary`` parameter of a Content-Type (quoted or not)."""
    for param in params.split(";"):
        name, sep, value = param.partition("=")
        if sep and name.strip().lower() == "boundary":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value.encode("latin-1") if 0 < len(value) <= 70 else None
    return None


def _nested_request(raw: bytes) -> BatchCall | None:
    """``VERB TARGET HTTP/1.1``, headers, a blank line and a body (CRLF or LF lines)."""
    normal = raw.replace(b"\r\n", b"\n")
    head, _, rest = normal.lstrip(b"\n").partition(b"\n\n")
    lines = head.decode("latin-1").split("\n")
    words = lines[0].split(" ")
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    return words[0].upper(), words[1], headers, rest.rstrip(b"\n")


def error_body(code: str, message: str, status: int) -> dict[str, Any]:
    """Google's JSON error envelope."""
    reason = {403: "forbidden", 404: "notFound", 412: "conditionNotMet", 401: "required"}
    return {
        "error": {
            "code": status,
            "message": message,
            "status": code,
            "errors": [
                {"message": message, "domain": "global", "reason": reason.get(status, code.lower())}
            ],
        }
    }


class EmulatorHttpHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler; ``world`` and ``gate`` are set on a subclass per emulator."""

    protocol_version = "HTTP/1.1"
    server_version = "zt-emulator"
    world: World
    gate: Gate
    kfp: artifact_registry.KfpRepositories

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the record."""

    def do_GET(self) -> None:
        """Dispatch a GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Dispatch a POST."""
        self._dispatch("POST")

    def do_PUT(self) -> None:
        """Dispatch a PUT."""
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        """Dispatch a PATCH."""
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        """Dispatch a DELETE."""
        self._dispatch("DELETE")

    def _dispatch(self, verb: str) -> None:
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        pairs = tuple(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        body = self._read_body()
        if body is None:
            self._send_error(EmulatorError("INVALID_ARGUMENT", "malformed request body framing"))
            self.close_connection = True
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        caller = caller_from_authorization(headers.get("authorization"))
        region = artifact_registry.region_of(headers.get("host"))
        if region is not None:  # an Artifact Registry KFP host: the path is PROJECT/REPO/...
            self._artifact_registry(verb, path, region, caller)
            return
        if verb == "POST" and path == STORAGE_BATCH_PATH:
            self._storage_batch(headers, body)
            return
        answer = self._route(verb, path, pairs, headers, body, caller)
        if answer is None:
            self._reset()
        else:
            self._send(*answer)

    def _route(
        self,
        verb: str,
        path: str,
        pairs: tuple[tuple[str, str], ...],
        headers: dict[str, str],
        body: bytes,
        caller: str | None,
        *,
        api: str | None = None,
        batched: bool = False,
    ) -> tuple[int, bytes, str] | None:
        """Serve one call: ``(status, body, content type)``, or ``None`` to reset the
        connection. ``api``: only that API's routes (the calls of a batch request)."""
        for route in all_routes():
            if route.verb != verb or (api is not None and route.api != api):
                continue
            match = route.pattern.match(path)
            if match is None:
                continue
            segments = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            req = Request(verb, path, segments, dict(pairs), headers, body, caller, pairs)
            outcome = self.gate.call(
                api=route.api,
                method=route.method,
                target=route.target(req),
                caller=caller,
                write=route.write,
                run=lambda route=route, req=req: route.handler(self.world, req),  # type: ignore[misc]
                batched=batched,
            )
            if outcome.reset:
                return None
            if outcome.malformed:
                return 200, MALFORMED_BODY, "application/json; charset=UTF-8"
            if outcome.error is not None:
                return self._error_answer(outcome.error)
            _status, value = outcome.value
            if isinstance(value, tuple):
                return 200, value[0], value[1]
            return 200, json.dumps(value).encode(), "application/json; charset=UTF-8"
        return self._error_answer(
            EmulatorError("UNIMPLEMENTED", f"{verb} {path} is not served"), 404
        )

    def _storage_batch(self, headers: dict[str, str], body: bytes) -> None:
        """``POST /batch/storage/v1``: the calls in a ``multipart/mixed`` body, each served as
        if it came alone (authorised, faulted and logged one by one, in order), answered in
        one ``multipart/mixed`` response within one round trip. The outer request's headers
        (``Authorization``) apply to every call that does not set its own."""
        calls = parse_batch(headers.get("content-type", ""), body)
        if calls is None or len(calls) > STORAGE_BATCH_LIMIT:
            why = "not a multipart/mixed batch" if calls is None else "more than 100 calls"
            self._send_error(EmulatorError("INVALID_ARGUMENT", f"batch request: {why}"))
            return
        boundary = "batch_" + uuid.uuid4().hex
        out: list[bytes] = []
        for content_id, (verb, target, own_headers, own_body) in calls:
            merged = {**headers, **own_headers}
            merged.pop("content-type", None)
            merged.pop("content-length", None)
            merged.update((k, v) for k, v in own_headers.items() if k.startswith("content-"))
            split = urllib.parse.urlsplit(target)
            pairs = tuple(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
            caller = caller_from_authorization(merged.get("authorization"))
            answer = self._route(
                verb, split.path, pairs, merged, own_body, caller, api="storage", batched=True
            )
            if answer is None:  # a reset fault drops the whole connection, as it would
                self.gate.round_trip()
                self._reset()
                return
            status, data, content_type = answer
            reason = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "-"
            head = f"--{boundary}\r\nContent-Type: application/http\r\n"
            if content_id:
                head += f"Content-ID: <response-{content_id}>\r\n"
            head += (
                f"\r\nHTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            )
            out += [head.encode(), data, b"\r\n"]
        out.append(f"--{boundary}--\r\n".encode())
        self.gate.round_trip()  # answered on arrival, held for one round trip (as Gate.call)
        self._send(200, b"".join(out), f"multipart/mixed; boundary={boundary}")

    def _artifact_registry(self, verb: str, path: str, region: str, caller: str | None) -> None:
        if verb != "GET":
            self._send_error(EmulatorError("UNIMPLEMENTED", f"{verb} {path} is not served"), 404)
            return
        outcome = self.gate.call(
            api="artifactregistry",
            method=artifact_registry.DOWNLOAD,
            target=f"{region}-kfp.pkg.dev{path}",
            caller=caller,
            write=False,
            run=lambda: artifact_registry.download(self.world, self.kfp, region, path, caller),
        )
        if outcome.reset:
            self._reset()
        elif outcome.malformed:
            self._send(200, MALFORMED_BODY, "application/x-yaml")
        elif outcome.error is not None:
            self._send_error(outcome.error)
        else:
            data, content_type = outcome.value
            self._send(200, data, content_type)

    def _read_body(self) -> bytes | None:
        """The request body (Content-Length or chunked); ``None`` when the framing is bad."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                line = self.rfile.readline(1024).split(b";", 1)[0].strip()
                try:
                    size = int(line, 16)
                except ValueError:
                    return None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)  # the CRLF after each chunk
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0:
            return None
        return self.rfile.read(length) if length else b""

    def _send_error(self, error: EmulatorError, status: int | None = None) -> None:
        self._send(*self._error_answer(error, status))

    @staticmethod
    def _error_answer(error: EmulatorError, status: int | None = None) -> tuple[int, bytes, str]:
        status = status or error.http_status or HTTP_STATUS.get(error.code, 500)
        body = json.dumps(error_body(error.code, error.message, status)).encode()
        return status, body, "application/json; charset=UTF-8"

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send a TCP RST
        sock: socket.socket = self.connection
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        except OSError:
            pass
        self.close_connection = True

    def finish(self) -> None:
        """Flush, tolerating a connection we reset on purpose."""
        with contextlib.suppress(OSError, ValueError):
            super().finish()
