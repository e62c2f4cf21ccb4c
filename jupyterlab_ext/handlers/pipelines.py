"""``/datalabs/api/pipelines``: search the pipeline catalogue and describe one pipeline."""

from __future__ import annotations

import asyncio

from tornado import web

from . import DatalabsHandler, route


class PipelinesHandler(DatalabsHandler):
    """``GET pipelines?q=TEXT&accepts=TYPE_OR_FORMAT``: matching pipelines, best first."""

    @web.authenticated
    async def get(self) -> None:
        query = self.get_query_argument("q", "")
        accepts = self.get_query_argument("accepts", None) or None
        catalogue = self.services.catalogue
        # Reading the catalogue may parse CWL files: keep it off the event loop.
        found = await asyncio.to_thread(catalogue.search, query, accepts)
        problems = await asyncio.to_thread(catalogue.problems)
        self.send_json(
            {
                "pipelines": [p.to_json() for p in found],
                "problems": [{"path": str(p.path), "reason": p.reason} for p in problems],
            }
        )


class PipelineHandler(DatalabsHandler):
    """``GET pipelines/<mission>/<name>``: one pipeline with its inputs (for a launch form)."""

    @web.authenticated
    async def get(self, pipeline_id: str) -> None:
        pipeline = await asyncio.to_thread(self.services.catalogue.get, pipeline_id)
        if pipeline is None:
            self.send_error_json(
                404, f"no pipeline {pipeline_id!r} in the catalogue; search with GET pipelines?q="
            )
            return
        self.send_json(pipeline.to_json(detail=True))


default_handlers = [
    (route("pipelines"), PipelinesHandler),
    (route(r"pipelines/(?P<pipeline_id>[^/]+/[^/]+)"), PipelineHandler),
]
