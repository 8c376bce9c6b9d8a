"""The byte table of a real vocabulary, which the in-request text match compares."""

from tasc_vllm.token_text import token_text_table

TEXTS = ['{"AddressNumber": "1600", "StreetName": "Pennsylvania"}', "naïve café – 東京 🚀", "  def f(x):\n\treturn x"]


def test_token_bytes_spell_every_text_and_pad_past_the_tokenizer(tokenizer):
    vocab_size = len(tokenizer) + 3
    starts, data = token_text_table(tokenizer, vocab_size)
    assert starts.shape == (vocab_size + 1,) and starts[-1] == data.size
    for text in TEXTS:
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert b"".join(data[starts[t]:starts[t + 1]].tobytes() for t in ids) == text.encode("utf-8")
    assert all(starts[t + 1] == starts[t] for t in range(len(tokenizer), vocab_size))
