"""A prefecture's year of department files: how many rows each feed of the catalogue sends in a year, and in how
many files (its cadence), for a population of P persons in H households and V villages.

Pure arithmetic, no I/O: `bench/sweep.py` writes the files, docs/scaling.md reads the shares. The rates are what
a rural prefecture's departments plausibly export to a monitoring system (one row per event or per periodic
record), stated per unit so that the volume scales with the population:

    unit        per      rows a year per unit, and files a year
    person      every registered person (the roster)
    adult       persons aged 18 or more (about 70 % of the roster)
    student     persons aged 6 to 22 (about 20 %)
    household   every household (about 3.85 persons each)
    village     every village

A feed's rows in one file are about distinct subjects (the demo generator draws each subject once per file), so
a record kept monthly for the same people is twelve files of the same size: the monthly exports a department
hands over.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Volume", "VOLUMES", "Plan", "plan_year", "UNITS"]

UNITS = ("person", "adult", "student", "household", "village")


@dataclass(frozen=True)
class Volume:
    unit: str  # one of UNITS
    rate: float  # rows a year per unit
    files: int  # files a year (1 annual, 2 per term, 4 quarterly, 12 monthly)
    why: str  # what the rows are

    def __post_init__(self) -> None:
        if self.unit not in UNITS or self.rate <= 0 or self.files < 1:
            raise ValueError(f"bad volume {self}")


VOLUMES: dict[tuple[str, str], Volume] = {
    ("public-security", "registration-change"): Volume("person", 0.03, 12, "births, deaths, moves, marriages"),
    ("public-security", "vehicle-purchase"): Volume("adult", 0.015, 12, "vehicles bought"),
    ("medical-security", "hospitalization"): Volume("person", 0.15, 12, "inpatient stays settled"),
    ("emergency", "disaster-loss"): Volume("household", 0.03, 12, "households with disaster losses"),
    ("education", "dropout"): Volume("student", 0.003, 2, "pupils leaving school, per term"),
    ("cac", "public-opinion"): Volume("village", 2, 12, "online clues about a village"),
    ("education", "student-roll"): Volume("student", 2, 2, "every pupil's enrolment, each term"),
    ("education", "student-aid"): Volume("student", 0.6, 2, "aid granted, each term (30 % of pupils)"),
    ("public-security", "identity-check"): Volume("person", 1, 1, "the yearly comparison of every resident"),
    ("public-security", "traffic-accident"): Volume("person", 0.003, 12, "persons in road accidents"),
    ("civil-affairs", "assistance"): Volume("person", 0.96, 12, "monthly assistance paid (8 % of residents)"),
    ("hrss", "employment"): Volume("adult", 6, 12, "monthly work status of migrant workers (half of adults)"),
    ("housing", "house-safety"): Volume("household", 1, 1, "the yearly house safety check"),
    ("natural-resources", "commercial-housing"): Volume("adult", 0.005, 12, "commercial flats bought"),
    ("water", "drinking-water"): Volume("village", 12, 12, "monthly water test per village"),
    ("agriculture", "farm-disaster"): Volume("village", 4, 4, "seasonal crop losses per village"),
    ("agriculture", "collective-income"): Volume("village", 1, 1, "the collective's yearly distributable income"),
    ("health", "chronic-disease"): Volume("person", 0.8, 4, "quarterly follow-ups (20 % of residents)"),
    ("health", "serious-illness"): Volume("person", 0.005, 12, "special treatment of serious illness"),
    ("medical-security", "insurance"): Volume("person", 1, 1, "the yearly enrolment of every resident"),
    ("pboc", "deposit-loan"): Volume("adult", 1.2, 4, "quarterly loan records (30 % of adults)"),
    ("disabled-federation", "disability-certificate"): Volume("person", 0.06, 4, "certificates issued or reviewed"),
    ("market-regulation", "business-registration"): Volume("adult", 0.01, 12, "businesses registered"),
    ("statistics", "household-income"): Volume("household", 1, 1, "the yearly income survey of every household"),
    ("farm-machinery", "machinery-purchase"): Volume("household", 0.01, 12, "machinery bought with a subsidy"),
}


@dataclass(frozen=True)
class Plan:
    """One feed's year: `files` files of `per_file` rows each."""

    department: str
    feed: str
    files: int
    per_file: int

    @property
    def rows(self) -> int:
        return self.files * self.per_file


def plan_year(units: dict[str, int], scale: float = 1.0) -> list[Plan]:
    """Every feed's files and rows for a population counted in `units` (a count per unit of UNITS), its volume
    multiplied by `scale`; at least one row per file. A file never holds more rows than there are units (each
    subject once per file)."""
    missing = [u for u in UNITS if units.get(u, 0) < 1]
    if missing or scale <= 0:
        raise ValueError(f"need at least one of every unit and a positive scale (missing: {', '.join(missing)})")
    plans = []
    for (department, feed), v in VOLUMES.items():
        per_file = max(1, min(units[v.unit], round(units[v.unit] * v.rate * scale / v.files)))
        plans.append(Plan(department, feed, v.files, per_file))
    return plans
