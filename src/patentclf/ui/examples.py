"""A few real patents to try in the UI, copied from ``resources/uspto-abstracts/test.jsonl``.

US patent text is public-domain USPTO data; ``section`` is the section of the first listed IPC code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    number: str  # US patent number
    section: str  # the labelled section code
    title: str
    abstract: str

    @property
    def text(self) -> str:
        # Title and abstract on separate lines, the same form the data loader builds for training.
        return f"{self.title}\n{self.abstract}"


EXAMPLES: tuple[Example, ...] = (
    Example(
        number="US6302908",
        section="A",
        title="Arterial graft device and method of positioning the same",
        abstract=(
            "An arterial graft device and a process for positioning the same, wherein the device "
            "comprises a first part positioned by conventional techniques within the artery, and a "
            "second part which is positioned and fixed on the first part by a cone-shaped segment "
            "which is provided on the first part so as to prevent a catheter guidewire--whereby the "
            "second part is positioned in place--from deviating and damaging arterial walls."
        ),
    ),
    Example(
        number="US6800592",
        section="C",
        title="Polymer-enhanced foamable drilling fluid",
        abstract=(
            "A foamable drilling fluid is provided which includes an aqueous solvent; a surfactant; "
            "and a polysaccharide preferably derived from a galactomannan gum. The foamed drilling "
            "fluid includes a liquid phase consisting of the aqueous solvent, polysaccharide and "
            "surfactant, and a gas phase of air, nitrogen, natural gas, CO.sub.2 and mixtures "
            "thereof. The drilling fluid is stable in the presence of crude oil and salt and "
            "environmentally friendly."
        ),
    ),
    Example(
        number="US4074962",
        section="F",
        title="Electrode construction for a piezoelectric lighter",
        abstract=(
            "The present invention refers to an improved construction for electrodes used with a "
            "piezoelectric lighter, particularly one of the portable type which may be used by a "
            "smoker and which carries a fuel deposit."
        ),
    ),
    Example(
        number="US10718657",
        section="G",
        title="Weighing bar assembly",
        abstract=(
            "A weighing bar assembly includes a hollow structural part (1), with two load cells (2) "
            "positioned therein. The assembly further includes two ground support shoes (4). Each of "
            "the load cells (2) is attached at one end to the structural part (1) by a securing block "
            "(3) and at its other end to a corresponding ground support shoe (4)."
        ),
    ),
    Example(
        number="US8724782",
        section="H",
        title="System of subsidized phone calls",
        abstract=(
            "System of subsidized phone calls, is essentially a system (S) made possible by means of "
            "telecommunication networks in general to be used with great efficiency, using the "
            "existent technical resources that, organized of new way, allows the execution of calls "
            "with part or all of the chargeable time subsidized by a sponsor through the sending of "
            "advertising and/or institutional messages to the calling subscriber."
        ),
    ),
)
