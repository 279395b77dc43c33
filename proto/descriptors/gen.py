#!/usr/bin/env python3
"""Writes a FileDescriptorSet of an installed flyteidl package's services.

    python gen.py flyteidl  flyteidl.binpb    # flytekit 1.16's flyteidl (tests/e2e/.venv)
    python gen.py flyteidl2 flyteidl2.binpb   # flyte 2.12's flyteidl2 (tests/e2e/.venv2)

It imports every `*_pb2` module of the package, keeps the files that declare a service, and
adds their imports transitively (google/protobuf, validate, google/api, ...), in dependency
order, from the serialized descriptors the generated code carries. The result is what
`src/auth/roles/table.rs` decodes requests with (prost-reflect); `flyteauth authz-table`
prints the table built from it.
"""

import importlib
import pkgutil
import sys

from google.protobuf import descriptor_pb2


def main(package: str, out: str) -> None:
    root = importlib.import_module(package)
    files = []
    for info in sorted(pkgutil.walk_packages(root.__path__, package + "."), key=lambda i: i.name):
        if not info.name.endswith("_pb2"):
            continue
        files.append(importlib.import_module(info.name).DESCRIPTOR)

    seen = set()
    ordered = []

    def visit(fd):
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            visit(dep)
        ordered.append(fd)

    for fd in sorted(files, key=lambda f: f.name):
        if fd.services_by_name:
            visit(fd)

    fds = descriptor_pb2.FileDescriptorSet()
    for fd in ordered:
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        fds.file.append(proto)
    with open(out, "wb") as f:
        f.write(fds.SerializeToString(deterministic=True))
    services = sum(len(fd.services_by_name) for fd in ordered)
    print(f"{out}: {len(ordered)} files, {services} services", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
