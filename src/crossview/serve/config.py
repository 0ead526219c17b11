"""The HTTP layer's settings: ``ServeConfig``, around the service's own ``ServiceConfig``."""

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from crossview.serve.drift import DriftConfig
from crossview.serve.gate import GateConfig
from crossview.serve.service import ServiceConfig

__all__ = ["ServeConfig"]


class ServeConfig(BaseModel):
    """The HTTP layer's settings around a ``ServiceConfig``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    service: ServiceConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    body_timeout_s: float = Field(default=30.0, gt=0, description="longest a request body may take to arrive")
    jwt_secret: SecretStr | None = None
    jwt_issuer: str | None = Field(default=None, min_length=1, description="required 'iss' of JWTs")
    jwt_audience: str | None = Field(default=None, min_length=1, description="required 'aud' of JWTs")
    jwt_max_lifetime_s: float = Field(default=86400.0, gt=0, description="longest JWT lifetime accepted")
    drift: DriftConfig = Field(default_factory=DriftConfig)
    public_docs: bool = Field(
        default=False, description="serve /docs and /openapi.json to anyone (else /openapi.json needs read)"
    )
    grpc_host: str = "127.0.0.1"
    grpc_port: int | None = Field(default=None, ge=0, le=65535, description="also serve gRPC (0: any port)")
    grpc_max_concurrent: int = Field(default=64, ge=1, description="gRPC calls at once; beyond: refused")
