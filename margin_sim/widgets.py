"""Interactive explorer: sliders for a one-position scenario that redraw plotly figures in place.

:class:`Explorer` holds a base scenario and a few controls (leverage, margin mode, wallet
balance, margin, volatility, jump rate, wick rate and depth, horizon). Each change re-evaluates
the scenario and redraws three figures: liquidation and ruin probability against leverage for
both modes (with the current setting starred), a handful of sample paths with the liquidation
lines, and the loss distribution.

Speed comes from caching by what each figure depends on. The price paths depend only on the
market sliders and the horizon, so they are generated once per market setting and the engine
re-evaluates the same paths (:func:`margin_sim.engine.evaluate_chunk`) when the account
changes; the leverage curve depends on everything but the leverage, so dragging the leverage
slider costs one evaluation. See ``bench/explorer.py`` for the timing.

With ``interactive=True`` the figures are ``plotly.graph_objects.FigureWidget`` objects
updated inside ``batch_update``; with ``interactive=False`` (papermill, reports) they are
plain ``Figure`` objects and no widget JavaScript ends up in the saved notebook.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from margin_sim import plots
from margin_sim.errors import MarginSimError
from margin_sim.scenario import PARAMS_DIR, Scenario, load_scenario

if TYPE_CHECKING:
    import ipywidgets

    from margin_sim.market import PathChunk
    from margin_sim.metrics import SimulationResult

__all__ = [
    "DEFAULT_LEVERAGES",
    "DEFAULT_SCENARIO",
    "Explorer",
    "ExplorerSettings",
]

#: Scenario the explorer starts from.
DEFAULT_SCENARIO = PARAMS_DIR / "scenarios" / "baseline.yaml"

#: Leverages of the probability curve.
DEFAULT_LEVERAGES: tuple[float, ...] = (1, 2, 3, 5, 10, 20, 50, 100)

_HORIZONS = ("1d", "3d", "7d", "14d", "30d")
_MODES = ("both", "isolated", "cross")


@dataclass(frozen=True)
class ExplorerSettings:
    """What the controls set; units as in the scenario file.

    Attributes
    ----------
    leverage : float
        Leverage of the position (notional / margin).
    mode : {"both", "isolated", "cross"}
        Which margin mode the path and loss figures show (the curve always shows both).
    balance : float
        Wallet balance, quote currency.
    margin : float
        Initial margin of the position, quote currency.
    vol : float
        Annualised diffusion volatility.
    jump_rate : float
        Permanent jumps per year.
    wick_rate : float
        Flash-crash wicks per year.
    wick_depth : float
        Mean wick depth, fraction of the price.
    horizon : str
        Horizon as text (``"7d"``).
    """

    leverage: float
    mode: str
    balance: float
    margin: float
    vol: float
    jump_rate: float
    wick_rate: float
    wick_depth: float
    horizon: str

    def market_key(self) -> tuple[float | str, ...]:
        """The settings the price paths depend on."""
        return (self.vol, self.jump_rate, self.wick_rate, self.wick_depth, self.horizon)

    def curve_key(self) -> tuple[float | str, ...]:
        """The settings the leverage curve depends on (all but leverage and shown mode)."""
        return (*self.market_key(), self.balance, self.margin)


class Explorer:
    """Sliders over a one-position scenario, redrawing three plotly figures in place.

    Parameters
    ----------
    scenario : Scenario or path, optional
        Base scenario (its first position is the one explored); the baseline by default.
    paths : int
        Monte Carlo paths per evaluation.
    horizon : str
        Starting horizon, one of ``1d, 3d, 7d, 14d, 30d``.
    leverages : sequence of float
        Leverages of the probability curve (those above the exchange's limit are dropped).
    sample_path_count : int
        Paths drawn in the path figure.
    seed : int, optional
        Seed; the scenario's own by default.
    interactive : bool
        FigureWidgets and ipywidgets controls (True), or static figures (False: papermill).
    max_points : int
        Longest trace in the path figure (minute bars merged, lows kept).

    Attributes
    ----------
    figures : dict of str to Figure or FigureWidget
        ``"probability"``, ``"paths"``, ``"loss"``.
    controls : dict of str to ipywidgets.Widget
        One per :class:`ExplorerSettings` field (empty when not interactive).
    result : SimulationResult
        The evaluation at the current settings.
    message : str
        Why the last change was refused ("" when it was applied).

    Examples
    --------
    >>> explorer = Explorer(paths=200, horizon="1d", interactive=False)
    >>> explorer.update(leverage=20)
    >>> sorted(explorer.figures)
    ['loss', 'paths', 'probability']
    """

    def __init__(
        self,
        scenario: Scenario | str | Path | None = None,
        *,
        paths: int = 1000,
        horizon: str = "7d",
        leverages: Sequence[float] = DEFAULT_LEVERAGES,
        sample_path_count: int = 5,
        seed: int | None = None,
        interactive: bool = True,
        max_points: int = 2000,
    ) -> None:
        if scenario is None:
            scenario = DEFAULT_SCENARIO
        base = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        if horizon not in _HORIZONS:
            raise MarginSimError(f"horizon: must be one of {', '.join(_HORIZONS)}, got {horizon!r}")
        self.base = base
        self.paths = int(paths)
        self.seed = base.seed if seed is None else int(seed)
        self.leverages = tuple(float(x) for x in leverages)
        self.sample_path_count = int(sample_path_count)
        self.interactive = bool(interactive)
        self.max_points = int(max_points)
        self.position = base.account.positions[0]
        self.asset = self.position.asset
        asset = base.market.assets[self.asset]
        wicks = asset.wicks
        self.settings = ExplorerSettings(
            leverage=float(self.position.leverage),
            mode="both",
            balance=float(base.account.balance),
            margin=float(self.position.margin),
            vol=float(asset.vol),
            jump_rate=float(asset.jumps.per_year) if asset.jumps is not None else 0.0,
            wick_rate=float(wicks.per_year) if wicks is not None else 0.0,
            wick_depth=float(wicks.depth_mean) if wicks is not None else 0.05,
            horizon=horizon,
        )
        self.message = ""
        self._paths_cache: dict[tuple[Any, ...], tuple[PathChunk, pd.DataFrame]] = {}
        self._curve_cache: dict[tuple[Any, ...], pd.DataFrame] = {}
        self.controls: dict[str, ipywidgets.Widget] = {}
        self._status: ipywidgets.HTML | None = None
        scenario_now = self.scenario_for(self.settings)
        self.result = self._evaluate(scenario_now, self.settings)
        built = self._build_figures(scenario_now, self.settings)
        if self.interactive:
            self.figures: dict[str, go.Figure] = {
                name: go.FigureWidget(figure) for name, figure in built.items()
            }
            self._make_controls()
        else:
            self.figures = built

    # ----------------------------------------------------------------- scenarios

    def scenario_for(self, settings: ExplorerSettings) -> Scenario:
        """The base scenario with the settings applied (validated).

        Raises
        ------
        ScenarioError
            If the settings make an invalid scenario (e.g. leverage above the tier limit).
        """
        data = self.base.to_mapping()
        data["horizon"] = settings.horizon
        data["paths"] = self.paths
        data["seed"] = self.seed
        data["chunk_paths"] = self.paths
        data["modes"] = ["isolated", "cross"]
        data["account"]["balance"] = settings.balance
        position = data["account"]["positions"][0]
        position["leverage"] = settings.leverage
        position["margin"] = settings.margin
        asset = data["market"]["assets"][self.asset]
        asset["vol"] = settings.vol
        jumps = asset.get("jumps") or {"model": "merton", "mean": -0.02, "std": 0.05}
        asset["jumps"] = {**jumps, "per_year": settings.jump_rate}
        wicks = asset.get("wicks") or {"depth_max": 0.5, "recovery": 0.9}
        asset["wicks"] = {
            **wicks,
            "per_year": settings.wick_rate,
            "depth_mean": settings.wick_depth,
            "depth_max": max(float(wicks.get("depth_max", 0.5)), settings.wick_depth),
        }
        return load_scenario(data)

    def _market(self, scenario: Scenario, settings: ExplorerSettings) -> tuple[PathChunk, Any]:
        key = settings.market_key()
        cached = self._paths_cache.get(key)
        if cached is None:
            from margin_sim.market import sample_paths, simulate_paths

            chunk = next(
                iter(
                    simulate_paths(
                        scenario, paths=self.paths, seed=self.seed, chunk_paths=self.paths
                    )
                )
            )
            bars = sample_paths(scenario, self.sample_path_count, seed=self.seed)
            bars = bars.loc[bars["asset"] == self.asset].reset_index(drop=True)
            bars = plots.coarsen_bars(bars, self.max_points)  # once, not on every redraw
            cached = (chunk, bars)
            self._paths_cache = {key: cached}  # one market setting at a time: bounded memory
        return cached

    def _evaluate(self, scenario: Scenario, settings: ExplorerSettings) -> SimulationResult:
        from margin_sim.engine import evaluate_chunk
        from margin_sim.metrics import SimulationResult

        chunk, _ = self._market(scenario, settings)
        outcomes = evaluate_chunk(scenario, chunk, self.seed)
        return SimulationResult.from_outcomes(
            scenario,
            paths=self.paths,
            seed=self.seed,
            outcomes={mode: [outcome] for mode, outcome in outcomes.items()},
        )

    def _curve(self, settings: ExplorerSettings) -> pd.DataFrame:
        """Probabilities against leverage for both modes on the cached paths."""
        key = settings.curve_key()
        cached = self._curve_cache.get(key)
        if cached is not None:
            return cached
        rows = []
        for leverage in self.leverages:
            try:
                scenario = self.scenario_for(_replace(settings, leverage=leverage))
            except MarginSimError:
                continue  # above the exchange's limit for this margin
            summary = self._evaluate(scenario, settings).summary()
            for mode, row in summary.iterrows():
                rows.append({"leverage": leverage, "mode": mode, **row.to_dict()})
        table = pd.DataFrame(rows)
        self._curve_cache = {key: table}
        return table

    # ------------------------------------------------------------------- figures

    def _build_figures(
        self, scenario: Scenario, settings: ExplorerSettings
    ) -> dict[str, go.Figure]:
        summary = self.result.summary()
        current = summary.reset_index().rename(columns={"index": "mode"})
        current.insert(0, "leverage", settings.leverage)
        shown = ["isolated", "cross"] if settings.mode == "both" else [settings.mode]
        _, bars = self._market(scenario, settings)
        lines = plots.initial_liquidation_prices(scenario)
        curve = self._curve(settings)
        probability = plots.probability_vs_leverage_figure(
            curve if len(curve) else current,
            leverage=settings.leverage,
            current=current,
            title=f"Within {settings.horizon}: probability against leverage",
        )
        paths_figure = plots.sample_paths_figure(
            bars,
            {mode: lines[mode] for mode in shown},
            asset=self.asset,
            max_points=None,
            title=f"{self.asset} {self.position.side} at {settings.leverage:g}x: sample paths",
        )
        per_path = self.result.per_path
        per_path = per_path.loc[per_path["mode"].isin(shown)]
        loss = plots.final_equity_figure(
            per_path,
            balance=settings.balance,
            ruin_equity=scenario.ruin.equity_fraction * settings.balance,
            as_loss=True,
            bins=40,
            title=f"Loss of the account within {settings.horizon}",
        )
        return {"probability": probability, "paths": paths_figure, "loss": loss}

    def update(self, **changes: Any) -> None:
        """Apply changed settings and redraw the figures: the slider callback.

        Parameters
        ----------
        **changes
            Fields of :class:`ExplorerSettings` (``leverage=20``); missing ones keep their
            value. An invalid combination is refused: the figures stay as they were and
            :attr:`message` says why.
        """
        settings = _replace(self.settings, **changes)
        try:
            scenario = self.scenario_for(settings)
        except MarginSimError as error:
            self.message = str(error)
            self._show_status()
            return
        self.message = ""
        self.settings = settings
        self.result = self._evaluate(scenario, settings)
        built = self._build_figures(scenario, settings)
        for name, figure in built.items():
            if self.interactive:
                _copy_into(self.figures[name], figure)
            else:
                self.figures[name] = figure
        self._show_status()

    # ------------------------------------------------------------------ controls

    def _make_controls(self) -> None:
        import ipywidgets as w

        s = self.settings
        drag = {"continuous_update": True}
        release = {"continuous_update": False}
        style = {"description_width": "110px"}
        layout = w.Layout(width="420px")
        self.controls = {
            "leverage": w.FloatLogSlider(
                value=s.leverage, base=10, min=0, max=math.log10(125), step=0.01,
                description="leverage (x)", readout_format=".3g", style=style, layout=layout,
                **drag,
            ),
            "mode": w.ToggleButtons(options=list(_MODES), value=s.mode, description="mode",
                                    style=style),
            "balance": w.FloatSlider(
                value=s.balance, min=100.0, max=max(100_000.0, s.balance), step=100.0,
                description="wallet (USDT)", readout_format=",.0f", style=style, layout=layout,
                **release,
            ),
            "margin": w.FloatSlider(
                value=s.margin, min=10.0, max=max(20_000.0, s.margin), step=10.0,
                description="margin (USDT)", readout_format=",.0f", style=style, layout=layout,
                **release,
            ),
            "vol": w.FloatSlider(
                value=s.vol, min=0.05, max=2.0, step=0.05, description="vol (annual)",
                readout_format=".0%", style=style, layout=layout, **release,
            ),
            "jump_rate": w.FloatSlider(
                value=s.jump_rate, min=0.0, max=50.0, step=1.0, description="jumps / year",
                style=style, layout=layout, **release,
            ),
            "wick_rate": w.FloatSlider(
                value=s.wick_rate, min=0.0, max=50.0, step=1.0, description="wicks / year",
                style=style, layout=layout, **release,
            ),
            "wick_depth": w.FloatSlider(
                value=s.wick_depth, min=0.01, max=0.4, step=0.01, description="wick depth",
                readout_format=".0%", style=style, layout=layout, **release,
            ),
            "horizon": w.SelectionSlider(
                options=list(_HORIZONS), value=s.horizon, description="horizon", style=style,
                layout=layout, **release,
            ),
        }  # fmt: skip
        for name, control in self.controls.items():
            control.observe(self._on_change, names="value")
            control.add_class(f"margin-sim-{name.replace('_', '-')}")
        self._status = w.HTML(value="")

    def _on_change(self, change: Mapping[str, Any]) -> None:
        owner = change["owner"]
        name = next(key for key, control in self.controls.items() if control is owner)
        self.update(**{name: change["new"]})

    def _show_status(self) -> None:
        if self._status is not None:
            text = self.message or ""
            self._status.value = f"<span style='color:#b00'>{text}</span>" if text else ""

    def widget(self) -> ipywidgets.Widget:
        """The controls and the three figures as one ipywidgets layout.

        Raises
        ------
        RuntimeError
            If the explorer was made with ``interactive=False``.
        """
        if not self.interactive:
            raise RuntimeError("a static explorer has no widgets; use show()")
        import ipywidgets as w

        left = w.VBox([*self.controls.values(), self._status])
        return w.VBox(
            [
                w.HBox([left, self.figures["probability"]]),
                w.HBox([self.figures["paths"], self.figures["loss"]]),
            ]
        )

    def show(self) -> None:
        """Display the explorer: widgets when interactive, else the static figures."""
        from IPython.display import display

        if self.interactive:
            display(self.widget())
            return
        for figure in self.figures.values():
            figure.show()


# ----------------------------------------------------------------------------- helpers


def _replace(settings: ExplorerSettings, **changes: Any) -> ExplorerSettings:
    unknown = set(changes) - set(ExplorerSettings.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown explorer settings: {sorted(unknown)}")
    values = {**settings.__dict__, **changes}
    for name in ("leverage", "balance", "margin", "vol", "jump_rate", "wick_rate", "wick_depth"):
        values[name] = float(values[name])
    return ExplorerSettings(**values)


def _same(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is new
    try:
        a = np.asarray(old)
        b = np.asarray(new)
    except (TypeError, ValueError):  # pragma: no cover - ragged data
        return False
    if a.shape != b.shape or a.dtype.kind != b.dtype.kind:
        return False
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


def _copy_into(widget: go.Figure, figure: go.Figure) -> None:
    """Make ``widget`` show ``figure``: in place when the traces line up, sending only changes."""
    layout = figure.layout.to_plotly_json()
    layout.pop("template", None)  # the same for every figure of a builder; costly to re-apply
    if [t.type for t in widget.data] != [t.type for t in figure.data]:
        with widget.batch_update():
            widget.data = ()
            widget.add_traces(list(figure.data))
            widget.update_layout(layout, overwrite=True)
        return
    with widget.batch_update():
        for old, new in zip(widget.data, figure.data, strict=True):
            for key in ("x", "y"):
                if not _same(old[key], new[key]):
                    old[key] = new[key]
            rest = new.to_plotly_json()
            rest.pop("x", None)
            rest.pop("y", None)
            rest.pop("type", None)
            old.update(rest, overwrite=True)
        widget.update_layout(layout, overwrite=True)
