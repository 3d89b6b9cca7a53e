"""``ModelConfig``: the small, serialisable description from which any network is rebuilt."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.contract import PoseContract


@dataclass(frozen=True)
class ModelConfig:
    """An architecture name, its keyword arguments and the output contract (keypoint spec, skeleton, heads).

    A checkpoint stores ``to_dict()``; ``models.factory.build_model(ModelConfig.from_dict(d))`` rebuilds the net.
    """

    arch: str
    contract: PoseContract
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "contract": self.contract.to_dict(), "kwargs": dict(self.kwargs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return cls(arch=str(data["arch"]), contract=PoseContract.from_dict(data["contract"]),
                   kwargs=dict(data.get("kwargs") or {}))
