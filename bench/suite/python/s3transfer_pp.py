"""s3transfer's ProcessPoolDownloader at its defaults.

ProcessTransferConfig's defaults: 8 MiB threshold and parts, 10 request
processes. A prefix: the keys listed with ListObjectsV2 in this process,
then one download_file call per object on the one downloader, which
spreads their parts over its processes.

Run with /usr/bin/python3 (Debian's python3-s3transfer); credentials from
AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
"""

import argparse
import os
import sys

import boto3
from botocore.config import Config
from s3transfer.processpool import ProcessPoolDownloader


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--key")
    ap.add_argument("--prefix")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if (a.key is None) == (a.prefix is None):
        ap.error("give exactly one of --key and --prefix")

    client_kwargs = {
        "endpoint_url": a.endpoint,
        "region_name": a.region,
        "config": Config(s3={"addressing_style": "path"}),
    }
    if a.key is not None:
        jobs = [(a.key, a.out)]
    else:
        client = boto3.client("s3", **client_kwargs)
        jobs = []
        dirs = set()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix):
            for o in page.get("Contents", []):
                k = o["Key"]
                if k.endswith("/"):
                    continue
                path = os.path.join(a.out, k[len(a.prefix):])
                d = os.path.dirname(path)
                if d not in dirs:
                    os.makedirs(d, exist_ok=True)
                    dirs.add(d)
                jobs.append((k, path))
    with ProcessPoolDownloader(client_kwargs=client_kwargs) as downloader:
        futures = [downloader.download_file(a.bucket, k, path) for k, path in jobs]
        for f in futures:
            f.result()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the suite's log
        print(f"s3transfer_pp: {e!r}", file=sys.stderr)
        sys.exit(1)
