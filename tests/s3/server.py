"""An S3-compatible server on loopback for the S3 tests: moto's server (from PyPI), with the
buckets named on the command line created. Prints `listening on PORT` once it serves, and stops
when its standard input closes (when the test process that started it exits, however it exits).

    python server.py BUCKET [BUCKET...]
"""
import os
import socket
import sys

from moto.server import ThreadedMotoServer

# A free port: taken from the kernel, released, then bound by the server.
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()

import boto3  # noqa: E402  (moto brings it)

s3 = boto3.client(
    "s3",
    endpoint_url=f"http://127.0.0.1:{port}",
    aws_access_key_id="test",
    aws_secret_access_key="test",
    region_name="us-east-1",
)
for bucket in sys.argv[1:]:
    s3.create_bucket(Bucket=bucket)

print(f"listening on {port}", flush=True)
sys.stdin.read()
server.stop()
os._exit(0)
