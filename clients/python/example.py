#!/usr/bin/env python3
"""What an environment manager does with berth before a deploy.

For a project, service and tag: find the project's default registry, resolve
the image reference to deploy, and write the Kubernetes image pull Secret for
the target namespace.

    python3 example.py --addr 127.0.0.1:50051 --project web --service api \
        --tag 1.4.2 --namespace apps --out pull-secret.yaml

Prints `registry: <id> (<provider> <address>)`, `image: <reference>`,
`secret: <Secret name>` and `wrote: <file>` lines. On a gRPC error it
prints the status code, the message and any google.rpc.BadRequest field
violations to stderr and exits 1.
"""

import argparse
import os
import re
import sys

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from berth_client import ACTOR_HEADER
from berth_client.berth.v1 import (
    image_pb2,
    image_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    types_pb2,
)

METADATA = ((ACTOR_HEADER, "py-example"),)
TIMEOUT_SECONDS = 30.0


def secret_name(secret_yaml: str) -> str:
    """metadata.name of the Secret manifest berth returned.

    berth writes every value as a YAML double-quoted scalar, escaping only
    `"`, `\\` and non-printable characters (`\\uXXXX`, `\\UXXXXXXXX`).
    """
    in_metadata = False
    for line in secret_yaml.splitlines():
        if not line.startswith(" "):
            in_metadata = line.rstrip() == "metadata:"
        elif in_metadata and line.startswith("  name:"):
            value = line.split(":", 1)[1].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                return _YAML_ESCAPE.sub(_unescape, value[1:-1])
            return value
    raise ValueError("no metadata.name in the Secret manifest")


_YAML_ESCAPE = re.compile(r'\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))')


def _unescape(match: "re.Match[str]") -> str:
    code = match.group(1) or match.group(2)
    return chr(int(code, 16)) if code else match.group(3)


def print_rpc_error(what: str, err: grpc.RpcError) -> None:
    print(f"error: {what}: {err.code().name}: {err.details()}", file=sys.stderr)
    status = rpc_status.from_call(err)
    if status is None:
        return
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            for violation in bad_request.field_violations:
                print(
                    f"  field {violation.field}: {violation.description}",
                    file=sys.stderr,
                )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addr", default="127.0.0.1:50051", help="berth host:port")
    parser.add_argument("--project", required=True, help="project key, e.g. web")
    parser.add_argument("--service", required=True, help="service (image) name, e.g. api")
    parser.add_argument("--tag", required=True, help="tag or tag template")
    parser.add_argument("--namespace", required=True, help="Kubernetes namespace of the Secret")
    parser.add_argument("--out", required=True, help="file to write the Secret manifest to")
    args = parser.parse_args(argv)

    with grpc.insecure_channel(args.addr) as channel:
        registries = registry_pb2_grpc.RegistryServiceStub(channel)
        images = image_pb2_grpc.ImageServiceStub(channel)
        step = "GetDefaultRegistry"
        try:
            registry = registries.GetDefaultRegistry(
                registry_pb2.GetDefaultRegistryRequest(project=args.project),
                metadata=METADATA,
                timeout=TIMEOUT_SECONDS,
            )
            print(
                f"registry: {registry.id} "
                f"({types_pb2.Provider.Name(registry.provider)} {registry.address})"
            )

            step = "ResolveImage"
            resolved = images.ResolveImage(
                image_pb2.ResolveImageRequest(
                    registry_id=registry.id,
                    project=args.project,
                    image=args.service,
                    tag=args.tag,
                    pin_digest=False,
                ),
                metadata=METADATA,
                timeout=TIMEOUT_SECONDS,
            )
            print(f"image: {resolved.reference}")

            step = "GetCredentials"
            creds = images.GetCredentials(
                image_pb2.GetCredentialsRequest(
                    registry_id=registry.id,
                    project=args.project,
                    kubernetes_namespace=args.namespace,
                ),
                metadata=METADATA,
                timeout=TIMEOUT_SECONDS,
            )
        except grpc.RpcError as err:
            print_rpc_error(step, err)
            return 1

    # The manifest holds the registry password: keep it private.
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(creds.kubernetes_secret_yaml)
    print(f"secret: {secret_name(creds.kubernetes_secret_yaml)}")
    print(f"wrote: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
