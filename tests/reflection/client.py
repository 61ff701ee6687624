#!/usr/bin/env python3
"""A gRPC client that knows nothing of Tenantry but what server reflection tells it.

Run by crates/cli/tests/reflection_clients.rs. grpcio-reflection's descriptor database speaks
reflection v1alpha; every message class here, google.rpc.Status and the error details included,
is built from descriptors the server sent (no generated code, no googleapis package).

Usage: client.py ADDRESS TOKEN (or TENANTRY_ADDRESS / TENANTRY_TOKEN), ADDRESS as host:port.
Prints one JSON object: services, the created account, and the refusal's status code, detail
type names, ErrorInfo and BadRequest field violations. Exit 2 when a package is missing.
"""

import json
import os
import sys

try:
    import grpc
    from google.protobuf import json_format
    from google.protobuf.descriptor_pool import DescriptorPool
    from google.protobuf.message_factory import GetMessageClass
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )
except ImportError as missing:
    print(f"missing Python package: {missing}", file=sys.stderr)
    sys.exit(2)

REGISTRY = "tenantry.registry.v1.CustomerRegistryService"
DETAILS_KEY = "grpc-status-details-bin"


def to_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def main():
    address = sys.argv[1] if len(sys.argv) > 1 else os.environ["TENANTRY_ADDRESS"]
    token = sys.argv[2] if len(sys.argv) > 2 else os.environ["TENANTRY_TOKEN"]
    metadata = [("authorization", f"Bearer {token}")]
    channel = grpc.insecure_channel(address)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    # The pool asks the database (so the server) for each file it is missing, dependencies too.
    pool = DescriptorPool(database)

    def method(service_name, method_name):
        descriptor = pool.FindServiceByName(service_name).methods_by_name[method_name]
        request_class = GetMessageClass(descriptor.input_type)
        response_class = GetMessageClass(descriptor.output_type)
        call = channel.unary_unary(
            f"/{service_name}/{method_name}",
            request_serializer=lambda message: message.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return request_class, call

    create_request, create = method(REGISTRY, "CreateAccount")
    created = create(
        json_format.ParseDict(
            {"account_id": "python-reflection", "display_name": "Python reflection"},
            create_request(),
        ),
        metadata=metadata,
        timeout=10,
    )

    refusal = {}
    try:
        create(
            json_format.ParseDict({"account_id": "Bad Id!", "display_name": ""}, create_request()),
            metadata=metadata,
            timeout=10,
        )
        refusal["code"] = "OK"
    except grpc.RpcError as error:
        refusal["code"] = error.code().name
        refusal["message"] = error.details()
        raw = dict(error.trailing_metadata() or ()).get(DETAILS_KEY)
        refusal["detail_types"] = []
        if raw is not None:
            status_class = GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status"))
            status = status_class.FromString(raw)
            refusal["status_code"] = status.code
            for detail in status.details:
                # type.googleapis.com/google.rpc.BadRequest: the type is looked up by name in
                # the reflected pool, not unpacked with a compiled-in class.
                type_name = detail.type_url.rsplit("/", 1)[-1]
                refusal["detail_types"].append(type_name)
                detail_class = GetMessageClass(pool.FindMessageTypeByName(type_name))
                decoded = detail_class.FromString(detail.value)
                if type_name == "google.rpc.BadRequest":
                    refusal["field_violations"] = [
                        {"field": violation.field, "description": violation.description}
                        for violation in decoded.field_violations
                    ]
                elif type_name == "google.rpc.ErrorInfo":
                    refusal["error_info"] = to_dict(decoded)

    json.dump(
        {"services": services, "created": to_dict(created), "refusal": refusal},
        sys.stdout,
        indent=2,
    )
    print()


if __name__ == "__main__":
    main()
