"""Read AWS requests and write AWS error responses, as much as tests/strict_aws.py needs.

Requests: the SigV4 credential scope (access key and service), the parameters of the query
protocol (EC2, IAM: a form body or query string) and the bucket and key of a path-style S3 request.
Errors: EC2's and S3's XML error documents.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from tests.reverse_proxy import Response

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/[^/]+/([^/]+)/aws4_request")
QUERY_CREDENTIAL = re.compile(r"^([^/]+)/\d{8}/[^/]+/([^/]+)/aws4_request$")
# Query parameters a GetObject or HeadObject may carry; any other names a sub-resource (?acl, ?tagging).
OBJECT_READ_PARAMETERS = {"versionId", "partNumber", "x-id"}


def header(request, name):
    return next((v for k, v in request.headers.items() if k.lower() == name.lower()), "")


def _query(request):
    return parse_qs(urlsplit(request.path).query, keep_blank_values=True)


def credential_scope(request):
    """(access key id, service) the request is signed for, from its Authorization header or a presigned URL."""
    found = CREDENTIAL.search(header(request, "Authorization"))
    if not found:
        found = QUERY_CREDENTIAL.match(_query(request).get("X-Amz-Credential", [""])[0])
    return (found.group(1), found.group(2)) if found else ("", "")


def query_parameters(request):
    """The parameters of a query-protocol request (EC2, IAM), first value of each."""
    params = _query(request)
    if "x-www-form-urlencoded" in header(request, "Content-Type"):
        params.update(parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return {name: values[0] for name, values in params.items()}


def object_read(request):
    """(bucket, key) when the request is a path-style GetObject or HeadObject, else None."""
    if request.method not in ("GET", "HEAD"):
        return None
    split = urlsplit(request.path)
    bucket, _slash, key = split.path.lstrip("/").partition("/")
    extra = {p for p in _query(request) if not p.startswith(("response-", "X-Amz-"))} - OBJECT_READ_PARAMETERS
    if not bucket or not key or extra:
        return None
    return unquote(bucket), unquote(key)


def ec2_error(code, message, status=400):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    )
    return Response(status, "Bad Request", [("Content-Type", "text/xml;charset=UTF-8")], body.encode())


def s3_access_denied(method):
    request_id = uuid.uuid4().hex[:16].upper()
    headers = [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    if method == "HEAD":
        return Response(403, "Forbidden", headers)
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>{request_id}</RequestId></Error>"
    )
    return Response(403, "Forbidden", headers, body.encode())
