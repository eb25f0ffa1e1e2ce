#!/usr/bin/env bash
# docs/openapi.yaml, checked by a pinned validator (infra/python/openapi.lock,
# installed into .local/openapi-venv: its own venv, so moto's pinned set in
# .local/venv and its install stamp are left alone).
#
#   infra/scripts/openapi-lint.sh              # lint the document (OpenAPI 3.1); check that
#                                              # docs/upload-response.json fits its schema and
#                                              # that exactly the request example's items it
#                                              # lists as rejected break the item schemas
#   infra/scripts/openapi-lint.sh --validate DIR
#                                              # validate DIR/<Schema>.<n>.json against
#                                              # components.schemas.<Schema> (tests/pull_api.rs
#                                              # records real answers and push payloads there)
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
venv=${PLATFORMSYNC_OPENAPI_VENV:-$root/.local/openapi-venv}
lock=$root/infra/python/openapi.lock
spec=$root/docs/openapi.yaml

say() { printf 'openapi-lint: %s\n' "$*" >&2; }

install() { venv_install "$venv" "$lock" "$(basename "$lock")"; }

# Validates files named <Schema>.<anything>.json (or pairs "schema=file").
validate() {
  "$venv/bin/python" - "$spec" "$@" <<'PY'
import json, pathlib, sys
import yaml
from jsonschema import Draft202012Validator

spec_path, *targets = sys.argv[1:]
doc = yaml.safe_load(pathlib.Path(spec_path).read_text())
schemas = doc["components"]["schemas"]

def check(name, path):
    if name not in schemas:
        return [f"{path}: no schema components.schemas.{name}"]
    # The whole document is the root resource, so "#/components/..." resolves.
    root = dict(doc)
    root["$ref"] = f"#/components/schemas/{name}"
    instance = json.loads(pathlib.Path(path).read_text())
    v = Draft202012Validator(root)
    return [f"{path} ({name}): {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in v.iter_errors(instance)]

pairs = []
if targets and targets[0] == "--upload-example":
    # The request example holds items meant to be rejected: exactly the
    # items the response example lists under Rejected may break the schema.
    req_path, resp_path = map(pathlib.Path, targets[1:3])
    request = json.loads(req_path.read_text())
    response = json.loads(resp_path.read_text())
    errors = check("UploadResponse", resp_path)
    item_schema = {"Transactions": "UploadTransaction", "AuditTransactions": "UploadAuditTransaction"}
    bad = set()
    for kind, name in item_schema.items():
        for i, item in enumerate(request.get(kind, [])):
            root = dict(doc); root["$ref"] = f"#/components/schemas/{name}"
            if list(Draft202012Validator(root).iter_errors(item)):
                bad.add((kind, i))
    rejected = {(r["Kind"], r["Index"]) for r in response.get("Rejected", [])}
    if bad != rejected:
        errors.append(f"{req_path}: items outside the schema {sorted(bad)} != rejected in {resp_path.name} {sorted(rejected)}")
    rest = {k: v for k, v in request.items() if k not in item_schema}
    if rest:
        errors.append(f"{req_path}: unknown top-level properties {sorted(rest)}")
    for e in errors:
        print(e)
    if errors:
        sys.exit(1)
    print(f"openapi-lint: upload examples agree with the schemas ({len(bad)} item(s) rejected as the response says)")
    sys.exit(0)
for t in targets:
    if "=" in t:
        name, path = t.split("=", 1)
        pairs.append((name, pathlib.Path(path)))
    else:
        d = pathlib.Path(t)
        files = sorted(d.glob("*.json")) if d.is_dir() else [d]
        pairs.extend((f.name.split(".")[0], f) for f in files)
errors = [e for name, path in pairs for e in check(name, path)]
for e in errors:
    print(e)
if errors or not pairs:
    print(f"openapi-lint: {len(errors)} errors in {len(pairs)} samples" if pairs else "openapi-lint: no samples")
    sys.exit(1)
print(f"openapi-lint: {len(pairs)} samples valid")
PY
}

install
case ${1:-} in
  --validate)
    shift
    [ $# -ge 1 ] || { echo "usage: $0 --validate DIR|FILE..." >&2; exit 2; }
    validate "$@"
    ;;
  "")
    "$venv/bin/openapi-spec-validator" "$spec"
    validate --upload-example "$root/docs/upload-request.json" "$root/docs/upload-response.json"
    ;;
  *) echo "usage: $0 [--validate DIR|FILE...]" >&2; exit 2 ;;
esac
