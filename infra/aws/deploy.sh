#!/usr/bin/env bash
# Deploys CineScale's AWS stack (infra/aws/template.yaml) with aws-cli: uploads the zips infra/aws/package.sh
# wrote to the artifact bucket under their content hash (new code, new key: CloudFormation updates the
# function; the same code is not uploaded twice), then `aws cloudformation deploy`, then prints the outputs.
#
# The artifact bucket must exist, in the stack's region (Lambda reads the code from there):
#   aws s3 mb s3://my-artifacts --region eu-west-1
set -euo pipefail

usage() {
    cat <<'EOF'
usage: infra/aws/deploy.sh --artifact-bucket BUCKET [--stack-name NAME] [--region REGION] [--dist DIR]
                           [--prefix PREFIX] [--dry-run] [PARAMETER=VALUE...]

  --artifact-bucket BUCKET  where the zips go (same region as the stack)
  --stack-name NAME         CloudFormation stack (default: cinescale)
  --region REGION           passed to every aws command (default: aws-cli's configured region)
  --dist DIR                the zips from package.sh (default: infra/aws/dist)
  --prefix PREFIX           key prefix in the artifact bucket (default: cinescale/lambda)
  --dry-run                 print the aws commands instead of running them
  PARAMETER=VALUE           more template parameters, e.g. Ladder=360,720 BucketNamePrefix=acme-video

Example:
  infra/aws/package.sh && infra/aws/deploy.sh --artifact-bucket my-artifacts --region eu-west-1 \
      CorsAllowedOrigins=https://video.example.com
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TEMPLATE="$ROOT/infra/aws/template.yaml"
DIST="$ROOT/infra/aws/dist"
STACK=cinescale
PREFIX=cinescale/lambda
ARTIFACT_BUCKET=""
REGION_ARGS=()
DRY_RUN=0
PARAMETERS=()

while [ $# -gt 0 ]; do
    case "$1" in
        --artifact-bucket) ARTIFACT_BUCKET="${2:?--artifact-bucket needs a bucket}"; shift 2 ;;
        --stack-name) STACK="${2:?--stack-name needs a name}"; shift 2 ;;
        --region) REGION_ARGS=(--region "${2:?--region needs a region}"); shift 2 ;;
        --dist) DIST="${2:?--dist needs a directory}"; shift 2 ;;
        --prefix) PREFIX="${2:?--prefix needs a key prefix}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *=*) PARAMETERS+=("$1"); shift ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

die() { printf 'deploy.sh: %s\n' "$*" >&2; exit 1; }
[ -n "$ARTIFACT_BUCKET" ] || { usage >&2; exit 2; }
PREFIX="${PREFIX%/}"

# run COMMAND...: runs it, or prints it under --dry-run.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '%q ' "$@"
        printf '\n'
    else
        "$@"
    fi
}

if [ "$DRY_RUN" -eq 0 ] && ! command -v aws >/dev/null; then
    die "aws-cli is needed (pip install awscli, or AWS's installer)"
fi

# upload FUNCTION: puts DIST/FUNCTION.zip at PREFIX/FUNCTION-SHA256.zip unless it is there; prints the key.
upload() {
    local zip="$DIST/$1.zip" digest key
    [ -f "$zip" ] || die "no $zip: run infra/aws/package.sh first"
    digest="$(sha256sum "$zip" | cut -d' ' -f1)"
    key="$PREFIX/$1-$digest.zip"
    if [ "$DRY_RUN" -eq 0 ] && aws "${REGION_ARGS[@]}" s3api head-object --bucket "$ARTIFACT_BUCKET" --key "$key" \
        >/dev/null 2>&1; then
        echo "s3://$ARTIFACT_BUCKET/$key is already there" >&2
    else
        run aws "${REGION_ARGS[@]}" s3 cp "$zip" "s3://$ARTIFACT_BUCKET/$key" --only-show-errors >&2
    fi
    echo "$key"
}

PROBE_KEY="$(upload probe)"
TRANSCODE_KEY="$(upload transcode)"

# CAPABILITY_IAM: the stack creates the functions' roles (unnamed).
run aws "${REGION_ARGS[@]}" cloudformation deploy \
    --template-file "$TEMPLATE" \
    --stack-name "$STACK" \
    --capabilities CAPABILITY_IAM \
    --no-fail-on-empty-changeset \
    --parameter-overrides \
    "ArtifactBucket=$ARTIFACT_BUCKET" "ProbeCodeKey=$PROBE_KEY" "TranscodeCodeKey=$TRANSCODE_KEY" \
    ${PARAMETERS[@]+"${PARAMETERS[@]}"}

run aws "${REGION_ARGS[@]}" cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[].[OutputKey,OutputValue]" --output table
