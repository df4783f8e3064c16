"""A DICOMweb node through dicomweb-client: QIDO-RS (find, and what is already there),
WADO-RS (retrieve), STOW-RS (store). HTTP failures become one `PacsError` each."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session, create_session_from_user_pass
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite

from glow_engine.atomic import write_bytes_atomic
from glow_engine.pacs.errors import PacsError
from glow_engine.pacs.nodes import WebNode
from glow_engine.pacs.query import Series, Study, StudyQuery
from glow_engine.pacs.staging import staged_path

Received = Callable[[Path], None]
StopCheck = Callable[[], bool]
# DICOM JSON (PS3.18 F.2) tags of the fields read here.
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
PATIENT_ID, STUDY_DATE, ACCESSION = "00100020", "00080020", "00080050"
MODALITIES, MODALITY = "00080061", "00080060"
STUDY_IMAGES, SERIES_IMAGES = "00201208", "00201209"


class WebClient:
    def __init__(self, node: WebNode) -> None:
        self.node = node
        password, token = node.secrets()
        if node.username:
            session = create_session_from_user_pass(node.username, password)
        else:
            session = create_session()
        if node.ca_file:
            session.verify = str(node.ca_file)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.client = DICOMwebClient(node.url, session=session, headers=headers,
                                     timeout=node.timeout)
        # Three tries, 0.4 and 0.8 s apart (busy answers 429/503/504, or no connection), not the
        # library's five over 30 s: a node that is down is reported in about a second.
        self.client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=200)

    def echo(self) -> None:
        with self._http("search"):
            self.client.search_for_studies(limit=1)

    def find_studies(self, query: StudyQuery) -> list[Study]:
        found: dict[str, Study] = {}
        for accession in query.accessions or ("",):
            for uid in query.study_uids or ("",):
                filters = {k: v for k, v in (
                    ("PatientID", query.patient_id), ("AccessionNumber", accession),
                    ("StudyInstanceUID", uid), ("StudyDate", query.study_date),
                    ("ModalitiesInStudy", ",".join(query.modalities))) if v}
                with self._http("search"):
                    rows = self.client.search_for_studies(
                        search_filters=filters, get_remaining=True,
                        fields=["PatientID", "StudyDate", "AccessionNumber",
                                "ModalitiesInStudy", "NumberOfStudyRelatedInstances"])
                for row in rows:
                    study = Study(_value(row, STUDY_UID), _value(row, PATIENT_ID),
                                  _value(row, STUDY_DATE), _value(row, ACCESSION),
                                  tuple(_values(row, MODALITIES)),
                                  _int(_value(row, STUDY_IMAGES)))
                    if study.study_uid:
                        found.setdefault(study.study_uid, study)
        return list(found.values())

    def find_series(self, study_uid: str) -> list[Series]:
        with self._http("search"):
            rows = self.client.search_for_series(
                study_instance_uid=study_uid, get_remaining=True,
                fields=["Modality", "NumberOfSeriesRelatedInstances"])
        return [Series(study_uid, _value(r, SERIES_UID), _value(r, MODALITY),
                       _int(_value(r, SERIES_IMAGES))) for r in rows if _value(r, SERIES_UID)]

    def present(self, study_uid: str, series_uid: str) -> set[str]:
        with self._http("search"):
            rows = self.client.search_for_instances(
                study_instance_uid=study_uid, series_instance_uid=series_uid,
                get_remaining=True)
        return {_value(r, SOP_UID) for r in rows} - {""}

    def retrieve(self, series: Series, folder: Path, on_received: Received,
                 should_stop: StopCheck) -> None:
        """WADO-RS, instance by instance; `should_stop()` after each ends the download."""
        with self._http("retrieve"):
            for ds in self.client.iter_series(series.study_uid, series.series_uid):
                path = staged_path(folder, series.study_uid, str(ds.get("SOPInstanceUID", "")))
                write_bytes_atomic(path, _part10(ds), overwrite=True)
                on_received(path)
                if should_stop():
                    return

    def store(self, paths: list[Path], on_sent: Received, should_stop: StopCheck) -> None:
        for path in paths:
            if should_stop():
                return
            with self._http("store"):
                self.client.store_instances([dcmread(path)])
            on_sent(path)

    @contextmanager
    def _http(self, what: str) -> Iterator[None]:
        where = f"node {self.node.name} ({self.node.url})"
        try:
            yield
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else 0
            if code == 401:
                raise PacsError(f"{where} refused the {what}: HTTP 401, not authenticated: "
                                "check username and password_env (or token_env) for this node "
                                "in the nodes file") from None
            if code == 403:
                raise PacsError(f"{where} refused the {what}: HTTP 403, not allowed for this "
                                "user: ask its administrator for the right to "
                                f"{what}") from None
            if code == 404:
                raise PacsError(f"{where}: HTTP 404 for the {what}: check url in the nodes file "
                                "(the DICOMweb root, e.g. .../dicom-web)") from None
            raise PacsError(f"{where} answered HTTP {code} to the {what}") from None
        except requests.Timeout:
            raise PacsError(f"{where} did not answer the {what} within "
                            f"{self.node.timeout:g} s: raise timeout in the nodes file or "
                            "--timeout") from None
        except requests.ConnectionError as e:
            raise PacsError(f"cannot connect to {where}: {_reason(e)}: check url, that the "
                            "server is running, and any firewall") from None
        except requests.RequestException as e:
            raise PacsError(f"{where}: {what} failed: {e}") from None
        except ValueError as e:  # an answer dicomweb-client could not parse
            raise PacsError(f"{where}: unexpected answer to the {what}: {e}") from None


def _part10(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _values(row: dict, tag: str) -> list[str]:
    return [str(v) for v in row.get(tag, {}).get("Value", []) if v is not None]


def _value(row: dict, tag: str) -> str:
    values = _values(row, tag)
    return values[0] if values else ""


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _reason(error: Exception) -> str:
    text = str(error)
    for reason in ("Connection refused", "Name or service not known", "timed out",
                   "No route to host"):
        if reason in text:
            return reason.lower()
    return text.split(": ")[-1][:160]
