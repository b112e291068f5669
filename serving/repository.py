"""Which models this server holds, their load state and the V2 repository extension's operations."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from serving import mlserver_settings
from serving.errors import (
    ArtifactError,
    ModelFailure,
    ModelNotFound,
    ModelNotReady,
    ServingError,
    existing_names,
    public_text,
    scrubbed,
    statistics_hint,
)
from serving.runtimes import Runtime, find_artifacts, runtime_class
from serving.runtimes.base import ModelMetadata
from serving.settings import ModelSettings

log = logging.getLogger("serving.repository")


class ModelState(StrEnum):
    LOADING = "LOADING"
    READY = "READY"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(slots=True)
class Model:
    """One loaded (or loading, or failed) model. A reload puts a new `Model` in the repository; requests that
    already hold the old one finish on it, counted in `calls` (the data plane's `enter`/`leave`)."""

    settings: ModelSettings
    state: ModelState = ModelState.UNAVAILABLE
    reason: str = ""
    runtime: Runtime | None = None
    meta: ModelMetadata | None = None
    load_seconds: float = 0.0
    load_failed: bool = (
        False  # its last load failed: it stays unavailable until someone acts (no Retry-After)
    )
    calls: int = field(default=0, repr=False, compare=False)
    _idle: asyncio.Event | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def ready(self) -> bool:
        return self.state is ModelState.READY

    def enter(self) -> None:
        """A request holds this model from admission until its answer (or failure)."""
        self.calls += 1

    def leave(self) -> None:
        self.calls -= 1
        if not self.calls and self._idle is not None:
            self._idle.set()

    async def idle(self) -> None:
        """Once no request holds this model (on the event loop that serves it)."""
        while self.calls:
            self._idle = asyncio.Event()
            await self._idle.wait()


def _triton_hint(model_dir: Path) -> str:
    """A Triton model repository (MODEL/config.pbtxt beside numbered version folders) is not read as one here:
    say where its model file is, so the storageUri can point at it."""
    configs = sorted(model_dir.glob("*/config.pbtxt")) + sorted(model_dir.glob("config.pbtxt"))
    if not configs:
        return ""
    model = configs[0].parent
    versions = sorted(
        (v for v in model.iterdir() if v.is_dir() and v.name.isdigit()), key=lambda v: int(v.name)
    )
    where = f" (its model file is in {versions[-1]}: point storageUri there)" if versions else ""
    return (
        f"; {configs[0].relative_to(model_dir.parent)} is a Triton model repository layout, which is not read "
        f"here{where}"
    )


def discover(
    model_dir: Path, name: str | None = None, template: ModelSettings | None = None
) -> list[ModelSettings]:
    """One model if `model_dir` holds an artifact (or a custom runtime is named), else one per sub-folder. A
    `name` given for a folder whose only model is in one sub-folder (KServe's storageUris example: the model at
    /mnt/models/model, a preprocessor beside it) is that model's: the service's name is the one served."""
    model_dir = model_dir.resolve()
    base = template or ModelSettings(name="", model_dir=model_dir)
    custom = base.runtime is not None and ":" in base.runtime
    if find_artifacts(model_dir) or custom or mlserver_settings.has_settings(model_dir):
        one = replace(base, name=name or model_dir.name, model_dir=model_dir)
        return [mlserver_settings.applied(one, named=name is not None)]
    if not model_dir.is_dir():
        raise ArtifactError(f"model directory {model_dir} does not exist")
    found = [
        mlserver_settings.applied(replace(base, name=sub.name, model_dir=sub), named=False)
        for sub in sorted(model_dir.iterdir())
        if sub.is_dir() and not sub.name.startswith(".") and _holds_model(sub)
    ]
    if not found:
        raise ArtifactError(
            f"{model_dir} holds no model file and no sub-folder with one{_triton_hint(model_dir)}"
        )
    if name is not None and len(found) == 1:
        (only,) = found
        named = replace(base, name=name, model_dir=only.model_dir)
        return [mlserver_settings.applied(named, named=True)]
    return found


def _holds_model(folder: Path) -> bool:
    return bool(find_artifacts(folder)) or mlserver_settings.has_settings(folder)


NOT_LOADED = (
    "not loaded"  # an index entry's reason: a model in the repository that `load` has not been asked for
)


class ModelRepository:
    """Holds models by name; loading runs in a thread so the server stays live meanwhile."""

    def __init__(self, models: list[ModelSettings], search_root: Path | None = None) -> None:
        self._models: dict[str, Model] = {m.name: Model(m) for m in models}
        self._search_root = search_root
        self._template = models[0] if models else None
        self.on_change: list[Callable[[Model], None]] = []  # callbacks(model) after a state change (metrics)
        self._locks: dict[str, asyncio.Lock] = {}  # one load/unload of a name at a time
        self._retiring: set[asyncio.Task[None]] = set()  # old runtimes of reloaded models, released when idle
        # Names the repository API unloaded, or asked to load and saw fail: not part of server readiness (as
        # Triton's and KServe's: an operator's unload must not take every other model out of service)
        self._set_aside: set[str] = set()

    def names(self) -> list[str]:
        return list(self._models)

    def models(self) -> list[Model]:
        return list(self._models.values())

    def get(self, name: str, version: str | None = None) -> Model:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(
                f"model {name!r} not found{statistics_hint(name)}" + existing_names(list(self._models))
            )
        if version is not None and version != model.settings.version:
            raise ModelNotFound(
                f"model {name!r} has no version {version!r} (it has {model.settings.version!r})"
            )
        return model

    def ready_model(self, name: str, version: str | None = None) -> Model:
        model = self.get(name, version)
        if model.state is not ModelState.READY:
            detail = f": {model.reason}" if model.reason else ""
            message = f"model {name!r} is not ready ({model.state.value.lower()}){detail}"
            if model.load_failed:  # no use coming back in a second: it stays so until someone acts
                raise ModelNotReady(message, headers={})
            raise ModelNotReady(message)
        return model

    def all_ready(self) -> bool:
        """Server readiness: every model found at start is ready, bar those the repository API set aside."""
        return bool(self._models) and all(m.ready or m.name in self._set_aside for m in self._models.values())

    async def load_all(self) -> None:
        await asyncio.gather(*(self.load(name) for name in list(self._models)))

    async def load(self, name: str, requested: bool = False) -> Model:
        """Load a model, or reload it if it is ready (Triton's repository `load`): the new one is swapped in
        once loaded, so requests never see it not ready; if its load fails the loaded one keeps serving and
        the failure is raised (ModelFailure), as the caller of `load` must hear of it. `requested`: the
        repository API asked: a new folder that fails is the caller's answer, not the server's readiness."""
        if name not in self._models:
            self._adopt(name)
            if requested:  # new here: until it loads, not part of readiness (an unloaded one stays aside)
                self._set_aside.add(name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            model = self._models[name]  # a reload while this call waited replaced it
            if model.state is ModelState.READY:
                return await self._reload(model)
            model.state, model.reason, model.load_failed = ModelState.LOADING, "", False
            self._changed(model)
            started = time.monotonic()
            try:
                runtime, meta = await asyncio.to_thread(_load_runtime, model.settings)
            except Exception as exc:  # a broken model must not take the server down
                model.state, model.load_failed = ModelState.UNAVAILABLE, True
                # The reason reaches clients (503s, the repository index): no server path; the log has it.
                model.reason = f"failed to load model {name!r}: {_describe(exc)}"
                log.error("model %s failed to load from %s: %s", name, model.settings.model_dir, exc)
            else:
                model.runtime, model.meta = runtime, meta
                model.state, model.reason = ModelState.READY, ""
                model.load_seconds = time.monotonic() - started
                self._set_aside.discard(name)
                log.info("model %s ready in %.2fs", name, model.load_seconds)
            self._changed(model)
            return model

    async def _reload(self, old: Model) -> Model:
        """Load a second copy from the model's folder, then swap it in at once: requests admitted before
        finish on `old`, whose runtime is released when the last of them is done."""
        name = old.name
        log.info("reloading model %s", name)
        started = time.monotonic()
        try:
            runtime, meta = await asyncio.to_thread(_load_runtime, old.settings)
        except Exception as exc:
            message = (
                f"failed to reload model {name!r}: {_describe(exc)}; the model loaded before still serves"
            )
            log.error("%s", message)
            raise ModelFailure(message) from None
        new = Model(old.settings, ModelState.READY, "", runtime, meta, time.monotonic() - started)
        self._models[name] = new
        log.info("model %s reloaded in %.2fs", name, new.load_seconds)
        self._changed(new)
        task = asyncio.get_running_loop().create_task(_retire(old), name=f"retire-{name}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return new

    async def unload(self, name: str) -> None:
        self.get(name)
        async with self._locks.setdefault(name, asyncio.Lock()):
            model = self.get(name)
            runtime, model.runtime, model.meta = model.runtime, None, None
            model.state, model.reason = ModelState.UNAVAILABLE, "unloaded"
            self._set_aside.add(name)
            self._changed(model)
            if runtime is not None:
                await asyncio.to_thread(_release, runtime)

    def index(self, ready_only: bool | None = None) -> list[dict[str, str]]:
        """The repository extension's index: every model known, and every sub-folder of the search root with a
        model not loaded yet (which `load` would adopt: clients find what they can load), as Triton lists them."""
        entries = [
            {"name": m.name, "version": m.settings.version, "state": m.state.value, "reason": m.reason}
            for m in self._models.values()
            if m.ready or not ready_only
        ]
        if ready_only or self._search_root is None or not self._search_root.is_dir():
            return entries
        served = {
            m.settings.model_dir.resolve() for m in self._models.values()
        }  # one may be served by another name
        for folder in sorted(self._search_root.iterdir()):
            name = folder.name
            fresh = name not in self._models and not name.startswith(".") and folder.resolve() not in served
            if fresh and folder.is_dir() and _holds_model(folder):
                entries.append(
                    {"name": name, "version": "", "state": ModelState.UNAVAILABLE.value, "reason": NOT_LOADED}
                )
        return entries

    def _adopt(self, name: str) -> Model:
        """Repository `load` of a model not yet known: a sub-folder of the search root."""
        if self._search_root is None or "/" in name or name in {"", ".", ".."}:
            raise ModelNotFound(f"model {name!r} not found")
        folder = self._search_root / name
        if not _holds_model(folder):
            known = ", ".join(sorted(self._models)) or "none"
            raise ModelNotFound(  # no server path in an answer; the log line of the start names the folder
                f"model {name!r} not found: no folder {name!r} with a model in the repository (known: {known})"
            )
        template = self._template or ModelSettings(name=name, model_dir=folder)
        model = Model(mlserver_settings.applied(replace(template, name=name, model_dir=folder), named=True))
        self._models[name] = model
        return model

    def _changed(self, model: Model) -> None:
        for callback in self.on_change:
            callback(model)


async def _retire(model: Model) -> None:
    """A reloaded model's old copy: released once no request holds it any more."""
    await model.idle()
    runtime, model.runtime, model.meta = model.runtime, None, None
    model.state, model.reason = ModelState.UNAVAILABLE, "replaced by a reload"
    if runtime is not None:
        await asyncio.to_thread(_release, runtime)
        log.info("previous copy of model %s released", model.name)


def _release(runtime: Runtime) -> None:
    """Unload, then collect cycles: an error's traceback can still hold a frame that holds the session, and
    an unload should free the model's memory and native threads now, not at the next full GC."""
    runtime.unload()
    del runtime
    gc.collect()


def _load_runtime(settings: ModelSettings) -> tuple[Runtime, ModelMetadata]:
    refused = settings.extra.get(mlserver_settings.ERROR_KEY)
    if refused:
        raise ArtifactError(refused)
    runtime = runtime_class(settings.runtime, settings.model_dir, settings.artifact)(settings)
    runtime.load()
    return runtime, mlserver_settings.declared_metadata(settings, runtime.metadata())


def _describe(exc: BaseException) -> str:
    """What a client may read of a load failure (`errors.public_text`: no server path, no native trace)."""
    if isinstance(exc, ServingError):
        return scrubbed(exc.message)
    return public_text(exc)
