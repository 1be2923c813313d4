#!/usr/bin/env bash
# LocalStack ready hook: what the CineScale pipeline needs from the store and the queue.
# - buckets `ingest` (uploads) and `media` (what the functions write);
# - the SQS queue the gateway's SQS event source polls, with a dead-letter queue behind it (a message the
#   gateway cannot read is received maxReceiveCount times, then moved there by SQS's redrive policy);
# - S3 → SQS notifications: ObjectCreated in `ingest` (→ probe) and `…metadata.json` in `media` (→ transcode).
#   S3 sends an `s3:TestEvent` to the queue when each configuration is set; the gateway skips it.
# Names can be changed with CINESCALE_INGEST_BUCKET, CINESCALE_MEDIA_BUCKET, CINESCALE_QUEUE,
# CINESCALE_QUEUE_MAX_RECEIVES. Runs with the LocalStack venv's aws-cli (localstack/run.sh puts it on PATH).
set -euo pipefail

endpoint="${CINESCALE_LOCALSTACK_ENDPOINT:?set by localstack/run.sh}"
ingest="${CINESCALE_INGEST_BUCKET:-ingest}"
media="${CINESCALE_MEDIA_BUCKET:-media}"
queue="${CINESCALE_QUEUE:-cinescale-events}"
max_receives="${CINESCALE_QUEUE_MAX_RECEIVES:-5}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-test}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-test}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"
aws() { command aws --endpoint-url "$endpoint" --output text "$@"; }

aws s3api create-bucket --bucket "$ingest" >/dev/null
aws s3api create-bucket --bucket "$media" >/dev/null

dlq_url="$(aws sqs create-queue --queue-name "$queue-dlq" --query QueueUrl)"
dlq_arn="$(aws sqs get-queue-attributes --queue-url "$dlq_url" --attribute-names QueueArn --query Attributes.QueueArn)"
queue_url="$(aws sqs create-queue --queue-name "$queue" --query QueueUrl)"
queue_arn="$(aws sqs get-queue-attributes --queue-url "$queue_url" --attribute-names QueueArn --query Attributes.QueueArn)"
aws sqs set-queue-attributes --queue-url "$queue_url" --attributes "$(printf \
    '{"RedrivePolicy":"{\\"deadLetterTargetArn\\":\\"%s\\",\\"maxReceiveCount\\":\\"%s\\"}"}' "$dlq_arn" "$max_receives")"

aws s3api put-bucket-notification-configuration --bucket "$ingest" --notification-configuration "$(printf \
    '{"QueueConfigurations":[{"Id":"probe","QueueArn":"%s","Events":["s3:ObjectCreated:*"]}]}' "$queue_arn")"
aws s3api put-bucket-notification-configuration --bucket "$media" --notification-configuration "$(printf \
    '{"QueueConfigurations":[{"Id":"transcode","QueueArn":"%s","Events":["s3:ObjectCreated:*"],"Filter":{"Key":{"FilterRules":[{"Name":"suffix","Value":"metadata.json"}]}}}]}' \
    "$queue_arn")"
echo "cinescale: buckets $ingest, $media; queue $queue_url (dead letters: $dlq_url)"
