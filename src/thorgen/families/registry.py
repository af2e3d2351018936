"""The registry: every endpoint id thorgen answers, collected from the families, plus aliases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from thorgen.errors import FalError
from thorgen.families import FAMILIES, missing_extra, tiny_builder
from thorgen.families.base import Endpoint, Family, TinyBuilder, WarmUp
from thorgen.models.installed import model_status
from thorgen.version import __version__

if TYPE_CHECKING:
    from thorgen.config import Config, ModelConfig
    from thorgen.models.loaders import LoadHook


class Registry:
    def __init__(self, config: Config, endpoints: Iterable[Endpoint] | None = None,
                 families: Sequence[Family] | None = None):
        self.config = config
        self.families = list(FAMILIES if families is None else families)
        chosen = endpoints if endpoints is not None else (e for f in self.families for e in f.endpoints)
        self._by_id = {endpoint.id: endpoint for endpoint in chosen}
        # Families' own aliases (the editor's ids a family answers) first; config.toml's win.
        self.aliases = {alias: target for f in self.families for alias, target in f.aliases.items()
                        if target in self._by_id}
        self.aliases.update(config.aliases)
        # Ids a family answers but can never serve here (a family's not_local: id -> why). They are
        # listed as unavailable, yet still take jobs, which fail with the family's own error: the
        # editor shows a failed item rather than nothing.
        self.not_local = {endpoint_id: why for f in self.families for endpoint_id, why in
                          f.not_local.items() if endpoint_id in self._by_id}
        for alias, target in self.aliases.items():
            if target not in self._by_id:
                raise ValueError(f"aliases.{alias}: target {target!r} is not an endpoint thorgen has")

    def load_hooks(self) -> dict[str, LoadHook]:
        """Each family's load hook, for the model runtime's loader."""
        return {family.name: family.load for family in self.families}

    def warm_ups(self) -> dict[str, WarmUp]:
        """The compile warm-up of each family that has one (the others' models cannot be compiled)."""
        return {family.name: family.warm_up for family in self.families if family.warm_up is not None}

    def tiny_builder(self, model: ModelConfig, config: Config) -> TinyBuilder | None:
        """The builder of a model's tiny version (the runtime writes them in tiny mode)."""
        return tiny_builder(model, config)

    def find(self, endpoint_id: str) -> Endpoint | None:
        endpoint_id = endpoint_id.strip("/")
        return self._by_id.get(endpoint_id) or self._by_id.get(self.aliases.get(endpoint_id, ""))

    def require(self, endpoint_id: str) -> Endpoint:
        """The endpoint for an id, ready to take a job, or a clear 4xx saying why not."""
        endpoint = self.find(endpoint_id)
        if endpoint is None:
            raise FalError(
                f"Endpoint '{endpoint_id}' is not served by this thorgen (see /endpoints for the list)",
                status=404,
                error_type="endpoint_not_found",
            )
        extra = self._missing_extra(endpoint, explain=True)
        if extra:
            raise FalError(f"Endpoint '{endpoint_id}' cannot run: {extra}", status=424,
                           error_type="extra_not_installed")
        reason = self._model_missing(endpoint)
        if reason:
            # 424 Failed Dependency: the endpoint exists but its model is missing. Not 503, which
            # fal's JS client would retry.
            raise FalError(reason, status=424, error_type="model_not_installed")
        return endpoint

    def model_for(self, endpoint: Endpoint) -> str | None:
        """The [models.NAME] an endpoint runs: config's endpoint_models, else the endpoint's default, or
        its fallback while the default's optional extra is not installed."""
        chosen = self.config.endpoint_models.get(endpoint.id)
        if chosen is not None:
            return chosen
        default = endpoint.model
        if endpoint.fallback is not None and default in self.config.models and \
                missing_extra(self.config.models[default].family, self.config):
            return endpoint.fallback
        return default

    def unavailable_reason(self, endpoint: Endpoint) -> str | None:
        """Why an endpoint cannot produce an output now (None: it can), for listings and the start log."""
        not_local = self.not_local.get(endpoint.id)
        if not_local:
            return f"Endpoint '{endpoint.id}' is not available locally: {not_local}"
        return self._model_missing(endpoint)

    def _model_missing(self, endpoint: Endpoint) -> str | None:
        name = self.model_for(endpoint)
        if name is None:
            return None
        status = model_status(self.config, name)
        # Everything that is missing, each said once and short (the extra's 424 explains more).
        extra = self._missing_extra(endpoint)
        missing = [extra] if extra else []
        if not status.installed:
            missing.append(f"the model '{name}' is not in {status.path or 'config.toml'} "
                           f"(install it with: {status.install_hint})")
        return f"Endpoint '{endpoint.id}' cannot run: " + "; and ".join(missing) if missing else None

    def _missing_extra(self, endpoint: Endpoint, *, explain: bool = False) -> str | None:
        name = self.model_for(endpoint)
        if name is None or name not in self.config.models:
            return None
        return missing_extra(self.config.models[name].family, self.config, explain=explain)

    def listing(self) -> list[dict[str, Any]]:
        rows = []
        for endpoint_id in sorted({*self._by_id, *self.aliases}):
            endpoint = self.find(endpoint_id)
            assert endpoint is not None
            reason = self.unavailable_reason(endpoint)
            rows.append({
                "id": endpoint_id,
                "alias_of": self.aliases.get(endpoint_id),
                "summary": endpoint.summary,
                "lane": endpoint.lane,
                "model": self.model_for(endpoint),
                "available": reason is None,
                "reason": reason,
            })
        return rows

    def openapi(self) -> dict[str, Any]:
        """An OpenAPI document whose schemas come straight from the input and output Structs."""
        endpoints = sorted(self._by_id.values(), key=lambda e: e.id)
        types = [t for e in endpoints for t in (e.input, e.output)]
        schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
        index_of = {endpoint.id: index for index, endpoint in enumerate(endpoints)}
        paths: dict[str, Any] = {}
        # Aliases too (the editor's ids are aliases): the same schemas as the endpoint they answer with.
        for endpoint_id in sorted({*self._by_id, *self.aliases}):
            endpoint = self.find(endpoint_id)
            assert endpoint is not None
            index = index_of[endpoint.id]
            summary = endpoint.summary if endpoint.id == endpoint_id else f"{endpoint.summary} (as {endpoint.id})"
            body = {"required": True, "content": {"application/json": {"schema": schemas[2 * index]}}}
            output = {"application/json": {"schema": schemas[2 * index + 1]}}
            error = {"description": "Validation error (fal style: detail[].loc/msg/type)"}
            paths[f"/run/{endpoint_id}"] = {"post": {
                "summary": summary, "operationId": f"run:{endpoint_id}", "requestBody": body,
                "responses": {"200": {"description": "Output", "content": output}, "422": error},
            }}
            paths[f"/queue/{endpoint_id}"] = {"post": {
                "summary": f"Queue: {summary}", "operationId": f"submit:{endpoint_id}",
                "requestBody": body, "responses": {"200": {"description": "Queued"}, "422": error},
            }}
        return {
            "openapi": "3.1.0",
            "info": {"title": "thorgen", "version": __version__},
            "paths": paths,
            "components": {"schemas": components},
        }
