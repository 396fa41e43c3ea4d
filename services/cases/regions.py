"""What a region code is, for the pages: a case's subject is a household, a village (12-digit code) or - for a
township-wide regional alert such as REGIONAL_RETURNS - a township (9 digits). Pure."""
from __future__ import annotations

__all__ = ["REGION_KINDS", "region_kind", "subject_label"]

REGION_KINDS = {12: "村", 9: "乡镇", 6: "县(市)", 4: "州"}


def region_kind(code: str) -> str:
    """村 for a 12-digit village code, 乡镇 for a 9-digit township code (县(市), 州 likewise); 区域 otherwise."""
    return REGION_KINDS.get(len(code), "区域") if code.isdigit() else "区域"


def subject_label(subject_kind: str, household_or_region: str) -> str:
    """户 H-1, 村 652701100201, 乡镇 652701100: a case's subject as the desk shows it."""
    if subject_kind == "household":
        return f"户 {household_or_region}"
    return f"{region_kind(household_or_region)} {household_or_region}"
