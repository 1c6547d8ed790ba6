from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Provider(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROVIDER_UNSPECIFIED: _ClassVar[Provider]
    ACR_PERSONAL: _ClassVar[Provider]
    ACR_ENTERPRISE: _ClassVar[Provider]
    TCR_PERSONAL: _ClassVar[Provider]
    TCR_ENTERPRISE: _ClassVar[Provider]
    SWR: _ClassVar[Provider]
    ECR: _ClassVar[Provider]
    GAR: _ClassVar[Provider]
    HARBOR: _ClassVar[Provider]
    DOCKER_HUB: _ClassVar[Provider]
    JFROG: _ClassVar[Provider]
    NEXUS: _ClassVar[Provider]
    OTHER: _ClassVar[Provider]
PROVIDER_UNSPECIFIED: Provider
ACR_PERSONAL: Provider
ACR_ENTERPRISE: Provider
TCR_PERSONAL: Provider
TCR_ENTERPRISE: Provider
SWR: Provider
ECR: Provider
GAR: Provider
HARBOR: Provider
DOCKER_HUB: Provider
JFROG: Provider
NEXUS: Provider
OTHER: Provider

class Scope(_message.Message):
    __slots__ = ("all_projects", "projects")
    ALL_PROJECTS_FIELD_NUMBER: _ClassVar[int]
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    all_projects: bool
    projects: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, all_projects: _Optional[bool] = ..., projects: _Optional[_Iterable[str]] = ...) -> None: ...

class TlsSettings(_message.Message):
    __slots__ = ("verify", "ca_cert_pem")
    VERIFY_FIELD_NUMBER: _ClassVar[int]
    CA_CERT_PEM_FIELD_NUMBER: _ClassVar[int]
    verify: bool
    ca_cert_pem: str
    def __init__(self, verify: _Optional[bool] = ..., ca_cert_pem: _Optional[str] = ...) -> None: ...
