"""What the model's selection chose, for recommender_model's metadata and its beats_popularity check."""

from __future__ import annotations

import dagster as dg


def selection_metadata(info: dict) -> dict:
    """The chosen settings, the validation table and its cost; nothing for a backend without selection."""
    selection = info.get("selection")
    if not selection:
        return {}
    lines = ["| step | value | NDCG@10 | standard error | seconds | note |", "|---|---|---|---|---|---|"]
    for row in selection["table"]:
        ndcg = "" if row["ndcg_at_10"] is None else f"{row['ndcg_at_10']:.4f}"
        se = "" if row["standard_error"] is None else f"{row['standard_error']:.4f}"
        lines.append(f"| {row['step']} | {row['value']} | {ndcg} | {se} | {row['seconds']:.2f} | {row['skipped']} |")
    return {
        "selection": dg.MetadataValue.json(selection["chosen"]),
        "selection_table": dg.MetadataValue.md("\n".join(lines)),
        "selection_validation": dg.MetadataValue.json(selection["validation"]),
        "selection_seconds": selection["seconds"],
        "selection_budget_seconds": selection["budget_seconds"],
        "validation_ndcg_at_10_popularity": selection["popularity_ndcg_at_10"],
        "served": bool(selection["serve_model"]),
        "selection_reason": selection["reason"],
    }


def served(info: dict) -> tuple[bool, str]:
    """Whether the model itself is served, and why not (the popular list stands in for it)."""
    selection = info.get("selection") or {}
    return bool(selection.get("serve_model", True)), selection.get("reason", "")
