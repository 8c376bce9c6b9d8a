"""The .tasc index file and corpus reading: round trip and every kind of bad input."""

import json

import numpy as np
import pytest

from tasc_vllm.index.corpus import read_corpus
from tasc_vllm.errors import TascError
from tasc_vllm.index.index_file import VERSION, read_index, write_index


def test_round_trip_keeps_every_text(tmp_path):
    texts = ['{"a": "1"}', "ünïcödé ✓", "line\twith tab", "x" * 10_000]
    path = write_index(texts, tmp_path / "t.tasc", source="s", field="output")
    idx = read_index(path)
    assert idx.texts() == texts
    assert idx.header["num_texts"] == 4 and idx.header["version"] == VERSION
    assert len(idx.content_hash) == 64


def test_content_hash_depends_on_content(tmp_path):
    a = read_index(write_index(["a", "b"], tmp_path / "a.tasc"))
    b = read_index(write_index(["a", "c"], tmp_path / "b.tasc"))
    c = read_index(write_index(["ab"], tmp_path / "c.tasc"))
    assert len({a.content_hash, b.content_hash, c.content_hash}) == 3


def test_empty_corpus_is_refused(tmp_path):
    with pytest.raises(TascError, match="empty corpus"):
        write_index([], tmp_path / "e.tasc")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "empty"),
        (b"\x00\x01random bytes" * 50, "unreadable"),
    ],
)
def test_bad_index_files(tmp_path, payload, message):
    p = tmp_path / "bad.tasc"
    p.write_bytes(payload)
    with pytest.raises(TascError, match=message):
        read_index(p)


def test_truncated_index(tmp_path):
    p = write_index(["hello world"] * 100, tmp_path / "t.tasc")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(TascError, match="unreadable|corrupt"):
        read_index(p)


def test_flipped_byte_fails_checksum(tmp_path):
    p = write_index(["hello world, a longer text"] * 10, tmp_path / "t.tasc")
    data = bytearray(p.read_bytes())
    pos = data.find(b"hello world")
    data[pos] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(TascError, match="checksum|unreadable|corrupt"):
        read_index(p)


def _rewrite_header(path, **changes):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes())
    header.update(changes)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_other_version_and_format(tmp_path):
    p = write_index(["a"], tmp_path / "v.tasc")
    _rewrite_header(p, version=VERSION + 1)
    with pytest.raises(TascError, match="version"):
        read_index(p)
    p2 = write_index(["a"], tmp_path / "f.tasc")
    _rewrite_header(p2, format="something-else")
    with pytest.raises(TascError, match="not a TASC index"):
        read_index(p2)


def test_plain_npz_is_not_an_index(tmp_path):
    p = tmp_path / "x.tasc"
    with open(p, "wb") as f:
        np.savez(f, a=np.zeros(3))
    with pytest.raises(TascError, match="not a TASC index"):
        read_index(p)


def test_object_arrays_are_never_unpickled(tmp_path):
    p = tmp_path / "pickle.tasc"
    with open(p, "wb") as f:
        np.savez(f, header=np.array([{"format": "tasc-index"}], dtype=object), text_bytes=np.zeros(1, np.uint8), text_offsets=np.zeros(2, np.int64))
    with pytest.raises(TascError):
        read_index(p)


def test_missing_path_and_folder(tmp_path):
    with pytest.raises(TascError, match="does not exist"):
        read_index(tmp_path / "nope.tasc")
    with pytest.raises(TascError, match="folder"):
        read_index(tmp_path)


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    out = tmp_path / "i.tasc"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        write_index(["a"], out)
    assert list(tmp_path.iterdir()) == []


# ---- corpus files


def test_jsonl_corpus_with_field(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"output": "a", "x": 1}\n\n{"output": "b"}\n', encoding="utf-8")
    assert read_corpus(p) == ["a", "b"]
    p.write_text('{"text": "a"}\n', encoding="utf-8")
    assert read_corpus(p, field="text") == ["a"]


def test_txt_corpus_one_per_line(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("one\ntwo\r\n\nthree", encoding="utf-8")
    assert read_corpus(p) == ["one", "two", "three"]


def test_missing_field_names_lines_and_fields(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"output": "a"}\n{"answer": "b"}\n', encoding="utf-8")
    with pytest.raises(TascError, match=r"'output' is missing on line\(s\) 2.*answer"):
        read_corpus(p)


def test_malformed_json_names_line(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"output": "a"}\n{"output": \n', encoding="utf-8")
    with pytest.raises(TascError, match=r"c.jsonl:2: malformed JSON"):
        read_corpus(p)


def test_non_utf8_names_line(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"fine\n\xff\xfebad\n")
    with pytest.raises(TascError, match=r"c.txt:2: not valid UTF-8"):
        read_corpus(p)


def test_empty_corpus_files(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("\n\n  \n")
    with pytest.raises(TascError, match="empty"):
        read_corpus(p)
    q = tmp_path / "d.jsonl"
    q.write_text("")
    with pytest.raises(TascError, match="empty"):
        read_corpus(q)


def test_non_string_field_and_non_object(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"output": 5}\n')
    with pytest.raises(TascError, match="holds int"):
        read_corpus(p)
    p.write_text('["output"]\n')
    with pytest.raises(TascError, match="expected a JSON object"):
        read_corpus(p)


def test_huge_single_line(tmp_path):
    p = tmp_path / "big.txt"
    line = "abc " * 2_500_000  # 10 MB
    p.write_text(line + "\n")
    texts = read_corpus(p)
    assert texts == [line]
    idx = read_index(write_index(texts, tmp_path / "big.tasc"))
    assert idx.texts() == [line]
