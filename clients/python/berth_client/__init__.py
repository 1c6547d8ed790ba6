"""Python client stubs for berth (generated from proto/berth by generate.sh).

    import grpc
    from berth_client.berth.v1 import image_pb2, image_pb2_grpc

    with grpc.insecure_channel("127.0.0.1:50051") as channel:
        images = image_pb2_grpc.ImageServiceStub(channel)
        resp = images.ResolveImage(
            image_pb2.ResolveImageRequest(project="web", image="api", tag="1.4.2"),
            metadata=[(ACTOR_HEADER, "my-service")],
        )
"""

#: Metadata key naming the caller; berth records it as `updated_by` on writes.
ACTOR_HEADER = "x-berth-actor"
