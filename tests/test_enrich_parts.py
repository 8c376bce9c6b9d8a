"""TASC-ft building blocks: training data, n-gram mining, safe vocabulary growth, training loop."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasc_vllm.errors import TascError
from tools.finetune import Sample, batch_order, encode_samples, lr_at, train
from tools.ft_data import read_examples
from tools.vocab_extend import (
    add_checked_tokens,
    encode_lengths,
    grow_embeddings,
    pad_vocabulary,
)
from tools.vocab_mining import (
    _non_overlapping,
    all_of,
    json_value_mask,
    keeps_json_values_out,
    keeps_words_whole,
    leaves_values_to_the_input,
    mine,
)

# --------------------------------------------------------------------------- data


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_read_examples_prompt_messages_and_system(tmp_path):
    p = _write(tmp_path / "d.jsonl", [
        {"prompt": "a", "output": "A"},
        {"messages": [{"role": "user", "content": "b"}], "output": "B"},
        {"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "C"}]},
    ])
    ex = read_examples(p, system="sys")
    assert ex[0].messages == [{"role": "system", "content": "sys"}, {"role": "user", "content": "a"}]
    assert [e.output for e in ex] == ["A", "B", "C"]
    assert ex[2].messages == [{"role": "user", "content": "c"}]


@pytest.mark.parametrize("rows, message", [
    (["{not json"], "d.jsonl:1: malformed JSON"),
    ([{"prompt": "a", "output": "A"}, "[1, 2]"], "d.jsonl:2: expected a JSON object"),
    ([{"question": "a", "output": "A"}], "needs a 'prompt' or a 'messages' field (this line has: output, question)"),
    ([{"prompt": "a"}], "d.jsonl:1: needs an 'output' field"),
    ([{"prompt": "a", "output": 3}], "field 'output' holds int"),
    ([{"prompt": "a", "output": "  "}], "the output is empty"),
    ([{"messages": "hi", "output": "A"}], "must be a non-empty list"),
    ([{"messages": [{"role": "user"}], "output": "A"}], "message 0 must be an object"),
])
def test_read_examples_errors_name_file_and_line(tmp_path, rows, message):
    p = _write(tmp_path / "d.jsonl", rows)
    with pytest.raises(TascError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        read_examples(p)


def test_read_examples_empty_missing_and_not_utf8(tmp_path):
    with pytest.raises(TascError, match="is empty"):
        read_examples(_write(tmp_path / "e.jsonl", ["", "  "]))
    with pytest.raises(TascError, match="does not exist"):
        read_examples(tmp_path / "missing.jsonl")
    bad = tmp_path / "b.jsonl"
    bad.write_bytes(b'{"prompt": "a", "output": "A"}\n{"prompt": "\xff"}\n')
    with pytest.raises(TascError, match="b.jsonl:2: not valid UTF-8"):
        read_examples(bad)


# --------------------------------------------------------------------------- mining


def test_mine_picks_the_biggest_saving_and_merges_it():
    # "1 2 3" appears 4 times (saves 8); "7 8" appears 5 times (saves 5)
    seqs = [[1, 2, 3, 7, 8], [1, 2, 3, 9], [7, 8, 1, 2, 3], [1, 2, 3, 7, 8, 7, 8, 7, 8]]
    picks = mine(seqs, 5, lambda ids: " ".join(map(str, ids)) + " ")
    assert picks[0].ids == (1, 2, 3) and picks[0].count == 4 and picks[0].saving == 8
    assert picks[1].ids == (7, 8) and picks[1].count == 5 and picks[1].saving == 5
    # after both merges nothing repeats that is worth a token except pairs of merged symbols
    assert all(p.count >= 2 for p in picks)


def test_mine_never_crosses_texts_or_excluded_ids_and_skips_rejected_text():
    seqs = [[5, 6], [5, 6], [7, 0, 8], [7, 0, 8]]
    picks = mine(seqs, 10, lambda ids: "".join(chr(97 + i) for i in ids), excluded={0})
    assert [p.ids for p in picks] == [(5, 6)]
    picks = mine(seqs, 10, lambda ids: "x", accept=lambda text: False)
    assert picks == []
    # a decode that splits a character is never picked
    assert mine([[1, 2], [1, 2]], 3, lambda ids: "\ufffd") == []


def test_keeps_words_whole_rejects_picks_that_cut_words_or_numbers():
    accept = keeps_words_whole('{"AddressNumber": "1600", "StreetNamePostType": "Ave"}\n{"AddressNumber": "12"}')
    assert accept('{"AddressNumber": "') and accept('", "StreetNamePostType": "') and accept('"}')
    assert not accept('{"AddressNumber": "1')  # cuts 1600
    assert not accept('", "StreetName')  # cuts StreetNamePostType
    assert not accept("00")
    assert accept("never seen")


def test_leaves_values_to_the_input_rejects_picks_holding_words_of_their_own_prompt():
    examples = [
        ("111 West Monroe Street, Chicago, IL 60603",
         '{"AddressNumber": "111", "StreetName": "Monroe", "PlaceName": "Chicago", "StateName": "IL"}'),
        ("5 Elm St Springfield", '{"AddressNumber": "5", "StreetName": "Elm", "PlaceName": "Springfield"}'),
    ]
    accept = leaves_values_to_the_input(examples)
    # keys and punctuation: no input holds them
    assert accept('", "StreetName": "') and accept('{"AddressNumber": "') and accept('"}') and accept('", "')
    # values copied from the prompt, alone or glued to keys; the match ignores case
    assert not accept('Chicago", "StateName": "IL')
    assert not accept('", "PlaceName": "Chicago')
    assert accept("60603")  # in no output: no example to judge it by
    assert not accept('Elm", "PlaceName": "')
    rule = leaves_values_to_the_input([("monroe", '"Monroe"')])
    assert not rule("Monroe")
    assert not accept('"Springfield')
    # a word in some other example's prompt only does not count
    assert leaves_values_to_the_input([("Chicago", "x"), ("y", '"Springfield"')])('"Springfield"') is True


def test_json_value_mask_marks_values_not_keys_or_punctuation():
    text = '{"name": "f", "arguments": {"a": 5, "b": [1.5, true], "c": "x\\"y", "d": null}}'
    mask = json_value_mask(text)
    values = "".join(c if m else "_" for c, m in zip(text, mask)).replace("_", " ").split()
    assert values == ["f", "5", "1.5", "true", 'x\\"y', "null"]
    assert not any(mask[: text.index('"f"') + 1])  # '{"name": "' is structure
    assert json_value_mask('{"AddressNumber": ""}') == [False] * len('{"AddressNumber": ""}')
    assert json_value_mask("def f(x): return 5") is None  # not JSON: nothing to protect
    assert json_value_mask('{"a": 1') is None


def test_keeps_json_values_out_rejects_picks_that_fuse_values_with_structure():
    outputs = [
        '{"name": "get_weather", "arguments": {"location": "Paris", "days": 5}}',
        '{"name": "solve", "arguments": {"year": 2020, "exact": true}}',
        "print('5}}')",  # not JSON: constrains nothing
    ]
    accept = keeps_json_values_out(outputs)
    for structure in ('", "arguments": {"', '{"name": "', '": "', '"}}', '", "days": ', '}}'):
        assert accept(structure), structure
    for fused in ('": 5}}', 'year": 2020', '"Paris"', 'get_weather", "', ': true}}', "5"):
        assert not accept(fused), fused
    assert accept("never seen")
    # one occurrence inside a value is enough to refuse a pick
    assert not keeps_json_values_out(['{"a": ", "}', '{"a": "x", "b": "y"}'])('", "')


def test_all_of_needs_every_rule():
    assert all_of()("anything")
    assert all_of(lambda t: True, lambda t: "a" in t)("abc")
    assert not all_of(lambda t: True, lambda t: "a" in t)("xyz")


def test_non_overlapping_counts_self_overlap_once():
    starts = np.array([0, 1, 2, 3, 10])
    assert _non_overlapping(starts, 2).tolist() == [0, 2, 10]
    picks = mine([[4, 4, 4, 4, 4]], 1, lambda ids: "x" * len(ids))
    assert picks[0].ids == (4, 4) and picks[0].count == 2


def _brute_best(seqs, max_n, min_count=2):
    best = 0
    for n in range(2, max_n + 1):
        grams = {tuple(s[i:i + n]) for s in seqs for i in range(len(s) - n + 1)}
        for g in grams:
            count = 0
            for s in seqs:
                i = 0
                while i <= len(s) - n:
                    if tuple(s[i:i + n]) == g:
                        count += 1
                        i += n
                    else:
                        i += 1
            if count >= min_count:
                best = max(best, count * (n - 1))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(1, 5), min_size=0, max_size=24), min_size=1, max_size=6))
def test_first_pick_is_the_exact_best_saving(seqs):
    picks = mine(seqs, 3, lambda ids: ",".join(map(str, ids)) + ";", max_n=4)
    best = _brute_best(seqs, 4)
    if best == 0:
        assert picks == []
    else:
        assert picks[0].saving == best
    assert all(p.count >= 2 and p.saving >= p.count for p in picks)
    assert sum(p.saving for p in picks) <= sum(map(len, seqs))


# --------------------------------------------------------------------------- vocabulary


@pytest.fixture()
def fresh_tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


def test_added_tokens_keep_every_text_exact_and_never_longer(fresh_tokenizer, default_model_dir):
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(default_model_dir)
    texts = ['{"AddressNumber": "12", "StreetName": "Main"}', '{"AddressNumber": "7"}',
             "Streets of the city", "xStreetName", "émigré café", "<|im_start|>user\nhi<|im_end|>"]
    lengths = encode_lengths(base, texts)
    # "Street" alone would split "Streets" worse in some texts; "é" cannot round-trip through
    # the byte-level decoder; '", "StreetName": "' is safe.
    added, rejected = add_checked_tokens(
        fresh_tokenizer, ['", "StreetName": "', '{"AddressNumber": "', "reetN", "é"], texts, lengths
    )
    assert '", "StreetName": "' in added and '{"AddressNumber": "' in added
    assert "é" in rejected
    new = encode_lengths(fresh_tokenizer, texts)
    assert (new <= lengths).all() and new[0] < lengths[0]
    for t in texts:
        assert fresh_tokenizer.decode(fresh_tokenizer.encode(t, add_special_tokens=False)) == t
    # special tokens and the chat template keep their ids
    assert fresh_tokenizer.convert_tokens_to_ids("<|im_end|>") == base.convert_tokens_to_ids("<|im_end|>")
    chat = [{"role": "user", "content": "hi"}]
    assert fresh_tokenizer.apply_chat_template(chat, tokenize=False) == base.apply_chat_template(chat, tokenize=False)
    # adding a token already present is a no-op
    assert add_checked_tokens(fresh_tokenizer, ['", "StreetName": "'], texts, lengths) == ([], ['", "StreetName": "'])


def test_pad_vocabulary_and_mean_initialised_rows(fresh_tokenizer, default_model_dir):
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32)
    before = copy.deepcopy(fresh_tokenizer)
    fresh_tokenizer.add_tokens(['", "ZipCode": "'])
    grow_embeddings(model, before, ['", "ZipCode": "'], len(fresh_tokenizer))
    emb = model.get_input_embeddings().weight
    parts = before.encode('", "ZipCode": "', add_special_tokens=False)
    assert emb.shape[0] == len(before) + 1
    assert torch.allclose(emb[len(before)], emb[parts].mean(0))
    assert model.get_output_embeddings().weight.data_ptr() == emb.data_ptr()  # still tied
    n = len(fresh_tokenizer)
    unpadded = copy.deepcopy(fresh_tokenizer)
    padded = pad_vocabulary(fresh_tokenizer)
    assert (n + padded) % 64 == 0 and len(fresh_tokenizer) == n + padded
    grow_embeddings(model, unpadded, [], len(fresh_tokenizer))
    assert model.get_input_embeddings().weight.shape[0] == len(fresh_tokenizer)
    assert torch.count_nonzero(model.get_input_embeddings().weight[n:]) == 0
    # placeholders are special: a decode that skips special tokens drops them
    assert fresh_tokenizer.decode([n], skip_special_tokens=True) == ""


# --------------------------------------------------------------------------- training loop


def test_lr_schedule_and_batch_order():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, 10) == pytest.approx(0.1, abs=0.01)
    order = batch_order(10, 7, 4, seed=3)
    assert len(order) == 7 and all(len(b) == 4 for b in order)
    flat = [i for b in order for i in b]
    assert sorted(flat[:10]) == list(range(10))  # the first epoch sees every example once
    assert batch_order(10, 7, 4, seed=3) == order and batch_order(10, 7, 4, seed=4) != order


def test_batch_order_groups_by_length():
    lengths = [(i * 37) % 101 for i in range(64)]
    plain = batch_order(64, 16, 4, seed=1)
    grouped = batch_order(64, 16, 4, seed=1, lengths=lengths, group=8)
    assert len(grouped) == 16 and all(len(b) == 4 for b in grouped)
    # the same examples per window of 8 batches (every example once per epoch), in other batches
    for w in (0, 8):
        assert sorted(i for b in grouped[w : w + 8] for i in b) == sorted(i for b in plain[w : w + 8] for i in b)

    def padding(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    assert padding(grouped) < padding(plain) / 4
    # within a window, no two batches overlap in length range
    spans = sorted((min(lengths[i] for i in b), max(lengths[i] for i in b)) for b in grouped[:8])
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert batch_order(64, 16, 4, seed=1, lengths=lengths, group=1) == plain
    with pytest.raises(TascError, match="lengths"):
        batch_order(64, 16, 4, seed=1, lengths=lengths[:-1])


def _tiny_llama(tied: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_learn_at_a_scaled_rate_and_other_rows_as_before(tied):
    import copy

    from tools.finetune import embedding_matrices

    first_new = 32
    model = _tiny_llama(tied)
    samples = [Sample([1, 2, 3], [33, 34, 5]), Sample([4, 5], [35, 6, 36])]
    start = [w.detach().clone() for w in embedding_matrices(model)]
    assert len(start) == (1 if tied else 2)
    plain, scaled = copy.deepcopy(model), copy.deepcopy(model)
    kw = {"steps": 1, "batch_size": 2, "lr": 1e-2, "seed": 0, "pad_id": 0, "progress": False,
          "new_rows_from": first_new}
    train(plain, samples, new_rows_lr_scale=1.0, **kw)
    train(scaled, samples, new_rows_lr_scale=5.0, **kw)
    for w0, wp, ws in zip(start, embedding_matrices(plain), embedding_matrices(scaled)):
        step_plain, step_scaled = wp.detach() - w0, ws.detach() - w0
        assert step_plain[first_new:].abs().max() > 0  # the new rows did move
        # one step: the same gradients, the old rows take the same step, the new ones 5 times it
        assert torch_allclose(step_scaled[:first_new], step_plain[:first_new])
        assert torch_allclose(step_scaled[first_new:], 5.0 * step_plain[first_new:])
    with pytest.raises(TascError, match="positive"):
        train(copy.deepcopy(model), samples, new_rows_lr_scale=0.0, **kw)


def torch_allclose(a, b) -> bool:
    import torch

    return torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_encode_samples_frames_the_answer(fresh_tokenizer):
    from tools.ft_data import FtExample

    ex = [FtExample([{"role": "user", "content": "hi"}], '{"a": 1}')]
    (s,) = encode_samples(fresh_tokenizer, ex, max_len=512)
    end = fresh_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert s.answer_ids[-1] == end
    assert fresh_tokenizer.decode(s.answer_ids[:-1]) == '{"a": 1}'
    assert fresh_tokenizer.decode(s.prompt_ids).endswith("<|im_start|>assistant\n")
    (short,) = encode_samples(fresh_tokenizer, ex, max_len=8)
    assert len(short.prompt_ids) + len(short.answer_ids) <= 8


def test_bf16_autocast_keeps_float32_weights_and_learns():
    import copy

    import torch

    from tools.finetune import _collate, answer_loss

    model = _tiny_llama(tied=True)
    samples = [Sample([1, 2, 3], [7, 8, 9, 5]), Sample([4, 5], [7, 8, 6])]
    batch = _collate(samples, 0)
    with torch.no_grad():
        exact, approx = answer_loss(model, *batch), answer_loss(model, *batch, bf16=True)
    assert approx.dtype == torch.float32 and abs(approx.item() - exact.item()) < 0.05 * exact.item()
    trained = copy.deepcopy(model)
    losses = train(trained, samples, steps=30, batch_size=2, lr=1e-2, seed=0, pad_id=0, progress=False, bf16=True)
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert losses[-1] < 0.5 * losses[0]


def test_enrich_settings_pick_the_mining_rules_they_name():
    from types import SimpleNamespace

    from tools.enrich import _accept_rule
    from tools.ft_data import FtExample

    train = [FtExample([{"role": "user", "content": "weather in Paris"}],
                       '{"name": "get_weather", "arguments": {"location": "Paris", "days": 5}}')]
    rule = {"whole_words": False, "structure_only": False, "json_values_out": False}
    assert _accept_rule(SimpleNamespace(**rule), train)('": 5}}')
    assert not _accept_rule(SimpleNamespace(**rule | {"json_values_out": True}), train)('": 5}}')
    assert _accept_rule(SimpleNamespace(**rule | {"json_values_out": True}), train)('", "days": ')
    assert not _accept_rule(SimpleNamespace(**rule | {"whole_words": True}), train)('"get_wea')


def test_mine_counts_each_candidate_once_while_the_corpus_stays_the_same(monkeypatch):
    import tools.vocab_mining as vm

    seen = []
    real = vm._matches

    def counting(flat, gram):
        seen.append(tuple(int(x) for x in gram))
        return real(flat, gram)

    monkeypatch.setattr(vm, "_matches", counting)
    seqs = [[1, 2, 3, 4, 1, 2, 3], [2, 3, 4, 5, 2, 3], [1, 2, 3, 4]]
    # every candidate refused: the corpus never changes, so no gram is counted twice
    assert vm.mine(seqs, 5, lambda ids: str(ids), accept=lambda text: False) == []
    assert seen and len(seen) == len(set(seen))


def test_prompt_ngrams_are_structure_never_digits_prose_cut_names_or_what_answers_hold():
    from tools.enrich import _prompt_rule, _prompt_texts
    from tools.ft_data import FtExample

    train = [FtExample([{"role": "system", "content": "You call functions."},
                        {"role": "user", "content": 'Functions: [{"name": "get_weather", "parameters": '
                                                    '{"days": {"type": "integer"}}}]\nQuestion: weather in Paris for 5 days'}],
                       '{"name": "get_weather", "arguments": {"days": 5}}')]
    rule = _prompt_rule(_prompt_texts(train), [e.output for e in train])
    assert rule('": {"type": "')  # a schema's structure
    assert not rule(" weather in")  # prose: no punctuation
    assert not rule('for 5 days')  # a number the answer copies
    assert not rule('": {"ty')  # cuts a word
    assert not rule('_weather", "parameters": {"')  # cuts a name the answer copies (get_weather)
    assert not rule('}}')  # the answer holds it: the answer's tokens stay as they were
    assert not rule('": {"days": {"type": "')  # the answer copies "days": its tokens stay the same


def test_prompt_ngrams_are_added_only_when_they_save_min_saving_of_the_prompts(fresh_tokenizer, capsys):
    from types import SimpleNamespace

    from tools.enrich import _prompt_picks, _prompt_texts
    from tools.ft_data import FtExample

    schema = ('Functions: [{"name": "get_weather", "description": "The weather", "parameters": {"type": "dict", '
              '"properties": {"days": {"type": "integer", "description": "How many"}}}}]\nQuestion: ')
    train = [FtExample([{"role": "user", "content": schema + q}], '{"name": "get_weather", "arguments": {"days": %d}}' % d)
             for d, q in enumerate(["weather in Paris", "rain in Rome soon", "snow in Oslo", "sun in Nice"], 1)]
    prompts, outputs = _prompt_texts(train), [e.output for e in train]
    settings = SimpleNamespace(prompt_tokens=4, max_ngram=8, min_count=2, min_saving=0.02)
    picks, record = _prompt_picks(settings, fresh_tokenizer, prompts, outputs, progress=False)
    assert 0 < len(picks) <= 4 and "prompt_skipped" not in record
    assert record["prompt_saving"] >= 0.02 and [m["text"] for m in record["prompt_mined"]] == [p.text for p in picks]
    assert record["prompt_saving"] == pytest.approx(sum(p.saving for p in picks) / sum(
        len(ids) for ids in fresh_tokenizer(prompts, add_special_tokens=False)["input_ids"]))
    # the same picks, worth less than --min-saving of the prompts' tokens: none added, one line says why
    picks, record = _prompt_picks(SimpleNamespace(**vars(settings) | {"min_saving": 0.9}), fresh_tokenizer,
                                  prompts, outputs, progress=False)
    assert picks == [] and record["prompt_mined"] and "under --min-saving 90.0%" in record["prompt_skipped"]
    assert "none added" in capsys.readouterr().err
