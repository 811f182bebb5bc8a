"""The shared-prefix layout (nli_cot_hub/shared_prefix.py); its use in generation and the read-out is tested
in test_local_engine.py and test_readout.py on the embedded model."""

from nli_cot_hub.shared_prefix import pad_after_prefix, shared_prefix_length


def test_shared_prefix_leaves_every_row_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6], [1, 2, 7]]) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]]) == 2
    assert shared_prefix_length([[1, 2, 3]]) == 2
    assert shared_prefix_length([[5, 2], [1, 2]]) == 0
    assert shared_prefix_length([]) == 0


def test_padding_sits_between_the_prefix_and_each_rows_own_tokens():
    ids, mask, positions = pad_after_prefix([[7, 8, 1, 2, 3], [7, 8, 4]], shared=2, pad_id=0)
    assert ids.tolist() == [[7, 8, 1, 2, 3], [7, 8, 0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]]
    assert positions[0].tolist() == [0, 1, 2, 3, 4]
    assert positions[1].tolist()[:2] == [0, 1] and positions[1].tolist()[-1] == 2  # the own token goes on from 1


def test_without_a_shared_prefix_it_is_left_padding_to_a_multiple():
    ids, mask, positions = pad_after_prefix([[5, 6, 7], [9]], shared=0, pad_id=0, multiple=4)
    assert ids.tolist() == [[0, 5, 6, 7], [0, 0, 0, 9]]
    assert mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 1]]
    assert positions[0].tolist()[1:] == [0, 1, 2] and positions[1].tolist()[-1] == 0


def greedy(model, ids, mask, new_tokens, **cache):
    """The new tokens and the logits of each step."""
    import torch

    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        do_sample=False,
        return_dict_in_generate=True,
        output_logits=True,
        **cache,
    )
    return out.sequences[:, ids.shape[1] :].tolist(), torch.stack(out.logits)


def same_generation(got, expected):
    return got[0] == expected[0] and bool((got[1] - expected[1]).abs().max() < 1e-4)


def test_a_static_cache_holding_the_prefix_generates_what_a_whole_left_padded_batch_does():
    import torch
    from transformers import AutoModelForCausalLM

    from bench.common import tiny_mistral_config
    from nli_cot_hub.shared_prefix import SharedPrefix

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_mistral_config(), dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    shared = [1, 40, 41, 42, 43]
    wide = [shared + [50 + i, 60, 61, 62][: 2 + i] for i in range(3)]
    narrow = [shared + [70], shared + [71, 72]]
    prefix = SharedPrefix(model, wide + narrow, "cpu", static_new_tokens=6)
    assert prefix.length == len(shared)
    caches = []
    for batch in (wide, narrow[:1] * 3):  # the second batch is narrower and reuses the first one's cache
        whole_ids, whole_mask, _ = pad_after_prefix(batch, 0, pad_id=0)
        expected = greedy(model, whole_ids, whole_mask, 6)
        ids, mask, _, cache = prefix.batch(batch, pad_id=0)
        assert int(next(iter(cache.values())).get_seq_length()) == len(shared)  # only the rows' own tokens are left
        assert same_generation(greedy(model, ids, mask, 6, **cache), expected)
        caches.append(next(iter(cache.values())))
    assert caches[0] is caches[1]
    # Rows of another count need a cache of their own.
    ids, mask, _, cache = prefix.batch(narrow, pad_id=0)
    assert next(iter(cache.values())) is not caches[0]
    whole = greedy(model, *pad_after_prefix(narrow, 0, pad_id=0)[:2], 6)
    assert same_generation(greedy(model, ids, mask, 6, **cache), whole)
