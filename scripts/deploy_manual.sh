#!/usr/bin/env bash
# Deploy the inference infrastructure with the az CLI alone (what `aca-infer provision --target
# azure` does with preflight checks), then write infra/inference.config.json from the outputs.
#
# Usage: scripts/deploy_manual.sh -g RESOURCE_GROUP [-l LOCATION] [-p PARAMETERS_FILE]
#                                 [-n DEPLOYMENT_NAME] [-o CONFIG_FILE] [NAME=VALUE ...]
#   -g  resource group (created in LOCATION when -l is given and it does not exist)
#   -l  region for a new resource group; the template defaults to the group's region
#   -p  parameters file (default infra/provision/inference.parameters.json); null values are
#       dropped so the template defaults apply
#   -n  deployment name (default aca-infer-inference)
#   -o  where to write the outputs (default infra/inference.config.json)
#   NAME=VALUE  template parameter overrides, e.g. gpuProfileType=Consumption
# API keys: ACA_INFER_API_KEY_PRIMARY and ACA_INFER_API_KEY_SECONDARY; each one not set is
# generated. They go to the deployment through a private temporary file, never the command
# line, and are never printed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
template="$repo_root/infra/provision/inference.bicep"
parameters_file="$repo_root/infra/provision/inference.parameters.json"
config_file="$repo_root/infra/inference.config.json"
deployment_name="aca-infer-inference"
resource_group=""
location=""

die() {
    echo "deploy_manual: $2" >&2
    exit "$1"
}

while getopts ":g:l:p:n:o:h" option; do
    case "$option" in
        g) resource_group="$OPTARG" ;;
        l) location="$OPTARG" ;;
        p) parameters_file="$OPTARG" ;;
        n) deployment_name="$OPTARG" ;;
        o) config_file="$OPTARG" ;;
        h) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        :) die 2 "-$OPTARG needs a value (see -h)" ;;
        *) die 2 "unknown option -$OPTARG (see -h)" ;;
    esac
done
shift $((OPTIND - 1))

[[ -n "$resource_group" ]] || die 2 "-g RESOURCE_GROUP is required (see -h)"
[[ -f "$parameters_file" ]] || die 2 "parameters file $parameters_file not found (-p)"
for override in "$@"; do
    [[ "$override" == *=* ]] || die 2 "override '$override' must be NAME=VALUE"
done
command -v az >/dev/null 2>&1 ||
    die 3 "the az CLI is not installed: https://learn.microsoft.com/cli/azure/install-azure-cli"
command -v python3 >/dev/null 2>&1 || die 3 "python3 is needed to handle the JSON files"

work_dir="$(mktemp -d)"
trap 'rm -rf "$work_dir"' EXIT
chmod 700 "$work_dir"

# Nulls mean "template default" (the AI Toolkit convention); ARM wants them left out.
python3 - "$parameters_file" "$work_dir/parameters.json" <<'PY'
import json, sys
source, target = sys.argv[1], sys.argv[2]
with open(source, encoding="utf-8") as handle:
    document = json.load(handle)
parameters = document.get("parameters", {})
document["parameters"] = {
    name: entry for name, entry in parameters.items()
    if not (isinstance(entry, dict) and entry.get("value") is None)
}
with open(target, "w", encoding="utf-8") as handle:
    json.dump(document, handle)
PY

(
    umask 077
    python3 - "$work_dir/keys.json" <<'PY'
import json, os, secrets, sys
keys = {
    "apiKeyPrimary": os.environ.get("ACA_INFER_API_KEY_PRIMARY") or secrets.token_urlsafe(32),
    "apiKeySecondary": os.environ.get("ACA_INFER_API_KEY_SECONDARY") or secrets.token_urlsafe(32),
}
with open(sys.argv[1], "w", encoding="utf-8") as handle:
    json.dump({"parameters": {name: {"value": value} for name, value in keys.items()}}, handle)
PY
)

overrides=()
if (($#)); then
    overrides=(--parameters "$@")
fi

if [[ -n "$location" ]]; then
    echo "Resource group $resource_group in $location" >&2
    az group create --name "$resource_group" --location "$location" --output none
fi

echo "Deploying $template as $deployment_name (this takes several minutes)" >&2
az deployment group create \
    --resource-group "$resource_group" \
    --name "$deployment_name" \
    --template-file "$template" \
    --parameters "@$work_dir/parameters.json" \
    --parameters "@$work_dir/keys.json" \
    ${overrides[@]+"${overrides[@]}"} \
    --query properties.outputs \
    --output json >"$work_dir/outputs.json" ||
    die 4 "deployment $deployment_name failed; see: az deployment operation group list -g $resource_group -n $deployment_name"

# {"NAME": {"type": "String", "value": V}} -> {"NAME": V}, written atomically.
python3 - "$work_dir/outputs.json" "$config_file" <<'PY'
import json, os, sys, tempfile
source, target = sys.argv[1], sys.argv[2]
with open(source, encoding="utf-8") as handle:
    outputs = json.load(handle) or {}
config = {name: entry["value"] for name, entry in outputs.items()}
directory = os.path.dirname(target)
descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".inference.config.")
with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
    json.dump(config, handle, indent=2, sort_keys=True)
    handle.write("\n")
os.chmod(temporary, 0o644)
os.replace(temporary, target)
print(f"Wrote {target}", file=sys.stderr)
print(f"Endpoint: {config.get('ACA_APP_ENDPOINT', '?')}", file=sys.stderr)
print(
    "API keys are the app secrets api-key-primary and api-key-secondary; read one with:\n"
    f"  az containerapp secret show -g {config.get('RESOURCE_GROUP_NAME', '<group>')} "
    f"-n {config.get('ACA_APP_NAME', '<app>')} --secret-name api-key-primary",
    file=sys.stderr,
)
PY
