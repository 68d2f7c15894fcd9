"""What each workload profile type is: serverless or dedicated, GPUs per replica, rough cost.

Hourly figures are estimated pay-as-you-go list prices in USD for one replica (serverless) or
one node (dedicated) running for an hour; the real price depends on region and currency:
https://azure.microsoft.com/pricing/details/container-apps/
"""

from __future__ import annotations

from dataclasses import dataclass

CPU_ONLY = "Consumption"
PRICING_PAGE = "https://azure.microsoft.com/pricing/details/container-apps/"


@dataclass(frozen=True)
class ProfileType:
    name: str
    gpus: int
    dedicated: bool
    hourly_usd: float
    quota_hint: str  # what the GPU quota's name contains (case-insensitive), "" for CPU

    @property
    def serverless_gpu(self) -> bool:
        return self.gpus > 0 and not self.dedicated


PROFILE_TYPES: dict[str, ProfileType] = {
    profile.name: profile
    for profile in (
        ProfileType("Consumption-GPU-NC8as-T4", 1, False, 1.6, "T4"),
        ProfileType("Consumption-GPU-NC24-A100", 1, False, 4.6, "A100"),
        ProfileType("NC24-A100", 1, True, 3.7, "A100"),
        ProfileType("NC48-A100", 2, True, 7.4, "A100"),
        ProfileType("NC96-A100", 4, True, 14.7, "A100"),
        ProfileType(CPU_ONLY, 0, False, 0.5, ""),
    )
}
# Smaller first: what to suggest when a profile's quota is used up.
BY_SIZE = (
    "Consumption-GPU-NC8as-T4",
    "Consumption-GPU-NC24-A100",
    "NC24-A100",
    "NC48-A100",
    "NC96-A100",
)
# Regions to ask when the requested one lacks a profile type, grouped by geography so the
# nearest are named first (Container Apps GPU regions and their neighbours).
REGION_GROUPS: tuple[tuple[str, ...], ...] = (
    (
        "westus3",
        "westus",
        "westus2",
        "eastus",
        "eastus2",
        "centralus",
        "northcentralus",
        "southcentralus",
        "canadacentral",
    ),
    (
        "swedencentral",
        "northeurope",
        "westeurope",
        "francecentral",
        "germanywestcentral",
        "uksouth",
        "italynorth",
        "norwayeast",
        "switzerlandnorth",
        "polandcentral",
    ),
    ("australiaeast", "japaneast", "southeastasia", "koreacentral", "centralindia", "eastasia"),
    ("brazilsouth",),
)


def nearby_regions(location: str) -> list[str]:
    """Every known region other than `location`, those of its own geography first."""
    own = next((group for group in REGION_GROUPS if location in group), ())
    rest = [region for group in REGION_GROUPS if group is not own for region in group]
    return [region for region in own if region != location] + rest


def cold_start_note(profile_type: str, minimum_instances: int) -> str | None:
    """The scale-to-zero trade-off, said once at provision."""
    if minimum_instances > 0:
        return None
    profile = PROFILE_TYPES[profile_type]
    return (
        "Scale to zero: after an idle period the first request waits for a replica to start "
        "and load the model, which can take longer than the 240 s ingress timeout; "
        "`--set minimumInstanceCount=1` keeps one replica warm for about "
        f"${profile.hourly_usd:.2f}/hour on {profile_type} (estimate; {PRICING_PAGE})"
    )
