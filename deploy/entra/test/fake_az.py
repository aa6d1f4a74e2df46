#!/usr/bin/env python3
"""A stand-in for the Azure CLI, for testing deploy/entra/setup.sh and cleanup.sh offline.

It answers only the `az` commands those scripts use, keeps a tenant in a JSON file
($FAKE_AZ_STATE), and records every call ($FAKE_AZ_LOG, one JSON array of arguments a line). It
is a model, not Entra: it holds the documented rules the scripts depend on and nothing else.

Modelled (and where it comes from):
- `az` output: --query is JMESPath on the JSON result, `-o tsv` prints as knack's TSV writer does
  (a list is one row per item, a nested list one tab-separated row, null prints nothing), `-o none`
  prints nothing, errors go to stderr as `ERROR: ...` with exit status 1 (3 for "not found"), and
  `az rest` errors read `ERROR: Bad Request({graph error JSON})`; `@path` arguments are file
  contents.
- `az ad app create` with a display name that exists patches that app (azure-cli's custom.py);
  `az ad app credential reset --cert --append` adds a keyCredential whose customKeyIdentifier is
  the certificate's SHA-1 thumbprint; without --append it drops the app's other credentials.
- Graph: addPassword returns the secret once (secretText); an enabled app role cannot be removed or
  changed (CannotDeleteOrUpdateEnabledEntitlement); app roles reach the service principal; a
  duplicate app role assignment is refused with "Permission being assigned already exists on the
  object"; a role the resource does not define with "Permission being assigned was not found on
  application"; identifier URIs are unique in the tenant, and a new one on an app that takes v1
  tokens must be api://{appId}, api://{tenantId}/{appId} or contain the tenant ID, the app ID or a
  verified domain (the default identifier URI policy; v2 apps are exempt, identifier-uri-
  restrictions.md); deleting an app deletes its service principal and moves the app to deleted
  items, from which DELETE /directory/deletedItems/{id} removes it.
- Replication lag, with FAKE_AZ_LAG=1: the first `az ad sp create` for each app and the first
  appRoleAssignedTo POST for each principal fail with the answers Entra gives while a new object
  has not reached every replica.
- FAKE_AZ_STALE_READS=1: listing app role assignments answers from a replica that has none yet,
  so a POST meets an assignment that exists.
- FAKE_AZ_LOGGED_OUT=1: `az account show` fails as it does before `az login`.
- FAKE_AZ_DENY_ASSIGN=1: app role assignments are refused as they are for a user without an
  administrator role (403 Authorization_RequestDenied).

`fake_az.py export-directory DIR` writes the tenant as an entra-emulator directory file, so that the
configuration setup.sh writes can be run against the emulator end to end.
"""

import base64
import copy
import hashlib
import json
import os
import re
import secrets
import string
import sys
import uuid
from datetime import datetime, timedelta, timezone

import jmespath

TENANT_ID = "9d3f0b6e-2a4c-4e8b-b1f7-5c6d7e8f9a01"
TENANT_DOMAIN = "fabrikam-test.onmicrosoft.com"
GRAPH = "https://graph.microsoft.com/v1.0"


class AzError(Exception):
    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def graph_error(http, code, message, status=1):
    body = json.dumps({"error": {"code": code, "message": message,
                                 "innerError": {"request-id": str(uuid.uuid4())}}})
    return AzError(f"{http}({body})", status)


def now():
    return datetime.now(timezone.utc)


def stamp(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- state ---------------------------------------------------------------------------------------

def load_state():
    path = os.environ["FAKE_AZ_STATE"]
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"apps": [], "sps": [], "assignments": [], "deleted": [], "secrets": {},
            "certs": {}, "lag_seen": []}


def save_state(state):
    path = os.environ["FAKE_AZ_STATE"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)


def lag(state, key):
    """True the first time `key` is seen while FAKE_AZ_LAG is on."""
    if os.environ.get("FAKE_AZ_LAG") != "1" or key in state["lag_seen"]:
        return False
    state["lag_seen"].append(key)
    return True


def find_app(state, ident):
    for app in state["apps"]:
        if ident in (app["id"], app["appId"]) or ident in app["identifierUris"]:
            return app
    raise AzError(f"Resource '{ident}' does not exist or one of its queried reference-property "
                  "objects are not present.", 3)


def app_by_object(state, object_id):
    for app in state["apps"]:
        if app["id"] == object_id:
            return app
    raise graph_error("Not Found", "Request_ResourceNotFound",
                      f"Resource '{object_id}' does not exist or one of its queried "
                      "reference-property objects are not present.")


def sp_view(state, sp):
    app = next(a for a in state["apps"] if a["appId"] == sp["appId"])
    return {**sp, "appRoles": app["appRoles"], "appDisplayName": app["displayName"]}


def sp_by_id(state, sp_id):
    for sp in state["sps"]:
        if sp["id"] == sp_id:
            return sp
    raise graph_error("Not Found", "Request_ResourceNotFound",
                      f"Resource '{sp_id}' does not exist or one of its queried "
                      "reference-property objects are not present.")


def new_app(display_name, audience):
    return {
        "id": str(uuid.uuid4()), "appId": str(uuid.uuid4()), "displayName": display_name,
        "signInAudience": audience or "AzureADandPersonalMicrosoftAccount",
        "identifierUris": [], "appRoles": [],
        "api": {"requestedAccessTokenVersion": None, "acceptMappedClaims": None,
                "knownClientApplications": [], "oauth2PermissionScopes": [],
                "preAuthorizedApplications": []},
        "optionalClaims": None, "passwordCredentials": [], "keyCredentials": [],
        "requiredResourceAccess": [], "createdDateTime": stamp(now()),
    }


# ---- the rules -----------------------------------------------------------------------------------

def set_app_roles(app, roles):
    new = {r["id"]: r for r in roles}
    for old in app["appRoles"]:
        if not old.get("isEnabled"):
            continue
        kept = new.get(old["id"])
        if kept is None or kept.get("value") != old.get("value") or not kept.get("isEnabled"):
            raise graph_error("Bad Request", "CannotDeleteOrUpdateEnabledEntitlement",
                              "Permission (scope or role) cannot be deleted or updated unless "
                              "disabled first.")
    for role in roles:
        if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                            str(role.get("id", ""))):
            raise graph_error("Bad Request", "Request_BadRequest",
                              "Invalid value specified for property 'id' of resource 'AppRole'.")
        if role.get("isEnabled") not in (True, "true"):
            raise graph_error("Bad Request", "Request_BadRequest", "isEnabled must be set")
        role["isEnabled"] = True
    app["appRoles"] = roles


def uri_allowed(state, app, uri):
    if app["api"].get("requestedAccessTokenVersion") == 2:
        return True
    if uri in (f"api://{app['appId']}", f"api://{TENANT_ID}/{app['appId']}"):
        return True
    return TENANT_ID in uri or app["appId"] in uri or TENANT_DOMAIN in uri


def set_identifier_uris(state, app, uris):
    for uri in uris:
        if uri in app["identifierUris"]:
            continue
        if any(uri in other["identifierUris"] for other in state["apps"] if other is not app):
            raise graph_error("Bad Request", "Request_BadRequest",
                              "Another object with the same value for property identifierUris "
                              "already exists.")
        if not uri_allowed(state, app, uri):
            raise graph_error("Bad Request", "Request_BadRequest",
                              f"Failed to add identifier URI {uri}. All newly added URIs must "
                              "contain a tenant verified domain, tenant ID, or app ID, as per the "
                              "default tenant policy of your organization. See "
                              "https://aka.ms/identifier-uri-addition-error for more information "
                              "on this error.")
    app["identifierUris"] = list(uris)


def patch_app(state, app, body):
    for key, value in body.items():
        if key == "api":
            app["api"] = {**app["api"], **value}
        elif key == "appRoles":
            set_app_roles(app, value)
        elif key == "identifierUris":
            set_identifier_uris(state, app, value)
        elif key == "keyCredentials":
            app["keyCredentials"] = value
        elif key in ("optionalClaims", "displayName", "signInAudience"):
            app[key] = value
        else:
            raise graph_error("Bad Request", "Request_BadRequest",
                              f"fake az: PATCH of '{key}' is not modelled")


def entra_secret():
    alphabet = string.ascii_letters + string.digits + "~._-"
    head = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(3))
    return head + "8Q~" + "".join(secrets.choice(alphabet) for _ in range(34))


def add_password(state, app, body):
    cred = (body or {}).get("passwordCredential", {})
    value = entra_secret()
    key_id = str(uuid.uuid4())
    start = now()
    end = cred.get("endDateTime") or stamp(start + timedelta(days=730))
    entry = {"customKeyIdentifier": None, "displayName": cred.get("displayName"),
             "endDateTime": end, "hint": value[:3], "keyId": key_id, "secretText": None,
             "startDateTime": stamp(start)}
    app["passwordCredentials"].append(entry)
    state["secrets"][key_id] = value
    return {**entry, "secretText": value}


def assign(state, resource_sp_id, body):
    resource = sp_by_id(state, resource_sp_id)
    if body.get("resourceId") != resource_sp_id:
        raise graph_error("Bad Request", "Request_BadRequest",
                          "resourceId must be the service principal in the URL")
    principal = next((s for s in state["sps"] if s["id"] == body.get("principalId")), None)
    if principal is None or lag(state, "assign:" + body.get("principalId", "")):
        raise graph_error("Bad Request", "Request_BadRequest", "Not a valid reference update.")
    roles = sp_view(state, resource)["appRoles"]
    role = next((r for r in roles if r["id"] == body.get("appRoleId")), None)
    if role is None or "Application" not in role.get("allowedMemberTypes", []):
        raise graph_error("Bad Request", "Request_BadRequest",
                          "Permission being assigned was not found on application "
                          f"'{resource['appId']}'.")
    for a in state["assignments"]:
        if (a["principalId"], a["resourceId"], a["appRoleId"]) == (
                body["principalId"], resource_sp_id, body["appRoleId"]):
            raise graph_error("Bad Request", "Request_BadRequest",
                              "Permission being assigned already exists on the object.")
    assignment = {"id": base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
                  "appRoleId": body["appRoleId"], "principalId": body["principalId"],
                  "principalType": "ServicePrincipal", "resourceId": resource_sp_id,
                  "principalDisplayName": principal["displayName"],
                  "resourceDisplayName": resource["displayName"],
                  "createdDateTime": stamp(now())}
    state["assignments"].append(assignment)
    return assignment


def delete_app(state, app):
    state["apps"].remove(app)
    sps = [s for s in state["sps"] if s["appId"] == app["appId"]]
    for sp in sps:
        state["sps"].remove(sp)
        state["assignments"] = [a for a in state["assignments"]
                                if sp["id"] not in (a["principalId"], a["resourceId"])]
    state["deleted"].append(app)


# ---- commands ------------------------------------------------------------------------------------

def parse(args):
    """Command words, then {--option: [values]}; `@path` values are the file's contents."""
    words = []
    while args and not args[0].startswith("-"):
        words.append(args.pop(0))
    opts = {}
    while args:
        name = args.pop(0)
        if name == "-o":
            name = "--output"
        values = []
        while args and not (args[0].startswith("-") and len(args[0]) > 1
                            and not args[0][1].isdigit()):
            value = args.pop(0)
            if value.startswith("@"):
                with open(os.path.expanduser(value[1:])) as f:
                    value = f.read()
            values.append(value)
        opts[name] = values
    return words, opts


def one(opts, name, default=None):
    values = opts.get(name)
    if not values:
        return default
    return values[0]


def odata_filter(items, flt):
    if not flt:
        return items
    m = re.fullmatch(r"(\w+) eq '([^']*)'", flt)
    if m:
        return [i for i in items if i.get(m.group(1)) == m.group(2)]
    m = re.fullmatch(r"startswith\((\w+),\s*'([^']*)'\)", flt)
    if m:
        return [i for i in items if str(i.get(m.group(1), "")).startswith(m.group(2))]
    raise AzError(f"fake az: filter not modelled: {flt}")


def run(state, words, opts):
    cmd = " ".join(words)
    if cmd == "version":
        return {"azure-cli": "2.67.0", "azure-cli-core": "2.67.0", "azure-cli-telemetry": "1.1.0",
                "extensions": {}}
    if cmd == "account show":
        if os.environ.get("FAKE_AZ_LOGGED_OUT") == "1":
            raise AzError("Please run 'az login' to setup account.")
        return {"environmentName": "AzureCloud", "tenantId": TENANT_ID,
                "tenantDisplayName": "Fabrikam (test)", "tenantDefaultDomain": TENANT_DOMAIN,
                "id": TENANT_ID, "name": "N/A(tenant level account)",
                "user": {"name": "admin@" + TENANT_DOMAIN, "type": "user"}}
    if cmd == "cloud show":
        return {"name": "AzureCloud", "isActive": True,
                "endpoints": {"activeDirectory": "https://login.microsoftonline.com",
                              "microsoftGraphResourceId": "https://graph.microsoft.com/",
                              "resourceManager": "https://management.azure.com/"}}
    if cmd == "ad app list":
        apps = odata_filter(state["apps"], one(opts, "--filter"))
        name = one(opts, "--display-name")
        if name:
            apps = [a for a in apps if a["displayName"].startswith(name)]
        return apps
    if cmd == "ad app create":
        name = one(opts, "--display-name")
        existing = [a for a in state["apps"] if a["displayName"] == name]
        if len(existing) > 1:
            raise AzError(f"More than one application have the same display name '{name}'")
        app = existing[0] if existing else new_app(name, one(opts, "--sign-in-audience"))
        if "--app-roles" in opts:
            set_app_roles(app, json.loads(one(opts, "--app-roles")))
        if "--identifier-uris" in opts:
            set_identifier_uris(state, app, opts["--identifier-uris"])
        if not existing:
            state["apps"].append(app)
        return app
    if cmd == "ad app show":
        return find_app(state, one(opts, "--id"))
    if cmd == "ad app update":
        app = find_app(state, one(opts, "--id"))
        if "--app-roles" in opts:
            set_app_roles(app, json.loads(one(opts, "--app-roles")))
        if "--identifier-uris" in opts:
            set_identifier_uris(state, app, opts["--identifier-uris"])
        return None
    if cmd == "ad app delete":
        delete_app(state, find_app(state, one(opts, "--id")))
        return None
    if cmd == "ad app credential reset":
        app = find_app(state, one(opts, "--id"))
        pem = one(opts, "--cert")
        if not pem or "--append" not in opts:
            raise AzError("fake az: only `credential reset --cert ... --append` is modelled")
        if "PRIVATE KEY" in pem:
            raise AzError("fake az: a private key was passed as --cert")
        body = "".join(l for l in pem.splitlines() if not l.startswith("-----"))
        der = base64.b64decode(body)
        thumb = hashlib.sha1(der).hexdigest().upper()
        key_id = str(uuid.uuid4())
        app["keyCredentials"].append({
            "customKeyIdentifier": thumb, "displayName": one(opts, "--display-name"),
            "endDateTime": stamp(now() + timedelta(days=365)), "key": None, "keyId": key_id,
            "startDateTime": stamp(now()), "type": "AsymmetricX509Cert", "usage": "Verify"})
        state["certs"][key_id] = pem
        return {"appId": app["appId"], "password": None, "tenant": TENANT_ID}
    if cmd == "ad sp list":
        sps = odata_filter(state["sps"], one(opts, "--filter"))
        return [sp_view(state, s) for s in sps]
    if cmd == "ad sp create":
        app_id = one(opts, "--id")
        app = next((a for a in state["apps"] if a["appId"] == app_id), None)
        if app is None or lag(state, "sp:" + app_id):
            raise AzError(f"The appId '{app_id}' of the service principal does not reference a "
                          "valid application object.")
        if any(s["appId"] == app_id for s in state["sps"]):
            raise AzError("The service principal cannot be created, updated, or restored because "
                          "the service principal name " + app_id + " is already in use.")
        sp = {"id": str(uuid.uuid4()), "appId": app_id, "displayName": app["displayName"],
              "appRoleAssignmentRequired": False, "servicePrincipalType": "Application",
              "accountEnabled": True}
        state["sps"].append(sp)
        return sp_view(state, sp)
    if cmd == "rest":
        return rest(state, opts)
    raise AzError(f"fake az: command not modelled: az {cmd}")


def rest(state, opts):
    method = one(opts, "--method", "get").upper()
    url = one(opts, "--uri") or one(opts, "--url")
    body = one(opts, "--body")
    body = json.loads(body) if body else None
    if not url.startswith(GRAPH + "/"):
        raise AzError(f"fake az: only Microsoft Graph v1.0 is modelled, not {url}")
    path = url[len(GRAPH):].split("?")[0]
    m = re.fullmatch(r"/applications/([0-9a-f-]+)", path)
    if m and method == "PATCH":
        patch_app(state, app_by_object(state, m.group(1)), body)
        return None
    if m and method == "GET":
        return app_by_object(state, m.group(1))
    m = re.fullmatch(r"/applications/([0-9a-f-]+)/addPassword", path)
    if m and method == "POST":
        return add_password(state, app_by_object(state, m.group(1)), body)
    m = re.fullmatch(r"/servicePrincipals/([0-9a-f-]+)/appRoleAssignedTo", path)
    if m and method == "GET":
        sp_by_id(state, m.group(1))
        if os.environ.get("FAKE_AZ_STALE_READS") == "1":
            return {"value": []}
        return {"value": [a for a in state["assignments"] if a["resourceId"] == m.group(1)]}
    if m and method == "POST":
        if os.environ.get("FAKE_AZ_DENY_ASSIGN") == "1":
            raise graph_error("Forbidden", "Authorization_RequestDenied",
                              "Insufficient privileges to complete the operation.")
        return assign(state, m.group(1), body)
    m = re.fullmatch(r"/directory/deletedItems/([0-9a-f-]+)", path)
    if m and method == "DELETE":
        item = next((d for d in state["deleted"] if d["id"] == m.group(1)), None)
        if item is None:
            raise graph_error("Not Found", "Request_ResourceNotFound",
                              f"Resource '{m.group(1)}' does not exist or one of its queried "
                              "reference-property objects are not present.")
        state["deleted"].remove(item)
        return None
    raise AzError(f"fake az: not modelled: {method} {path}")


# ---- output --------------------------------------------------------------------------------------

def tsv_cell(value):
    if isinstance(value, list):
        return str(len(value))
    if isinstance(value, dict):
        return ""
    return value if isinstance(value, str) else str(value)


def tsv(result):
    rows = result if isinstance(result, list) else [result]
    lines = []
    for row in rows:
        if isinstance(row, dict):
            lines.append("\t".join(tsv_cell(v) for v in row.values()))
        elif isinstance(row, list):
            lines.append("\t".join(tsv_cell(v) for v in row))
        elif isinstance(row, bool):
            lines.append(str(row).lower())
        else:
            lines.append(tsv_cell(row))
    return "".join(line + "\n" for line in lines)


def emit(result, opts):
    query = one(opts, "--query")
    if query is not None and result is not None:
        result = jmespath.search(query, result)
    if result is None:
        return
    output = one(opts, "--output", "json")
    if output == "none":
        return
    if output == "tsv":
        sys.stdout.write(tsv(result))
    else:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=query is None) + "\n")


# ---- export to the emulator ----------------------------------------------------------------------

def export_directory(state, out_dir):
    os.makedirs(os.path.join(out_dir, "certs"), exist_ok=True)
    sp_of = {s["appId"]: s for s in state["sps"]}
    lines = [f'[[tenants]]\nid = "{TENANT_ID}"\ndomain = "{TENANT_DOMAIN}"\n']
    for app in state["apps"]:
        sp = sp_of.get(app["appId"])
        if sp is None:
            continue
        lines.append("[[tenants.applications]]")
        lines.append(f"name = {json.dumps(app['displayName'])}")
        lines.append(f"client_id = \"{app['appId']}\"")
        lines.append(f"service_principal_id = \"{sp['id']}\"")
        lines.append(f"identifier_uris = {json.dumps(app['identifierUris'])}")
        version = app["api"].get("requestedAccessTokenVersion")
        if version is not None:
            lines.append(f"access_token_version = {int(version)}")
        claims = (app.get("optionalClaims") or {}).get("accessToken") or []
        lines.append(f"idtyp_claim = {'true' if any(c['name'] == 'idtyp' for c in claims) else 'false'}")
        roles = [r["value"] for r in app["appRoles"]
                 if r.get("isEnabled") and "Application" in r.get("allowedMemberTypes", [])]
        lines.append(f"app_roles = {json.dumps(roles)}")
        for cred in app["passwordCredentials"]:
            lines.append("[[tenants.applications.client_secrets]]")
            lines.append(f"value = {json.dumps(state['secrets'][cred['keyId']])}")
            lines.append(f"expires = \"{cred['endDateTime']}\"")
        for cred in app["keyCredentials"]:
            path = os.path.join("certs", cred["keyId"] + ".crt")
            with open(os.path.join(out_dir, path), "w") as f:
                f.write(state["certs"][cred["keyId"]])
            lines.append("[[tenants.applications.certificates]]")
            lines.append(f"path = \"{path}\"")
        lines.append("")
    grouped = {}
    for a in state["assignments"]:
        client = next(s for s in state["sps"] if s["id"] == a["principalId"])
        resource = next(s for s in state["sps"] if s["id"] == a["resourceId"])
        role = next(r["value"] for r in sp_view(state, resource)["appRoles"]
                    if r["id"] == a["appRoleId"])
        grouped.setdefault((client["displayName"], resource["displayName"]), []).append(role)
    for (client, resource), roles in grouped.items():
        lines.append("[[tenants.role_assignments]]")
        lines.append(f"client = {json.dumps(client)}")
        lines.append(f"resource = {json.dumps(resource)}")
        lines.append(f"roles = {json.dumps(roles)}\n")
    with open(os.path.join(out_dir, "directory.toml"), "w") as f:
        f.write("\n".join(lines))


def main(argv):
    if argv[:1] == ["export-directory"]:
        export_directory(load_state(), argv[1])
        return 0
    log = os.environ.get("FAKE_AZ_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(argv) + "\n")
    state = load_state()
    before = copy.deepcopy(state)
    try:
        words, opts = parse(list(argv))
        result = run(state, words, opts)
    except AzError as e:
        # A refused request changes nothing (Graph requests are atomic); only the lag bookkeeping
        # moves on, as replication does.
        before["lag_seen"] = state["lag_seen"]
        save_state(before)
        sys.stderr.write(f"ERROR: {e}\n")
        return e.status
    save_state(state)
    emit(result, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
