"""Run the notebook templates with papermill and export them to self-contained HTML.

The templates live in ``notebooks/`` (``scenario.ipynb``, ``grid.ipynb``, ``explore.ipynb``);
each has a cell tagged ``parameters``. :func:`execute_notebook` runs one with papermill in an
explicit working directory and kernel, then writes ``<stem>.ipynb`` (with outputs) and
``<stem>.html``; :func:`run_report` does that for a scenario file and :func:`run_reports`
for several scenario files in parallel processes.

The HTML export is the equivalent of ``jupyter nbconvert --to html --no-input``, except that
the cell papermill injected with the run's parameters stays visible (provenance). Plotly 6+
figures shown in a kernel carry only their JSON (``application/vnd.plotly.v1+json``), which
nbconvert's HTML exporter ignores; at export each such output becomes an HTML ``<div>`` drawn
by plotly.js, and the plotly.js bundle is inlined once, before the first figure, so the file
is interactive and needs no network.

Kernel: the templates name the kernel ``python3``. ``ipykernel`` ships that kernel spec
inside the environment (``<sys.prefix>/share/jupyter/kernels/python3``); if no spec of that
name can be found, :func:`ensure_kernel` registers it within the environment, the same as
``python -m ipykernel install --sys-prefix``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import re
import sys
import tempfile
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat

from margin_sim.errors import ScenarioError

__all__ = [
    "NOTEBOOK_DIR",
    "PLOTLY_MIME",
    "NotebookExecutionError",
    "ensure_kernel",
    "execute_notebook",
    "export_html",
    "run_report",
    "run_reports",
]

#: Folder of the notebook templates shipped with the project.
NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

#: MIME type of a plotly figure's JSON in a notebook output.
PLOTLY_MIME = "application/vnd.plotly.v1+json"

#: Tag papermill puts on the cell holding the injected parameters.
_INJECTED_TAG = "injected-parameters"

# A page that loads require.js would make the plotly.js bundle register itself as an AMD
# module instead of setting ``window.Plotly``; hide ``define`` while the bundle runs.
_AMD_SHIELD_OPEN = (
    '<script type="text/javascript">window.__marginSimDefine = window.define; '
    "window.define = undefined;</script>"
)
_AMD_SHIELD_CLOSE = (
    '<script type="text/javascript">window.define = window.__marginSimDefine;</script>'
)


class NotebookExecutionError(RuntimeError):
    """A notebook raised an error while papermill executed it.

    The executed notebook, with the traceback in its outputs, is saved next to where the
    report would have gone, as ``<stem>.failed.ipynb``.
    """


# ----------------------------------------------------------------------------- kernel


def ensure_kernel(kernel_name: str = "python3") -> None:
    """Make sure a Jupyter kernel spec named ``kernel_name`` can be found.

    Parameters
    ----------
    kernel_name : str
        Kernel spec name. When ``python3`` is missing it is registered inside the running
        environment (``python -m ipykernel install --sys-prefix``); any other missing name is
        an error.

    Raises
    ------
    NotebookExecutionError
        If the kernel does not exist and cannot be registered.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
        return
    except NoSuchKernel:
        if kernel_name != "python3":
            raise NotebookExecutionError(
                f"no Jupyter kernel named {kernel_name!r}; list them with `jupyter kernelspec list`"
            ) from None
    from ipykernel.kernelspec import install

    install(prefix=sys.prefix)


# ---------------------------------------------------------------------------- writing


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- export


def _figure_html(figure: Mapping[str, Any], *, include_plotlyjs: bool) -> str:
    """HTML ``<div>`` + script drawing one plotly figure given as its JSON mapping."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    layout = figure.get("layout") or {}
    height = layout.get("height")
    body = pio.to_html(
        dict(figure),
        config=figure.get("config") or {},
        include_plotlyjs=False,
        full_html=False,
        validate=False,
        default_height=f"{int(height)}px" if height else "480px",
        default_width="100%",
    )
    if not include_plotlyjs:
        return body
    bundle = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return f"{_AMD_SHIELD_OPEN}{bundle}{_AMD_SHIELD_CLOSE}{body}"


def _plotly_outputs_to_html(notebook: nbformat.NotebookNode) -> int:
    """Give every plotly JSON output an HTML rendering; returns the number of figures."""
    count = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data or PLOTLY_MIME not in data:
                continue
            figure = data.pop(PLOTLY_MIME)
            data.pop("text/plain", None)
            data["text/html"] = _figure_html(figure, include_plotlyjs=count == 0)
            count += 1
    return count


def _hide_inputs(notebook: nbformat.NotebookNode) -> None:
    """``--no-input`` for every code cell but the injected parameters, which get a caption."""
    cells = []
    for cell in notebook.cells:
        tags = cell.metadata.get("tags", [])
        if "remove-cell" in tags:
            continue
        if cell.cell_type == "code" and _INJECTED_TAG in tags:
            cells.append(
                nbformat.v4.new_markdown_cell(
                    "*Parameters of this run, injected by papermill (provenance):*"
                )
            )
        elif cell.cell_type == "code":
            cell.metadata.setdefault("transient", {})["remove_source"] = True
        cells.append(cell)
    notebook.cells = cells


def export_html(
    notebook: str | Path | nbformat.NotebookNode, html_path: str | Path, *, title: str | None = None
) -> Path:
    """Export an executed notebook to one self-contained, interactive HTML file.

    Parameters
    ----------
    notebook : path or NotebookNode
        The executed notebook (it is not modified).
    html_path : path
        Where to write the HTML; written atomically (temporary file + rename).
    title : str, optional
        Page title; the file's stem by default.

    Returns
    -------
    Path
        ``html_path``.

    Notes
    -----
    Code inputs are hidden except the injected-parameters cell; plotly figures become
    interactive ``<div>`` elements with plotly.js inlined once, so the page works offline.
    """
    from nbconvert import HTMLExporter

    html_path = Path(html_path)
    if isinstance(notebook, str | Path):
        node = nbformat.read(notebook, as_version=4)
    else:
        node = nbformat.reads(nbformat.writes(notebook), as_version=4)  # a copy
    _hide_inputs(node)
    _plotly_outputs_to_html(node)
    exporter = HTMLExporter(
        template_name="lab",
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(
        node, resources={"metadata": {"name": title or html_path.stem}}
    )
    # Nothing in the page needs require.js (it only breaks plotly.js); drop the CDN fetch.
    body = re.sub(
        r'<script src="' + re.escape(exporter.require_js_url) + r'"></script>\s*', "", body
    )
    if not _has_math(node):
        # MathJax is fetched from a CDN; a page with no TeX must not need the network.
        body = _MATHJAX_BLOCK.sub("", body)
    _write_atomic(html_path, body)
    return html_path


#: The MathJax loader and configuration that nbconvert's templates put in the page head.
_MATHJAX_BLOCK = re.compile(
    r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->\s*", re.S
)

#: TeX math as MathJax finds it: $...$, $$...$$, \(...\) or \[...\].
_TEX_MATH = re.compile(r"\$[^$\n]+\$|\\\(|\\\[")


def _has_math(node: Any) -> bool:
    """Whether any markdown cell, or markdown/LaTeX output, of a notebook holds TeX math.

    Parameters
    ----------
    node : nbformat.NotebookNode
        The notebook.

    Returns
    -------
    bool
        True if MathJax would have something to typeset.
    """
    texts: list[str] = []
    for cell in node.cells:
        if cell.cell_type == "markdown":
            texts.append(cell.source)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            texts.extend(
                str(data[mime]) for mime in ("text/markdown", "text/latex") if mime in data
            )
    return any(_TEX_MATH.search(text) for text in texts)


# -------------------------------------------------------------------------- execution


def _local_kernel_manager() -> type:
    """A kernel manager that talks to its kernel over local IPC sockets where possible.

    The kernel runs on this machine; over TCP without CurveZMQ keys ipykernel warns (on
    stderr, once per report) that the traffic is unencrypted. Each manager gets its own socket
    path prefix in the temporary directory (reports run in parallel processes, whose kernels
    must not share sockets); jupyter_client removes the socket files with the kernel. Windows
    has no IPC transport: there the default (TCP on localhost) stays.
    """
    from jupyter_client.manager import KernelManager

    if sys.platform == "win32":  # pragma: no cover
        return KernelManager

    class LocalKernelManager(KernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            prefix = Path(tempfile.gettempdir()) / f"margin-sim-{uuid.uuid4().hex[:12]}"
            kwargs.setdefault("ip", str(prefix))
            super().__init__(**kwargs)

    return LocalKernelManager


def execute_notebook(
    template: str | Path,
    parameters: Mapping[str, Any],
    out_dir: str | Path,
    stem: str,
    *,
    timeout: int = 600,
    kernel_name: str = "python3",
    cwd: str | Path | None = None,
) -> tuple[Path, Path]:
    """Execute a notebook template with papermill and export it to HTML.

    Parameters
    ----------
    template : path
        Notebook with a cell tagged ``parameters``.
    parameters : mapping
        Values injected by papermill (JSON-able: numbers, strings, lists, dicts, None).
    out_dir : path
        Folder for the outputs; created if missing.
    stem : str
        Output file name without extension.
    timeout : int
        Longest time one cell may run, seconds.
    kernel_name : str
        Jupyter kernel to run it in (see :func:`ensure_kernel`).
    cwd : path, optional
        Working directory of the kernel; the caller's current directory by default, so that
        relative paths in ``parameters`` mean what they mean to the caller.

    Returns
    -------
    (Path, Path)
        The executed notebook ``<out_dir>/<stem>.ipynb`` and ``<out_dir>/<stem>.html``, both
        written atomically.

    Raises
    ------
    NotebookExecutionError
        If a cell raised; the executed notebook is kept as ``<stem>.failed.ipynb``.
    FileNotFoundError
        If the template does not exist.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    template = Path(template).resolve()
    if not template.is_file():
        raise FileNotFoundError(f"notebook template {template} does not exist")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    notebook_path = out / f"{stem}.ipynb"
    html_path = out / f"{stem}.html"
    workdir = Path(cwd).resolve() if cwd is not None else Path.cwd()
    ensure_kernel(kernel_name)
    handle, running = tempfile.mkstemp(dir=out, prefix=f".{stem}.", suffix=".running.ipynb")
    os.close(handle)
    try:
        try:
            executed = papermill.execute_notebook(
                str(template),
                running,
                parameters=dict(parameters),
                kernel_name=kernel_name,
                language="python",
                cwd=str(workdir),
                execution_timeout=timeout,
                start_timeout=120,
                progress_bar=False,
                log_output=False,
                request_save_on_cell_execute=False,
                kernel_manager_class=_local_kernel_manager(),
            )
        except PapermillExecutionError as error:
            failed = out / f"{stem}.failed.ipynb"
            os.replace(running, failed)
            raise NotebookExecutionError(
                f"{template.name} failed in cell {error.exec_count}: {error.ename}: "
                f"{error.evalue} (executed notebook saved as {failed})"
            ) from None
        executed.metadata.setdefault("papermill", {})["output_path"] = str(notebook_path)
        _write_atomic(notebook_path, nbformat.writes(executed))
        export_html(executed, html_path, title=stem)
    finally:
        Path(running).unlink(missing_ok=True)
    return notebook_path, html_path


# ---------------------------------------------------------------------------- reports


def _report_parameters(
    scenario_path: str | Path,
    overrides: Mapping[str, Any] | Iterable[str],
    paths: int | None,
    seed: int | None,
) -> dict[str, Any]:
    """Validate a report's inputs in this process (one-line errors) and build its parameters."""
    from margin_sim.scenario import load_scenario

    if paths is not None and paths < 1:
        raise ScenarioError("paths", f"must be a positive number of paths, got {paths}")
    if seed is not None and seed < 0:
        raise ScenarioError("seed", f"must be a non-negative integer, got {seed}")
    items: dict[str, Any] | list[str]
    items = dict(overrides) if isinstance(overrides, Mapping) else [str(o) for o in overrides]
    load_scenario(scenario_path, items)
    return {
        "scenario_path": str(Path(scenario_path).resolve()),
        "overrides": items,
        "paths": paths,
        "seed": seed,
    }


def run_report(
    scenario_path: str | Path,
    out_dir: str | Path = "reports",
    *,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    paths: int | None = None,
    seed: int | None = None,
    timeout: int = 600,
) -> Path:
    """Write the research report of one scenario: ``notebooks/scenario.ipynb`` run by papermill.

    Parameters
    ----------
    scenario_path : path
        Scenario YAML file; the report is named after its stem.
    out_dir : path
        Folder for ``<stem>.ipynb`` and ``<stem>.html``.
    overrides : mapping or iterable of str
        Dotted-key overrides (``["account.positions.0.leverage=20"]``).
    paths, seed : int, optional
        Number of paths and seed; the scenario's own by default.
    timeout : int
        Longest time one notebook cell may run, seconds.

    Returns
    -------
    Path
        The HTML report.

    Raises
    ------
    ScenarioError
        If the scenario, an override, ``paths`` or ``seed`` is invalid (checked before any
        notebook starts).
    NotebookExecutionError
        If the notebook failed.
    """
    parameters = _report_parameters(scenario_path, overrides, paths, seed)
    _, html_path = execute_notebook(
        NOTEBOOK_DIR / "scenario.ipynb",
        parameters,
        out_dir,
        Path(scenario_path).stem,
        timeout=timeout,
    )
    return html_path


def _run_one(parameters: dict[str, Any], out_dir: str, stem: str, timeout: int) -> str:
    _, html_path = execute_notebook(
        NOTEBOOK_DIR / "scenario.ipynb", parameters, out_dir, stem, timeout=timeout
    )
    return str(html_path)


def run_reports(
    scenario_paths: Sequence[str | Path],
    out_dir: str | Path = "reports",
    *,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    paths: int | None = None,
    seed: int | None = None,
    jobs: int | None = None,
    timeout: int = 600,
) -> list[Path]:
    """Write the reports of several scenarios, in parallel processes.

    Parameters
    ----------
    scenario_paths : sequence of path
        Scenario files; their stems must differ (each names its report).
    out_dir, overrides, paths, seed, timeout
        As for :func:`run_report`, applied to every scenario.
    jobs : int, optional
        Number of reports run at once; by default one per scenario, at most the CPU count.

    Returns
    -------
    list of Path
        The HTML reports, in the order of ``scenario_paths``.

    Raises
    ------
    ScenarioError
        If any scenario or option is invalid (all are checked before any notebook starts), or
        two scenario files share a stem.
    NotebookExecutionError
        If a notebook failed (the others still finish).
    """
    scenario_paths = list(scenario_paths)
    if not scenario_paths:
        raise ScenarioError("scenario", "no scenario file given")
    overrides = dict(overrides) if isinstance(overrides, Mapping) else list(overrides)
    stems: dict[str, str] = {}
    for path in scenario_paths:
        stem = Path(path).stem
        if stem in stems:
            raise ScenarioError(
                str(path), f"its report {stem}.html would overwrite the one of {stems[stem]}"
            )
        stems[stem] = str(path)
    if jobs is not None and jobs < 1:
        raise ScenarioError("jobs", f"must be at least 1, got {jobs}")
    work = [
        (_report_parameters(path, overrides, paths, seed), Path(path).stem)
        for path in scenario_paths
    ]
    out = str(Path(out_dir).resolve())
    workers = min(len(work), jobs or os.cpu_count() or 1)
    if workers == 1:
        return [Path(_run_one(parameters, out, stem, timeout)) for parameters, stem in work]
    # spawn: papermill changes the process's working directory and runs an event loop, so
    # each report gets a fresh interpreter rather than a fork of this one.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [
            pool.submit(_run_one, parameters, out, stem, timeout) for parameters, stem in work
        ]
        concurrent.futures.wait(futures)
    return [Path(future.result()) for future in futures]
