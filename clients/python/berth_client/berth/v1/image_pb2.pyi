import datetime

from berth_client.berth.v1 import registry_pb2 as _registry_pb2
from berth_client.berth.v1 import types_pb2 as _types_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TagOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_ORDER_UNSPECIFIED: _ClassVar[TagOrder]
    TAG_ORDER_LEXICAL: _ClassVar[TagOrder]
    TAG_ORDER_SEMVER: _ClassVar[TagOrder]
    TAG_ORDER_NEWEST: _ClassVar[TagOrder]

class BlobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BLOB_STATE_UNSPECIFIED: _ClassVar[BlobState]
    BLOB_STATE_TRANSFERRING: _ClassVar[BlobState]
    BLOB_STATE_DONE: _ClassVar[BlobState]
    BLOB_STATE_SKIPPED: _ClassVar[BlobState]
    BLOB_STATE_MOUNTED: _ClassVar[BlobState]
    BLOB_STATE_RETRYING: _ClassVar[BlobState]
TAG_ORDER_UNSPECIFIED: TagOrder
TAG_ORDER_LEXICAL: TagOrder
TAG_ORDER_SEMVER: TagOrder
TAG_ORDER_NEWEST: TagOrder
BLOB_STATE_UNSPECIFIED: BlobState
BLOB_STATE_TRANSFERRING: BlobState
BLOB_STATE_DONE: BlobState
BLOB_STATE_SKIPPED: BlobState
BLOB_STATE_MOUNTED: BlobState
BLOB_STATE_RETRYING: BlobState

class ParseImageReferenceRequest(_message.Message):
    __slots__ = ("reference",)
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    reference: str
    def __init__(self, reference: _Optional[str] = ...) -> None: ...

class ParseImageReferenceResponse(_message.Message):
    __slots__ = ("domain", "path", "tag", "digest", "fully_qualified", "familiar")
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    FULLY_QUALIFIED_FIELD_NUMBER: _ClassVar[int]
    FAMILIAR_FIELD_NUMBER: _ClassVar[int]
    domain: str
    path: str
    tag: str
    digest: str
    fully_qualified: str
    familiar: str
    def __init__(self, domain: _Optional[str] = ..., path: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., fully_qualified: _Optional[str] = ..., familiar: _Optional[str] = ...) -> None: ...

class ResolveImageRequest(_message.Message):
    __slots__ = ("registry_id", "project", "image", "tag", "digest", "variables", "pin_digest")
    class VariablesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    VARIABLES_FIELD_NUMBER: _ClassVar[int]
    PIN_DIGEST_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    image: str
    tag: str
    digest: str
    variables: _containers.ScalarMap[str, str]
    pin_digest: bool
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., image: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ..., variables: _Optional[_Mapping[str, str]] = ..., pin_digest: _Optional[bool] = ...) -> None: ...

class ResolveImageResponse(_message.Message):
    __slots__ = ("reference", "registry_id", "tag", "digest")
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    reference: str
    registry_id: str
    tag: str
    digest: str
    def __init__(self, reference: _Optional[str] = ..., registry_id: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class GetCredentialsRequest(_message.Message):
    __slots__ = ("registry_id", "project", "image_reference", "kubernetes_namespace")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    image_reference: str
    kubernetes_namespace: str
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., image_reference: _Optional[str] = ..., kubernetes_namespace: _Optional[str] = ...) -> None: ...

class GetCredentialsResponse(_message.Message):
    __slots__ = ("username", "password", "server_address", "expire_time", "docker_config_json", "kubernetes_secret_yaml", "insecure", "ca_cert_pem", "registry_id", "proxy_url", "proxy_username", "proxy_password", "no_proxy")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    SERVER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    DOCKER_CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_SECRET_YAML_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROXY_URL_FIELD_NUMBER: _ClassVar[int]
    PROXY_USERNAME_FIELD_NUMBER: _ClassVar[int]
    PROXY_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NO_PROXY_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    server_address: str
    expire_time: _timestamp_pb2.Timestamp
    docker_config_json: str
    kubernetes_secret_yaml: str
    insecure: bool
    ca_cert_pem: str
    registry_id: str
    proxy_url: str
    proxy_username: str
    proxy_password: str
    no_proxy: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ..., server_address: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., docker_config_json: _Optional[str] = ..., kubernetes_secret_yaml: _Optional[str] = ..., insecure: _Optional[bool] = ..., ca_cert_pem: _Optional[str] = ..., registry_id: _Optional[str] = ..., proxy_url: _Optional[str] = ..., proxy_username: _Optional[str] = ..., proxy_password: _Optional[str] = ..., no_proxy: _Optional[_Iterable[str]] = ...) -> None: ...

class ListRepositoriesRequest(_message.Message):
    __slots__ = ("registry_id", "project", "page_size", "page_token")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    page_size: int
    page_token: str
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRepositoriesResponse(_message.Message):
    __slots__ = ("repositories", "next_page_token")
    REPOSITORIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    repositories: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, repositories: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListTagsRequest(_message.Message):
    __slots__ = ("registry_id", "project", "image", "glob", "regex", "order", "page_size")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    GLOB_FIELD_NUMBER: _ClassVar[int]
    REGEX_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    image: str
    glob: str
    regex: str
    order: TagOrder
    page_size: int
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., image: _Optional[str] = ..., glob: _Optional[str] = ..., regex: _Optional[str] = ..., order: _Optional[_Union[TagOrder, str]] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListTagsResponse(_message.Message):
    __slots__ = ("tags",)
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tags: _Optional[_Iterable[str]] = ...) -> None: ...

class GetImageRequest(_message.Message):
    __slots__ = ("registry_id", "project", "image", "reference")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    image: str
    reference: str
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., image: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class Platform(_message.Message):
    __slots__ = ("os", "architecture", "variant", "digest")
    OS_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    os: str
    architecture: str
    variant: str
    digest: str
    def __init__(self, os: _Optional[str] = ..., architecture: _Optional[str] = ..., variant: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class GetImageResponse(_message.Message):
    __slots__ = ("digest", "media_type", "size", "platforms", "created", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    PLATFORMS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    digest: str
    media_type: str
    size: int
    platforms: _containers.RepeatedCompositeFieldContainer[Platform]
    created: _timestamp_pb2.Timestamp
    labels: _containers.ScalarMap[str, str]
    def __init__(self, digest: _Optional[str] = ..., media_type: _Optional[str] = ..., size: _Optional[int] = ..., platforms: _Optional[_Iterable[_Union[Platform, _Mapping]]] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegistrySpec(_message.Message):
    __slots__ = ("provider", "address", "region", "username", "secret", "tls", "credential_mode", "instance_id", "proxy")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_MODE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROXY_FIELD_NUMBER: _ClassVar[int]
    provider: _types_pb2.Provider
    address: str
    region: str
    username: str
    secret: str
    tls: _types_pb2.TlsSettings
    credential_mode: _registry_pb2.CredentialMode
    instance_id: str
    proxy: _registry_pb2.ProxySettings
    def __init__(self, provider: _Optional[_Union[_types_pb2.Provider, str]] = ..., address: _Optional[str] = ..., region: _Optional[str] = ..., username: _Optional[str] = ..., secret: _Optional[str] = ..., tls: _Optional[_Union[_types_pb2.TlsSettings, _Mapping]] = ..., credential_mode: _Optional[_Union[_registry_pb2.CredentialMode, str]] = ..., instance_id: _Optional[str] = ..., proxy: _Optional[_Union[_registry_pb2.ProxySettings, _Mapping]] = ...) -> None: ...

class TestConnectionRequest(_message.Message):
    __slots__ = ("registry_id", "spec")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    spec: RegistrySpec
    def __init__(self, registry_id: _Optional[str] = ..., spec: _Optional[_Union[RegistrySpec, _Mapping]] = ...) -> None: ...

class TestConnectionResponse(_message.Message):
    __slots__ = ("reachable", "tls_verified", "tls_error", "credentials_accepted", "latency_ms", "message")
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    TLS_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    TLS_ERROR_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reachable: bool
    tls_verified: bool
    tls_error: str
    credentials_accepted: bool
    latency_ms: int
    message: str
    def __init__(self, reachable: _Optional[bool] = ..., tls_verified: _Optional[bool] = ..., tls_error: _Optional[str] = ..., credentials_accepted: _Optional[bool] = ..., latency_ms: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ImageSource(_message.Message):
    __slots__ = ("registry_id", "project", "image", "tag", "digest")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    image: str
    tag: str
    digest: str
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., image: _Optional[str] = ..., tag: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class CopyTarget(_message.Message):
    __slots__ = ("registry_id", "project", "image", "tag")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    image: str
    tag: str
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., image: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class CopyImageRequest(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: ImageSource
    target: CopyTarget
    def __init__(self, source: _Optional[_Union[ImageSource, _Mapping]] = ..., target: _Optional[_Union[CopyTarget, _Mapping]] = ...) -> None: ...

class CopyImageResponse(_message.Message):
    __slots__ = ("progress",)
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    progress: CopyProgress
    def __init__(self, progress: _Optional[_Union[CopyProgress, _Mapping]] = ...) -> None: ...

class DistributeImageRequest(_message.Message):
    __slots__ = ("source", "targets")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    source: ImageSource
    targets: _containers.RepeatedCompositeFieldContainer[CopyTarget]
    def __init__(self, source: _Optional[_Union[ImageSource, _Mapping]] = ..., targets: _Optional[_Iterable[_Union[CopyTarget, _Mapping]]] = ...) -> None: ...

class DistributeImageResponse(_message.Message):
    __slots__ = ("target_index", "progress")
    TARGET_INDEX_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    target_index: int
    progress: CopyProgress
    def __init__(self, target_index: _Optional[int] = ..., progress: _Optional[_Union[CopyProgress, _Mapping]] = ...) -> None: ...

class CopyProgress(_message.Message):
    __slots__ = ("plan", "blob", "manifest", "result")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    BLOB_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    plan: CopyPlan
    blob: BlobProgress
    manifest: ManifestPushed
    result: CopyResult
    def __init__(self, plan: _Optional[_Union[CopyPlan, _Mapping]] = ..., blob: _Optional[_Union[BlobProgress, _Mapping]] = ..., manifest: _Optional[_Union[ManifestPushed, _Mapping]] = ..., result: _Optional[_Union[CopyResult, _Mapping]] = ...) -> None: ...

class CopyPlan(_message.Message):
    __slots__ = ("source_reference", "digest", "media_type", "manifests", "blobs", "total_bytes")
    SOURCE_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    MANIFESTS_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    source_reference: str
    digest: str
    media_type: str
    manifests: int
    blobs: int
    total_bytes: int
    def __init__(self, source_reference: _Optional[str] = ..., digest: _Optional[str] = ..., media_type: _Optional[str] = ..., manifests: _Optional[int] = ..., blobs: _Optional[int] = ..., total_bytes: _Optional[int] = ...) -> None: ...

class BlobProgress(_message.Message):
    __slots__ = ("digest", "bytes_done", "bytes_total", "state", "attempt", "message")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    bytes_done: int
    bytes_total: int
    state: BlobState
    attempt: int
    message: str
    def __init__(self, digest: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ..., state: _Optional[_Union[BlobState, str]] = ..., attempt: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ManifestPushed(_message.Message):
    __slots__ = ("digest", "media_type", "reference")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    digest: str
    media_type: str
    reference: str
    def __init__(self, digest: _Optional[str] = ..., media_type: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class CopyResult(_message.Message):
    __slots__ = ("code", "error", "registry_id", "reference", "digest", "bytes_copied", "blobs_copied", "blobs_skipped", "blobs_mounted")
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    BYTES_COPIED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_COPIED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_MOUNTED_FIELD_NUMBER: _ClassVar[int]
    code: int
    error: str
    registry_id: str
    reference: str
    digest: str
    bytes_copied: int
    blobs_copied: int
    blobs_skipped: int
    blobs_mounted: int
    def __init__(self, code: _Optional[int] = ..., error: _Optional[str] = ..., registry_id: _Optional[str] = ..., reference: _Optional[str] = ..., digest: _Optional[str] = ..., bytes_copied: _Optional[int] = ..., blobs_copied: _Optional[int] = ..., blobs_skipped: _Optional[int] = ..., blobs_mounted: _Optional[int] = ...) -> None: ...
