"""boto3's download_file, as a Python user of boto3 would call it.

One object: client.download_file(bucket, key, out), boto3's defaults (its
TransferConfig: 8 MiB parts, 10 threads). A prefix: the keys listed with
ListObjectsV2, each object one download_file call, --threads of them at
once from a thread pool, on one client.

Run with /usr/bin/python3 (Debian's python3-boto3); credentials from
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
"""

import argparse
import concurrent.futures
import os
import sys

import boto3
from botocore.config import Config


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key")
    ap.add_argument("--prefix")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=10)
    a = ap.parse_args()
    if (a.key is None) == (a.prefix is None):
        ap.error("give exactly one of --key and --prefix")

    client = boto3.client(
        "s3",
        endpoint_url=a.endpoint,
        region_name=a.region,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=max(10, a.threads)),
    )
    if a.key is not None:
        client.download_file(a.bucket, a.key, a.out)
        return

    def fetch(key):
        path = os.path.join(a.out, key[len(a.prefix):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        client.download_file(a.bucket, key, path)

    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix):
        for o in page.get("Contents", []):
            if not o["Key"].endswith("/"):
                keys.append(o["Key"])
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.threads) as pool:
        for f in [pool.submit(fetch, k) for k in keys]:
            f.result()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the suite's log
        print(f"boto3_download: {e!r}", file=sys.stderr)
        sys.exit(1)
