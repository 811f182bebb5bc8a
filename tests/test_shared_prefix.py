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
