import datetime

from berth_client.berth.v1 import types_pb2 as _types_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CredentialMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CREDENTIAL_MODE_UNSPECIFIED: _ClassVar[CredentialMode]
    CREDENTIAL_MODE_STATIC: _ClassVar[CredentialMode]
    CREDENTIAL_MODE_ANONYMOUS: _ClassVar[CredentialMode]
    CREDENTIAL_MODE_SWR_AKSK: _ClassVar[CredentialMode]
    CREDENTIAL_MODE_GAR_JSON_KEY: _ClassVar[CredentialMode]
    CREDENTIAL_MODE_ECR_TOKEN: _ClassVar[CredentialMode]
    CREDENTIAL_MODE_ACR_ACCESS_KEY: _ClassVar[CredentialMode]
    CREDENTIAL_MODE_TCR_ACCESS_KEY: _ClassVar[CredentialMode]

class RegistryEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGISTRY_EVENT_KIND_UNSPECIFIED: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_CREATED: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_UPDATED: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_TLS_CHANGED: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_DELETED: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_DEFAULT_CHANGED: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_LEFT_SCOPE: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_EXISTING: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_SYNCED: _ClassVar[RegistryEventKind]
    REGISTRY_EVENT_KIND_PROGRESS: _ClassVar[RegistryEventKind]
CREDENTIAL_MODE_UNSPECIFIED: CredentialMode
CREDENTIAL_MODE_STATIC: CredentialMode
CREDENTIAL_MODE_ANONYMOUS: CredentialMode
CREDENTIAL_MODE_SWR_AKSK: CredentialMode
CREDENTIAL_MODE_GAR_JSON_KEY: CredentialMode
CREDENTIAL_MODE_ECR_TOKEN: CredentialMode
CREDENTIAL_MODE_ACR_ACCESS_KEY: CredentialMode
CREDENTIAL_MODE_TCR_ACCESS_KEY: CredentialMode
REGISTRY_EVENT_KIND_UNSPECIFIED: RegistryEventKind
REGISTRY_EVENT_KIND_CREATED: RegistryEventKind
REGISTRY_EVENT_KIND_UPDATED: RegistryEventKind
REGISTRY_EVENT_KIND_TLS_CHANGED: RegistryEventKind
REGISTRY_EVENT_KIND_DELETED: RegistryEventKind
REGISTRY_EVENT_KIND_DEFAULT_CHANGED: RegistryEventKind
REGISTRY_EVENT_KIND_LEFT_SCOPE: RegistryEventKind
REGISTRY_EVENT_KIND_EXISTING: RegistryEventKind
REGISTRY_EVENT_KIND_SYNCED: RegistryEventKind
REGISTRY_EVENT_KIND_PROGRESS: RegistryEventKind

class Registry(_message.Message):
    __slots__ = ("id", "provider", "address", "namespace", "region", "repository", "username", "secret", "has_secret", "is_default", "scope", "tls", "create_time", "update_time", "updated_by", "etag", "credential_mode", "instance_id", "proxy", "budget")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    HAS_SECRET_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_MODE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PROXY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    id: str
    provider: _types_pb2.Provider
    address: str
    namespace: str
    region: str
    repository: str
    username: str
    secret: str
    has_secret: bool
    is_default: bool
    scope: _types_pb2.Scope
    tls: _types_pb2.TlsSettings
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    updated_by: str
    etag: str
    credential_mode: CredentialMode
    instance_id: str
    proxy: ProxySettings
    budget: RequestBudget
    def __init__(self, id: _Optional[str] = ..., provider: _Optional[_Union[_types_pb2.Provider, str]] = ..., address: _Optional[str] = ..., namespace: _Optional[str] = ..., region: _Optional[str] = ..., repository: _Optional[str] = ..., username: _Optional[str] = ..., secret: _Optional[str] = ..., has_secret: _Optional[bool] = ..., is_default: _Optional[bool] = ..., scope: _Optional[_Union[_types_pb2.Scope, _Mapping]] = ..., tls: _Optional[_Union[_types_pb2.TlsSettings, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_by: _Optional[str] = ..., etag: _Optional[str] = ..., credential_mode: _Optional[_Union[CredentialMode, str]] = ..., instance_id: _Optional[str] = ..., proxy: _Optional[_Union[ProxySettings, _Mapping]] = ..., budget: _Optional[_Union[RequestBudget, _Mapping]] = ...) -> None: ...

class ProxySettings(_message.Message):
    __slots__ = ("url", "username", "password", "has_password", "no_proxy")
    URL_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    HAS_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    NO_PROXY_FIELD_NUMBER: _ClassVar[int]
    url: str
    username: str
    password: str
    has_password: bool
    no_proxy: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, url: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., has_password: _Optional[bool] = ..., no_proxy: _Optional[_Iterable[str]] = ...) -> None: ...

class RequestBudget(_message.Message):
    __slots__ = ("requests_per_second", "max_concurrent")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: float
    max_concurrent: int
    def __init__(self, requests_per_second: _Optional[float] = ..., max_concurrent: _Optional[int] = ...) -> None: ...

class CreateRegistryRequest(_message.Message):
    __slots__ = ("registry",)
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    registry: Registry
    def __init__(self, registry: _Optional[_Union[Registry, _Mapping]] = ...) -> None: ...

class GetRegistryRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListRegistriesRequest(_message.Message):
    __slots__ = ("project", "provider", "page_size", "page_token")
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    project: str
    provider: _types_pb2.Provider
    page_size: int
    page_token: str
    def __init__(self, project: _Optional[str] = ..., provider: _Optional[_Union[_types_pb2.Provider, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRegistriesResponse(_message.Message):
    __slots__ = ("registries", "next_page_token")
    REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    registries: _containers.RepeatedCompositeFieldContainer[Registry]
    next_page_token: str
    def __init__(self, registries: _Optional[_Iterable[_Union[Registry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRegistryRequest(_message.Message):
    __slots__ = ("registry", "update_mask")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    registry: Registry
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, registry: _Optional[_Union[Registry, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteRegistryRequest(_message.Message):
    __slots__ = ("id", "etag", "force")
    ID_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    id: str
    etag: str
    force: bool
    def __init__(self, id: _Optional[str] = ..., etag: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeleteRegistryResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SetDefaultRegistryRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetDefaultRegistryRequest(_message.Message):
    __slots__ = ("project",)
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    project: str
    def __init__(self, project: _Optional[str] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderDescriptor]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderDescriptor, _Mapping]]] = ...) -> None: ...

class ProviderDescriptor(_message.Message):
    __slots__ = ("provider", "display_name", "fields", "credential_modes", "modes")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_MODES_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    provider: _types_pb2.Provider
    display_name: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldDescriptor]
    credential_modes: _containers.RepeatedScalarFieldContainer[CredentialMode]
    modes: _containers.RepeatedCompositeFieldContainer[CredentialModeDescriptor]
    def __init__(self, provider: _Optional[_Union[_types_pb2.Provider, str]] = ..., display_name: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldDescriptor, _Mapping]]] = ..., credential_modes: _Optional[_Iterable[_Union[CredentialMode, str]]] = ..., modes: _Optional[_Iterable[_Union[CredentialModeDescriptor, _Mapping]]] = ...) -> None: ...

class CredentialModeDescriptor(_message.Message):
    __slots__ = ("mode", "display_name", "help", "fields")
    MODE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    mode: CredentialMode
    display_name: str
    help: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldDescriptor]
    def __init__(self, mode: _Optional[_Union[CredentialMode, str]] = ..., display_name: _Optional[str] = ..., help: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldDescriptor, _Mapping]]] = ...) -> None: ...

class FieldDescriptor(_message.Message):
    __slots__ = ("name", "label", "required", "secret", "default_value", "pattern", "help")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    name: str
    label: str
    required: bool
    secret: bool
    default_value: str
    pattern: str
    help: str
    def __init__(self, name: _Optional[str] = ..., label: _Optional[str] = ..., required: _Optional[bool] = ..., secret: _Optional[bool] = ..., default_value: _Optional[str] = ..., pattern: _Optional[str] = ..., help: _Optional[str] = ...) -> None: ...

class WatchRegistriesRequest(_message.Message):
    __slots__ = ("from_revision", "initial_state", "project")
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    INITIAL_STATE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    from_revision: int
    initial_state: bool
    project: str
    def __init__(self, from_revision: _Optional[int] = ..., initial_state: _Optional[bool] = ..., project: _Optional[str] = ...) -> None: ...

class WatchRegistriesResponse(_message.Message):
    __slots__ = ("revision", "kind", "registry", "changed_fields", "previous_default_id", "time", "actor")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_DEFAULT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    revision: int
    kind: RegistryEventKind
    registry: Registry
    changed_fields: _containers.RepeatedScalarFieldContainer[str]
    previous_default_id: str
    time: _timestamp_pb2.Timestamp
    actor: str
    def __init__(self, revision: _Optional[int] = ..., kind: _Optional[_Union[RegistryEventKind, str]] = ..., registry: _Optional[_Union[Registry, _Mapping]] = ..., changed_fields: _Optional[_Iterable[str]] = ..., previous_default_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class RecordRegistryUsageRequest(_message.Message):
    __slots__ = ("registry_id", "project", "user", "ttl")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    user: str
    ttl: _duration_pb2.Duration
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., user: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RegistryUsage(_message.Message):
    __slots__ = ("registry_id", "project", "user", "recorded_by", "record_time", "expire_time")
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    RECORDED_BY_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    project: str
    user: str
    recorded_by: str
    record_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, registry_id: _Optional[str] = ..., project: _Optional[str] = ..., user: _Optional[str] = ..., recorded_by: _Optional[str] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListRegistryUsageRequest(_message.Message):
    __slots__ = ("registry_id",)
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    registry_id: str
    def __init__(self, registry_id: _Optional[str] = ...) -> None: ...

class ListRegistryUsageResponse(_message.Message):
    __slots__ = ("usages",)
    USAGES_FIELD_NUMBER: _ClassVar[int]
    usages: _containers.RepeatedCompositeFieldContainer[RegistryUsage]
    def __init__(self, usages: _Optional[_Iterable[_Union[RegistryUsage, _Mapping]]] = ...) -> None: ...
