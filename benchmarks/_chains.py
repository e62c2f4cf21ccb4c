"""A CWL workflow of ``steps`` runs of one tool in a chain (each step reads the table the one
before wrote), shared by the pipeline benchmarks."""

from __future__ import annotations


def chain_workflow(steps: int, label: str | None = None) -> str:
    """The workflow's text: input ``table`` (a File) through ``s1`` ... ``s<steps>`` of
    ``step.cwl`` (beside the workflow), whose last ``table`` is the output."""
    lines = ["cwlVersion: v1.2", "class: Workflow"]
    if label:
        lines.append(f"label: {label}")
    lines += [
        "inputs:",
        "  table: File",
        "outputs:",
        "  table:",
        "    type: File",
        f"    outputSource: s{steps}/table",
        "steps:",
    ]
    for i in range(1, steps + 1):
        source = "table" if i == 1 else f"s{i - 1}/table"
        lines += [
            f"  s{i}:",
            "    run: step.cwl",
            f"    in: {{table: {source}}}",
            "    out: [table]",
        ]
    return "\n".join(lines) + "\n"
