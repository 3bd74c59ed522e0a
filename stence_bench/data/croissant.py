"""Croissant (ML Commons, specification 1.0) metadata of an ECG store, as JSON-LD.

Written from the Croissant 1.0 specification's required and recommended properties: the dataset (``@context``,
``@type`` ``sc:Dataset``, ``conformsTo``, ``name``, ``description``, ``license``, ``url``, ``creator``,
``datePublished``, ``version``, ``citeAs``, ``keywords``), its ``distribution`` (a ``cr:FileObject`` per store
file that describes the records: the manifest parts, the tables, each with its ``sha256``, and a ``cr:FileSet`` of
the sample shards) and one ``cr:RecordSet`` of the records (record id, patient id, time, sampling rate, leads,
samples, encoding, checksum) read from the manifest parts. The dataset card of the store's layout (licence,
access, units, leads, patient ids, splits) fills the dataset-level fields; what the card cannot say (the store's
own record count, fingerprint, units) is added under the ``stence:`` prefix.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..specs import DatasetSpec
from .store import SHARD_DIR, TABLE_DIR, ECGStore

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "dct": "http://purl.org/dc/terms/",
    "stence": "urn:stence-bench:",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "key": "cr:key",
    "md5": "cr:md5",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "source": "cr:source",
    "containedIn": "cr:containedIn",
}
#: licences the cards name, as the URLs Croissant recommends (SPDX)
_LICENCE_URL = {
    "CC-BY-4.0": "https://spdx.org/licenses/CC-BY-4.0.html",
    "ODbL-1.0": "https://spdx.org/licenses/ODbL-1.0.html",
    "CC0-1.0": "https://spdx.org/licenses/CC0-1.0.html",
}
#: the manifest's columns described as fields: (name, Croissant data type, description)
RECORD_FIELDS = (
    ("record_id", "sc:Text", "the record's id in the source (ECG id, exam id, study id, file path)"),
    ("patient_id", "sc:Text", "the patient's id, empty when the source has none"),
    ("time", "sc:Text", "acquisition time, ISO 8601, when known"),
    ("fs", "sc:Float", "sampling rate (Hz)"),
    ("leads", "sc:Text", "lead names in stored order"),
    ("n_samples", "sc:Integer", "samples per lead"),
    ("encoding", "sc:Text", "i16 (int16 with per-lead baseline and gain, digital units per mV) or f32"),
    ("checksum", "sc:Text", "xxh3-64 of the stored samples and their calibration"),
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _file_object(path: Path, root: Path, fmt: str, description: str) -> dict[str, Any]:
    relative = path.relative_to(root).as_posix()
    return {"@type": "cr:FileObject", "@id": relative, "name": relative, "description": description,
            "contentUrl": relative, "contentSize": f"{os.path.getsize(path)} B", "encodingFormat": fmt,
            "sha256": _sha256(path)}


def croissant(store: ECGStore, spec: DatasetSpec | None) -> dict[str, Any]:
    """The store's Croissant JSON-LD (a dict), described by its layout's ``spec`` (``None``: a layout this
    installation does not know; the dataset-level fields then say so)."""
    root = store.root
    info = store.info
    card = spec.card if spec is not None else None
    name = card.title if card is not None else f"{info.layout} store"
    summary = store.summary()
    description = (f"{spec.description if spec is not None else info.layout}. ECG store made by stence-bench from "
                   f"{info.source} with the '{info.layout}' layout: {summary['records']} records of "
                   f"{summary['patients']} patients.")
    if card is not None and card.notes:
        description += " " + card.notes
    licence = card.licence if card is not None else "unknown"
    parts = sorted((root / SHARD_DIR).glob("shard-*.csv"))
    distribution: list[dict[str, Any]] = [
        _file_object(p, root, "text/csv", "manifest part: one row per record of the shard") for p in parts]
    distribution += [_file_object(p, root, "text/csv", f"table {p.stem} kept from the source")
                      for p in sorted((root / TABLE_DIR).glob("*.csv"))]
    distribution.append({"@type": "cr:FileSet", "@id": "shards", "name": "sample shards",
                         "description": "the records' samples, record after record ([n_leads, n_samples] each): "
                                        ".i16 int16 with per-lead baseline and gain, .f32 float32",
                         "encodingFormat": "application/octet-stream",
                         "includes": [f"{SHARD_DIR}/shard-*.i16", f"{SHARD_DIR}/shard-*.f32"]})
    distribution.append({"@type": "cr:FileSet", "@id": "manifest-parts", "name": "manifest parts",
                         "description": "every manifest part (rows of status ok are records, the others quarantined)",
                         "encodingFormat": "text/csv", "includes": f"{SHARD_DIR}/shard-*.csv"})
    fields = [{"@type": "cr:Field", "@id": f"records/{column}", "name": column, "description": what,
               "dataType": data_type, "source": {"fileSet": {"@id": "manifest-parts"}, "extract": {"column": column}}}
              for column, data_type, what in RECORD_FIELDS]
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": name,
        "description": description,
        "license": _LICENCE_URL.get(licence, licence),
        "url": (card.url if card is not None and card.url else Path(info.source).as_uri()),
        "creator": {"@type": "sc:Organization", "name": (spec.citation if spec is not None and spec.citation
                                                         else "the source's publisher")},
        "datePublished": info.created[:10],
        "dateCreated": info.created,
        "version": f"{spec.version if spec is not None else '0'}.0.0",
        "citeAs": spec.citation if spec is not None else "",
        "keywords": ["electrocardiogram", "ECG", info.layout],
        "isLiveDataset": False,
        "distribution": distribution,
        "recordSet": [{"@type": "cr:RecordSet", "@id": "records", "name": "records",
                       "description": "one row per record (status ok) of the store's manifest parts",
                       "key": {"@id": "records/record_id"}, "field": fields}],
        "stence:layout": info.layout,
        "stence:units": info.units,
        "stence:records": summary["records"],
        "stence:patients": summary["patients"],
        "stence:fingerprint": summary["fingerprint"],
        "stence:sampling_rates": summary["sampling_rates"],
    }
    if card is not None:
        if card.doi:
            doc["sameAs"] = f"https://doi.org/{card.doi}"
        doc["stence:card"] = card.model_dump(mode="json")
    return doc
