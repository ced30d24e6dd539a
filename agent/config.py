"""One settings object, layered: defaults < the user's config file < the repository's mendloop.toml /
[tool.mendloop] < MENDLOOP_* env < command-line flags.

Why one object: every front door (solve, fix, batch, demo) takes the same model, sandbox and budget options, and a
run's settings are written into its checkpoint so that ``--resume`` continues with exactly what was asked.

Why the repository's layer is filtered: the repository is what is being repaired, and it is not trusted (see
SECURITY.md). It may say what a repair needs - the test command, setup, image, budgets, editable paths - but not
what weakens the sandbox or sends the user's credentials elsewhere: ``sandbox = "local"``, ``network``,
``pass_env``, ``base_url``, ``api_key``, ``extra_body``, raised resource limits, a Dockerfile outside the
repository, ``protect_tests = false``, and anything this module does not know to be harmless (:func:`repo_refusals`).
Those are dropped with one warning line unless the user trusts the repository's config: ``--trust-repo-config``,
``MENDLOOP_TRUST_REPO_CONFIG=1``, or ``trust_repo_config = true`` in the user's own config file
(``$XDG_CONFIG_HOME/mendloop/config.toml``, by default ``~/.config/mendloop/config.toml``), whose settings are the
user's and apply without question.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sandboxes.base import Limits, SandboxSpec
from tools.errors import FatalError

DEFAULT_MODEL = "facebook/cwm"
DEFAULT_TEST_CMD = "python -m pytest -q"
DEFAULT_IMAGE = "python:3.12-slim"


class ConfigError(FatalError):
    """A bad setting: a one-line message naming the key and where it came from."""


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a model endpoint (``None`` when it can): http or https, a host, a valid port.

    Why up front: a typo such as ``notaurl`` or ``http://[::1`` otherwise fails only at the first model call, after
    the sandbox and the baseline tests have run, and as an internal error. The message never repeats a password.
    """
    shown = re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", url)  # user:password@ -> user:***@
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        return f"{shown!r} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return f"{shown!r} is not an http(s) URL (expected e.g. http://localhost:8000/v1)"
    if not parts.hostname:
        return f"{shown!r} names no host (expected e.g. http://localhost:8000/v1)"
    return None


class Settings(BaseModel):
    """Every knob mendloop has. Field names are the config keys (``mendloop.toml``) and the env suffixes."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- model endpoint -------------------------------------------------------------------------------------
    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = DEFAULT_MODEL
    dialect: Literal["cwm", "openai", "auto"] = "cwm"
    # temperature and top_p not set by the user take the dialect's (DIALECT_SAMPLING); they are not "set" then
    temperature: float = 0.6
    top_p: float = 0.95
    reasoning: Literal["on", "off"] | None = None  # None: the dialect's way (CWM reasons; others are not told)
    max_completion_tokens: int = 4096
    context_tokens: int | None = None  # the endpoint's context window; None = ask the server (or learn from a refusal)
    request_timeout: float = 600.0
    max_retries: int = 4
    extra_body: dict[str, Any] = Field(default_factory=dict)

    # --- budgets (checked before every model call) ------------------------------------------------------------
    max_iterations: int = 4
    max_model_calls: int | None = None
    max_total_tokens: int | None = None
    max_wall_time: float | None = None
    max_cost: float | None = None
    price_prompt: float | None = None  # USD per million prompt tokens
    price_completion: float | None = None  # USD per million completion tokens

    # --- the repair ---------------------------------------------------------------------------------------------
    test_cmd: str = DEFAULT_TEST_CMD
    lint_cmds: list[str] = Field(default_factory=list)
    reproduce: bool = True
    reproduce_attempts: int = 2
    traces: bool = True
    # a trace steps into the project functions the traced one calls, this many calls deep (0: a call is one line);
    # CWM's debugger demo steps into calls - deeper traces show more of the cause and cost more of the context
    trace_step_into: int = Field(default=0, ge=0, le=5)
    candidates: int = 1
    generated_tests: int = 1  # independently sampled reproduction tests (CWM's test-time scaling with candidates)
    tuning: Literal["auto", "manual"] = "auto"  # auto: a small local model gets SMALL_MODEL_PROFILE (see tuned())
    history: Literal["auto", "fresh", "conversation"] = "auto"  # how later rounds are asked (see nodes/common.py)
    # the conversation as CWM was trained (one tool per step, format errors as its environment gave them), or
    # several tools per answer as other models like it; only the cwm dialect reads it (see nodes/converse.py)
    protocol: Literal["strict", "permissive"] = "strict"
    max_turns: int | None = None  # model turns over the whole conversation; None: max_iterations x turns per round
    submit_review: bool = False  # after a submission, show the model its patch to review (CWM's post-submit step)
    sample_temperature: float = 0.8  # the temperature of K > 1 samples
    retry_temperatures: list[float] = Field(default_factory=lambda: [0.7, 1.0])  # re-asks after an unusable answer
    keep_tests: bool = False
    protect_tests: bool = True
    editable: list[str] = Field(default_factory=list)  # globs the model may edit; empty = anything but protected

    # --- sandbox ------------------------------------------------------------------------------------------------
    sandbox: Literal["auto", "docker", "bwrap", "local"] = "auto"
    image: str = DEFAULT_IMAGE
    dockerfile: str | None = None
    setup: list[str] = Field(default_factory=list)
    network: bool = False
    memory_mb: int = 2048
    cpus: float = 1.0
    pids: int = 256
    command_timeout: float = 120.0
    output_bytes: int = 200_000  # output kept per command (head and tail); it goes to the model and the state
    pass_env: list[str] = Field(default_factory=list)

    # --- trust --------------------------------------------------------------------------------------------------
    trust_repo_config: bool = False  # let the repository's own config weaken isolation (see the module docstring)

    # --- runaway limits (hit: an observation to the model, never the end of the run) ---------------------------
    max_file_size: ByteSize = ByteSize(1 << 30)  # one file written in the workspace ("1GiB", "500MB", bytes)
    max_workspace_growth: ByteSize = ByteSize(4 << 30)  # all that sandboxed commands add to the workspace
    max_answer_chars: int = 200_000  # one model answer, cut before it is stored or sent again
    max_history_chars: int = 600_000  # a conversation sent again, when the endpoint's context window is unknown

    @field_validator("max_iterations", "candidates", "max_model_calls", "max_total_tokens", "memory_mb", "pids")
    @classmethod
    def _at_least_one(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise PydanticCustomError("too_small", "must be at least 1 (got {got})", {"got": value})
        return value

    @field_validator(
        "command_timeout", "request_timeout", "max_wall_time", "max_cost", "cpus", "max_file_size",
        "max_workspace_growth", "max_answer_chars", "max_history_chars", "output_bytes",
    )  # fmt: skip
    @classmethod
    def _positive(cls, value: float | None) -> float | None:
        if value is not None and not value > 0:  # "not >": NaN is refused too
            raise PydanticCustomError("not_positive", "must be greater than 0 (got {got})", {"got": value})
        return value

    @field_validator("max_retries", "reproduce_attempts")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise PydanticCustomError("negative", "must not be negative (got {got})", {"got": value})
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        problem = _url_problem(value) if value else None
        if problem:
            raise PydanticCustomError("url", "{problem}", {"problem": problem})
        return value

    @model_validator(mode="after")
    def _per_dialect(self) -> Settings:
        return with_dialect_defaults(self)

    def sandbox_spec(self) -> SandboxSpec:
        """The sandbox request these settings describe; host env vars pass in only when named."""
        env = {name: os.environ[name] for name in self.pass_env if name in os.environ}
        limits = Limits(
            timeout=self.command_timeout,
            memory_mb=self.memory_mb,
            pids=self.pids,
            cpus=self.cpus,
            output_bytes=self.output_bytes,
            network=self.network,
            env=env,
            max_file_bytes=int(self.max_file_size),
            max_growth_bytes=int(self.max_workspace_growth),
        )
        return SandboxSpec(
            kind=self.sandbox, image=self.image, dockerfile=self.dockerfile, setup=tuple(self.setup), limits=limits
        )

    def public_dict(self) -> dict[str, Any]:
        """The settings with the secret removed: safe for reports, checkpoints and logs."""
        data = self.model_dump(mode="json")
        data["api_key"] = None
        return data


def dialect_of(dialect: str, model: str) -> str:
    """The dialect ``auto`` stands for: cwm when the model's name says cwm, else openai."""
    if dialect == "auto":
        return "cwm" if "cwm" in model.lower() else "openai"
    return dialect


DIALECT_SAMPLING: dict[str, dict[str, float]] = {
    # Meta's own evaluations of CWM sample at T=1.0, top_p=0.95 (facebookresearch/cwm; docs/CWM.md)
    "cwm": {"temperature": 1.0, "top_p": 0.95},
    "openai": {"temperature": 0.6, "top_p": 0.95},
}


def reasoning_kwargs(settings: Settings) -> dict[str, Any] | None:
    """What the request says about reasoning, the way vLLM's chat templates read it (``chat_template_kwargs``):
    ``--reasoning on`` (CWM's default) asks for thinking and keeps earlier turns' thinking in the prompt; ``off``
    says so; unset for a dialect without a default (openai) says nothing - a server that knows no such argument
    is never sent one."""
    choice = settings.reasoning or ("on" if dialect_of(settings.dialect, settings.model) == "cwm" else None)
    if choice == "on":
        return {"enable_thinking": True, "preserve_previous_think": True}
    if choice == "off":
        return {"enable_thinking": False}
    return None


def request_extra_body(settings: Settings) -> dict[str, Any]:
    """What a chat request adds to its body: the user's ``extra_body`` as given, and the dialect's reasoning switch
    (:func:`reasoning_kwargs`) unless the user's own ``extra_body`` sets ``chat_template_kwargs``. Why at request
    time and not in the settings: ``extra_body`` is the user's field (one a repository may not set, see the module
    docstring), so a default never goes into it, and what a checkpoint keeps is what the user said."""
    body = dict(settings.extra_body)
    kwargs = reasoning_kwargs(settings)
    if kwargs is not None and "chat_template_kwargs" not in body:
        body["chat_template_kwargs"] = kwargs
    return body


def with_dialect_defaults(settings: Settings) -> Settings:
    """Fill what the dialect decides and the user did not: temperature and top_p (the reasoning switch is added to
    each request, :func:`request_extra_body`). Why written past validation (``__dict__``): a value chosen here is a
    default, so it must not join ``model_fields_set`` - ``tuned`` gives a small model its profile for every knob the
    user did not set, and a dialect default is not the user's. Runs again whenever the dialect may have changed
    (``tuned``)."""
    given = settings.model_fields_set
    for key, value in DIALECT_SAMPLING[dialect_of(settings.dialect, settings.model)].items():
        if key not in given:
            settings.__dict__[key] = value
    return settings


SMALL_MODEL_LIMIT = 8_000_000_000  # parameters: below this, a local model gets the small-model profile
SMALL_MODEL_PROFILE: dict[str, Any] = {
    # measured best for the default local model (Qwen2.5-Coder-1.5B on 2 cores): bench/RESULTS.md, "Repair rate"
    "dialect": "openai",
    "history": "fresh",
    "max_completion_tokens": 768,
    "temperature": 0.2,
    "retry_temperatures": [0.7, 1.0],
    "max_iterations": 3,
    "candidates": 4,
    "sample_temperature": 0.8,
    "reproduce": False,
}


def tuned(settings: Settings, *, llama_cpp: bool, params: int | None, served: str = "") -> Settings:
    """With ``tuning = "auto"``, a small model behind llama.cpp's server gets ``SMALL_MODEL_PROFILE`` for every knob
    the user did not set (defaults only: a flag, an env var or a config file always wins). Other endpoints, a CWM
    model (``served``: what the server says it serves), and ``tuning = "manual"`` keep the settings as they are."""
    small = llama_cpp and params is not None and params < SMALL_MODEL_LIMIT and "cwm" not in served.lower()
    if settings.tuning != "auto" or not small:
        return settings
    chosen = {k: v for k, v in SMALL_MODEL_PROFILE.items() if k not in settings.model_fields_set}
    return with_dialect_defaults(settings.model_copy(update=chosen)) if chosen else settings


_ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "base_url": ("MENDLOOP_BASE_URL", "OPENAI_BASE_URL"),
    "api_key": ("MENDLOOP_API_KEY", "OPENAI_API_KEY"),
}


def file_config(repo: Path | None) -> dict[str, Any]:
    """Read ``mendloop.toml`` (top level) or ``[tool.mendloop]`` in ``pyproject.toml`` of ``repo``."""
    found = _repo_config(repo)
    return found[1] if found else {}


def _repo_config(repo: Path | None) -> tuple[Path, dict[str, Any]] | None:
    """The repository's config file and its settings, or ``None``."""
    if repo is None:
        return None
    for name, section in (("mendloop.toml", ()), ("pyproject.toml", ("tool", "mendloop"))):
        path = repo / name
        if not path.is_file():
            continue
        data: Any = _read_toml(path)
        for key in section:
            data = data.get(key, {}) if isinstance(data, dict) else {}
        if data:
            return path, {str(k).replace("-", "_"): v for k, v in dict(data).items()}
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None


def user_config_path(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CONFIG_HOME/mendloop/config.toml``, else ``$HOME/.config/mendloop/config.toml``; ``None`` without
    either variable (so that ``environ={}`` reads no file at all)."""
    if environ.get("XDG_CONFIG_HOME"):
        return Path(environ["XDG_CONFIG_HOME"]) / "mendloop" / "config.toml"
    if environ.get("HOME"):
        return Path(environ["HOME"]) / ".config" / "mendloop" / "config.toml"
    return None


def user_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """The user's own settings (top-level keys of their config file): trusted like their flags."""
    path = user_config_path(environ)
    if path is None or not path.is_file():
        return {}
    return {str(k).replace("-", "_"): v for k, v in _read_toml(path).items()}


# --- what a repository's own config may set ---------------------------------------------------------------------

# Settings a repository may set freely: what its repair needs, nothing that reaches past the sandbox.
REPO_MAY_SET = frozenset(
    {
        "model",
        "dialect",
        "temperature",
        "top_p",
        "max_completion_tokens",
        "context_tokens",
        "request_timeout",
        "max_retries",
        "max_iterations",
        "max_model_calls",
        "max_total_tokens",
        "max_wall_time",
        "max_cost",
        "test_cmd",
        "lint_cmds",
        "reproduce",
        "reproduce_attempts",
        "traces",
        "trace_step_into",
        "candidates",
        "history",
        "sample_temperature",
        "retry_temperatures",
        "keep_tests",
        "editable",
        "image",
        "setup",
        "command_timeout",
    }
)
# Limits of the sandbox a repository may lower but not raise.
REPO_MAY_LOWER = frozenset({"memory_mb", "pids", "cpus", "output_bytes"})
_SHOW_VALUE = frozenset({"sandbox", "network", "protect_tests", *REPO_MAY_LOWER})


def repo_refusals(layer: Mapping[str, Any], below: Mapping[str, Any]) -> list[str]:
    """The keys of a repository's config that weaken isolation or redirect credentials. ``below`` holds the layers
    under it (the user's config), against which a limit counts as raised.

    Safe by default: a key not known to be harmless (a setting added later, say) is refused too, and
    ``trust_repo_config`` always is (only the user can give trust).
    """
    return [key for key, value in layer.items() if key == "trust_repo_config" or not _repo_may(key, value, below)]


def _repo_may(key: str, value: Any, below: Mapping[str, Any]) -> bool:
    if key in REPO_MAY_SET:
        return True
    if key == "sandbox":
        return bool(value != "local")
    if key == "network":
        return value is False
    if key == "protect_tests":
        return value is True
    if key == "pass_env":
        return bool(value == [])
    if key == "dockerfile":
        path = PurePosixPath(str(value))
        return isinstance(value, str) and not path.is_absolute() and ".." not in path.parts
    if key in REPO_MAY_LOWER:
        limit = below.get(key, Settings.model_fields[key].default)
        return isinstance(value, int | float) and not isinstance(value, bool) and value <= limit
    return False


def _trusted(layers: list[Mapping[str, Any]]) -> bool:
    """Whether the user (their config, env or flags) trusts the repository's config; the last layer saying wins."""
    said = [layer["trust_repo_config"] for layer in layers if layer.get("trust_repo_config") is not None]
    if not said:
        return False
    try:
        return TypeAdapter(bool).validate_python(said[-1])
    except ValidationError:
        raise ConfigError(f"invalid setting trust_repo_config: {said[-1]!r} is not true or false") from None


def _stderr_warning(message: str) -> None:
    sys.stderr.write(f"mendloop: warning: {message}\n")
    sys.stderr.flush()


def _repo_layer(
    repo: Path | None, trusted: bool, below: Mapping[str, Any], warn: Callable[[str], None]
) -> dict[str, Any]:
    """The repository's settings, without the ones it may not set (said in one warning line) unless trusted."""
    found = _repo_config(repo)
    if found is None:
        return {}
    path, layer = found
    refused = repo_refusals(layer, below) if not trusted else [k for k in layer if k == "trust_repo_config"]
    if refused:
        shown = ", ".join(f"{k} = {layer[k]!r}" if k in _SHOW_VALUE else k for k in refused)
        warn(
            f"ignored in {path}: {shown} (a repository's config may not weaken the sandbox or redirect "
            "credentials; allow it with --trust-repo-config or in ~/.config/mendloop/config.toml)"
        )
    return {k: v for k, v in layer.items() if k not in refused}


def env_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """Settings from the environment: ``MENDLOOP_<FIELD>`` plus the OpenAI-style aliases."""
    out: dict[str, Any] = {}
    for field in Settings.model_fields:
        names = _ENV_ALIASES.get(field, (f"MENDLOOP_{field.upper()}",))
        for name in names:
            value = environ.get(name)
            if value:
                out[field] = value
                break
    for list_field in ("lint_cmds", "setup", "editable", "pass_env"):
        if isinstance(out.get(list_field), str):
            out[list_field] = [
                part for part in out[list_field].split(os.pathsep if list_field == "editable" else "\n") if part
            ]
    return out


def load_settings(
    repo: Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    warn: Callable[[str], None] | None = None,
) -> Settings:
    """Merge the layers; ``None`` flags mean "not given" and do not override lower layers.

    ``environ`` (default ``os.environ``) also locates the user's config file. What the repository's config may not
    set is dropped and said through ``warn`` (default: one line on stderr), unless the user trusts it.
    """
    env = os.environ if environ is None else environ
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    mine = user_config(env)
    from_env = env_config(env)
    trusted = _trusted([mine, from_env, given])
    merged: dict[str, Any] = {}
    merged.update(mine)
    merged.update(_repo_layer(repo, trusted, mine, warn or _stderr_warning))
    merged.update(from_env)
    merged.update(given)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        raise ConfigError(f"invalid setting {where}: {err['msg']}") from None
