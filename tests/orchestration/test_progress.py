"""The progress output names every trial in full (search points carry [k=v,...] in their name)."""

from __future__ import annotations

from types import SimpleNamespace

from rich.console import Console

from ohem_tune.orchestration.progress import ProgressTable


def _table(console: Console) -> ProgressTable:
    def name_of(config: dict) -> tuple[str, int]:
        return f"hpo[name={config['sampler.name']},lr={config['solver.lr']}]", 300

    return ProgressTable(console, name_of, metric="eval/mAP")


def test_finished_line_keeps_the_search_point_in_brackets() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    table = _table(console)
    trial = SimpleNamespace(trial_id="t1", config={"sampler.name": "ohem", "solver.lr": 0.01})
    table._result(trial, {"iteration": 100, "eval/mAP": 0.3})
    table._done(trial, "DONE")
    text = console.export_text()
    assert "hpo[name=ohem,lr=0.01]: PRUNED at iteration 100/300, eval/mAP 0.3000" in text


def test_live_table_keeps_the_search_point_in_brackets() -> None:
    console = Console(record=True, width=200, force_terminal=False)
    table = _table(console)
    trial = SimpleNamespace(trial_id="t1", config={"sampler.name": "heuristic", "solver.lr": 0.1})
    table._start(trial)
    console.print(table.table())
    assert "hpo[name=heuristic,lr=0.1]" in console.export_text()
