"""How a generated latent reaches the reasoning context (Sec. 3.3 and the Sec. 4.4 ablations)."""

from __future__ import annotations

from enum import StrEnum

from clear_plugins.errors import ClearConfigError


class BridgeMode(StrEnum):
    """Where the restored image goes after denoising.

    - ``bridge``: the generated latent tokens go into the context directly, through the backbone's own
      latent→LLM connector and latent position embedding (the Latent Representation Bridge, Sec. 3.3). No new
      parameters; differentiable end to end.
    - ``decode_reencode``: decode the latent to uint8 pixels and re-encode them with the understanding encoder
      (the ablation; not differentiable because of the pixels).
    - ``degraded_latent``: put the *degraded* image's own latent where the generated one would go (the
      "degraded-latent substitution" ablation of Sec. 4.4).
    """

    BRIDGE = "bridge"
    DECODE_REENCODE = "decode_reencode"
    DEGRADED_LATENT = "degraded_latent"

    @classmethod
    def parse(cls, value: str | BridgeMode) -> BridgeMode:
        """Return the mode named ``value``; the error lists the valid names."""
        try:
            return cls(value)
        except ValueError:
            raise ClearConfigError(
                f"bridge mode {value!r} is not one of {[m.value for m in cls]}; pick one of those."
            ) from None
