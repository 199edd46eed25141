"""Parameters in JupyterLab: a parameters file or a form, chosen once for every notebook.

``context.start`` asks :func:`parameters` for the notebook's parameters. Headless (papermill,
``runbook run``; see :func:`runbook_lib.progress.interactive`) that is the notebook's own
parameters cell, as papermill filled it, and nothing is ever displayed. In JupyterLab it is,
in order of precedence:

1. what the notebook's parameters cell sets to something other than its default;
2. the operator's choice, saved in :func:`choice_path` (``~/.config/swarm-registry-runbook/
   lab.yaml``, mode 0600): a parameters file, plus the values changed in the form;
3. the defaults.

When that is not a valid set of parameters (the first time, nothing is chosen), the start
cell shows a form built from :class:`runbook_lib.params.Params`, with each field's
documentation from ``parameters/example.yaml``, required fields marked, and every problem
under its field. "Use these parameters" saves the choice, which then serves every notebook
(each has its own kernel: they all read the file), and makes ``rb`` for this notebook.

Secrets are references (``env:NAME``, ``file:PATH``, ``prompt``), or typed into a password
field. A typed password stays in this kernel's memory only: the file records ``prompt``, so
a notebook in another kernel asks for it once (a password prompt under the cell). The
password field is emptied and the form closed once the choice is saved, so no widget state
holds it.
"""

from __future__ import annotations

import os
import re
import tempfile
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from . import params as params_mod
from .errors import ParameterError, RunbookError
from .secrets import Secret

REQUIRED = ("host", "registry_host", "registry_users")
EXAMPLE_FILE = Path(__file__).resolve().parents[1] / "parameters" / "example.yaml"
_SECTION = re.compile(r"^# --- (.+?) -+$")
_FIELD = re.compile(r"^([a-z_]+):(.*)$")

# Tab titles for the sections of parameters/example.yaml.
_TAB = {"How to reach the host": "Host", "Docker engine": "Docker", "Verification": "Verify"}
_TAB["Set by `runbook run --check`"] = "Check mode"

# Passwords typed into the form, by parameter: this kernel's memory only.
_TYPED: dict[str, Secret] = {}


class ParametersNeeded(RunbookError):
    """Nothing valid is chosen yet: the form is shown above."""


# -- the documentation of each field ------------------------------------------------------
def field_docs(path: Path = EXAMPLE_FILE) -> dict[str, tuple[str, str]]:
    """``{field: (section, documentation)}`` from the comments of ``parameters/example.yaml``."""
    docs: dict[str, tuple[str, str]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return docs
    section, current = "", None
    for line in lines:
        if m := _SECTION.match(line):
            section, current = m.group(1).strip(), None
            continue
        if m := _FIELD.match(line):
            current = m.group(1)
            _, _, comment = m.group(2).partition("#")
            docs[current] = (section, comment.strip())
        elif current and line.lstrip().startswith("#") and line.startswith(" "):
            sec, text = docs[current]
            docs[current] = (sec, f"{text} {line.strip().lstrip('#').strip()}".strip())
        elif current and line.startswith(" "):  # registry_users' example entries
            continue
        else:
            current = None
    return docs


# -- the saved choice ----------------------------------------------------------------------
def choice_path() -> Path:
    """Where the operator's choice is kept: per user, beside other configuration."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "swarm-registry-runbook" / "lab.yaml"


def load_choice() -> dict[str, Any]:
    """The saved choice, ``{"parameters_file": PATH or None, "values": {...}}``, or ``{}``."""
    try:
        data = yaml.safe_load(choice_path().read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def save_choice(parameters_file: str | None, values: Mapping[str, Any]) -> Path:
    """Write the choice atomically, owner-only. Secrets are written as their references."""
    path = choice_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"parameters_file": parameters_file, "values": _plain(values)}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lab.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write("# The parameters JupyterLab's notebooks use (runbook_lib/form.py).\n")
            yaml.safe_dump(data, f, sort_keys=False)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def chosen_values() -> tuple[dict[str, Any], str]:
    """The values of the saved choice, and where they come from, in words."""
    choice = load_choice()
    values: dict[str, Any] = {}
    where = []
    file = choice.get("parameters_file")
    if file:
        values.update(params_mod.read_yaml(file))
        where.append(_short_path(str(file)))
    overrides = choice.get("values") or {}
    if overrides:
        values.update(overrides)
        where.append(f"{len(overrides)} value(s) set in the form")
    for name, secret in _TYPED.items():
        if values.get(name) == "prompt":
            values[name] = secret
    return values, " + ".join(where)


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, Secret):
            v = v.ref
        elif isinstance(v, Mapping):
            v = {str(a): (b.ref if isinstance(b, Secret) else b) for a, b in v.items()}
        out[k] = v
    return out


# -- what context.start asks -------------------------------------------------------------
def set_in_cell(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters the notebook's parameters cell (or papermill) sets to a non-default."""
    out = {}
    for name, field in params_mod.Params.model_fields.items():
        if name not in namespace:
            continue
        value = namespace[name]
        default = None if field.is_required() else field.get_default(call_default_factory=True)
        if value != default and not (name == "registry_users" and not value):
            out[name] = value
    return out


def parameters(
    namespace: Mapping[str, Any], on_chosen: Callable[[params_mod.Params], None] | None = None
) -> params_mod.Params:
    """The notebook's parameters; in JupyterLab, the saved choice or the form (see above).

    ``on_chosen`` is called with the parameters once the operator accepts the form.
    """
    from .progress import interactive

    if not interactive():
        return params_mod.from_namespace(namespace)
    cell = set_in_cell(namespace)
    try:
        saved, where = chosen_values()
    except ParameterError as exc:  # the chosen file went away or is broken
        saved, where = {}, ""
        problem: ParameterError | None = exc
    else:
        problem = None
    values = {**saved, **cell}
    if problem is None:
        try:
            p = params_mod.load(values)
        except ParameterError as exc:
            problem = exc
        else:
            source = where or "the notebook's parameters cell"
            if cell and where:
                source += f" + {len(cell)} set in the parameters cell"
            _show_banner(source, values, on_chosen)
            return p
    form = Form(values, load_choice().get("parameters_file"), on_chosen)
    form.show(problem)
    raise ParametersNeeded(
        "choose the parameters in the form above (a parameters file, or the fields), press "
        "'Use these parameters', then run the cells below"
    )


def _show_banner(source: str, values: dict[str, Any], on_chosen) -> None:  # noqa: ANN001
    import ipywidgets as w
    from IPython.display import display

    text = w.HTML(
        f"<b>Parameters:</b> {_esc(source)} "
        f"<span style='color:var(--jp-ui-font-color2)'>(chosen in {_esc(_home(choice_path()))}, "
        "for every notebook of this JupyterLab)</span>"
    )
    text.layout = w.Layout(flex="1 1 auto", width="auto")
    change = w.Button(
        description="Change…", icon="pencil", layout=w.Layout(width="auto", min_width="110px")
    )
    box = w.VBox([w.HBox([text, change], layout=w.Layout(align_items="center"))])

    def open_form(_: Any) -> None:
        change.disabled = True
        box.children = (
            *box.children,
            Form(values, load_choice().get("parameters_file"), on_chosen).widget,
        )

    change.on_click(open_form)
    display(box)


# -- the form ------------------------------------------------------------------------------
class Form:
    """The parameters as widgets: one row per field, grouped in tabs by section."""

    def __init__(
        self,
        values: Mapping[str, Any],
        parameters_file: str | None = None,
        on_chosen: Callable[[params_mod.Params], None] | None = None,
    ):
        import ipywidgets as w

        self._w = w
        self.on_chosen = on_chosen
        self.docs = field_docs()
        self.file = parameters_file
        self.file_values: dict[str, Any] = {}
        if parameters_file:
            try:
                self.file_values = params_mod.read_yaml(parameters_file)
            except ParameterError:
                self.file = None
        self.inputs: dict[str, Any] = {}
        self.passwords: dict[str, Any] = {}
        self.errors: dict[str, Any] = {}
        self.tabs_of: dict[str, int] = {}
        self.status = w.HTML()
        self.widget = self._build()
        self.fill({**self.file_values, **dict(values)})

    # -- building ------------------------------------------------------------------------
    def _build(self):  # noqa: ANN202
        w = self._w
        head = w.HTML(
            "<h3 style='margin:0'>Parameters for this JupyterLab</h3>"
            "<div style='color:var(--jp-ui-font-color1)'>Load a parameters file, or fill in "
            "the fields (<b>*</b> required). The choice is saved for every notebook; the "
            "notebook's own parameters cell still overrides it. Secrets are references "
            "(<code>env:NAME</code>, <code>file:PATH</code>, <code>prompt</code>) or typed in a "
            "password field: a typed password stays in this kernel's memory only.</div>"
        )
        self.file_box = w.Combobox(
            placeholder="../parameters/my-host.yaml",
            options=_parameter_files(),
            ensure_option=False,
            layout=w.Layout(width="360px"),
        )
        self.file_box.add_class("runbook-file")
        load = w.Button(description="Load file", icon="folder-open", layout=w.Layout(width="auto"))
        load.add_class("runbook-load")
        load.on_click(lambda _: self.load_file(self.file_box.value))
        file_row = w.HBox([_label(w, "Parameters file"), self.file_box, load])

        sections: dict[str, list] = {}
        for name, field in params_mod.Params.model_fields.items():
            section, doc = self.docs.get(name, ("Other", ""))
            short = section.split(" (")[0]
            section = _TAB.get(short, short or "Other")
            sections.setdefault(section, []).append(self._row(name, field.annotation, doc))
            self.tabs_of[name] = list(sections).index(section)
        self.tab = w.Tab(children=[w.VBox(rows) for rows in sections.values()])
        self.tab_titles = list(sections)
        self.tab.titles = tuple(self.tab_titles)

        use = w.Button(
            description="Use these parameters",
            button_style="primary",
            icon="check",
            layout=w.Layout(width="auto"),
        )
        use.add_class("runbook-use")
        use.on_click(lambda _: self.accept())
        box = w.VBox(
            [head, file_row, self.tab, w.HBox([use, self.status])],
            layout=w.Layout(border="1px solid var(--jp-border-color1)", padding="8px"),
        )
        box.add_class("runbook-form")
        return box

    def _row(self, name: str, annotation: Any, doc: str):  # noqa: ANN202
        w = self._w
        kind = _kind(annotation)
        width = w.Layout(width="320px")
        if kind == "bool":
            widget = w.Checkbox(indent=False, layout=width)
        elif kind == "choice":
            widget = w.Dropdown(options=list(typing.get_args(annotation)), layout=width)
        elif kind == "int":
            widget = w.IntText(layout=width)
        elif kind == "float":
            widget = w.FloatText(layout=width)
        elif kind == "users":
            widget = w.Textarea(
                placeholder="admin: env:REGISTRY_PASSWORD\n(one user a line)",
                layout=w.Layout(width="320px", height="60px"),
            )
        elif kind == "yaml":
            widget = w.Textarea(
                placeholder="- {address: 192.0.2.11}\n- {address: 192.0.2.12, role: manager}",
                layout=w.Layout(width="320px", height="60px"),
            )
        else:
            placeholder = {"secret": "env:NAME, file:PATH or prompt", "list": "a, b"}
            widget = w.Text(placeholder=placeholder.get(kind, ""), layout=width)
        widget.add_class(f"runbook-field-{name}")
        self.inputs[name] = widget
        parts = [widget]
        if kind == "secret":
            pw = w.Password(placeholder="or type it", layout=w.Layout(width="160px"))
            pw.add_class(f"runbook-password-{name}")
            self.passwords[name] = pw
            widget.layout.width = "156px"
            parts.append(pw)
        required = name in REQUIRED
        label = _label(w, f"{name} *" if required else name, bold=required)
        help_ = w.HTML(
            f"<span style='color:var(--jp-ui-font-color2);font-size:var(--jp-ui-font-size0)'>"
            f"{_esc(doc)}</span>",
            layout=w.Layout(flex="1 1 auto", width="auto"),
        )
        error = w.HTML(layout=w.Layout(margin="0 0 0 210px"))
        error.add_class(f"runbook-error-{name}")
        self.errors[name] = error
        row = w.HBox([label, *parts, help_], layout=w.Layout(align_items="center"))
        return w.VBox([row, error])

    # -- values ------------------------------------------------------------------------
    def fill(self, values: Mapping[str, Any]) -> None:
        """Put values (a parameters file's, the saved choice's) into the fields."""
        for name, field in params_mod.Params.model_fields.items():
            default = None if field.is_required() else field.get_default(call_default_factory=True)
            value = values.get(name, default)
            widget, kind = self.inputs[name], _kind(field.annotation)
            if isinstance(value, Secret):
                value = value.ref
            if kind == "users":
                value = "\n".join(
                    f"{u}: {r.ref if isinstance(r, Secret) else r}"
                    for u, r in (value or {}).items()
                )
            elif kind == "list":
                value = ", ".join(map(str, value or []))
            elif kind == "yaml":
                value = _yaml_text(value)
            elif kind in ("secret", "text"):
                value = "" if value is None else str(value)
            try:
                widget.value = value
            except Exception:  # noqa: BLE001 (a value of the wrong type: shown as text below)
                self.errors[name].value = _error_html(f"cannot show {value!r} here")

    def values(self) -> dict[str, Any]:
        """The fields as parameter values (typed passwords as in-memory secrets)."""
        out: dict[str, Any] = {}
        for name, field in params_mod.Params.model_fields.items():
            kind, raw = _kind(field.annotation), self.inputs[name].value
            if kind == "users":
                users = {}
                for line in str(raw).splitlines():
                    if line.strip():
                        user, _, ref = line.partition(":")
                        users[user.strip()] = ref.strip()
                raw = users
            elif kind == "list":
                raw = [x.strip() for x in str(raw).split(",") if x.strip()]
            elif kind == "yaml":
                try:
                    raw = yaml.safe_load(str(raw)) or []
                except yaml.YAMLError as exc:
                    raw = f"<not YAML: {str(exc).splitlines()[0]}>"  # refused by the model
            elif kind in ("secret", "text"):
                raw = str(raw).strip() or None
            if name in self.passwords and self.passwords[name].value:
                raw = _typed(name, self.passwords[name].value)
            if raw in (None, {}) and field.is_required():
                continue  # missing: said as "required", not as a wrong type
            out[name] = raw
        return out

    def load_file(self, path: str) -> None:
        path = path.strip()
        self.file_box.add_class("runbook-loaded")
        try:
            data = params_mod.read_yaml(path)
        except ParameterError as exc:
            self.status.value = _error_html(str(exc))
            return
        self.file, self.file_values = str(Path(path).resolve()), data
        self.fill(data)
        if self.check_and_show() is not None:
            self.status.value = (
                f"Loaded {_esc(path)}: valid. Check the fields, then press "
                "<b>Use these parameters</b>."
            )

    # -- checking and accepting ----------------------------------------------------------
    def check(self) -> tuple[params_mod.Params | None, dict[str, str]]:
        """Validate the fields: the parameters, or a problem for each field that has one."""
        values = self.values()
        problems: dict[str, str] = {}
        try:
            p = params_mod.Params(**values)
        except ValidationError as exc:
            p = None
            for err in exc.errors():
                top = str(err["loc"][0]) if err["loc"] else "host"
                cause = (err.get("ctx") or {}).get("error")
                msg = cause.problem if isinstance(cause, ParameterError) else err["msg"]
                msg = str(msg).removeprefix("Value error, ")
                if err["type"] == "missing":
                    msg = "required"
                example = params_mod.EXAMPLES.get(top)
                problems.setdefault(top, f"{msg} (for example: {example})" if example else msg)
        except ParameterError as exc:
            p = None
            problems[exc.name.split(".")[0]] = exc.problem
        if not values.get("registry_users"):  # checked by the model only once all else is right
            problems.setdefault(
                "registry_users",
                "required: at least one user (for example: admin: env:REGISTRY_PASSWORD)",
            )
        for name in (*params_mod.SECRET_FIELDS, "registry_users"):  # resolvable here?
            value = values.get(name)
            refs = list(value.values()) if isinstance(value, Mapping) else [value]
            for ref in refs:
                if name in problems or not isinstance(ref, str) or ref == "prompt":
                    continue  # unset, typed, asked for when needed, or already wrong
                try:
                    Secret(ref, parameter=name).reveal()
                except RunbookError as exc:
                    problems[name] = str(exc).split(": ", 1)[-1]
        return (p if not problems else None), problems

    def show(self, problem: ParameterError | None = None) -> None:
        from IPython.display import display

        display(self.widget)
        if problem is not None and any(self.inputs[n].value not in ("", None) for n in REQUIRED):
            self.check_and_show()

    def check_and_show(self) -> params_mod.Params | None:
        p, problems = self.check()
        for name, error in self.errors.items():
            error.value = _error_html(problems[name]) if name in problems else ""
        titles = list(self.tab_titles)
        for name in problems:
            i = self.tabs_of[name]
            titles[i] = f"⚠ {self.tab_titles[i]}"
        self.tab.titles = tuple(titles)
        if problems:
            self.status.value = _error_html(
                f"{len(problems)} problem(s): {', '.join(sorted(problems))}"
            )
        return p

    def accept(self) -> params_mod.Params | None:
        p = self.check_and_show()
        if p is None:
            return None
        # Saved: the file, and what the fields change from it (or from the defaults).
        values, base = _plain(self.values()), _plain({**_defaults(), **self.file_values})
        changed = {k: v for k, v in values.items() if v != base.get(k)}
        path = save_choice(self.file, changed)
        for pw in self.passwords.values():
            pw.value = ""  # out of the widget's state: it lives in _TYPED now
        # Outputs of a widget's callback have no cell to go to: the form itself turns into
        # the confirmation, and its fields are closed (their state leaves the front end).
        old = self.widget.children
        self.widget.children = (
            self._w.HTML(
                f"<b>Parameters saved</b> in {_esc(_home(path))}: they serve every notebook of "
                "this JupyterLab. <code>rb</code> is ready: run the cells below."
            ),
        )
        self.widget.add_class("runbook-saved")
        for child in old:
            _close_all(child)
        if self.on_chosen is not None:
            self.on_chosen(p)
        return p


# -- small helpers ---------------------------------------------------------------------------
def _defaults() -> dict[str, Any]:
    return {
        name: None if f.is_required() else f.get_default(call_default_factory=True)
        for name, f in params_mod.Params.model_fields.items()
    }


def _kind(annotation: Any) -> str:
    args = typing.get_args(annotation)
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if typing.get_origin(annotation) is typing.Literal:
        return "choice"
    if typing.get_origin(annotation) is dict:
        return "users"
    if Secret in args:
        return "secret"
    if typing.get_origin(annotation) is list:
        # A list of records (the swarm's nodes) is written as YAML.
        return (
            "yaml"
            if args and isinstance(args[0], type) and issubclass(args[0], BaseModel)
            else "list"
        )
    return "text"


def _yaml_text(value: Any) -> str:
    """Records as a YAML list, secrets by their reference, one record a line."""
    rows = []
    for item in value or []:
        if isinstance(item, BaseModel):
            item = item.model_dump(exclude_defaults=True)
        item = {k: v.ref if isinstance(v, Secret) else v for k, v in dict(item).items()}
        flow = yaml.safe_dump(item, default_flow_style=True, sort_keys=False, width=1 << 20)
        rows.append(f"- {flow.strip()}")
    return "\n".join(rows)


def _close_all(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close_all(child)
    widget.close()


def _typed(name: str, value: str) -> Secret:
    secret = Secret("prompt", parameter=name)
    secret._value = value  # resolved: typed by the person at the notebook
    _TYPED[name] = secret
    return secret


def _parameter_files() -> list[str]:
    found = []
    for folder in (Path("parameters"), Path("../parameters")):
        if folder.is_dir():
            found += [str(p) for p in sorted(folder.glob("*.yaml"))]
    return found


def _label(w, text: str, bold: bool = False):  # noqa: ANN001, ANN202
    style = "font-weight:bold" if bold else ""
    return w.HTML(
        f"<span style='{style};font-family:var(--jp-code-font-family)'>{_esc(text)}</span>",
        layout=w.Layout(width="200px", min_width="200px"),
    )


def _error_html(text: str) -> str:
    return f"<span style='color:var(--jp-error-color1)'>{_esc(text)}</span>"


def _esc(text: str) -> str:
    import html

    return html.escape(str(text))


def _short_path(path: str) -> str:
    """A path as the operator reads it best: relative to the notebook's folder when short."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # pragma: no cover
        rel = path
    return rel if rel.count("..") <= 1 and len(rel) < len(path) else _home(Path(path))


def _home(path: Path) -> str:
    home = os.path.expanduser("~")
    s = str(path)
    return "~" + s[len(home) :] if s.startswith(home + "/") else s
