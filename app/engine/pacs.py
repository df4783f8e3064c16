"""The PACS window's jobs, through glow_engine.pacs (no protocol here): the nodes file (read,
and one node saved), C-ECHO / QIDO-RS, C-FIND / QIDO-RS, a look at one study (its chest
radiographs retrieved into a private staging folder, deleted when the look is closed, by the
next look, or when the program ends), and a release from a PACS (release_from_pacs: the
batch release path, then C-STORE / STOW-RS), with progress and Cancel between images through
the lane's JobControl."""

from __future__ import annotations

import weakref
from functools import singledispatchmethod
from pathlib import Path

from app.core.jobs import JobControl
from app.core.messages import (
    PacsAnswer,
    PacsBatchRequest,
    PacsEchoed,
    PacsEchoRequest,
    PacsFindRequest,
    PacsLooked,
    PacsLookRequest,
    PacsNodesInfo,
    PacsNodesRequest,
    PacsReleased,
    PacsStudies,
    Request,
)
from app.engine.inputs import Inputs
from app.engine.release import WINDOW_BATCH, batch_done
from glow_engine.mechanisms import Mechanism
from glow_engine.pacs.client import open_client
from glow_engine.pacs.nodes import load_nodes
from glow_engine.pacs.nodes_edit import node_tables, save_node
from glow_engine.pacs.query import StudyQuery
from glow_engine.pacs.release import (
    PHASES,
    PacsProgress,
    PacsReleaseRequest,
    outbox_for,
    release_from_pacs,
    stage_study,
)
from glow_engine.pacs.staging import finish_staging
from glow_engine.release.ledger import Ledger, default_ledger_path
from glow_engine.release.records import check_private_locations
from glow_engine.release.report import report_run


class Pacs:
    def __init__(self, inputs: Inputs, control: JobControl) -> None:
        self._inputs, self._control = inputs, control
        self._looks: list[Path] = []  # the staged copy the viewer may be showing (0 or 1)
        # Deleted at the latest when this session goes or the program ends (weakly: the
        # hook must not keep the session and its models alive).
        weakref.finalize(self, _delete, self._looks)

    @singledispatchmethod
    def answer(self, request: Request) -> PacsAnswer:
        raise TypeError(f"not a PACS request: {type(request).__name__}")

    @answer.register
    def nodes(self, request: PacsNodesRequest) -> PacsNodesInfo:
        path = request.nodes_path
        if request.name:
            save_node(path, request.name, request.values, old_name=request.old_name,
                      local=request.local)
        if not path.exists():  # no nodes yet: the window offers to add the first
            return PacsNodesInfo(request.id, path, exists=False)
        load_nodes(path)  # the same checks as every command, before the forms show it
        local, nodes = node_tables(path)
        return PacsNodesInfo(request.id, path, True, local, nodes, request.name)

    @answer.register
    def echo(self, request: PacsEchoRequest) -> PacsEchoed:
        nodes = load_nodes(request.nodes_path)
        node = nodes.get(request.node)
        open_client(node, nodes.local).echo()
        return PacsEchoed(request.id, request.node, node.address)

    @answer.register
    def find(self, request: PacsFindRequest) -> PacsStudies:
        nodes = load_nodes(request.nodes_path)
        client = open_client(nodes.get(request.node), nodes.local)
        return PacsStudies(request.id, request.node, tuple(client.find_studies(request.query)))

    @answer.register
    def look(self, request: PacsLookRequest) -> PacsLooked:
        self.close_look()
        if not request.study_uid:
            return PacsLooked(request.id, None)
        parent = (request.ledger_path or default_ledger_path()).parent
        folder, summary = stage_study(load_nodes(request.nodes_path), request.node,
                                      request.study_uid, parent)
        self._looks.append(folder)
        return PacsLooked(request.id, folder, len(list(folder.rglob("*.dcm"))),
                          tuple(summary.skipped))

    def close_look(self) -> None:
        _delete(self._looks)

    @answer.register
    def release(self, request: PacsBatchRequest) -> PacsReleased:
        job, rid = request.release, request.id
        p = job.params
        check_private_locations(outbox_for(job.ledger_path, job.to_node), job.ledger_path)
        mechs: list[Mechanism] = []

        def mechanism() -> Mechanism:  # loaded only once there are images to privatise
            mechs.append(self._inputs.mechanism(job.mechanism, p))
            return mechs[0]

        def progress(step: PacsProgress) -> None:
            self._control.progress(request.phase_ids[PHASES.index(step.phase)], step.done,
                                   step.total or 0)

        pacs_request = PacsReleaseRequest(
            source=job.source, query=StudyQuery(study_uids=job.study_uids), e_px=p.e_px,
            to_node=job.to_node, linkage=job.linkage, keep_aspect=job.keep_aspect,
            force_budget=job.force_budget, allow_burned_in=job.allow_burned_in,
            batch_size=WINDOW_BATCH)
        with Ledger(job.ledger_path) as ledger:
            summary = release_from_pacs(pacs_request, load_nodes(job.nodes_path), mechanism,
                                        ledger, on_progress=progress,
                                        should_stop=lambda: self._control.cancelled(rid))
            done = None if summary.release is None else batch_done(
                rid, summary.release, report_run(mechs[0], p.e_px, summary.release, ledger))
        return PacsReleased(rid, done, summary.studies, summary.retrieved,
                            tuple(summary.skipped), job.to_node, summary.sent,
                            summary.already_there, summary.not_sent, summary.staging)


def _delete(looks: list[Path]) -> None:
    while looks:
        finish_staging(looks.pop(), None)
