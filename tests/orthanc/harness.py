"""Two real Orthanc servers on loopback for the PACS integration tests.

A is the hospital PACS (source): it knows only our AE titles (DicomModalities), checks the
called AE title, and rejects unknown calling AEs. B is the research PACS (destination): it
accepts any caller, and serves DICOMweb. Both need HTTP basic authentication (USER, PASSWORD).

    python tests/orthanc/harness.py start DIR   # prints DPGLOW_ORTHANC=DIR for the tests
    python tests/orthanc/harness.py stop DIR

`.ci/run` starts them once for the whole run; the tests' fixture (tests/test_pacs_orthanc.py)
uses them through DPGLOW_ORTHANC, or starts its own when Orthanc is installed. As root the
servers run as the `orthanc` user (setpriv), as Debian's package means them to.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
USER, PASSWORD = "officer", "s3cret-test"
BASE_PORT = int(os.environ.get("DPGLOW_ORTHANC_BASE_PORT", "14240"))


@dataclass(frozen=True)
class Servers:
    folder: str
    a_aet: str = "HOSPITAL_A"
    a_dicom: int = BASE_PORT + 2
    a_http: int = BASE_PORT + 3
    b_aet: str = "RESEARCH_B"
    b_dicom: int = BASE_PORT + 4
    b_http: int = BASE_PORT + 5
    our_aet: str = "DPGLOW"
    our_port: int = BASE_PORT + 6  # our storage SCP, registered with A for C-MOVE
    deaf_aet: str = "DPGLOW_DEAF"  # registered with A at deaf_port, where nobody listens
    deaf_port: int = BASE_PORT + 7
    free_port: int = BASE_PORT + 8  # nothing listens here


def _modality(aet: str, port: int) -> dict:
    return {"AET": aet, "Host": "127.0.0.1", "Port": port, "AllowEcho": True,
            "AllowFind": True, "AllowGet": True, "AllowMove": True, "AllowStore": True}


def _config(s: Servers, name: str, aet: str, dicom: int, http: int, open_to_all: bool) -> dict:
    storage = str(Path(s.folder) / name)
    return {
        "Name": name, "StorageDirectory": storage, "IndexDirectory": storage,
        "DicomAet": aet, "DicomPort": dicom, "HttpPort": http,
        "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": open_to_all, "DicomAlwaysAllowStore": open_to_all,
        "DicomAlwaysAllowFind": open_to_all, "DicomAlwaysAllowGet": open_to_all,
        "DicomAlwaysAllowMove": open_to_all,
        "DicomModalities": {} if open_to_all else {
            "dpglow": _modality(s.our_aet, s.our_port),
            "deaf": _modality(s.deaf_aet, s.deaf_port)},
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "SaveJobs": False, "StableAge": 1, "DicomScuTimeout": 5,
    }


def installed() -> bool:
    return Path(ORTHANC).is_file() and Path(DICOMWEB_PLUGIN).is_file()


def start(folder: Path) -> Servers:
    folder.mkdir(parents=True, exist_ok=True)
    s = Servers(str(folder.resolve()))
    run_as = []
    if os.geteuid() == 0:
        shutil.chown(folder, "orthanc", "orthanc")
        run_as = ["setpriv", "--reuid=orthanc", "--regid=orthanc", "--clear-groups"]
    pids = []
    for name, aet, dicom, http, open_to_all in (("A", s.a_aet, s.a_dicom, s.a_http, False),
                                                ("B", s.b_aet, s.b_dicom, s.b_http, True)):
        config = folder / f"orthanc-{name}.json"
        config.write_text(json.dumps(_config(s, name, aet, dicom, http, open_to_all),
                                     indent=1))
        log = (folder / f"orthanc-{name}.log").open("w")
        proc = subprocess.Popen([*run_as, ORTHANC, str(config)], stdout=log, stderr=log,
                                start_new_session=True)
        pids.append(proc.pid)
    (folder / "pids").write_text(" ".join(map(str, pids)))
    (folder / "servers.json").write_text(json.dumps(asdict(s)))
    for port in (s.a_dicom, s.a_http, s.b_dicom, s.b_http):
        _wait(port, folder)
    return s


def load(folder: Path) -> Servers:
    return Servers(**json.loads((folder / "servers.json").read_text()))


def stop(folder: Path) -> None:
    pids = folder / "pids"
    if not pids.exists():
        return
    for pid in map(int, pids.read_text().split()):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        for _ in range(100):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:  # our child (the tests' fixture): reaped
                    break
            except ChildProcessError:  # started by another process (.ci/run)
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
            time.sleep(0.05)
    pids.unlink()


def _wait(port: int, folder: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    logs = "".join(p.read_text()[-1500:] for p in sorted(folder.glob("*.log")))
    stop(folder)
    raise RuntimeError(f"Orthanc did not open port {port} in {seconds} s:\n{logs}")


if __name__ == "__main__":
    action, where = sys.argv[1], Path(sys.argv[2])
    if action == "start":
        start(where)
        print(f"DPGLOW_ORTHANC={where.resolve()}")
    else:
        stop(where)
