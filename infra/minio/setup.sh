#!/bin/sh
# Creates CineScale's buckets on MinIO and the bucket events that drive the pipeline:
#   ingest: every new object under uploads/ -> the gateway (probe)
#   media:  every new */metadata.json       -> the gateway (transcode: the plan)
#           every new *.lead.json           -> the gateway (transcode-lead: a video's first chunk)
#           every new *.chunk.json          -> the gateway (transcode-chunk: the other chunks)
#           every new */jobs/finish.json    -> the gateway (transcode: the finish)
#           every new */status.json and */chunks/00000.json -> the gateway (no function: the API's webhooks,
#           video.playable, video.ready and video.failed)
# (the triggers in functions.yaml and the webhooks' two; no suffix is a suffix of another, so none overlap).
# Needs `mc`; MINIO_URL, MINIO_ROOT_USER and MINIO_ROOT_PASSWORD in the environment. Idempotent.
set -eu

: "${MINIO_URL:=http://127.0.0.1:9000}"
: "${MINIO_ROOT_USER:?set MINIO_ROOT_USER}"
: "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}"
ARN="arn:minio:sqs::CINESCALE:webhook"

# Wait for MinIO (it may still be starting under compose).
tries=0
until mc alias set cinescale "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "MinIO at $MINIO_URL did not answer" >&2
        exit 1
    fi
    sleep 1
done

mc mb --ignore-existing cinescale/ingest cinescale/media

# `mc event add` refuses a rule that overlaps one already there: remove ours first, then add.
mc event remove cinescale/ingest "$ARN" --force >/dev/null 2>&1 || true
mc event remove cinescale/media "$ARN" --force >/dev/null 2>&1 || true
mc event add cinescale/ingest "$ARN" --event put --prefix uploads/
for suffix in /metadata.json .lead.json .chunk.json /jobs/finish.json /status.json /chunks/00000.json; do
    mc event add cinescale/media "$ARN" --event put --suffix "$suffix"
done
mc event list cinescale/ingest
mc event list cinescale/media
