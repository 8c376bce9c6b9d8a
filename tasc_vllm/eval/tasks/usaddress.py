"""``usaddress``: label the parts of a US address, answering with one line of JSON.

Data: ``training/labeled.xml`` of the sdist of the PyPI package ``usaddress`` (pinned to
0.5.16): 1,513 hand-labelled addresses.  Each ``<AddressString>`` holds one element per
token whose tag is the token's label, e.g. ``<AddressNumber>123</AddressNumber>``.

* input: the tokens joined with single spaces (whitespace inside a token, such as the
  newlines some tokens carry, is collapsed), punctuation kept as the XML attaches it
  (``"Road,"``, ``"S."``, ``"#"``);
* reference output: ``{"Label": "words", ...}`` with the labels in order of first
  appearance; every token of a label (consecutive or not: 61 addresses repeat a label
  non-consecutively, e.g. intersections) joined with a space; separator commas and
  semicolons at the end of a token are dropped from the values (``"Road,"`` -> ``"Road"``),
  other punctuation is kept (``"St."``, ``"#"``);
* score: 1.0 if the output parses to exactly the reference dict, else 0.0;
* split: by a stable hash of the input text, so the 25 duplicated addresses of the data
  always fall in the same split.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from tasc_vllm.errors import TascError
from tasc_vllm.paths import cache_dir
from tasc_vllm.eval.tasks.base import Example, Task, dumps_line, parse_json_object, write_atomic

USADDRESS_VERSION = "0.5.16"
LABELED_XML_SHA256 = "dbd125fa01fbdbc4e25cce722c648ce4e224e4c9bdb9b5a14498aa8a042aee32"
EXPECTED_COUNT = 1513

# The labels of the data, roughly in the order they appear in an address.
LABELS = (
    "Recipient", "BuildingName", "LandmarkName", "CornerOf", "AddressNumberPrefix", "AddressNumber",
    "AddressNumberSuffix", "StreetNamePreModifier", "StreetNamePreDirectional", "StreetNamePreType",
    "StreetName", "StreetNamePostType", "StreetNamePostDirectional", "StreetNamePostModifier",
    "IntersectionSeparator", "SubaddressType", "SubaddressIdentifier", "OccupancyType",
    "OccupancyIdentifier", "USPSBoxGroupType", "USPSBoxGroupID", "USPSBoxType", "USPSBoxID",
    "PlaceName", "StateName", "ZipCode", "ZipPlus4", "CountryName", "NotAddress",
)

SYSTEM_PROMPT = (
    "Label each part of a US address. Reply with one line of JSON that maps each label to "
    "its words, in order. Labels: " + ", ".join(LABELS) + "."
)

# Three fixed few-shot examples, shown as earlier chat turns (ids; all in the train split):
# a street address with city/state/ZIP, a PO box, and a recipient with a suite, in capitals.
FEW_SHOT_IDS = ("usaddress-0124", "usaddress-0090", "usaddress-1002")

_TRAILING_SEPARATORS = ",;"


def _labeled_xml() -> Path:
    """The cached ``labeled.xml``, fetched from the pinned sdist with pip on first use."""
    folder = cache_dir("data", "usaddress")
    target = folder / "labeled.xml"
    if not target.is_file():
        _fetch_labeled_xml(folder, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != LABELED_XML_SHA256:
        raise TascError(
            f"{target} is not the labeled.xml of usaddress {USADDRESS_VERSION} (sha256 {digest}); "
            f"delete it and it will be fetched again"
        )
    return target


def _fetch_labeled_xml(folder: Path, target: Path) -> None:
    spec = f"usaddress=={USADDRESS_VERSION}"
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".download-"))
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "usaddress",
        "--disable-pip-version-check", spec, "-d", str(tmp),
    ]
    manual = (
        f"fetch it by hand with `{' '.join(cmd[:-1])} <folder>` (the pinned version matters) and "
        f"copy training/labeled.xml from the .tar.gz into {target}"
    )
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired as e:
            raise TascError(
                f"`pip download {spec}` (the usaddress task data) did not finish in 15 minutes; "
                f"check the network or the pip index settings, or {manual}"
            ) from e
        except OSError as e:
            raise TascError(f"could not run pip ({e}) to download {spec}; {manual}") from e
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
            hint = (
                "pip is not installed for this Python; install it (python -m ensurepip) or "
                if "No module named pip" in tail
                else "check the network / pip index (PIP_INDEX_URL) or "
            )
            raise TascError(
                f"`pip download {spec}` (the usaddress task data) failed with exit code "
                f"{proc.returncode}:\n{tail}\n{hint}{manual}"
            )
        sdists = sorted(tmp.glob(f"usaddress-{USADDRESS_VERSION}.tar.gz"))
        if not sdists:
            got = ", ".join(p.name for p in tmp.iterdir()) or "nothing"
            raise TascError(
                f"`pip download {spec}` gave {got}, not the source archive "
                f"usaddress-{USADDRESS_VERSION}.tar.gz; {manual}"
            )
        try:
            with tarfile.open(sdists[0], "r:gz") as tar:
                member = next(
                    (m for m in tar.getmembers() if m.isfile() and m.name.endswith("/training/labeled.xml")),
                    None,
                )
                if member is None:
                    raise TascError(f"{sdists[0].name} holds no training/labeled.xml; {manual}")
                data = tar.extractfile(member).read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise TascError(f"cannot read {sdists[0].name} ({e}); {manual}") from e
        write_atomic(target, data)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _clean_token(text: str | None) -> str:
    return " ".join((text or "").split())


def parse_labeled_xml(path: Path) -> list[tuple[str, dict[str, str]]]:
    """``(address text, {label: value})`` for every ``<AddressString>``, in file order."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise TascError(f"{path} is not valid XML ({e}); delete it and it will be fetched again") from e
    rows = []
    for addr in root.iter("AddressString"):
        words: list[str] = []
        parts: dict[str, list[str]] = {}
        for tok in addr:
            text = _clean_token(tok.text)
            if not text:
                continue
            words.append(text)
            value = text.rstrip(_TRAILING_SEPARATORS).strip()
            if value:
                parts.setdefault(tok.tag, []).append(value)
        rows.append((" ".join(words), {label: " ".join(v) for label, v in parts.items()}))
    return rows


class UsAddressTask(Task):
    name = "usaddress"
    description = "label the parts of a US address as one line of JSON (usaddress labeled.xml)"
    max_tokens = 160  # longest reference: 122 SmolLM2 tokens (mean 59)

    def _load_all(self) -> list[Example]:
        path = _labeled_xml()
        rows = parse_labeled_xml(path)
        if len(rows) != EXPECTED_COUNT:
            raise TascError(f"{path} holds {len(rows)} addresses, expected {EXPECTED_COUNT}")
        items = [(f"usaddress-{i:04d}", text, dumps_line(parts)) for i, (text, parts) in enumerate(rows)]
        by_id = {i: (text, ref) for i, text, ref in items}
        shots: list[dict] = []
        for sid in FEW_SHOT_IDS:
            text, ref = by_id[sid]
            shots += [{"role": "user", "content": text}, {"role": "assistant", "content": ref}]
        system = [{"role": "system", "content": SYSTEM_PROMPT}]
        return [
            Example(
                id=i,
                messages=system + shots + [{"role": "user", "content": text}],
                reference=ref,
                meta={"address": text, "labels": json.loads(ref)},
            )
            for i, text, ref in items
        ]

    def split_key(self, example: Example) -> str:
        return example.meta["address"]

    def score(self, example: Example, output_text: str) -> float:
        got = parse_json_object(output_text)
        return 1.0 if got is not None and got == example.meta["labels"] else 0.0
